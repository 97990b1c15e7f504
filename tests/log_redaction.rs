//! Secrets never reach the log, at any level: a gateway at `trace` (where
//! Pingora prints whole requests) is sent tokens where they do not belong,
//! a malformed request carrying a token, and management calls with the admin
//! key and with a forged token; neither secret appears in what it wrote.

mod common;

use common::*;
use serde_json::json;

/// A string in the token's shape whose checksum is wrong, as a forger would send.
fn forged_like(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let i = 40;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII token")
}

/// Panics if `text` holds `secret` or any 20-character piece of it, also
/// where it is spelled one quoted character at a time (`'t', 'g', ...`, as
/// Debug output of a character list has it).
#[track_caller]
fn absent(text: &str, what: &str, secret: &str) {
    let delisted = text.replace("', '", "");
    let pieces = secret.len().saturating_sub(20) + 1;
    for start in 0..pieces {
        let piece = &secret[start..(start + 20).min(secret.len())];
        if let Some(at) = text.find(piece).or_else(|| delisted.find(piece)) {
            let text = if text.contains(piece) {
                text
            } else {
                &delisted
            };
            let from = text[..at].rfind('\n').map_or(0, |n| n + 1);
            let to = text[at..].find('\n').map_or(text.len(), |n| at + n);
            panic!("{what} is visible: {}", &text[from..to]);
        }
    }
}

#[test]
fn no_secret_reaches_the_log_at_trace_level() {
    let mut gw = Gateway::start(GatewayConfig::embedded_temp().env("RUST_LOG", "trace"));
    let (_id, created) = gw.admin().identity_with_token("member", json!({}));
    let token = created.access_token.clone();
    let body = token["tgat_".len()..].to_string();
    let forged = forged_like(&token);

    // A token in a path, plain and with its prefix percent-encoded.
    get(&format!("{}/api/{token}/secrets", gw.url())).expect_status(401);
    let encoded = format!("/api/tgat%5F{body}/x");
    let (status, _) = raw_http(&gw.addr(), &raw_request("GET", &encoded, &[], None));
    assert_eq!(status, 400);

    // A token in a query string.
    get(&format!("{}/x?accessToken={token}", gw.url())).expect_status(401);

    // Malformed requests carrying the token: Pingora refuses them itself and
    // logs the raw bytes it could not parse.
    let auth = format!("Bearer {token}");
    let bad_version = format!("GET /x HT\u{1}TP/1.1\r\nHost: a\r\nAuthorization: {auth}\r\n\r\n");
    let _ = common::http::try_raw_http(&gw.addr(), &bad_version);
    let bad_length = raw_request(
        "GET",
        "/x",
        &[("Authorization", &auth), ("Content-Length", "zz")],
        None,
    );
    let _ = common::http::try_raw_http(&gw.addr(), &bad_length);
    // Chunked bodies (Pingora's body reader logs its buffers), one with a
    // bad chunk size, followed on the same connection by an admin call.
    let body = format!("{{\"accessToken\":\"{token}\"}}");
    for size in [format!("{:x}", body.len()), "zz".to_string()] {
        let chunked = format!(
            "POST /api/v1/auth/token/renew HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{size}\r\n{body}\r\n0\r\n\r\n\
             GET /api/v1/identities HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {ADMIN_KEY}\r\nConnection: close\r\n\r\n"
        );
        let _ = common::http::try_raw_http(&gw.addr(), &chunked);
    }

    // Management with the admin key, and with a forged token in its place.
    gw.admin().create_identity(&unique("logged"), "member");
    let r = Admin::with_token(&gw.url(), &forged).call("GET", "/api/v1/identities", None);
    assert_eq!(r.status, 401, "{}", r.body);

    // Error answers to client input that holds a token (a token-shaped
    // project id, which is no project id, and a token as a role).
    let (member_id, _) = gw.admin().identity_with_token("member", json!({}));
    let path = format!("/api/v1/projects/{token}/memberships/identities/{member_id}");
    let refused = gw
        .admin()
        .call("POST", &path, Some(json!({"role": "viewer"})));
    assert_eq!(refused.status, 422, "{}", refused.body);
    absent(&refused.body, "the token in an error body", &body);
    let path = format!("/api/v1/projects/p1/memberships/identities/{member_id}");
    let refused = gw.admin().call("POST", &path, Some(json!({"role": token})));
    assert!(refused.status >= 400, "{}", refused.body);
    absent(&refused.body, "the token in an error body", &body);

    // Metric labels are fixed words; a scrape must not carry a token either.
    let metrics = get(&format!("{}/metrics", gw.admin_url()));
    absent(&metrics.body, "the token in the metrics", &body);

    gw.stop();
    let log = gw.log();
    absent(&log, "the token in the log", &body);
    absent(
        &log,
        "the forged token in the log",
        &forged["tgat_".len()..],
    );
    absent(&log, "the admin key in the log", ADMIN_KEY);
    // The requests were logged, redacted: without these the test proves nothing.
    for marker in [
        "tgat_[REDACTED]",
        "\"authorization\": \"[REDACTED]\"",
        "Authorization: [REDACTED]",
    ] {
        assert!(log.contains(marker), "no {marker:?} in the log:\n{log}");
    }
}

/// `log.format: json`: every line the gateway writes (Pingora's included,
/// at trace) is one JSON object with time, level, target and message, and
/// no token reaches it either.
#[test]
fn json_log_lines_are_objects_without_secrets() {
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .extra("log: {format: json, level: info}")
            .env("RUST_LOG", "trace"),
    );
    let (_id, created) = gw.admin().identity_with_token("member", json!({}));
    let token = created.access_token.clone();
    get(&format!("{}/api/{token}/secrets", gw.url())).expect_status(401);
    get(&format!("{}/x?accessToken={token}", gw.url())).expect_status(401);
    get_with_token(&format!("{}/v1/things", gw.url()), &token);

    let log = gw.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 5, "too few lines to judge:\n{log}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        // The audit log shares stdout by default: its records have their own shape.
        if v["log"] == "audit" {
            continue;
        }
        for field in ["time", "level", "target", "message"] {
            assert!(v[field].is_string(), "{field} missing: {line}");
        }
    }
    absent(&log, "the token", &token["tgat_".len()..]);
    assert!(
        lines.iter().any(|l| l.contains("\"level\":\"TRACE\"")),
        "RUST_LOG=trace wins over log.level"
    );
}
