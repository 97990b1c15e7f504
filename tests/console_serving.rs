//! The operator console's serving and the management API's browser
//! boundary, from outside: the console's files on the admin listener with
//! their protections (`admin.console`), the management API answered there
//! too, and browser calls from any other origin refused on both listeners
//! before anything is done. The console itself is walked in a real browser
//! by tests/console.rs.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Everything the server sends for a HEAD request before it closes.
fn head_answer(base: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn identity_count(base: &str) -> usize {
    let auth = admin_auth();
    let resp = http(
        "GET",
        &format!("{base}/api/v1/identities?limit=100"),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v: Value = serde_json::from_str(&resp.body).unwrap_or_default();
    v["identities"].as_array().map_or(0, Vec::len)
}

#[test]
fn the_console_is_served_on_the_admin_listener_with_its_protections() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    for (file, kind) in [
        ("", "text/html"),
        ("console.js", "text/javascript"),
        ("api.js", "text/javascript"),
        ("dom.js", "text/javascript"),
        ("forms.js", "text/javascript"),
        ("ips.js", "text/javascript"),
        ("state.js", "text/javascript"),
        ("identities.js", "text/javascript"),
        ("tokens.js", "text/javascript"),
        ("memberships.js", "text/javascript"),
        ("status.js", "text/javascript"),
        ("console.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let resp = get(&format!("{}/ui/{file}", gw.admin_url()));
        assert_eq!(resp.status, 200, "/ui/{file}");
        assert!(
            resp.header("content-type").unwrap_or("").starts_with(kind),
            "/ui/{file}: {:?}",
            resp.header("content-type")
        );
        assert_eq!(
            resp.header("content-security-policy"),
            Some(CSP),
            "/ui/{file}"
        );
        assert_eq!(resp.header("x-frame-options"), Some("DENY"));
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(resp.header("cache-control"), Some("no-store"));
        assert!(!resp.body.is_empty());
    }
    let page = get(&format!("{}/ui/", gw.admin_url())).body;
    assert!(page.contains("console.js"), "{page}");
    // Not on the proxy listener: its paths belong to the upstream.
    let before = upstream.count();
    get(&format!("{}/ui/", gw.url()));
    assert_eq!(upstream.count(), before, "no token, nothing forwarded");
    let (status, _) = raw_http(
        &gw.admin_url(),
        "GET /ui HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 308);
    let js = get(&format!("{}/ui/console.js", gw.admin_url())).body;
    // HEAD: GET's headers, its length included, and nothing after them.
    let head = head_answer(&gw.admin_url(), "/ui/console.js");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {}\r\n", js.len())),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"), "a body after HEAD: {head}");
    let missing = get(&format!("{}/ui/nothing.js", gw.admin_url()));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-security-policy"), Some(CSP));
}

#[test]
fn the_console_can_be_moved_or_turned_off() {
    let upstream = Upstream::echo();
    let moved = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .admin_extra("console: {path: /ops/console/}\n"),
    );
    assert_eq!(
        get(&format!("{}/ops/console/", moved.admin_url())).status,
        200
    );
    assert_eq!(get(&format!("{}/ui/", moved.admin_url())).status, 404);
    let off = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .admin_extra("console: {enabled: false}\n"),
    );
    assert_eq!(get(&format!("{}/ui/", off.admin_url())).status, 404);
    // The management API stays on the admin listener without the console.
    assert_eq!(identity_count(&off.admin_url()), 0);
}

#[test]
fn a_console_path_that_is_not_a_plain_directory_or_is_taken_is_refused() {
    for (path, why) in [
        ("ui", "is not a directory path"),
        ("/ui", "is not a directory path"),
        ("/", "is not a directory path"),
        ("/u i/", "is not a directory path"),
        ("/ui/../x/", "is not a directory path"),
        ("/%75i/", "is not a directory path"),
        ("/api/ui/", "which the admin listener answers itself"),
        ("/metrics/", "which the admin listener answers itself"),
    ] {
        let cfg = GatewayConfig::embedded_temp()
            .upstream("http://127.0.0.1:9")
            .admin_extra(&format!("console: {{path: \"{path}\"}}\n"));
        let (code, out) = Gateway::check_config_yaml(&cfg.to_yaml());
        assert_ne!(code, 0, "{path} was accepted");
        assert!(
            out.contains("admin.console.path") && out.contains(why),
            "{path}: {out}"
        );
    }
}

