//! The Infisical-compatible management API through a real gateway, on the
//! Redis store (a real redis-server) and on the embedded store: every route
//! of the contract's table answers in Infisical's JSON shape, refuses bad
//! input with a 422 naming the field (or a 400 for conflicts), unknown ids
//! with a 404, missing or wrong credentials with a 401 and non-admin
//! identities with a 403. Error bodies never contain a token, and no
//! management request ever reaches the upstream. Effects are checked through
//! the proxy: the configuration is copied onto tokens at creation, and
//! removing Token Auth or deleting an identity revokes its tokens.

#![allow(clippy::unwrap_used)]

mod common;

use common::net::bearer;
use common::paths::*;
use common::*;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::time::Duration;
use tokengate::token::Id;

/// The contract's defaults for TTL and MaxTTL: 30 days.
const THIRTY_DAYS: u64 = 2_592_000;
/// The contract's upper bound for TTL, MaxTTL and period: ten years.
const TEN_YEARS: u64 = 315_360_000;

/// A well-formed id that names nothing.
fn unknown_id() -> String {
    Id::random().to_string()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format now as RFC 3339")
}

/// Asserts an RFC 3339 UTC timestamp; returns it in milliseconds.
#[track_caller]
fn timestamp(v: &Value) -> i128 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {v}"));
    assert!(s.ends_with('Z'), "timestamp {s:?} is not in UTC");
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("timestamp {s:?} is not RFC 3339: {e}"));
    t.unix_timestamp_nanos() / 1_000_000
}

/// Asserts a UUID in its hyphenated text form; returns it.
#[track_caller]
fn uuid(v: &Value) -> String {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("id is not a string: {v}"));
    assert!(
        s.len() == 36 && Id::parse(s).is_some(),
        "id {s:?} is not a hyphenated UUID"
    );
    s.to_string()
}

