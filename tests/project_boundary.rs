//! The project boundary fails closed, class by class: request targets the
//! gateway does not fully understand, paths and queries servers read
//! differently, bodies of every type, lookalike names, and routes that
//! require a project. An identity that is a member of `p1` only never gets a
//! request forwarded that names `p-other`: each is refused (400, 403 or 415)
//! with nothing forwarded and no use counted. Run on both stores.

mod common;

use common::net::bearer;
use common::*;
use serde_json::json;

const NO_ACCESS: &str = "identity has no access to this project";

struct Setup {
    upstream: Upstream,
    gw: Gateway,
    admin: Admin,
    token: CreatedToken,
}

impl Setup {
    fn new(cfg: GatewayConfig) -> Setup {
        let upstream = Upstream::echo();
        let gw = Gateway::start(cfg.upstream(&upstream.url()).public_routes(&["/public"]));
        let admin = gw.admin();
        let (identity, token) = admin.identity_with_token("member", json!({}));
        admin.add_membership("p1", &identity, json!({"role": "viewer"}));
        Setup {
            upstream,
            gw,
            admin,
            token,
        }
    }

    /// A raw request with the token; `head` is the request line's method and
    /// target, `headers` go out exactly as given.
    fn raw(&self, head: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
        let mut req = format!(
            "{head} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n",
            self.gw.addr(),
            bearer(&self.token.access_token)
        );
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("Connection: close\r\n");
        match body {
            Some(b) => req.push_str(&format!("Content-Length: {}\r\n\r\n{b}", b.len())),
            None => req.push_str("\r\n"),
        }
        raw_http_resp(&self.gw.addr(), &req)
    }

    /// Expects `status` with `message` (when given), nothing forwarded, no use counted.
    #[track_caller]
    fn refused(
        &self,
        status: u16,
        message: Option<&str>,
        head: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) {
        let count = self.upstream.count();
        let used = self.admin.uses(&self.token.token_id);
        let resp = self.raw(head, headers, body);
        assert_eq!(
            resp.status, status,
            "{head} {headers:?} {body:?}: {}",
            resp.body
        );
        // Pingora refuses some targets itself (a Host that differs from an
        // absolute-form authority, userinfo) with an empty 400; every other
        // refusal is the gateway's JSON error.
        if message.is_some() || !resp.body.is_empty() {
            let got = resp.expect_error(status);
            if let Some(m) = message {
                assert_eq!(got, m, "{head} {headers:?} {body:?}");
            }
        }
        assert_eq!(
            self.upstream.count(),
            count,
            "{head} {headers:?} {body:?}: a refused request was forwarded"
        );
        assert_eq!(
            self.admin.uses(&self.token.token_id),
            used,
            "{head}: a refused request consumed a use"
        );
    }

    /// Expects 200 and returns what the upstream received.
    #[track_caller]
    fn forwarded(&self, head: &str, headers: &[(&str, &str)], body: Option<&str>) -> Recorded {
        let count = self.upstream.count();
        let resp = self.raw(head, headers, body);
        assert_eq!(
            resp.status, 200,
            "{head} {headers:?} {body:?}: {}",
            resp.body
        );
        assert_eq!(self.upstream.count(), count + 1);
        self.upstream.last()
    }
}

#[track_caller]
fn assert_project(rec: &Recorded, project: Option<&str>) {
    let want: Vec<&str> = project.into_iter().collect();
    assert_eq!(
        rec.header_all("x-tokengate-project-id"),
        want,
        "{} {}",
        rec.method,
        rec.path
    );
}

