//! No secret in any output: after a mixed workload with failures and
//! deliberate leak attempts, no byte of the process log (JSON, at trace),
//! the access log, the audit log or `/metrics` holds a token, any
//! recognisable part of a token's secret, or the admin key, in any spelling
//! the gateway or a client could give it; and no metric label is an id.

#![allow(clippy::unwrap_used)]

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// Everything the gateway wrote, each output under its name.
struct Outputs(Vec<(&'static str, String)>);

impl Outputs {
    /// Reads the files after the gateway has stopped, so the access log's
    /// writer has written every record it queued.
    fn read(gw: &Gateway, metrics: String, access: &Path, audit: &Path) -> Outputs {
        Outputs(vec![
            ("process log", gw.log()),
            ("access log", std::fs::read_to_string(access).unwrap()),
            ("audit log", std::fs::read_to_string(audit).unwrap()),
            ("metrics", metrics),
        ])
    }

    fn get(&self, name: &str) -> &str {
        &self.0.iter().find(|(n, _)| *n == name).unwrap().1
    }

    /// Panics with the offending line if any output holds any spelling.
    #[track_caller]
    fn assert_absent(&self, what: &str, spellings: &[String]) {
        for (output, text) in &self.0 {
            for s in spellings {
                if let Some(at) = text.find(s.as_str()) {
                    let from = text[..at].rfind('\n').map_or(0, |n| n + 1);
                    let to = text[at..].find('\n').map_or(text.len(), |n| at + n);
                    panic!("{what} is in the {output} as {s:?}:\n{}", &text[from..to]);
                }
            }
        }
    }
}

/// Every byte as `%XX`, with upper or lower hex digits.
fn every_byte_encoded(s: &str, upper: bool) -> String {
    s.bytes()
        .map(|b| {
            if upper {
                format!("%{b:02X}")
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// Percent-encoding of the bytes outside `keep` (and outside letters and digits).
fn encoded_except(s: &str, keep: &[u8], upper: bool) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || keep.contains(&b) {
                char::from(b).to_string()
            } else if upper {
                format!("%{b:02X}")
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// `s` inside a JSON string (what a JSON log line holds).
fn json_escaped(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap();
    quoted[1..quoted.len() - 1].to_string()
}

/// How a secret string can be spelled in an output: as is, percent-encoded
/// the ways clients and libraries do it (everything that needs it; all but
/// `/`, as Python's `quote`; every byte), and escaped once and twice as a
/// JSON string or `Debug` of a string inside one has it.
fn spellings(secret: &str) -> Vec<String> {
    let mut out = vec![
        secret.to_string(),
        encoded_except(secret, b"-._~", true),
        encoded_except(secret, b"-._~", false),
        encoded_except(secret, b"-._~/", true),
        every_byte_encoded(secret, true),
        every_byte_encoded(secret, false),
        json_escaped(secret),
        json_escaped(&json_escaped(secret)),
        json_escaped(&secret.escape_debug().to_string()),
        secret.escape_default().to_string(),
    ];
    out.sort();
    out.dedup();
    out
}

/// What of `token` must never be seen, by label: the token and its body;
/// the characters that encode only the secret (body characters 43 to 84:
/// identity id 16 bytes and token id 16 bytes fill the first 42 2/3) and
/// every 16-character piece of them; and the secret's 32 bytes encoded on
/// their own (base64url, base64, hex).
fn token_spellings(token: &str) -> Vec<String> {
    let body = &token["tgat_".len()..];
    let raw = URL_SAFE_NO_PAD.decode(body).unwrap();
    assert_eq!(raw.len(), 68, "the token format changed: {token}");
    let secret = &raw[32..64];
    let segment = &body[43..85];
    let mut out = spellings(token);
    out.extend(spellings(body));
    out.extend(spellings(segment));
    for start in 0..=segment.len() - 16 {
        out.push(segment[start..start + 16].to_string());
    }
    out.push(URL_SAFE_NO_PAD.encode(secret));
    out.push(STANDARD.encode(secret));
    out.push(secret.iter().map(|b| format!("{b:02x}")).collect());
    out
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn file_sections(cfg: GatewayConfig, access: &Path, audit: &Path) -> GatewayConfig {
    cfg.section(
        "access_log",
        &format!("destination: file\npath: {}\n", access.display()),
    )
    .section(
        "audit",
        &format!(
            "destination: file\npath: {}\nrequired: false\n",
            audit.display()
        ),
    )
    .extra("log: {format: json}")
    // Trace, where Pingora prints whole requests and responses: the
    // hardest input the redaction gets.
    .env("RUST_LOG", "trace")
}

/// A token string of the right shape and checksum that no store knows.
fn unknown_token() -> String {
    use tokengate::token::{AccessToken, Id};
    AccessToken::generate(Id::random()).expose()
}

/// Sends raw bytes, ignoring whatever comes back (or does not).
fn raw(gw: &Gateway, bytes: &str) {
    let _ = common::http::try_raw_http(&gw.addr(), bytes);
}

/// Requests that put `token` where it does not belong: every place a
/// client can write text the gateway might log.
fn leak_attempts(gw: &Gateway, token: &str) {
    let url = gw.url();
    let body = &token["tgat_".len()..];
    let segment = &body[43..85];
    let encoded = every_byte_encoded(token, true);
    let auth = bearer(token);
    let h = |name: &'static str, value: String| (name, value);
    let targets = [
        format!("/api/{token}/secrets"),
        format!("/v1/x?accessToken={token}"),
        format!("/v1/x?q={token}&{token}=1"),
        format!("/v1/x?a=1;t={token}"),
        format!("/v1/x?a=1?t={token}?u={body}"),
        format!("/v1/x?x={encoded}"),
        format!("/v1/x?x=tgat%255F{body}"),
        format!("/v1/{body}/y?s={segment}"),
        format!("/v1/x#{token}"),
        format!("/v1/{encoded}"),
    ];
    for target in &targets {
        raw(
            gw,
            &raw_request("GET", target, &[("Authorization", &auth)], None),
        );
    }
    // Absolute-form targets, naming the gateway and with the token as userinfo.
    let authority = gw.addr();
    raw(
        gw,
        &raw_request(
            "GET",
            &format!("http://{authority}/v1/x?t={token}"),
            &[],
            None,
        ),
    );
    raw(
        gw,
        &raw_request(
            "GET",
            &format!("http://{token}@{authority}/v1/x"),
            &[],
            None,
        ),
    );
    raw(
        gw,
        &raw_request(
            "GET",
            &format!("http://u:{body}@{authority}/v1/x"),
            &[],
            None,
        ),
    );
    // Methods.
    raw(gw, &raw_request(token, "/v1/x", &[], None));
    raw(gw, &raw_request(segment, "/v1/x", &[], None));
    // Headers, the request id first: the id goes into every log line.
    for (name, value) in [
        h("X-Request-Id", token.to_string()),
        h("X-Request-Id", body.to_string()),
        h("X-Request-Id", segment.to_string()),
        h("X-Api-Key", token.to_string()),
        h("Cookie", format!("session={token}; t={body}")),
        h(
            "Authorization",
            format!("Basic {}", STANDARD.encode(format!("u:{token}"))),
        ),
        h("Authorization", format!("Token {token}")),
        h("Authorization", body.to_string()),
        h("Proxy-Authorization", auth.clone()),
        h("X-Forwarded-For", token.to_string()),
        h("Referer", format!("http://x/?t={token}")),
    ] {
        let _ = try_http("GET", &format!("{url}/v1/things"), &[(name, &value)], None);
    }
    // A body that names a project next to the token, on a forwarded route.
    let _ = try_http(
        "POST",
        &format!("{url}/v1/things"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(&json!({"accessToken": token, "note": body}).to_string()),
    );
    // Malformed requests Pingora refuses itself and may log raw.
    raw(
        gw,
        &format!(
            "GET /x HT\u{1}TP/1.1\r\nHost: a\r\nAuthorization: {auth}\r\nX-T: {token}\r\n\r\n"
        ),
    );
    raw(
        gw,
        &format!("GET /x?t={token} HTTP/1.1\r\nHost: a\r\nBroken {token}\r\n\r\n"),
    );
    raw(
        gw,
        &raw_request(
            "GET",
            "/x",
            &[("Content-Length", token), ("X-T", body)],
            None,
        ),
    );
    raw(
        gw,
        &raw_request("GET", "/x", &[("Transfer-Encoding", token)], None),
    );
    let chunk = format!("{{\"accessToken\":\"{token}\"}}");
    for size in [format!("{:x}", chunk.len()), body.to_string()] {
        raw(
            gw,
            &format!(
                "POST /api/v1/auth/token/renew HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\n\r\n{size}\r\n{chunk}\r\n0\r\n\r\n\
                 GET /v1/x?t={token} HTTP/1.1\r\nHost: a\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
            ),
        );
    }
    // Management bodies that hold the token in odd places.
    let anon = Admin::anonymous(&url);
    for body in [
        json!({"accessToken": format!(" {token} ")}),
        json!({"accessToken": body}),
        json!({"access_token": token, "token": token}),
        json!({"accessToken": [token]}),
        json!({(token.to_string()): token}),
    ] {
        anon.call("POST", "/api/v1/auth/token/renew", Some(body.clone()));
        anon.call("POST", "/api/v1/auth/token/revoke", Some(body));
    }
    let broken = format!("{{\"accessToken\": \"{token}");
    let _ = try_http(
        "POST",
        &format!("{url}/api/v1/auth/token/renew"),
        &[("Content-Type", "application/json")],
        Some(&broken),
    );
    // The token as a wrong admin key, and in a management path.
    let as_token = Admin::with_token(&url, token);
    as_token.call("GET", "/api/v1/identities", None);
    as_token.call("DELETE", &format!("/api/v1/identities/{token}"), None);
    gw.admin()
        .call("GET", &format!("/api/v1/identities/{token}"), None);
    gw.admin().call(
        "GET",
        &format!("/api/v1/auth/token-auth/tokens/{body}"),
        None,
    );
}

#[test]
fn no_token_or_admin_key_reaches_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let (access, audit) = (dir.path().join("access.log"), dir.path().join("audit.log"));
    let mut redis = Redis::start();
    let upstream = Upstream::echo();
    let gw = Gateway::start(file_sections(
        GatewayConfig::redis(&redis.url())
            .upstream(&upstream.url())
            .upstream_timeouts(1000, 300)
            .redis_timeouts(200, 200, 0),
        &access,
        &audit,
    ));
    let url = gw.url();
    let admin = gw.admin();

    let project = unique("proj");
    let (member, unlimited) = admin.identity_with_token("member", json!({}));
    admin.add_membership(&project, &member, json!({"role": "viewer"}));
    let limited = admin.create_token(&member, &unique("limited"));
    let (_, capped) = admin.identity_with_token("member", json!({"accessTokenNumUsesLimit": 2}));
    let (_, elsewhere) = admin.identity_with_token(
        "member",
        json!({"accessTokenTrustedIps": [{"ipAddress": "10.0.0.0/8"}]}),
    );
    let (_, boss) = admin.identity_with_token("admin", json!({}));
    let revoked = admin.create_token(&member, &unique("revoked"));
    let renewed = admin.create_token(&member, &unique("renewed"));
    let self_revoked = admin.create_token(&member, &unique("self-revoked"));
    let unknown = unknown_token();
    let mut tokens: Vec<String> = [
        &unlimited,
        &limited,
        &capped,
        &elsewhere,
        &boss,
        &revoked,
        &renewed,
        &self_revoked,
    ]
    .iter()
    .map(|t| t.access_token.clone())
    .collect();
    tokens.push(unknown.clone());

    // Forwarded, with and without a project, and through an upstream 5xx
    // and an upstream that times out (Pingora logs the whole request line).
    let things = format!("{url}/v1/things");
    let in_project = format!("{url}/v1/things?projectId={project}");
    get_with_token(&in_project, &unlimited.access_token).expect_status(200);
    get_with_token(&things, &limited.access_token).expect_status(200);
    get_with_token(&things, &boss.access_token).expect_status(200);
    upstream.set_status(503);
    get_with_token(&things, &unlimited.access_token).expect_status(503);
    upstream.set_status(200);
    upstream.set_delay(Duration::from_millis(1500));
    let slow = format!("{things}?t={}", unlimited.access_token);
    get_with_token(&slow, &unlimited.access_token).expect_status(504);
    upstream.set_delay(Duration::ZERO);

    // Denied, for every reason a client can cause.
    get(&things).expect_status(401);
    let truncated = &unlimited.access_token[..unlimited.access_token.len() - 1];
    get_with_token(&things, truncated).expect_status(401);
    get_with_token(&things, &unknown).expect_status(401);
    for _ in 0..2 {
        get_with_token(&things, &capped.access_token).expect_status(200);
    }
    get_with_token(&things, &capped.access_token).expect_status(401);
    get_with_token(&things, &elsewhere.access_token).expect_status(403);
    let other_project = format!("{things}?projectId={}", unique("other"));
    get_with_token(&other_project, &unlimited.access_token).expect_status(403);
    let conflict = format!("{in_project}&workspaceId={}", unique("x"));
    get_with_token(&conflict, &unlimited.access_token).expect_status(400);
    admin.revoke_token(&revoked.token_id);
    get_with_token(&things, &revoked.access_token).expect_status(401);

    // Token life: renewed and revoked by their holders, with the token in the body.
    admin.renew(&renewed.access_token).expect_status(200);
    admin
        .self_revoke(&self_revoked.access_token)
        .expect_status(200);
    admin
        .self_revoke(&self_revoked.access_token)
        .expect_status(200);
    admin.renew(&unknown).expect_status(401);

    // Wrong admin keys: one shaped like a token, one like the admin key.
    for wrong in [unknown.as_str(), "tg-test-admin-key-3f9c2a7e51d84b07"] {
        Admin::with_token(&url, wrong)
            .call("GET", "/api/v1/identities", None)
            .expect_status(401);
    }
    Admin::with_token(&url, &unlimited.access_token)
        .call("DELETE", &format!("/api/v1/identities/{member}"), None)
        .expect_status(403);

    // Management changes whose names and ids hold secrets, as far as the
    // API accepts them: names take 64 characters (the secret part, or the
    // token's first 64), organization ids 128 of the token's alphabet.
    let token = &unlimited.access_token;
    let segment = &token["tgat_".len()..][43..85];
    let named = admin.create_identity(&format!("n {segment}"), "member");
    admin.update_identity(&named, json!({"name": &token[..64]}));
    admin.attach_token_auth(&named, json!({}));
    let named_token = admin.create_token(&named, segment);
    tokens.push(named_token.access_token.clone());
    admin
        .call(
            "PATCH",
            &format!("/api/v1/auth/token-auth/tokens/{}", named_token.token_id),
            Some(json!({"name": &token[..64]})),
        )
        .expect_status(200);
    admin.call(
        "POST",
        "/api/v1/identities",
        Some(json!({"name": "in-a-token-org", "organizationId": token, "role": "member"})),
    );
    admin.call(
        "POST",
        "/api/v1/identities",
        Some(json!({"name": "keyed", "organizationId": ADMIN_KEY, "role": "member"})),
    );
    admin.create_identity(&format!("k {ADMIN_KEY}"), "member");
    admin.add_membership(&project, &named, json!({"role": "viewer"}));
    admin
        .call(
            "PATCH",
            &format!("/api/v1/projects/{project}/memberships/identities/{named}"),
            Some(json!({"roles": [{"role": "admin"}]})),
        )
        .expect_status(200);
    admin.remove_membership(&project, &named);
    admin.delete_identity(&named);

    leak_attempts(&gw, token);
    // The admin key where a token would go, and in paths and queries.
    get_with_token(&things, ADMIN_KEY).expect_status(401);
    let key = ADMIN_KEY;
    for target in [
        format!("/v1/{key}/x?q={key}"),
        format!("/api/v1/identities/{key}?k={key}"),
    ] {
        raw(&gw, &raw_request("GET", &target, &[], None));
    }
    raw(
        &gw,
        &raw_request("GET", "/x", &[("Content-Length", key)], None),
    );

    // A store outage: a limited token must ask Redis, and so must a change.
    let limited_url = format!("{things}?projectId={project}");
    redis.kill();
    get_with_token(&limited_url, &capped.access_token);
    eventually(Duration::from_secs(10), || {
        get_with_token(&things, &limited.access_token).status == 503
    });
    admin.call(
        "POST",
        "/api/v1/identities",
        Some(json!({"name": segment, "organizationId": ORG_ID})),
    );
    Admin::with_token(&url, token).call("GET", "/api/v1/identities", None);

    let metrics = gw.metrics_text();
    let mut gw = gw;
    gw.stop();
    let outputs = Outputs::read(&gw, metrics, &access, &audit);

    // Without these the absences below would prove nothing: the workload
    // ran, was logged and recorded, and the leak attempts were redacted.
    let access_text = outputs.get("access log");
    for outcome in [
        "forwarded",
        "denied",
        "bad_request",
        "management",
        "upstream_error",
        "store_error",
    ] {
        assert!(
            access_text.contains(&format!("\"outcome\":\"{outcome}\"")),
            "no {outcome} record in the access log:\n{access_text}"
        );
    }
    let audit_text = outputs.get("audit log");
    for event in [
        "identity.created",
        "identity.updated",
        "token.created",
        "token.renamed",
        "token.renewed",
        "token.revoked",
        "membership.updated",
        "identity.deleted",
        "management.refused",
    ] {
        assert!(
            audit_text.contains(&format!("\"event\":\"{event}\"")),
            "no {event} in the audit log:\n{audit_text}"
        );
    }
    for output in ["process log", "access log", "audit log"] {
        assert!(
            outputs.get(output).contains("tgat_[REDACTED]"),
            "nothing was redacted in the {output}: the attempts did not reach it"
        );
    }

    for (i, token) in tokens.iter().enumerate() {
        outputs.assert_absent(&format!("token {i}"), &token_spellings(token));
    }
    outputs.assert_absent("the admin key", &spellings(ADMIN_KEY));

    // Metric labels are bounded words: no identity or token id.
    let metrics = outputs.get("metrics");
    for id in [&member, &named, &unlimited.token_id, &capped.token_id] {
        assert!(!metrics.contains(id.as_str()), "{id} is in /metrics");
    }
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let labels = line.split_once('{').map_or("", |(_, rest)| rest);
        assert!(
            !labels.contains("tgat") && !labels.contains(&segment[..16]),
            "{line}"
        );
    }
}

/// An admin key has no shape, so it is hidden by its value; but outputs
/// hold it escaped (JSON strings in the audit log and the JSON process
/// log, `Debug` of header maps inside those at trace) or encoded the way a
/// client's library chose (Python's `quote` leaves `/` as it is). Each of
/// those spellings must be hidden as well as the key as written.
#[test]
fn an_admin_key_is_hidden_however_outputs_escape_or_encode_it() {
    const KEY: &str = "Zm9v+YmFy/KzEy\"q\\uX=ab'Cd9-0";
    let dir = tempfile::tempdir().unwrap();
    let (access, audit) = (dir.path().join("access.log"), dir.path().join("audit.log"));
    let gw = Gateway::start(
        file_sections(GatewayConfig::embedded_temp(), &access, &audit)
            .env("TOKENGATE_ADMIN_KEY", KEY),
    );
    let admin = Admin::with_token(&gw.url(), KEY);
    // An operator pasting the key into a name: the audit log echoes names.
    let id = admin.create_identity(&format!("n {KEY}"), "member");
    admin.update_identity(&id, json!({"name": format!("m {KEY}")}));
    admin.attach_token_auth(&id, json!({}));
    let token = admin.create_token(&id, KEY);
    // Forwarded (to an upstream that is not there): the identity name is
    // injected upstream and Pingora prints the request it sends.
    get_with_token(&format!("{}/v1/x", gw.url()), &token.access_token);
    // The key in a path and a query, encoded as Python's `quote` does.
    let quoted = encoded_except(KEY, b"-._~/", true);
    for target in [
        format!("/v1/x?q={quoted}"),
        format!("/v1/{quoted}/y"),
        format!("/api/v1/identities/{quoted}"),
    ] {
        raw(
            &gw,
            &raw_request("GET", &target, &[("Authorization", &bearer(KEY))], None),
        );
    }
    let metrics = gw.metrics_text();
    let mut gw = gw;
    gw.stop();
    let outputs = Outputs::read(&gw, metrics, &access, &audit);
    assert!(
        outputs.get("audit log").contains("identity.updated"),
        "the workload did not run"
    );
    outputs.assert_absent("the admin key", &spellings(KEY));
    outputs.assert_absent("the token", &token_spellings(&token.access_token));
}

/// A token whose secret part has no digit (about one in 1,200 tokens): the
/// secret part alone, without the prefix, is recognised by its mixed case
/// and length, never by needing a digit as well.
fn token_with_digitless_secret_part() -> String {
    use tokengate::token::{fill_random, AccessToken, Id};
    let identity = Id::random();
    for _ in 0..1_000_000 {
        let mut secret = [0u8; 32];
        fill_random(&mut secret);
        let token = AccessToken::from_parts(identity, Id::for_token_of(identity), secret).expose();
        if !token["tgat_".len()..][43..85]
            .bytes()
            .any(|b| b.is_ascii_digit())
        {
            return token;
        }
    }
    panic!("no digit-free secret part in a million tokens");
}

#[test]
fn a_secret_part_without_digits_is_hidden_too() {
    let dir = tempfile::tempdir().unwrap();
    let (access, audit) = (dir.path().join("access.log"), dir.path().join("audit.log"));
    let gw = Gateway::start(file_sections(
        GatewayConfig::embedded_temp(),
        &access,
        &audit,
    ));
    let token = token_with_digitless_secret_part();
    let segment = &token["tgat_".len()..][43..85];
    // A client that sends the part after the prefix, or a piece of it.
    let things = format!("{}/v1/things", gw.url());
    get(&format!("{things}?s={segment}")).expect_status(401);
    get(&format!("{}/v1/{segment}/x", gw.url())).expect_status(401);
    http("GET", &things, &[("X-Request-Id", segment)], None).expect_status(401);
    gw.admin()
        .create_identity(&format!("n {segment}"), "member");
    let metrics = gw.metrics_text();
    let mut gw = gw;
    gw.stop();
    let outputs = Outputs::read(&gw, metrics, &access, &audit);
    assert!(outputs.get("access log").contains("/v1/things?s="));
    outputs.assert_absent("the secret part", &token_spellings(&token));
}