/// `(ipAddress, prefix, type)` of each entry of an `accessTokenTrustedIps` list.
#[track_caller]
fn trusted_ips(v: &Value) -> Vec<(String, u64, String)> {
    v.as_array()
        .unwrap_or_else(|| panic!("accessTokenTrustedIps is not an array: {v}"))
        .iter()
        .map(|e| {
            (
                e["ipAddress"].as_str().unwrap().to_string(),
                e["prefix"].as_u64().unwrap(),
                e["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn ips(entries: &[(&str, u64, &str)]) -> Vec<(String, u64, String)> {
    entries
        .iter()
        .map(|(a, p, t)| (a.to_string(), *p, t.to_string()))
        .collect()
}

fn default_ips() -> Vec<(String, u64, String)> {
    ips(&[("0.0.0.0", 0, "ipv4"), ("::", 0, "ipv6")])
}

/// The `id` of every object in `list`.
#[track_caller]
fn ids_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|v| uuid(&v["id"]))
        .collect()
}

/// A path of the contract's management table (or below one of its routes).
fn is_management(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return false;
    };
    let segs: Vec<&str> = rest.split('/').collect();
    matches!(
        segs.as_slice(),
        ["identities", ..]
            | ["auth", "token-auth", ..]
            | ["auth", "token", "renew" | "revoke"]
            | ["projects", _, "memberships", "identities", ..]
    )
}

/// Header carried by every request this test proxies on purpose. Other
/// tests' gateways may send to our echo upstream (a port they took for
/// "unreachable" can be ours a moment later), so our requests are told apart
/// by this marker rather than by position or count.
const MARKER: &str = "x-test-marker";

/// One gateway in front of an echo upstream, with bookkeeping: every token
/// issued (no error body may contain one) and every request deliberately
/// proxied (the upstream must have seen exactly those).
struct Env {
    upstream: Upstream,
    gw: Gateway,
    admin: Admin,
    marker: String,
    secrets: RefCell<Vec<String>>,
    proxied: Cell<usize>,
}

impl Env {
    fn start(cfg: GatewayConfig) -> Env {
        let upstream = Upstream::echo();
        let gw = Gateway::start(cfg.upstream(&upstream.url()));
        let admin = gw.admin();
        Env {
            upstream,
            gw,
            admin,
            marker: unique("management"),
            secrets: RefCell::new(vec![ADMIN_KEY.to_string()]),
            proxied: Cell::new(0),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gw.url())
    }

    fn keep(&self, token: &CreatedToken) {
        self.secrets.borrow_mut().push(token.access_token.clone());
    }

    /// Issues a token with the admin key and remembers its secret.
    #[track_caller]
    fn token(&self, identity: &str) -> CreatedToken {
        let token = self.admin.create_token(identity, &unique("token"));
        self.keep(&token);
        token
    }

    #[track_caller]
    fn identity_with_token(&self, role: &str, config: Value) -> (String, CreatedToken) {
        let (id, token) = self.admin.identity_with_token(role, config);
        self.keep(&token);
        (id, token)
    }

    /// An error answer with `status` in Infisical's shape, containing no
    /// token and not the admin key; returns its message.
    #[track_caller]
    fn refused(&self, resp: &Resp, status: u16) -> String {
        let message = resp.expect_error(status);
        let v = resp.json();
        match status {
            401 => assert_eq!(v["error"], "Unauthorized", "body: {}", resp.body),
            422 => assert_eq!(v["error"], "ValidationFailure", "body: {}", resp.body),
            _ => {}
        }
        for secret in self.secrets.borrow().iter() {
            let body = secret.strip_prefix("tgat_").unwrap_or(secret);
            assert!(
                !resp.body.contains(body),
                "an error body contains a token or the admin key: {}",
                resp.body
            );
        }
        message
    }

    /// A 422 ValidationFailure whose message names `field`; returns the message.
    #[track_caller]
    fn invalid(&self, resp: &Resp, field: &str) -> String {
        let message = self.refused(resp, 422);
        assert!(
            message.contains(field),
            "the validation message does not name {field:?}: {message}"
        );
        message
    }

    fn count_if_forwarded(&self, resp: &Resp) {
        if resp.status == 200 {
            self.proxied.set(self.proxied.get() + 1);
        }
    }

    /// GET `path` with `token` (and our marker) through the proxy.
    fn send(&self, path: &str, token: &str) -> Resp {
        let auth = bearer(token);
        let resp = http(
            "GET",
            &self.url(path),
            &[("Authorization", &auth), (MARKER, &self.marker)],
            None,
        );
        self.count_if_forwarded(&resp);
        resp
    }

    /// GET /v1/things with `token` through the proxy.
    fn proxy(&self, token: &str) -> Resp {
        self.send("/v1/things", token)
    }

    /// GET /api/v1/projects/{project}/secrets with `token` through the proxy.
    fn proxy_project(&self, token: &str, project: &str) -> Resp {
        self.send(&format!("/api/v1/projects/{project}/secrets"), token)
    }

    /// The requests this test proxied, as the upstream saw them, oldest first.
    fn mine(&self) -> Vec<Recorded> {
        self.upstream
            .requests()
            .into_iter()
            .filter(|r| r.header(MARKER) == Some(self.marker.as_str()))
            .collect()
    }

    /// The last request this test proxied, as the upstream saw it.
    #[track_caller]
    fn last(&self) -> Recorded {
        self.mine()
            .pop()
            .unwrap_or_else(|| panic!("the upstream saw none of our requests"))
    }

    /// The proxy forwards a request with `token`; returns what the upstream saw.
    #[track_caller]
    fn forwarded(&self, token: &str) -> Recorded {
        self.proxy(token).expect_status(200);
        self.last()
    }

    /// The proxy refuses `token` with a 401.
    #[track_caller]
    fn proxy_refuses(&self, token: &str) -> String {
        let resp = self.proxy(token);
        self.refused(&resp, 401)
    }

    /// A request with `body` sent as is (not necessarily JSON), with the admin key.
    fn raw(&self, method: &str, path: &str, body: &str) -> Resp {
        let auth = bearer(ADMIN_KEY);
        http(
            method,
            &self.url(path),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(body),
        )
    }

    /// The upstream saw exactly the requests proxied on purpose, and no
    /// management request at all (from whichever gateway).
    #[track_caller]
    fn finish(&self) {
        for rec in self.upstream.requests() {
            assert!(
                !is_management(rec.path_only()),
                "the upstream received a management request: {} {}",
                rec.method,
                rec.path
            );
        }
        let mine = self.mine();
        assert_eq!(
            mine.len(),
            self.proxied.get(),
            "the upstream received requests nobody proxied: {:?}",
            mine.iter().map(|r| &r.path).collect::<Vec<_>>()
        );
    }
}

// ---------------------------------------------------------------------------
// Identities

fn case_identities(cfg: GatewayConfig) {
    let env = Env::start(cfg);
    let a = &env.admin;

    // Create: the identity with every field.
    let name = unique("builder");
    let resp = a.call(
        "POST",
        IDENTITIES,
        Some(json!({"name": name, "organizationId": ORG_ID, "role": "member"})),
    );
    resp.expect_status(200);
    let created = resp.json()["identity"].clone();
    let id = uuid(&created["id"]);
    assert_eq!(created["name"], name.as_str());
    assert_eq!(created["orgId"], ORG_ID);
    assert_eq!(created["role"], "member");
    assert_eq!(created["hasDeleteProtection"], false);
    assert_eq!(created["authMethods"], json!([]));
    timestamp(&created["createdAt"]);
    timestamp(&created["updatedAt"]);
    assert_eq!(
        a.get_identity(&id),
        created,
        "GET differs from the creation answer"
    );

    // Role and delete protection at creation; protection refuses deletion.
    let guarded = a.ok(
        "POST",
        IDENTITIES,
        Some(json!({"name": unique("guarded"), "organizationId": ORG_ID, "role": "no-access", "hasDeleteProtection": true})),
    )["identity"]
        .clone();
    let guarded_id = uuid(&guarded["id"]);
    assert_eq!(guarded["role"], "no-access");
    assert_eq!(guarded["hasDeleteProtection"], true);
    let msg = env.refused(&a.call("DELETE", &identity_path(&guarded_id), None), 400);
    assert!(msg.contains("delete protection"), "message: {msg}");
    assert_eq!(a.get_identity(&guarded_id), guarded);

    // PATCH: every field, then one field alone (the others stay).
    let renamed = unique("renamed");
    let patched = a.update_identity(
        &id,
        json!({"name": renamed, "role": "admin", "hasDeleteProtection": true}),
    );
    assert_eq!(patched["id"], id.as_str());
    assert_eq!(patched["name"], renamed.as_str());
    assert_eq!(patched["role"], "admin");
    assert_eq!(patched["hasDeleteProtection"], true);
    assert_eq!(patched["orgId"], ORG_ID);
    assert_eq!(patched["createdAt"], created["createdAt"]);
    assert!(timestamp(&patched["updatedAt"]) >= timestamp(&created["updatedAt"]));
    let patched = a.update_identity(&id, json!({"role": "deployer"}));
    assert_eq!(patched["role"], "deployer", "a custom role slug");
    assert_eq!(patched["name"], renamed.as_str());
    assert_eq!(patched["hasDeleteProtection"], true);
    assert_eq!(a.get_identity(&id), patched);

    // Attaching Token Auth shows in authMethods.
    a.attach_token_auth(&id, json!({}));
    let current = a.get_identity(&id);
    assert_eq!(current["authMethods"], json!(["token-auth"]));

    // Validation: 422 naming the field; nothing is created or changed.
    let long = "x".repeat(65);
    for (body, field) in [
        (json!({"organizationId": ORG_ID}), "name"),
        (json!({"name": "", "organizationId": ORG_ID}), "name"),
        (json!({"name": "   ", "organizationId": ORG_ID}), "name"),
        (json!({"name": long, "organizationId": ORG_ID}), "name"),
        (json!({"name": 7, "organizationId": ORG_ID}), "name"),
        (
            json!({"name": "two\nlines", "organizationId": ORG_ID}),
            "name",
        ),
        (json!({"name": "n"}), "organizationId"),
        (
            json!({"name": "n", "organizationId": "org with spaces"}),
            "organizationId",
        ),
        (
            json!({"name": "n", "organizationId": ORG_ID, "role": "Not A Slug"}),
            "role",
        ),
        (
            json!({"name": "n", "organizationId": ORG_ID, "role": 3}),
            "role",
        ),
        (
            json!({"name": "n", "organizationId": ORG_ID, "hasDeleteProtection": "yes"}),
            "hasDeleteProtection",
        ),
    ] {
        env.invalid(&a.call("POST", IDENTITIES, Some(body)), field);
    }
    for (body, field) in [
        (json!({"role": "ADMIN"}), "role"),
        (json!({"name": ""}), "name"),
        (json!({"hasDeleteProtection": 1}), "hasDeleteProtection"),
    ] {
        env.invalid(&a.call("PATCH", &identity_path(&id), Some(body)), field);
    }
    assert_eq!(a.get_identity(&id), current, "a refused PATCH changed it");
    env.refused(&env.raw("POST", IDENTITIES, "{\"name\": "), 400);
    env.refused(&env.raw("POST", IDENTITIES, "[1, 2]"), 400);

    // Unknown ids, well-formed or not.
    for missing in [unknown_id(), "not-a-uuid".to_string()] {
        let path = identity_path(&missing);
        env.refused(&a.call("GET", &path, None), 404);
        env.refused(&a.call("PATCH", &path, Some(json!({"name": "x"}))), 404);
        env.refused(&a.call("DELETE", &path, None), 404);
    }

    // Delete once protection is off: the answer is the identity; then it is gone.
    a.update_identity(&id, json!({"hasDeleteProtection": false}));
    let deleted = a.delete_identity(&id);
    assert_eq!(deleted["id"], id.as_str());
    assert_eq!(deleted["name"], renamed.as_str());
    env.refused(&a.call("GET", &identity_path(&id), None), 404);
    env.refused(&a.call("DELETE", &identity_path(&id), None), 404);
    env.refused(
        &a.call("PATCH", &identity_path(&id), Some(json!({"name": "x"}))),
        404,
    );

    // List: totalCount counts only what exists (refused creations made nothing).
    let mut expected = BTreeSet::from([guarded_id]);
    for _ in 0..3 {
        expected.insert(a.create_identity(&unique("listed"), "member"));
    }
    let all = a.ok("GET", &format!("{IDENTITIES}?limit=100"), None);
    assert_eq!(all["totalCount"], 4, "{all}");
    let all_ids = ids_of(&all["identities"]);
    assert_eq!(all_ids.iter().cloned().collect::<BTreeSet<_>>(), expected);
    for i in all["identities"].as_array().unwrap() {
        assert_eq!(i["orgId"], ORG_ID);
        assert!(i["name"].is_string() && i["role"].is_string(), "{i}");
        timestamp(&i["createdAt"]);
    }
    assert_eq!(
        ids_of(&a.ok("GET", IDENTITIES, None)["identities"]),
        all_ids,
        "the default page (limit 20) holds all four"
    );
    let first = a.ok("GET", &format!("{IDENTITIES}?offset=0&limit=3"), None);
    let rest = a.ok("GET", &format!("{IDENTITIES}?offset=3&limit=3"), None);
    assert_eq!(first["totalCount"], 4);
    assert_eq!(rest["totalCount"], 4);
    let mut paged = ids_of(&first["identities"]);
    assert_eq!(paged.len(), 3);
    paged.extend(ids_of(&rest["identities"]));
    assert_eq!(paged, all_ids, "two pages are the whole list, in order");
    let beyond = a.ok("GET", &format!("{IDENTITIES}?offset=10"), None);
    assert_eq!(beyond["identities"], json!([]));
    assert_eq!(beyond["totalCount"], 4);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
    ] {
        env.invalid(
            &a.call("GET", &format!("{IDENTITIES}?{query}"), None),
            field,
        );
    }
    a.ok("GET", &format!("{IDENTITIES}?limit=100"), None);
    a.ok("GET", &format!("{IDENTITIES}?limit=1"), None);

    env.finish();
}