fn request_targets(cfg: GatewayConfig) {
    let s = &Setup::new(cfg);
    let own = s.gw.addr();
    // Not origin-form: Pingora would forward these targets as received.
    for head in [
        "GET xyz:/api/v1/projects/p-other/secrets".to_string(),
        "GET api/v1/projects/p-other/secrets".to_string(),
        "GET *".to_string(),
        "OPTIONS *".to_string(),
        "GET http://evil.example/api/v1/projects/p-other/secrets".to_string(),
        format!("GET http://user@{own}/api/v1/projects/p-other/secrets"),
        format!("GET ftp://{own}/api/v1/projects/p-other/secrets"),
    ] {
        s.refused(400, None, &head, &[], None);
    }
    // The log names what was refused, not Pingora's placeholder path.
    assert!(
        s.gw.log()
            .contains("GET xyz:/api/v1/projects/p-other/secrets -> 400"),
        "{}",
        s.gw.log()
    );
    // Absolute-form naming the gateway is read like origin-form and sent upstream so.
    let rec = s.forwarded(
        &format!("GET http://{own}/api/v1/projects/p1/secrets?a=1"),
        &[],
        None,
    );
    assert_eq!(rec.path, "/api/v1/projects/p1/secrets?a=1");
    assert_project(&rec, Some("p1"));
    s.refused(
        403,
        Some(NO_ACCESS),
        &format!("GET http://{own}/api/v1/projects/p-other/secrets"),
        &[],
        None,
    );

    // Paths and queries servers read differently, on public routes too.
    for head in [
        "GET /public/..;/api/v1/projects/p-other/secrets",
        "GET /public;x=1/a",
        "GET /public/%3b/a",
        "GET /public/%c0%ae%c0%ae/api/v1/projects/p-other/secrets",
        "GET /public/%ef%bc%8e%ef%bc%8e/api/v1/projects/p-other/secrets",
        "GET /public/\u{ff0e}\u{ff0e}/api/v1/projects/p-other/secrets",
        "GET /public/%ef%bc%8fapi",
        "GET /public/%ff",
        "GET /public/a%00b",
        "GET /public/a%0d%0ab",
        "GET /api/v1/projects/p1/secrets?a=1;workspaceId=p-other",
        "GET /public/x?a=1;workspaceId=p-other",
        "GET /api/v3/secrets/raw?workspaceId=p1&x=%00",
        "GET /api/v3/secrets/raw?workspaceId=p1&x=%c0%ae",
    ] {
        s.refused(400, None, head, &[], None);
    }
    // Headers some frameworks route on instead of the target.
    for (name, value) in [
        ("X-Original-URL", "/api/v1/projects/p-other/secrets"),
        ("x_rewrite_url", "/api/v1/projects/p-other/secrets"),
        ("X-HTTP-Method-Override", "DELETE"),
        // gunicorn cuts SCRIPT_NAME off the path when it comes from the proxy.
        ("SCRIPT_NAME", "/public"),
        ("Script-Name", "/public"),
        ("PATH_INFO", "/api/v1/projects/p-other/secrets"),
        // ... and so does the Flask `ReverseProxied` recipe with X-Script-Name.
        ("X-Script-Name", "/public"),
        ("X-Forwarded-Prefix", "/public"),
    ] {
        s.refused(400, None, "GET /public/x", &[(name, value)], None);
    }
    // A plain public path still passes without a project.
    let rec = s.forwarded("GET /public/status?a=b", &[], None);
    assert_project(&rec, None);
}

on_both_stores!(
    request_targets,
    request_targets_redis,
    request_targets_embedded
);

fn multipart(name: &str, value: &str) -> String {
    format!(
        "--BOUNDARY\r\nContent-Disposition: form-data; name=\"secretValue\"\r\n\r\nx\r\n\
         --BOUNDARY\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n--BOUNDARY--\r\n"
    )
}