#[test]
fn the_management_api_answers_on_the_admin_listener_as_on_the_proxy_listener() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let auth = admin_auth();
    let created = http(
        "POST",
        &format!("{}/api/v1/identities", gw.admin_url()),
        &[("Authorization", &auth)],
        Some(r#"{"name":"from-admin","role":"member","organizationId":"org-1"}"#),
    );
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(created.header("x-request-id").is_some());
    // One store, one API: the proxy listener sees it.
    assert_eq!(identity_count(&gw.url()), 1);
    assert_eq!(identity_count(&gw.admin_url()), 1);
    let refused = get(&format!("{}/api/v1/identities", gw.admin_url()));
    assert_eq!(refused.status, 401, "{}", refused.body);
    let v: Value = serde_json::from_str(&refused.body).unwrap_or_default();
    assert_eq!(v["statusCode"], 401, "{}", refused.body);
    // Counted under the same metric as the proxy listener's calls.
    let metrics = get(&format!("{}/metrics", gw.admin_url())).body;
    assert!(
        metrics.contains(r#"tokengate_management_requests_total{method="POST",route="identities",status="2xx"} 1"#),
        "{metrics}"
    );
}

#[test]
fn browser_calls_from_another_origin_are_refused_on_both_listeners() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let auth = admin_auth();
    let body = r#"{"name":"planted","role":"admin","organizationId":"org-1"}"#;
    for base in [gw.url(), gw.admin_url()] {
        let own = base.trim_end_matches('/').to_string();
        let other = if base == gw.url() {
            gw.admin_url()
        } else {
            gw.url()
        };
        let attempts: Vec<Vec<(&str, &str)>> = vec![
            vec![("Origin", "http://evil.example")],
            vec![("Origin", other.as_str())],
            vec![("Origin", "null")],
            vec![("Origin", &own), ("Sec-Fetch-Site", "cross-site")],
            vec![("Sec-Fetch-Site", "same-site")],
            vec![
                ("Origin", "http://evil.example"),
                ("Content-Type", "text/plain"),
            ],
        ];
        for extra in attempts {
            let mut headers = vec![("Authorization", auth.as_str())];
            headers.extend(extra.iter().copied());
            let resp = http(
                "POST",
                &format!("{base}/api/v1/identities"),
                &headers,
                Some(body),
            );
            assert_eq!(resp.status, 403, "{base} {extra:?}: {}", resp.body);
            assert!(resp.body.contains("refused"), "{}", resp.body);
            assert!(
                resp.header("access-control-allow-origin").is_none(),
                "{base} {extra:?}"
            );
        }
        assert_eq!(identity_count(&base), 0, "{base}: something was created");
        // The listener's own page, and calls from outside a browser, are served.
        let same = http(
            "GET",
            &format!("{base}/api/v1/identities"),
            &[
                ("Authorization", &auth),
                ("Origin", &own),
                ("Sec-Fetch-Site", "same-origin"),
            ],
            None,
        );
        assert_eq!(same.status, 200, "{base}: {}", same.body);
    }
}

#[test]
fn a_cross_origin_refusal_does_not_count_towards_the_lockout() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .admin_extra("lockout: {threshold: 2}\n"),
    );
    let auth = admin_auth();
    for _ in 0..4 {
        let resp = http(
            "GET",
            &format!("{}/api/v1/identities", gw.admin_url()),
            &[("Authorization", &auth), ("Origin", "http://evil.example")],
            None,
        );
        assert_eq!(resp.status, 403, "{}", resp.body);
    }
    assert_eq!(identity_count(&gw.admin_url()), 0);
}

#[test]
fn behind_a_trusted_proxy_each_operator_has_their_own_lockout_on_the_admin_listener() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .trusted_proxies(&["127.0.0.1/32"])
            .admin_extra("lockout: {threshold: 2}\n"),
    );
    let url = format!("{}/api/v1/identities", gw.admin_url());
    for _ in 0..3 {
        let resp = http(
            "GET",
            &url,
            &[
                ("Authorization", "Bearer wrong-wrong-wrong"),
                ("X-Forwarded-For", "192.0.2.7"),
            ],
            None,
        );
        assert!(resp.status == 401 || resp.status == 429, "{}", resp.body);
    }
    let auth = admin_auth();
    let locked = http(
        "GET",
        &url,
        &[("Authorization", &auth), ("X-Forwarded-For", "192.0.2.7")],
        None,
    );
    assert_eq!(locked.status, 429, "{}", locked.body);
    let other = http(
        "GET",
        &url,
        &[("Authorization", &auth), ("X-Forwarded-For", "192.0.2.8")],
        None,
    );
    assert_eq!(other.status, 200, "{}", other.body);
    // /reload shares the same lockout and the same reading of the address.
    let reload = http(
        "POST",
        &format!("{}/reload", gw.admin_url()),
        &[("Authorization", &auth), ("X-Forwarded-For", "192.0.2.7")],
        None,
    );
    assert_eq!(reload.status, 429, "{}", reload.body);
}