on_both_stores!(case_identities, identities_redis, identities_embedded);

// ---------------------------------------------------------------------------
// Token Auth configuration

fn case_token_auth(cfg: GatewayConfig) {
    let env = Env::start(cfg);
    let a = &env.admin;
    let id = a.create_identity(&unique("configured"), "member");
    let path = token_auth_path(&id);

    // Before it is attached: 404, and no token can be issued (400).
    env.refused(&a.call("GET", &path, None), 404);
    env.refused(
        &a.call("PATCH", &path, Some(json!({"accessTokenTTL": 5}))),
        404,
    );
    env.refused(&a.call("DELETE", &path, None), 404);
    let msg = env.refused(
        &a.call("POST", &tokens_path(&id), Some(json!({"name": "early"}))),
        400,
    );
    assert!(msg.contains("Token Auth"), "message: {msg}");

    // Attach with defaults.
    let resp = a.call("POST", &path, Some(json!({})));
    resp.expect_status(200);
    let attached = resp.json()["identityTokenAuth"].clone();
    let cfg_id = uuid(&attached["id"]);
    assert_eq!(attached["identityId"], id.as_str());
    assert_eq!(attached["accessTokenTTL"], THIRTY_DAYS);
    assert_eq!(attached["accessTokenMaxTTL"], THIRTY_DAYS);
    assert_eq!(attached["accessTokenNumUsesLimit"], 0);
    assert_eq!(attached["accessTokenPeriod"], 0);
    assert_eq!(
        trusted_ips(&attached["accessTokenTrustedIps"]),
        default_ips()
    );
    timestamp(&attached["createdAt"]);
    timestamp(&attached["updatedAt"]);
    assert_eq!(
        a.ok("GET", &path, None)["identityTokenAuth"],
        attached,
        "GET differs from the attach answer"
    );

    // Attached twice: 400, and the first configuration stands.
    let msg = env.refused(
        &a.call("POST", &path, Some(json!({"accessTokenTTL": 5}))),
        400,
    );
    assert!(msg.contains("already"), "message: {msg}");
    assert_eq!(a.ok("GET", &path, None)["identityTokenAuth"], attached);

    // PATCH every field; addresses become /32, CIDR blocks keep their prefix.
    let patched = a.update_token_auth(
        &id,
        json!({
            "accessTokenTTL": 60,
            "accessTokenMaxTTL": 120,
            "accessTokenNumUsesLimit": 5,
            "accessTokenPeriod": 0,
            "accessTokenTrustedIps": [
                {"ipAddress": "10.0.0.1"},
                {"ipAddress": "192.168.0.0/16"},
                {"ipAddress": "2001:db8::/32"},
            ],
        }),
    );
    assert_eq!(patched["id"], cfg_id.as_str());
    assert_eq!(patched["identityId"], id.as_str());
    assert_eq!(patched["accessTokenTTL"], 60);
    assert_eq!(patched["accessTokenMaxTTL"], 120);
    assert_eq!(patched["accessTokenNumUsesLimit"], 5);
    assert_eq!(patched["accessTokenPeriod"], 0);
    assert_eq!(
        trusted_ips(&patched["accessTokenTrustedIps"]),
        ips(&[
            ("10.0.0.1", 32, "ipv4"),
            ("192.168.0.0", 16, "ipv4"),
            ("2001:db8::", 32, "ipv6"),
        ])
    );
    assert_eq!(patched["createdAt"], attached["createdAt"]);
    // One field alone leaves the others as they were.
    let patched = a.update_token_auth(&id, json!({"accessTokenNumUsesLimit": 7}));
    assert_eq!(patched["accessTokenNumUsesLimit"], 7);
    assert_eq!(patched["accessTokenTTL"], 60);
    assert_eq!(patched["accessTokenMaxTTL"], 120);
    assert_eq!(trusted_ips(&patched["accessTokenTrustedIps"]).len(), 3);
    assert_eq!(a.ok("GET", &path, None)["identityTokenAuth"], patched);

    // Validation on PATCH: 422 naming the field (and the bad value); a
    // MaxTTL alone is still held against the stored TTL (60).
    let over = TEN_YEARS + 1;
    for (body, names) in [
        (
            json!({"accessTokenTTL": 200}),
            &["accessTokenTTL", "accessTokenMaxTTL"][..],
        ),
        (
            json!({"accessTokenMaxTTL": 30}),
            &["accessTokenTTL", "accessTokenMaxTTL"][..],
        ),
        (
            json!({"accessTokenTrustedIps": [{"ipAddress": "10.0.0.1"}, {"ipAddress": "10.0.0.300"}]}),
            &["accessTokenTrustedIps", "10.0.0.300"][..],
        ),
        (
            json!({"accessTokenTrustedIps": [{"ipAddress": "10.0.0.0/33"}]}),
            &["accessTokenTrustedIps", "10.0.0.0/33"][..],
        ),
        (
            json!({"accessTokenTrustedIps": [{"ipAddress": "fe80::zz"}]}),
            &["accessTokenTrustedIps", "fe80::zz"][..],
        ),
        (
            json!({"accessTokenTrustedIps": []}),
            &["accessTokenTrustedIps"][..],
        ),
        (
            json!({"accessTokenTrustedIps": ["10.0.0.1"]}),
            &["accessTokenTrustedIps"][..],
        ),
        (
            json!({"accessTokenTrustedIps": "10.0.0.1"}),
            &["accessTokenTrustedIps"][..],
        ),
        (
            json!({"accessTokenTTL": over, "accessTokenMaxTTL": 0}),
            &["accessTokenTTL"][..],
        ),
        (
            json!({"accessTokenMaxTTL": over}),
            &["accessTokenMaxTTL"][..],
        ),
        (
            json!({"accessTokenPeriod": over}),
            &["accessTokenPeriod"][..],
        ),
        (json!({"accessTokenTTL": -1}), &["accessTokenTTL"][..]),
        (json!({"accessTokenTTL": "60"}), &["accessTokenTTL"][..]),
        (json!({"accessTokenTTL": 1.5}), &["accessTokenTTL"][..]),
        (
            json!({"accessTokenNumUsesLimit": -1}),
            &["accessTokenNumUsesLimit"][..],
        ),
    ] {
        let resp = a.call("PATCH", &path, Some(body.clone()));
        for name in names {
            env.invalid(&resp, name);
        }
    }
    assert_eq!(
        a.ok("GET", &path, None)["identityTokenAuth"],
        patched,
        "a refused PATCH changed the configuration"
    );

    // Validation on attach: nothing is attached by a refused POST. The
    // bounds themselves are accepted: 0 means none, MaxTTL 0 lifts the cap.
    let other = a.create_identity(&unique("other"), "member");
    let other_path = token_auth_path(&other);
    for (body, field) in [
        (
            json!({"accessTokenTTL": 100, "accessTokenMaxTTL": 50}),
            "accessTokenTTL",
        ),
        (
            json!({"accessTokenTrustedIps": [{"ipAddress": "10.0.0.300"}]}),
            "10.0.0.300",
        ),
        (json!({"accessTokenPeriod": over}), "accessTokenPeriod"),
    ] {
        env.invalid(&a.call("POST", &other_path, Some(body)), field);
    }
    env.refused(&a.call("GET", &other_path, None), 404);
    let edge = a.attach_token_auth(
        &other,
        json!({"accessTokenTTL": TEN_YEARS, "accessTokenMaxTTL": 0, "accessTokenPeriod": TEN_YEARS}),
    );
    assert_eq!(edge["accessTokenTTL"], TEN_YEARS);
    assert_eq!(edge["accessTokenMaxTTL"], 0);
    assert_eq!(edge["accessTokenPeriod"], TEN_YEARS);
    let edge = a.update_token_auth(
        &other,
        json!({"accessTokenTTL": 0, "accessTokenMaxTTL": 0, "accessTokenPeriod": 0}),
    );
    assert_eq!(edge["accessTokenTTL"], 0);
    // JSON has one number type: a whole number written with a fraction is
    // still a whole number; a fraction is not.
    let whole = a.update_token_auth(
        &other,
        json!({"accessTokenTTL": 3600.0, "accessTokenMaxTTL": 7.2e3}),
    );
    assert_eq!(whole["accessTokenTTL"], 3600);
    assert_eq!(whole["accessTokenMaxTTL"], 7200);
    env.refused(
        &a.call(
            "PATCH",
            &token_auth_path(&other),
            Some(json!({"accessTokenTTL": 1.5})),
        ),
        422,
    );

    // Unknown identity.
    for missing in [unknown_id(), "nope".to_string()] {
        let p = token_auth_path(&missing);
        env.refused(&a.call("POST", &p, Some(json!({}))), 404);
        env.refused(&a.call("GET", &p, None), 404);
        env.refused(
            &a.call("PATCH", &p, Some(json!({"accessTokenTTL": 5}))),
            404,
        );
        env.refused(&a.call("DELETE", &p, None), 404);
    }

    // Removal revokes every token the configuration issued.
    let first = env.token(&other);
    let second = env.token(&other);
    env.forwarded(&first.access_token);
    env.forwarded(&second.access_token);
    let resp = a.call("DELETE", &other_path, None);
    resp.expect_status(200);
    let removed = resp.json()["identityTokenAuth"].clone();
    assert_eq!(removed["identityId"], other.as_str());
    uuid(&removed["id"]);
    env.proxy_refuses(&first.access_token);
    env.proxy_refuses(&second.access_token);
    env.refused(&a.call("GET", &other_path, None), 404);
    env.refused(&a.call("DELETE", &other_path, None), 404);
    env.refused(
        &a.call("POST", &tokens_path(&other), Some(json!({"name": "late"}))),
        400,
    );
    assert_eq!(a.get_identity(&other)["authMethods"], json!([]));
    // Attached again: new tokens work, the old ones stay dead.
    a.attach_token_auth(&other, json!({}));
    let third = env.token(&other);
    env.forwarded(&third.access_token);
    env.proxy_refuses(&first.access_token);

    env.finish();
}