fn bodies(cfg: GatewayConfig) {
    let s = &Setup::new(cfg);
    let post = "POST /api/v3/secrets/raw/NAME";
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let multi = ("Content-Type", "multipart/form-data; boundary=BOUNDARY");
    let json_types: [&[(&str, &str)]; 8] = [
        &[("Content-Type", "application/json")],
        &[("Content-Type", "application/json; charset=utf-8")],
        &[("Content-Type", "application/vnd.infisical+json")],
        &[("Content-Type", "text/json")],
        &[("Content-Type", "application/x-json")],
        &[("Content-Type", "text/plain")],
        &[("Content-Type", "application/octet-stream")],
        &[],
    ];
    // Every type that could carry the project is read: p-other is checked (and
    // refused), p1 is forwarded with its project.
    for h in json_types {
        s.refused(
            403,
            Some(NO_ACCESS),
            post,
            h,
            Some(r#"{"workspaceId":"p-other"}"#),
        );
        let rec = s.forwarded(post, h, Some(r#"{"workspaceId":"p1","secretValue":"v"}"#));
        assert_project(&rec, Some("p1"));
    }
    s.refused(
        403,
        Some(NO_ACCESS),
        post,
        &[form],
        Some("secretValue=x&workspaceId=p-other"),
    );
    let rec = s.forwarded(post, &[form], Some("secretValue=x&workspaceId=p1"));
    assert_project(&rec, Some("p1"));
    assert_eq!(rec.body_str(), "secretValue=x&workspaceId=p1");
    s.refused(
        403,
        Some(NO_ACCESS),
        post,
        &[multi],
        Some(&multipart("workspaceId", "p-other")),
    );
    let rec = s.forwarded(post, &[multi], Some(&multipart("workspaceId", "p1")));
    assert_project(&rec, Some("p1"));
    // Form data under a type that is not a form's is scanned too, even when
    // the body looks like JSON (Rack reads a POST without a type as a form).
    s.refused(
        403,
        Some(NO_ACCESS),
        post,
        &[],
        Some(r#"{"a":"&workspaceId=p-other&"}"#),
    );
    s.refused(
        403,
        Some(NO_ACCESS),
        post,
        &[("Content-Type", "text/plain")],
        Some("workspaceId=p-other"),
    );
    // A body that contradicts the query is a conflict, whatever its type.
    s.refused(
        400,
        Some("request names more than one project"),
        "POST /api/v3/secrets/raw/NAME?workspaceId=p1",
        &[form],
        Some("workspaceId=p-other"),
    );

    // Bodies the gateway cannot read with certainty: 415.
    let utf16: String = r#"{"workspaceId":"p-other"}"#.chars().flat_map(|c| ['\0', c]).collect();
    let tricky = "--abc xyz\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nhello\r\n--abc\r\nContent-Disposition: form-data; name=\"workspaceId\"\r\n\r\np-other\r\n--abc--\r\n--abc xyz--\r\n";
    for (headers, body) in [
        (vec![("Content-Type", "application/json")], "{\"workspaceId\":\"p1\"} trailing"),
        (vec![("Content-Type", "application/json")], "workspaceId=p-other"),
        (vec![("Content-Type", "text/plain")], "{'workspaceId': 'p-other'}"),
        (vec![("Content-Type", "application/json; charset=\u{ff}")], "{\"workspaceId\":\"p-other\"}"),
        (vec![("Content-Type", "application/json; charset=utf-16")], "{\"workspaceId\":\"p-other\"}"),
        (vec![("Content-Type", "application/json"), ("Content-Type", "text/plain")], "{}"),
        (vec![("Content-Type", "application/json"), ("Content-Encoding", "gzip")], "{}"),
        (vec![form], "workspaceId=p1;workspaceId=p-other"),
        (vec![form], "workspaceId=%zz"),
        (vec![("Content-Type", "multipart/form-data")], "--x--"),
        (vec![multi], "--BOUNDARY\r\nContent-Disposition: form-data; name*=utf-8''workspaceId\r\n\r\np-other\r\n--BOUNDARY--"),
        (vec![multi], "--BOUNDARY\r\nContent-Disposition: form-data; name=a\r\nContent-Transfer-Encoding: base64\r\n\r\ncC1vdGhlcg==\r\n--BOUNDARY--"),
        // UTF-16 JSON (Python's and Jackson's JSON readers detect it).
        (vec![], &utf16),
        (vec![("Content-Type", "text/plain")], &utf16),
        // A boundary Werkzeug and PHP cut short, or take from `boundary*`.
        (vec![("Content-Type", "multipart/form-data; boundary=abc xyz")], tricky),
        (vec![("Content-Type", "multipart/form-data; boundary=abc, boundary=xyz")], tricky),
        (vec![("Content-Type", "multipart/form-data; boundary=xyz; boundary*=utf-8''abc")], tricky),
        // A part name that is not a token; a JSON part that does not parse.
        (vec![("Content-Type", "multipart/form-data; boundary=abc")], "--abc\r\nContent-Disposition: form-data; name=workspaceId x\r\n\r\np-other\r\n--abc--\r\n"),
        (vec![("Content-Type", "multipart/form-data; boundary=abc")], "--abc\r\nContent-Disposition: form-data; name=\"=?UTF-8?B?d29ya3NwYWNlSWQ=?=\"\r\n\r\np-other\r\n--abc--\r\n"),
        (vec![("Content-Type", "multipart/form-data; boundary=abc")], "--abc\r\nContent-Disposition: form-data; name=\"meta\"; filename=\"m.json\"\r\nContent-Type: application/json\r\n\r\n{\"y\":NaN,\"workspaceId\":\"p-other\"}\r\n--abc--\r\n"),
    ] {
        s.refused(415, None, post, &headers, Some(body));
    }
}

on_both_stores!(bodies, bodies_redis, bodies_embedded);

/// A route whose bodies carry no project: its bodies are not read at all,
/// so an unparseable one passes and a body field is no claim.
#[test]
fn routes_can_declare_bodies_without_a_project() {
    let s = Setup::new(
        GatewayConfig::embedded_temp().extra("routes: [{path: /uploads, body: no-project}]"),
    );
    let rec = s.forwarded(
        "POST /uploads/file?workspaceId=p1",
        &[("Content-Type", "application/json")],
        Some("{not json, \"workspaceId\": \"p-other\""),
    );
    assert_project(&rec, Some("p1"));
    // Elsewhere the same body is refused.
    s.refused(
        415,
        None,
        "POST /other?workspaceId=p1",
        &[("Content-Type", "application/json")],
        Some("{not json"),
    );
}

fn lookalikes(cfg: GatewayConfig) {
    let s = &Setup::new(cfg);
    // Each names p-other where some framework would read it: the gateway reads it too.
    for target in [
        "/api/v3/secrets/raw?WorkspaceId=p-other",
        "/api/v3/secrets/raw?workspace_id=p-other",
        "/api/v3/secrets/raw?WORKSPACE-ID=p-other",
        "/api/v3/secrets/raw?workspaceId[]=p-other",
        "/api/v3/secrets/raw?workspaceId%5B0%5D=p-other",
        "/api/v3/secrets/raw?workspaceId.=p-other",
        "/api/v3/secrets/raw?workspace%49d=p-other",
        "/api/v3/secrets/raw?filter[workspaceId]=p-other",
        "/api/v3/secrets/raw?%EF%BD%97orkspaceId=p-other",
        "/API/v1/projects/p-other/secrets",
        "/api/v1/Projects/p-other/secrets",
        "/api/V2/PROJECT/p-other",
        "/api/v1/workspace/p-other/environments",
        "/api/v2/workspace/p-other",
        "/api/v3/workspaces/p-other",
        "/api/v4/secrets?projectSlug=p-other",
        "/api/v3/secrets/raw/workspaceId/p-other",
        "/api/v3/secrets/raw?filter=x[workspaceId]=p-other",
    ] {
        s.refused(403, Some(NO_ACCESS), &format!("GET {target}"), &[], None);
    }
    for headers in [
        vec![("x_project_id", "p-other")],
        vec![("X-Project-ID", "p-other")],
        vec![("WorkspaceId", "p-other")],
        vec![("Cookie", "a=b; workspaceId=p-other")],
        vec![("Cookie", "a=b, workspaceId=p-other")],
        vec![("Cookie", "a=b workspaceId=p-other")],
        vec![("Cookie", "workspaceId= p-other")],
        vec![("Cookie", "a=1; workspaceId\t=p-other")],
    ] {
        s.refused(403, Some(NO_ACCESS), "GET /api/v1/things", &headers, None);
    }
    let json = [("Content-Type", "application/json")];
    for body in [
        r#"{"WorkspaceID":"p-other"}"#,
        r#"{"workspace_id":"p-other"}"#,
        r#"{"workspace":{"id":"p-other"}}"#,
        r#"{"project":{"Id":"p-other"}}"#,
        r#"{"data":{"items":[{"projectId":"p-other"}]}}"#,
        r#"{"workspace\u0049d":"p-other"}"#,
    ] {
        s.refused(
            403,
            Some(NO_ACCESS),
            "POST /api/v1/things",
            &json,
            Some(body),
        );
    }
    // Next to the project the gateway would otherwise have checked: a conflict.
    let conflict = Some("request names more than one project");
    for (target, headers, body) in [
        (
            "/api/v3/secrets/raw?workspaceId=p1&WorkspaceId=p-other",
            vec![],
            None,
        ),
        (
            "/api/v3/secrets/raw?workspaceId=p1&workspaceId[]=p-other",
            vec![],
            None,
        ),
        (
            "/api/v1/projects/p1/secrets?workspace_id=p-other",
            vec![],
            None,
        ),
        (
            "/api/v1/projects/p1/secrets",
            vec![("x_project_id", "p-other")],
            None,
        ),
        (
            "/api/v3/secrets/raw/X",
            json.to_vec(),
            Some(r#"{"workspaceId":"p-other","workspaceId":"p1"}"#),
        ),
        (
            "/api/v3/secrets/raw/X",
            json.to_vec(),
            Some(r#"{"workspaceId":"p1","nested":{"workspaceId":"p-other"}}"#),
        ),
        (
            "/API/V1/PROJECTS/p-other/secrets?workspaceId=p1",
            vec![],
            None,
        ),
    ] {
        s.refused(400, conflict, &format!("POST {target}"), &headers, body);
    }
    // Other spellings of p1 that loose upstreams (case-insensitive
    // collations, UUID parsers, format suffixes) read as p1 or as another
    // project are not project ids at all.
    for target in [
        "/api/v3/secrets/raw?workspaceId=P1",
        "/api/v3/secrets/raw?workspaceId=p1.json",
        "/api/v1/projects/P-OTHER/secrets",
        "/api/v3/secrets/raw?workspaceId=3f2c1a9e8b7d4c6e9f10aa55bb66cc77",
        "/api/v3/secrets/raw?workspaceId=p1-",
    ] {
        s.refused(
            400,
            Some("invalid project id"),
            &format!("GET {target}"),
            &[],
            None,
        );
    }
    // The same names agreeing are one project.
    let rec = s.forwarded(
        "GET /api/v1/projects/p1/secrets?WorkspaceId=p1&workspace_id=p1",
        &[("x_project_id", "p1")],
        None,
    );
    assert_project(&rec, Some("p1"));
}

on_both_stores!(lookalikes, lookalikes_redis, lookalikes_embedded);

fn required_projects(cfg: GatewayConfig) {
    let s = &Setup::new(cfg);
    let none = Some("this route requires a project (workspaceId or projectId)");
    for target in [
        "/api/v3/secrets/raw?environment=dev",
        "/API/V3/Secrets/raw",
        "/api/v4/secrets",
        "/api/v1/folders",
        "/api/v1/secret-imports",
        "/api/v1/dynamic-secrets/leases",
        // Empty values name nothing.
        "/api/v3/secrets/raw?workspaceId=",
        // Spellings suffix-matching or space-trimming routers send to the same handler.
        "/api/v3/secrets.json",
        "/api/v1/folders.json",
        "/api/v1/folders%20",
        "/api/v3/secrets%20/raw",
    ] {
        s.refused(400, none, &format!("GET {target}"), &[], None);
    }
    for target in [
        "/api/v1/folders%E2%80%8B",
        "/api/v3/secrets%3Fx",
        "/api/v3/secrets%23x",
    ] {
        s.refused(400, None, &format!("GET {target}"), &[], None);
    }
    let rec = s.forwarded(
        "GET /api/v3/secrets/raw?workspaceId=p1&environment=dev",
        &[],
        None,
    );
    assert_project(&rec, Some("p1"));
    let rec = s.forwarded(
        "POST /api/v3/secrets/raw/NAME",
        &[("Content-Type", "application/json")],
        Some(r#"{"workspaceId":"p1"}"#),
    );
    assert_project(&rec, Some("p1"));
    // Outside those routes a request without a project is forwarded as before.
    let rec = s.forwarded("GET /api/v1/workspace", &[], None);
    assert_project(&rec, None);
}

on_both_stores!(
    required_projects,
    required_projects_redis,
    required_projects_embedded
);

/// Configured routes replace the defaults.
#[test]
fn configured_required_routes() {
    let s = Setup::new(
        GatewayConfig::embedded_temp().extra("routes: [{path: /custom/*/data, project: required}]"),
    );
    s.refused(
        400,
        Some("this route requires a project (workspaceId or projectId)"),
        "GET /custom/v9/DATA/x",
        &[],
        None,
    );
    let rec = s.forwarded("GET /custom/v9/data/x?projectId=p1", &[], None);
    assert_project(&rec, Some("p1"));
    let rec = s.forwarded("GET /api/v3/secrets/raw", &[], None);
    assert_project(&rec, None);
}
