//! Project resolution and membership: the project id comes from the path,
//! a query parameter, a header or a JSON body field (the harness writes the
//! example config's sources); the identity's active roles there are injected,
//! and a project without (active) membership is refused with 403 before
//! anything is forwarded or counted. Bodies reach the upstream byte for byte.

mod common;

use common::net::bearer;
use common::*;
use serde_json::json;
use std::time::Duration;

const NO_ACCESS: &str = "identity has no access to this project";

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format now as RFC 3339")
}

struct Setup {
    upstream: Upstream,
    gw: Gateway,
    admin: Admin,
    identity: String,
    token: CreatedToken,
}

impl Setup {
    fn new(cfg: GatewayConfig) -> Setup {
        let upstream = Upstream::echo();
        let gw = Gateway::start(cfg.upstream(&upstream.url()));
        let admin = gw.admin();
        let (identity, token) = admin.identity_with_token("member", json!({}));
        Setup {
            upstream,
            gw,
            admin,
            identity,
            token,
        }
    }

    fn send(&self, method: &str, path: &str, extra: &[(&str, &str)], body: Option<&str>) -> Resp {
        let auth = bearer(&self.token.access_token);
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        http(method, &format!("{}{path}", self.gw.url()), &headers, body)
    }

    /// Sends, expects 200, and returns what the upstream received.
    #[track_caller]
    fn forwarded(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<&str>,
    ) -> Recorded {
        let count = self.upstream.count();
        let resp = self.send(method, path, extra, body);
        assert_eq!(
            resp.status, 200,
            "{method} {path} {extra:?}; body: {}",
            resp.body
        );
        assert_eq!(self.upstream.count(), count + 1);
        self.upstream.last()
    }

    /// Sends, expects the 403, nothing forwarded and no use consumed.
    #[track_caller]
    fn refused(&self, method: &str, path: &str, extra: &[(&str, &str)], body: Option<&str>) {
        let count = self.upstream.count();
        let used = self.admin.uses(&self.token.token_id);
        let resp = self.send(method, path, extra, body);
        assert_eq!(
            resp.expect_error(403),
            NO_ACCESS,
            "{method} {path} {extra:?} {body:?}"
        );
        assert!(!resp.body.contains(&self.token.access_token));
        assert_eq!(
            self.upstream.count(),
            count,
            "{method} {path}: a refused request was forwarded"
        );
        assert_eq!(
            self.admin.uses(&self.token.token_id),
            used,
            "{method} {path}: a request refused for its project consumed a use"
        );
    }
}

#[track_caller]
fn assert_project(rec: &Recorded, project: &str, role: &str) {
    assert_eq!(
        rec.header_all("x-tokengate-project-id"),
        [project],
        "{} {}: {:?}",
        rec.method,
        rec.path,
        rec.headers
    );
    assert_eq!(
        rec.header_all("x-tokengate-project-role"),
        [role],
        "{} {}: {:?}",
        rec.method,
        rec.path,
        rec.headers
    );
}

#[track_caller]
fn assert_no_project(rec: &Recorded) {
    assert!(
        !rec.has_header("x-tokengate-project-id") && !rec.has_header("x-tokengate-project-role"),
        "{} {}: project headers without a project: {:?}",
        rec.method,
        rec.path,
        rec.headers
    );
}

fn roles_of(rec: &Recorded) -> Vec<String> {
    let mut roles: Vec<String> = rec
        .header("x-tokengate-project-role")
        .unwrap_or_else(|| panic!("no project role: {:?}", rec.headers))
        .split(',')
        .map(|r| r.trim().to_string())
        .collect();
    roles.sort();
    roles
}

// ---------------------------------------------------------------------------