on_both_stores!(case_token_auth, token_auth_redis, token_auth_embedded);

// ---------------------------------------------------------------------------
// Tokens

fn case_tokens(cfg: GatewayConfig) {
    let env = Env::start(cfg);
    let a = &env.admin;
    let id = a.create_identity(&unique("holder"), "member");
    a.attach_token_auth(
        &id,
        json!({"accessTokenTTL": 3600, "accessTokenMaxTTL": 7200, "accessTokenNumUsesLimit": 50}),
    );

    // Create: the secret once, the time left, and the token's public data.
    let resp = a.call("POST", &tokens_path(&id), Some(json!({"name": "first"})));
    resp.expect_status(200);
    let raw = resp.json();
    let secret = raw["accessToken"].as_str().unwrap().to_string();
    env.secrets.borrow_mut().push(secret.clone());
    assert!(secret.len() > 40, "accessToken: {secret:?}");
    let expires_in = raw["expiresIn"].as_u64().unwrap();
    assert!(
        (3590..=3600).contains(&expires_in),
        "expiresIn {expires_in} for a TTL of 3600"
    );
    assert_eq!(raw["accessTokenMaxTTL"], 7200);
    assert_eq!(raw["tokenType"], "Bearer");
    let data = raw["tokenData"].clone();
    let first_id = uuid(&data["id"]);
    assert_eq!(data["name"], "first");
    assert_eq!(data["identityId"], id.as_str());
    assert_eq!(data["authMethod"], "token-auth");
    assert_eq!(data["accessTokenTTL"], 3600);
    assert_eq!(data["accessTokenMaxTTL"], 7200);
    assert_eq!(data["accessTokenNumUses"], 0);
    assert_eq!(data["accessTokenNumUsesLimit"], 50);
    assert_eq!(data["accessTokenPeriod"], 0);
    assert_eq!(trusted_ips(&data["accessTokenTrustedIps"]), default_ips());
    assert_eq!(data["accessTokenLastUsedAt"], Value::Null);
    assert_eq!(data["accessTokenLastRenewedAt"], Value::Null);
    assert_eq!(data["isAccessTokenRevoked"], false);
    timestamp(&data["createdAt"]);
    let body = secret.strip_prefix("tgat_").unwrap_or(&secret);
    assert!(
        !data.to_string().contains(body),
        "tokenData contains the secret"
    );
    assert_eq!(a.get_token(&first_id), data, "GET differs from tokenData");

    // A use shows in the token's counters.
    let rec = env.forwarded(&secret);
    assert_eq!(rec.header("x-tokengate-token-id"), Some(first_id.as_str()));
    let used = a.get_token(&first_id);
    assert_eq!(used["accessTokenNumUses"], 1);
    timestamp(&used["accessTokenLastUsedAt"]);

    // The name is optional; it is bounded.
    let resp = a.call("POST", &tokens_path(&id), None);
    resp.expect_status(200);
    let unnamed = resp.json();
    env.secrets
        .borrow_mut()
        .push(unnamed["accessToken"].as_str().unwrap().to_string());
    assert_eq!(unnamed["tokenData"]["name"], "");
    let unnamed_id = uuid(&unnamed["tokenData"]["id"]);
    env.invalid(
        &a.call(
            "POST",
            &tokens_path(&id),
            Some(json!({"name": "n".repeat(65)})),
        ),
        "name",
    );
    env.invalid(
        &a.call("POST", &tokens_path(&id), Some(json!({"name": 5}))),
        "name",
    );

    // Rename.
    let resp = a.call(
        "PATCH",
        &token_path(&first_id),
        Some(json!({"name": "renamed"})),
    );
    resp.expect_status(200);
    let renamed = resp.json()["token"].clone();
    assert_eq!(renamed["id"], first_id.as_str());
    assert_eq!(renamed["name"], "renamed");
    assert_eq!(renamed["accessTokenNumUses"], 1);
    assert_eq!(a.get_token(&first_id)["name"], "renamed");
    env.invalid(
        &a.call("PATCH", &token_path(&first_id), Some(json!({}))),
        "name",
    );
    env.invalid(
        &a.call(
            "PATCH",
            &token_path(&first_id),
            Some(json!({"name": ["x"]})),
        ),
        "name",
    );
    env.invalid(
        &a.call(
            "PATCH",
            &token_path(&first_id),
            Some(json!({"name": "n".repeat(65)})),
        ),
        "name",
    );
    assert_eq!(a.get_token(&first_id)["name"], "renamed");

    // The list is newest first, with offset and limit. Distinct creation
    // milliseconds make "newest" unambiguous.
    let mut newest_first = vec![unnamed_id.clone(), first_id.clone()];
    let mut newest = None;
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(5));
        let t = env.token(&id);
        newest_first.insert(0, t.token_id.clone());
        newest = Some(t);
    }
    let newest = newest.unwrap();
    let listed = a.ok("GET", &tokens_path(&id), None);
    assert_eq!(ids_of(&listed["tokens"]), newest_first);
    for t in listed["tokens"].as_array().unwrap() {
        assert_eq!(t["identityId"], id.as_str());
        assert_eq!(t["authMethod"], "token-auth");
        assert!(
            t.get("accessToken").is_none(),
            "a listed token has its secret: {t}"
        );
    }
    for s in env.secrets.borrow().iter() {
        let body = s.strip_prefix("tgat_").unwrap_or(s);
        assert!(!listed.to_string().contains(body), "the list has a secret");
    }
    let page = |q: &str| ids_of(&a.ok("GET", &format!("{}?{q}", tokens_path(&id)), None)["tokens"]);
    assert_eq!(page("limit=2"), newest_first[..2]);
    assert_eq!(page("offset=2&limit=2"), newest_first[2..]);
    assert_eq!(page("offset=1&limit=1"), newest_first[1..2]);
    assert_eq!(page("offset=4"), Vec::<String>::new());
    assert_eq!(page("limit=100"), newest_first);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=", "limit"),
        ("offset=-2", "offset"),
        ("offset=x&limit=2", "offset"),
    ] {
        env.invalid(
            &a.call("GET", &format!("{}?{query}", tokens_path(&id)), None),
            field,
        );
    }

    // Unknown ids.
    for missing in [unknown_id(), "nope".to_string()] {
        env.refused(&a.call("GET", &tokens_path(&missing), None), 404);
        env.refused(
            &a.call("POST", &tokens_path(&missing), Some(json!({"name": "x"}))),
            404,
        );
        env.refused(&a.call("GET", &token_path(&missing), None), 404);
        env.refused(
            &a.call("PATCH", &token_path(&missing), Some(json!({"name": "x"}))),
            404,
        );
        env.refused(&a.call("POST", &revoke_path(&missing), None), 404);
    }

    // Revoke by id: the proxy refuses it at once, other tokens keep working.
    let answer = a.revoke_token(&first_id);
    assert!(
        answer["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{answer}"
    );
    let msg = env.proxy_refuses(&secret);
    assert_eq!(msg, "access token has been revoked");
    assert_eq!(a.get_token(&first_id)["isAccessTokenRevoked"], true);
    a.revoke_token(&first_id);
    env.forwarded(&newest.access_token);

    // Revoke by the holder (no Authorization header): {message}, then refused.
    let resp = a.self_revoke(&newest.access_token);
    resp.expect_status(200);
    assert!(resp.json()["message"].is_string(), "{}", resp.body);
    env.proxy_refuses(&newest.access_token);
    assert_eq!(a.get_token(&newest.token_id)["isAccessTokenRevoked"], true);
    let anon = Admin::anonymous(&env.gw.url());
    env.invalid(
        &anon.call("POST", "/api/v1/auth/token/revoke", Some(json!({}))),
        "accessToken",
    );
    env.refused(&a.self_revoke("tgat_not-a-token"), 401);
    env.refused(
        &anon.call(
            "POST",
            "/api/v1/auth/token/revoke",
            Some(json!({"accessToken": ADMIN_KEY})),
        ),
        401,
    );

    // Identity deletion revokes its tokens.
    let (doomed, doomed_token) = env.identity_with_token("member", json!({}));
    env.forwarded(&doomed_token.access_token);
    a.delete_identity(&doomed);
    env.proxy_refuses(&doomed_token.access_token);
    env.refused(&a.call("GET", &tokens_path(&doomed), None), 404);
    env.refused(
        &a.call("POST", &tokens_path(&doomed), Some(json!({"name": "x"}))),
        404,
    );
    if let Some(t) = a
        .call("GET", &token_path(&doomed_token.token_id), None)
        .json()
        .get("token")
    {
        assert_eq!(t["isAccessTokenRevoked"], true, "{t}");
    }

    env.finish();
}

on_both_stores!(case_tokens, tokens_redis, tokens_embedded);

// ---------------------------------------------------------------------------
// Configuration copied at creation, and expiresIn as the time left

fn case_config_is_copied_at_creation(cfg: GatewayConfig) {
    let env = Env::start(cfg);
    let a = &env.admin;
    let id = a.create_identity(&unique("copied"), "member");
    a.attach_token_auth(&id, json!({"accessTokenNumUsesLimit": 2}));
    let old = env.token(&id);
    assert_eq!(old.raw["tokenData"]["accessTokenNumUsesLimit"], 2);

    // New limit: only tokens issued afterwards get it.
    a.update_token_auth(&id, json!({"accessTokenNumUsesLimit": 0}));
    let unlimited = env.token(&id);
    assert_eq!(unlimited.raw["tokenData"]["accessTokenNumUsesLimit"], 0);
    assert_eq!(
        a.get_token(&old.token_id)["accessTokenNumUsesLimit"],
        2,
        "a config change reached an existing token"
    );

    // New trusted IPs: only tokens issued afterwards get them.
    a.update_token_auth(
        &id,
        json!({"accessTokenTrustedIps": [{"ipAddress": "10.9.9.9"}]}),
    );
    let fenced = env.token(&id);
    assert_eq!(
        trusted_ips(&fenced.raw["tokenData"]["accessTokenTrustedIps"]),
        ips(&[("10.9.9.9", 32, "ipv4")])
    );

    // Through the proxy: the old token still has its limit of two.
    env.forwarded(&old.access_token);
    env.forwarded(&old.access_token);
    assert_eq!(
        env.proxy_refuses(&old.access_token),
        "token usage limit reached"
    );
    // The token issued after the limit was lifted has none, and keeps the
    // trusted IPs of its time (everywhere).
    for _ in 0..3 {
        env.forwarded(&unlimited.access_token);
    }
    // The newest token is held to the new trusted IPs.
    let resp = env.proxy(&fenced.access_token);
    assert_eq!(
        env.refused(&resp, 403),
        "IP 127.0.0.1 is not in the token's trusted IPs"
    );
    assert_eq!(a.get_token(&old.token_id)["accessTokenNumUses"], 2);
    assert_eq!(a.get_token(&unlimited.token_id)["accessTokenNumUses"], 3);
    assert_eq!(a.get_token(&fenced.token_id)["accessTokenNumUses"], 0);

    // expiresIn is the time left, whichever rule ends the token.
    let expires_in = |config: Value| {
        a.update_token_auth(&id, config);
        let t = env.token(&id);
        (t.expires_in, t)
    };
    let (left, _) = expires_in(json!({"accessTokenTTL": 0, "accessTokenMaxTTL": 0}));
    assert_eq!(left, 0, "a token without TTLs reports 0 (never expires)");
    let (left, _) = expires_in(json!({"accessTokenTTL": 0, "accessTokenMaxTTL": 50}));
    assert!(
        (49..=50).contains(&left),
        "MaxTTL 50 alone: expiresIn {left}"
    );
    let (left, _) =
        expires_in(json!({"accessTokenTTL": 10, "accessTokenMaxTTL": 50, "accessTokenPeriod": 40}));
    assert!((39..=40).contains(&left), "period 40: expiresIn {left}");
    // Trusted from anywhere again: renewal checks the client IP like a request.
    let (left, capped) = expires_in(json!({
        "accessTokenTTL": 30,
        "accessTokenMaxTTL": 30,
        "accessTokenPeriod": 0,
        "accessTokenTrustedIps": [{"ipAddress": "0.0.0.0/0"}, {"ipAddress": "::/0"}]
    }));
    assert!((29..=30).contains(&left), "TTL 30: expiresIn {left}");
    // A second later, a renewal reports what MaxTTL leaves (under 29 s),
    // not the configured TTL (30).
    std::thread::sleep(Duration::from_millis(1100));
    let renewed = a.renew(&capped.access_token);
    renewed.expect_status(200);
    let left = renewed.json()["expiresIn"].as_u64().unwrap();
    assert!(
        (1..=29).contains(&left),
        "renewed over a second into a 30 s MaxTTL: expiresIn {left}"
    );

    env.finish();
}