fn case_sources(cfg: GatewayConfig) {
    let s = Setup::new(cfg);
    s.admin
        .add_membership("p1", &s.identity, json!({"role": "viewer"}));

    // Path templates.
    let rec = s.forwarded("GET", "/api/v1/projects/p1/secrets", &[], None);
    assert_project(&rec, "p1", "viewer");
    assert_eq!(rec.path, "/api/v1/projects/p1/secrets");
    let rec = s.forwarded("GET", "/api/v1/projects/p1", &[], None);
    assert_project(&rec, "p1", "viewer");
    let rec = s.forwarded("GET", "/api/v2/workspace/p1/environments", &[], None);
    assert_project(&rec, "p1", "viewer");

    // Query parameters.
    let resp = s.send(
        "GET",
        "/api/v3/secrets/raw?environment=dev&workspaceId=p1&secretPath=%2F",
        &[],
        None,
    );
    resp.expect_status(200);
    assert_project(&s.upstream.last(), "p1", "viewer");
    assert_eq!(
        resp.json()["secrets"][1]["secretValue"],
        "viewer",
        "the upstream saw the role (Infisical-shaped answer): {}",
        resp.body
    );
    let rec = s.forwarded("GET", "/api/v1/things?projectId=p1", &[], None);
    assert_project(&rec, "p1", "viewer");

    // Header.
    let rec = s.forwarded("GET", "/api/v1/things", &[("x-project-id", "p1")], None);
    assert_project(&rec, "p1", "viewer");

    // JSON body, forwarded byte for byte.
    let body = r#"{"workspaceId":"p1","secretValue":"x"}"#;
    let rec = s.forwarded("POST", "/api/v3/secrets/raw/NAME", &[], Some(body));
    assert_project(&rec, "p1", "viewer");
    assert_eq!(rec.body_str(), body);
    let odd = "{\n  \"secretValue\" : \"x y\\u00e9 \\\"q\\\" é\" ,\t\"type\":\"shared\",\r\n \"nested\": {\"workspaceId\": \"p1\"},\n   \"workspaceId\"   :\"p1\" , \"n\": [1, 2.50, -0e0, null]  }\n";
    let rec = s.forwarded("PATCH", "/api/v3/secrets/raw/ODD", &[], Some(odd));
    assert_project(&rec, "p1", "viewer");
    assert_eq!(rec.body, odd.as_bytes(), "the body was changed in transit");
    let body = r#"{ "projectId" : "p1" }"#;
    let rec = s.forwarded("DELETE", "/api/v3/secrets/raw/OLD", &[], Some(body));
    assert_project(&rec, "p1", "viewer");
    assert_eq!(rec.body_str(), body);

    // Sources that disagree are refused: the gateway would check one project
    // while the upstream might act on the other. Nothing is forwarded or counted.
    let count = s.upstream.count();
    let used = s.admin.uses(&s.token.token_id);
    for (method, path, headers, body) in [
        ("GET", "/api/v1/projects/p1/x?workspaceId=p2", vec![], None),
        (
            "GET",
            "/api/v1/things?workspaceId=p1",
            vec![("x-project-id", "p2")],
            None,
        ),
        (
            "GET",
            "/api/v3/secrets/raw?workspaceId=p1&workspaceId=p2",
            vec![],
            None,
        ),
        (
            "GET",
            "/api/v3/secrets/raw?workspaceId=p1&projectId=p2",
            vec![],
            None,
        ),
        (
            "POST",
            "/api/v3/secrets/raw/FIRST",
            vec![("x-project-id", "p1")],
            Some(r#"{"workspaceId":"p2"}"#),
        ),
        (
            "POST",
            "/api/v3/secrets/raw/BOTH",
            vec![],
            Some(r#"{"workspaceId":"p1","projectId":"p2"}"#),
        ),
        (
            "POST",
            "/api/v3/secrets/raw/NESTED",
            vec![],
            Some(r#"{"workspaceId":"p1","nested":{"workspaceId":"p2"}}"#),
        ),
        (
            "POST",
            "/api/v3/secrets/raw/REPEATED",
            vec![],
            Some(r#"{"workspaceId":"p2","workspaceId":"p1"}"#),
        ),
    ] {
        let resp = s.send(method, path, &headers, body);
        assert_eq!(
            resp.expect_error(400),
            "request names more than one project",
            "{method} {path} {headers:?} {body:?}"
        );
    }
    let resp = s.send(
        "POST",
        "/api/v3/secrets/raw/BAD",
        &[("Content-Type", "application/json")],
        Some("{\"workspaceId\": \"p2\"} trailing"),
    );
    assert_eq!(resp.expect_error(415), "request body is not valid JSON");
    assert_eq!(s.upstream.count(), count, "a refused request was forwarded");
    assert_eq!(s.admin.uses(&s.token.token_id), used);
    // Sources that agree are one project.
    let rec = s.forwarded("GET", "/api/v1/projects/p1/x?workspaceId=p1", &[], None);
    assert_project(&rec, "p1", "viewer");

    // A nested field counts like any other.
    let body = r#"{"nested":{"workspaceId":"p1"},"secretValue":"x"}"#;
    let rec = s.forwarded("POST", "/api/v3/secrets/raw/N", &[], Some(body));
    assert_project(&rec, "p1", "viewer");
    assert_eq!(rec.body_str(), body);
    // No project anywhere, on a route that does not require one: forwarded
    // without project headers.
    let rec = s.forwarded("GET", "/api/v1/things", &[], None);
    assert_no_project(&rec);

    assert_eq!(s.admin.uses(&s.token.token_id), 12);
}

#[test]
fn project_role_is_injected_from_every_source_redis() {
    let redis = Redis::start();
    case_sources(GatewayConfig::redis(&redis.url()));
}

#[test]
fn project_role_is_injected_from_every_source_embedded() {
    case_sources(GatewayConfig::embedded_temp());
}

// ---------------------------------------------------------------------------

fn case_refusals(cfg: GatewayConfig) {
    let s = Setup::new(cfg);
    s.admin
        .add_membership("p1", &s.identity, json!({"role": "viewer"}));
    s.admin
        .add_membership("p4", &s.identity, json!({"role": "no-access"}));
    s.forwarded("GET", "/api/v1/projects/p1/secrets", &[], None);

    // No membership, from each source.
    s.refused("GET", "/api/v1/projects/p2/secrets", &[], None);
    s.refused("GET", "/api/v2/workspace/p2", &[], None);
    s.refused("GET", "/api/v3/secrets/raw?workspaceId=p2", &[], None);
    s.refused("GET", "/api/v1/things?projectId=p2", &[], None);
    s.refused("GET", "/api/v1/things", &[("x-project-id", "p2")], None);
    s.refused(
        "POST",
        "/api/v3/secrets/raw/NAME",
        &[],
        Some(r#"{"workspaceId":"p2","secretValue":"x"}"#),
    );
    // Another identity's membership does not help.
    let other = s.admin.create_identity(&unique("other"), "member");
    s.admin
        .add_membership("p3", &other, json!({"role": "admin"}));
    s.refused("GET", "/api/v1/projects/p3/secrets", &[], None);

    // Membership with only `no-access`.
    s.refused("GET", "/api/v1/projects/p4/secrets", &[], None);
    s.refused("GET", "/api/v3/secrets/raw?workspaceId=p4", &[], None);

    // Removing a membership takes effect on the next request.
    s.admin.remove_membership("p1", &s.identity);
    s.refused("GET", "/api/v1/projects/p1/secrets", &[], None);

    assert_eq!(s.admin.uses(&s.token.token_id), 1);
}

#[test]
fn project_without_membership_is_refused_redis() {
    let redis = Redis::start();
    case_refusals(GatewayConfig::redis(&redis.url()));
}

#[test]
fn project_without_membership_is_refused_embedded() {
    case_refusals(GatewayConfig::embedded_temp());
}

// ---------------------------------------------------------------------------

fn case_temporary_role(cfg: GatewayConfig) {
    let s = Setup::new(cfg);
    // One start time for both, so both temporary roles end at the same moment.
    let start = now_rfc3339();
    let temporary = || {
        json!({
            "role": "admin",
            "isTemporary": true,
            "temporaryMode": "relative",
            "temporaryRange": "2s",
            "temporaryAccessStartTime": start,
        })
    };
    // p3: only a temporary admin role; p5: viewer for good plus a temporary admin.
    s.admin
        .add_membership("p3", &s.identity, json!({"roles": [temporary()]}));
    s.admin.add_membership(
        "p5",
        &s.identity,
        json!({"roles": [{"role": "viewer"}, temporary()]}),
    );

    let rec = s.forwarded("GET", "/api/v1/projects/p3/secrets", &[], None);
    assert_project(&rec, "p3", "admin");
    let rec = s.forwarded("GET", "/api/v1/projects/p5/secrets", &[], None);
    assert_eq!(
        roles_of(&rec),
        ["admin", "viewer"],
        "both active roles, comma-joined"
    );

    // Bounded wait for the 2 s role to end.
    eventually(Duration::from_secs(10), || {
        s.send("GET", "/api/v1/projects/p3/secrets", &[], None)
            .status
            == 403
    });
    s.refused("GET", "/api/v1/projects/p3/secrets", &[], None);
    s.refused("GET", "/api/v3/secrets/raw?workspaceId=p3", &[], None);
    let rec = s.forwarded("GET", "/api/v1/projects/p5/secrets", &[], None);
    assert_project(&rec, "p5", "viewer");
}

#[test]
fn temporary_role_ends_redis() {
    let redis = Redis::start();
    case_temporary_role(GatewayConfig::redis(&redis.url()));
}

#[test]
fn temporary_role_ends_embedded() {
    case_temporary_role(GatewayConfig::embedded_temp());
}

/// A chunked body (no Content-Length) is read to find its project and reaches
/// the upstream whole; a body over `max_body_bytes` is refused with 413 and
/// nothing is forwarded.
#[test]
fn chunked_and_oversized_bodies() {
    let s = Setup::new(GatewayConfig::embedded_temp().max_body_bytes(1024));
    s.admin
        .add_membership("p-chunked", &s.identity, json!({"role": "viewer"}));
    let body = r#"{"secretValue": "v", "workspaceId": "p-chunked"}"#;
    let (head, tail) = body.split_at(20);
    let raw = format!(
        "POST /api/v3/secrets/raw/NAME HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{head}\r\n{:x}\r\n{tail}\r\n0\r\n\r\n",
        bearer(&s.token.access_token),
        head.len(),
        tail.len()
    );
    let resp = raw_http_resp(&s.gw.addr(), &raw);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let rec = s.upstream.last();
    assert_project(&rec, "p-chunked", "viewer");
    assert_eq!(rec.body_str(), body);

    let count = s.upstream.count();
    let big = format!(
        r#"{{"workspaceId": "p-chunked", "pad": "{}"}}"#,
        "x".repeat(2000)
    );
    let resp = s.send(
        "POST",
        "/api/v3/secrets/raw/NAME",
        &[("Content-Type", "application/json")],
        Some(&big),
    );
    assert_eq!(resp.status, 413, "{}", resp.body);
    assert_eq!(resp.json()["error"], "PayloadTooLarge");
    assert_eq!(s.upstream.count(), count, "an oversized body was forwarded");
}