on_both_stores!(
    case_config_is_copied_at_creation,
    config_copied_at_creation_redis,
    config_copied_at_creation_embedded
);

// ---------------------------------------------------------------------------
// Project memberships

fn case_memberships(cfg: GatewayConfig) {
    let env = Env::start(cfg);
    let a = &env.admin;
    let (id, token) = env.identity_with_token("member", json!({}));
    let identity_name = a.get_identity(&id)["name"].clone();
    let project = unique("project");
    let path = membership_path(&project, &id);

    // Not a member yet.
    env.refused(&a.call("GET", &path, None), 404);
    env.refused(
        &a.call("PATCH", &path, Some(json!({"roles": [{"role": "viewer"}]}))),
        404,
    );
    env.refused(&a.call("DELETE", &path, None), 404);
    let empty = a.ok("GET", &memberships_path(&project), None);
    assert_eq!(empty["identityMemberships"], json!([]));
    assert_eq!(empty["totalCount"], 0);
    env.refused(&env.proxy_project(&token.access_token, &project), 403);

    // Add with a single role.
    let resp = a.call("POST", &path, Some(json!({"role": "viewer"})));
    resp.expect_status(200);
    let created = resp.json()["identityMembership"].clone();
    uuid(&created["id"]);
    assert_eq!(created["identityId"], id.as_str());
    assert_eq!(created["projectId"], project.as_str());
    let roles = created["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 1, "{created}");
    uuid(&roles[0]["id"]);
    assert_eq!(roles[0]["role"], "viewer");
    assert_eq!(roles[0]["isTemporary"], false);
    assert_eq!(created["identity"]["id"], id.as_str());
    assert_eq!(created["identity"]["name"], identity_name);
    assert_eq!(created["identity"]["authMethods"], json!(["token-auth"]));
    timestamp(&created["createdAt"]);
    timestamp(&created["updatedAt"]);
    assert_eq!(a.get_membership(&project, &id), created);
    env.proxy_project(&token.access_token, &project)
        .expect_status(200);
    let rec = env.last();
    assert_eq!(rec.header("x-tokengate-project-id"), Some(project.as_str()));
    assert_eq!(rec.header("x-tokengate-project-role"), Some("viewer"));

    // Added twice: 400, the first stands.
    env.refused(&a.call("POST", &path, Some(json!({"role": "admin"}))), 400);
    assert_eq!(a.get_membership(&project, &id), created);

    // Replace the roles: a builtin and a custom one.
    let resp = a.call(
        "PATCH",
        &path,
        Some(json!({"roles": [{"role": "admin"}, {"role": "deployer"}]})),
    );
    resp.expect_status(200);
    let updated = resp.json()["identityMembership"].clone();
    assert_eq!(updated["id"], created["id"]);
    let roles = updated["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 2, "{updated}");
    assert_eq!(roles[0]["role"], "admin");
    assert_eq!(roles[1]["role"], "custom");
    assert_eq!(roles[1]["customRoleSlug"], "deployer");
    assert_eq!(a.get_membership(&project, &id), updated);
    env.proxy_project(&token.access_token, &project)
        .expect_status(200);
    let mut injected: Vec<String> = env
        .last()
        .header("x-tokengate-project-role")
        .unwrap()
        .split(',')
        .map(|r| r.trim().to_string())
        .collect();
    injected.sort();
    assert_eq!(injected, ["admin", "deployer"]);

    // A temporary role.
    let start = now_rfc3339();
    let temporary = a.ok(
        "PATCH",
        &path,
        Some(json!({"roles": [{
            "role": "viewer",
            "isTemporary": true,
            "temporaryMode": "relative",
            "temporaryRange": "1h",
            "temporaryAccessStartTime": start,
        }]})),
    )["identityMembership"]["roles"][0]
        .clone();
    assert_eq!(temporary["role"], "viewer");
    assert_eq!(temporary["isTemporary"], true);
    assert_eq!(temporary["temporaryMode"], "relative");
    assert_eq!(temporary["temporaryRange"], "1h");
    assert_eq!(
        timestamp(&temporary["temporaryAccessEndTime"])
            - timestamp(&temporary["temporaryAccessStartTime"]),
        3_600_000
    );

    // Validation, on an identity that is not a member (so nothing else
    // refuses first); nothing is created.
    let other = a.create_identity(&unique("outsider"), "member");
    let other_path = membership_path(&project, &other);
    let temp = |field: &str, value: Value| {
        let mut role = json!({
            "role": "viewer",
            "isTemporary": true,
            "temporaryMode": "relative",
            "temporaryRange": "1h",
            "temporaryAccessStartTime": start,
        });
        if value.is_null() {
            role.as_object_mut().unwrap().remove(field);
        } else {
            role[field] = value;
        }
        json!({ "roles": [role] })
    };
    for (body, field) in [
        (json!({}), "roles"),
        (json!({"role": "Bad Role"}), "role"),
        (json!({"role": 1}), "role"),
        (json!({"roles": []}), "roles"),
        (json!({"roles": "viewer"}), "roles"),
        (json!({"roles": ["viewer"]}), "roles[0]"),
        (json!({"roles": [{"role": "viewer"}, {}]}), "roles[1].role"),
        (
            json!({"role": "viewer", "roles": [{"role": "viewer"}]}),
            "roles",
        ),
        (
            temp("temporaryRange", json!("soon")),
            "roles[0].temporaryRange",
        ),
        (
            temp("temporaryMode", json!("absolute")),
            "roles[0].temporaryMode",
        ),
        (
            temp("temporaryAccessStartTime", Value::Null),
            "roles[0].temporaryAccessStartTime",
        ),
        (
            temp("temporaryAccessStartTime", json!("yesterday")),
            "roles[0].temporaryAccessStartTime",
        ),
    ] {
        env.invalid(&a.call("POST", &other_path, Some(body)), field);
    }
    env.invalid(
        &a.call("PATCH", &path, Some(json!({"roles": [{"role": "NOPE"}]}))),
        "roles[0].role",
    );
    env.invalid(
        &a.call(
            "POST",
            &membership_path("bad@project", &other),
            Some(json!({"role": "viewer"})),
        ),
        "projectId",
    );
    env.invalid(
        &a.call("GET", &memberships_path("bad@project"), None),
        "projectId",
    );
    env.refused(&a.call("GET", &other_path, None), 404);

    // Unknown identity.
    for missing in [unknown_id(), "nope".to_string()] {
        let p = membership_path(&project, &missing);
        env.refused(&a.call("POST", &p, Some(json!({"role": "viewer"}))), 404);
        env.refused(&a.call("GET", &p, None), 404);
        env.refused(
            &a.call("PATCH", &p, Some(json!({"roles": [{"role": "viewer"}]}))),
            404,
        );
        env.refused(&a.call("DELETE", &p, None), 404);
    }

    // List with offset and limit.
    a.add_membership(&project, &other, json!({"role": "member"}));
    let all = a.ok("GET", &memberships_path(&project), None);
    assert_eq!(all["totalCount"], 2);
    let members: Vec<String> = all["identityMemberships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["identityId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        members.iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([id.clone(), other.clone()])
    );
    for m in all["identityMemberships"].as_array().unwrap() {
        assert_eq!(m["projectId"], project.as_str());
        assert!(
            m["roles"].is_array() && m["identity"]["name"].is_string(),
            "{m}"
        );
    }
    let page = |q: &str| {
        let v = a.ok("GET", &format!("{}?{q}", memberships_path(&project)), None);
        assert_eq!(v["totalCount"], 2, "{v}");
        v["identityMemberships"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["identityId"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(page("limit=1"), members[..1]);
    assert_eq!(page("offset=1&limit=1"), members[1..]);
    assert!(page("offset=2").is_empty());
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("offset=-1", "offset"),
    ] {
        env.invalid(
            &a.call(
                "GET",
                &format!("{}?{query}", memberships_path(&project)),
                None,
            ),
            field,
        );
    }
    let elsewhere = a.ok("GET", &memberships_path(&unique("empty")), None);
    assert_eq!(elsewhere["totalCount"], 0);

    // Remove: the answer is the membership; then it is gone and the proxy refuses.
    let resp = a.call("DELETE", &path, None);
    resp.expect_status(200);
    let removed = resp.json()["identityMembership"].clone();
    assert_eq!(removed["id"], created["id"]);
    assert_eq!(removed["identityId"], id.as_str());
    env.refused(&a.call("GET", &path, None), 404);
    env.refused(&a.call("DELETE", &path, None), 404);
    env.refused(&env.proxy_project(&token.access_token, &project), 403);
    assert_eq!(
        a.ok("GET", &memberships_path(&project), None)["totalCount"],
        1
    );
    // Deleting an identity removes its memberships.
    a.delete_identity(&other);
    let left = a.ok("GET", &memberships_path(&project), None);
    assert_eq!(left["totalCount"], 0, "{left}");
    assert_eq!(left["identityMemberships"], json!([]));

    env.finish();
}

on_both_stores!(case_memberships, memberships_redis, memberships_embedded);

// ---------------------------------------------------------------------------
// Offsets past the end of a list

/// An offset past everything a store holds is the client's business: an
/// empty page (as for a small offset past the end), or a 422 naming
/// `offset`; never a 5xx that reports the store as down.
fn case_list_offsets_past_the_end(cfg: GatewayConfig) {
    let env = Env::start(cfg);
    let a = &env.admin;
    let (id, _) = env.identity_with_token("member", json!({}));
    let project = unique("project");
    a.add_membership(&project, &id, json!({"role": "viewer"}));
    let lists = [
        (IDENTITIES.to_string(), "identities"),
        (tokens_path(&id), "tokens"),
        (memberships_path(&project), "identityMemberships"),
    ];
    for (path, field) in &lists {
        for offset in [
            "10",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551615",
        ] {
            let resp = a.call("GET", &format!("{path}?offset={offset}&limit=100"), None);
            if resp.status == 422 {
                env.invalid(&resp, "offset");
                continue;
            }
            assert_eq!(
                resp.status, 200,
                "GET {path}?offset={offset}&limit=100: expected an empty page or a 422 naming offset; body: {}",
                resp.body
            );
            assert_eq!(resp.json()[*field], json!([]), "offset {offset}");
        }
    }
    env.finish();
}

on_both_stores!(
    case_list_offsets_past_the_end,
    list_offsets_past_the_end_redis,
    list_offsets_past_the_end_embedded
);

// ---------------------------------------------------------------------------
// Who may call

/// Every admin route of the table, on real ids, with a plausible body.
fn admin_routes(
    identity: &str,
    token_id: &str,
    project: &str,
) -> Vec<(&'static str, String, Option<Value>)> {
    let membership = membership_path(project, identity);
    vec![
        (
            "POST",
            IDENTITIES.to_string(),
            Some(json!({"name": "intruder", "organizationId": ORG_ID, "role": "admin"})),
        ),
        ("GET", IDENTITIES.to_string(), None),
        ("GET", identity_path(identity), None),
        (
            "PATCH",
            identity_path(identity),
            Some(json!({"role": "admin"})),
        ),
        ("DELETE", identity_path(identity), None),
        ("POST", token_auth_path(identity), Some(json!({}))),
        ("GET", token_auth_path(identity), None),
        (
            "PATCH",
            token_auth_path(identity),
            Some(json!({"accessTokenNumUsesLimit": 1})),
        ),
        ("DELETE", token_auth_path(identity), None),
        (
            "POST",
            tokens_path(identity),
            Some(json!({"name": "stolen"})),
        ),
        ("GET", tokens_path(identity), None),
        ("GET", token_path(token_id), None),
        (
            "PATCH",
            token_path(token_id),
            Some(json!({"name": "renamed"})),
        ),
        ("POST", revoke_path(token_id), None),
        ("POST", membership.clone(), Some(json!({"role": "admin"}))),
        ("GET", membership.clone(), None),
        (
            "PATCH",
            membership.clone(),
            Some(json!({"roles": [{"role": "admin"}]})),
        ),
        ("DELETE", membership, None),
        ("GET", memberships_path(project), None),
    ]
}

fn case_callers(cfg: GatewayConfig) {
    // Dozens of refused callers from one address: the lockout (tested in
    // tests/lockout.rs) would stop the ones after them.
    let env = Env::start(cfg.admin_extra("lockout: {threshold: 0}\n"));
    let a = &env.admin;
    let base = env.gw.url();
    let (member, member_token) = env.identity_with_token("member", json!({}));
    let (_, no_access_token) = env.identity_with_token("no-access", json!({}));
    let (_, custom_token) = env.identity_with_token("deployer", json!({}));
    let (boss_id, boss_token) = env.identity_with_token("admin", json!({}));
    let project = unique("project");
    a.add_membership(&project, &member, json!({"role": "viewer"}));
    let identities_before = a.ok("GET", IDENTITIES, None)["totalCount"].clone();
    let member_before = a.get_identity(&member);
    let config_before = a.ok("GET", &token_auth_path(&member), None);
    let membership_before = a.get_membership(&project, &member);

    let routes = admin_routes(&member, &member_token.token_id, &project);
    for (method, path, body) in &routes {
        let what = format!("{method} {path}");
        let call = |auth: Option<&str>| {
            let headers: Vec<(&str, &str)> =
                auth.map(|v| vec![("Authorization", v)]).unwrap_or_default();
            let body = body.as_ref().map(Value::to_string);
            http(method, &format!("{base}{path}"), &headers, body.as_deref())
        };
        // No credentials, or wrong ones: 401.
        for auth in [
            None,
            Some("Bearer wrong-admin-key"),
            Some(&*format!("Bearer {ADMIN_KEY}x")),
            Some(&*format!("Basic {ADMIN_KEY}")),
            Some(ADMIN_KEY),
            Some("Bearer "),
            Some("Bearer tgat_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ] {
            let resp = call(auth);
            assert_eq!(resp.status, 401, "{what} with {auth:?}: {}", resp.body);
            env.refused(&resp, 401);
        }
        // A valid token of an identity without org role admin: 403.
        for token in [&member_token, &no_access_token, &custom_token] {
            let auth = bearer(&token.access_token);
            let resp = call(Some(&auth));
            assert_eq!(
                resp.status, 403,
                "{what} with a non-admin token: {}",
                resp.body
            );
            env.refused(&resp, 403);
        }
    }
    // The refused calls changed nothing.
    assert_eq!(
        a.ok("GET", IDENTITIES, None)["totalCount"],
        identities_before
    );
    assert_eq!(a.get_identity(&member), member_before);
    assert_eq!(a.ok("GET", &token_auth_path(&member), None), config_before);
    assert_eq!(a.get_membership(&project, &member), membership_before);
    let member_now = a.get_token(&member_token.token_id);
    assert_eq!(member_now["isAccessTokenRevoked"], false);
    assert_eq!(member_now["name"], member_token.raw["tokenData"]["name"]);
    env.forwarded(&member_token.access_token);

    // An admin identity's token manages everything the admin key does.
    let boss = Admin::with_token(&base, &boss_token.access_token);
    let hired = boss.create_identity(&unique("hired"), "member");
    assert_eq!(boss.get_identity(&hired)["role"], "member");
    boss.update_identity(&hired, json!({"name": unique("hired-renamed")}));
    boss.attach_token_auth(&hired, json!({"accessTokenNumUsesLimit": 10}));
    boss.update_token_auth(&hired, json!({"accessTokenNumUsesLimit": 20}));
    let hired_token = boss.create_token(&hired, "from-boss");
    env.keep(&hired_token);
    assert_eq!(hired_token.raw["tokenData"]["accessTokenNumUsesLimit"], 20);
    assert_eq!(boss.list_tokens(&hired).len(), 1);
    boss.ok(
        "PATCH",
        &token_path(&hired_token.token_id),
        Some(json!({"name": "renamed"})),
    );
    assert_eq!(boss.get_token(&hired_token.token_id)["name"], "renamed");
    boss.add_membership(&project, &hired, json!({"role": "member"}));
    boss.ok(
        "PATCH",
        &membership_path(&project, &hired),
        Some(json!({"roles": [{"role": "viewer"}]})),
    );
    assert_eq!(
        boss.get_membership(&project, &hired)["roles"][0]["role"],
        "viewer"
    );
    assert_eq!(
        boss.ok("GET", &memberships_path(&project), None)["totalCount"],
        2
    );
    env.proxy_project(&hired_token.access_token, &project)
        .expect_status(200);
    assert_eq!(
        env.last().header("x-tokengate-project-role"),
        Some("viewer")
    );
    boss.revoke_token(&hired_token.token_id);
    env.proxy_refuses(&hired_token.access_token);
    boss.remove_membership(&project, &hired);
    boss.remove_token_auth(&hired);
    boss.delete_identity(&hired);
    env.refused(&a.call("GET", &identity_path(&hired), None), 404);
    // It may also grant admin, and manage another admin.
    let peer = boss.create_identity(&unique("peer"), "admin");
    boss.update_identity(&peer, json!({"role": "member"}));
    boss.delete_identity(&peer);

    // Once the admin identity's token is revoked, or its identity demoted,
    // it is refused.
    let (_, demoted_token) = env.identity_with_token("admin", json!({}));
    let demoted = Admin::with_token(&base, &demoted_token.access_token);
    demoted.ok("GET", IDENTITIES, None);
    let demoted_id = demoted_token.raw["tokenData"]["identityId"]
        .as_str()
        .unwrap()
        .to_string();
    a.update_identity(&demoted_id, json!({"role": "member"}));
    env.refused(&demoted.call("GET", IDENTITIES, None), 403);
    a.revoke_token(&boss_token.token_id);
    env.refused(&boss.call("GET", IDENTITIES, None), 401);
    assert!(a.get_identity(&boss_id)["id"].is_string());

    // Unknown routes and methods under the claimed namespaces are answered
    // by the gateway, never forwarded.
    for (method, path, status) in [
        ("GET", format!("{}/extra", identity_path(&member)), 404),
        ("GET", "/api/v1/auth/token-auth/unknown".to_string(), 404),
        (
            "GET",
            format!("{}/revoke/more", token_path(&member_token.token_id)),
            404,
        ),
        (
            "GET",
            format!("/api/v1/projects/{project}/memberships/identities/{member}/x"),
            404,
        ),
        ("PUT", IDENTITIES.to_string(), 405),
        ("DELETE", IDENTITIES.to_string(), 405),
        ("GET", "/api/v1/auth/token/renew".to_string(), 405),
        ("GET", "/api/v1/auth/token/revoke".to_string(), 405),
        ("DELETE", tokens_path(&member), 405),
        // Spellings a case-insensitive or suffix-matching upstream would route
        // to the same place are claimed too.
        ("GET", "/API/v1/Identities".to_string(), 404),
        ("GET", "/api/v1/identities.json".to_string(), 404),
        ("GET", "/api/v1/auth/Token-Auth/tokens/x".to_string(), 404),
        (
            "GET",
            format!("/api/v1/projects/{project}/Memberships/identities"),
            404,
        ),
    ] {
        for auth in [bearer(ADMIN_KEY), bearer(&member_token.access_token)] {
            let resp = http(
                method,
                &format!("{base}{path}"),
                &[("Authorization", &auth)],
                None,
            );
            assert_eq!(resp.status, status, "{method} {path}: {}", resp.body);
            if status == 405 {
                // RFC 9110: a 405 names the methods the route answers.
                let allow = resp.header("allow").unwrap_or_default();
                assert!(
                    !allow.is_empty() && !allow.contains(method),
                    "{method} {path}: Allow {allow:?}"
                );
                assert!(resp.body.contains(allow), "{}", resp.body);
            }
            env.refused(&resp, status);
        }
    }

    env.finish();
}

on_both_stores!(case_callers, callers_redis, callers_embedded);
