//! Findings of a hostile review of the operator console and the admin
//! listener, with a real browser where the finding is the browser's
//! (tests/console/hostile.py) and raw HTTP where it is the server's. Each
//! test failed before its fix and now keeps it fixed; the comments describe
//! the attack as it worked then.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

/// Any web page the operator visits can lock the operator out of the
/// management API: a plain HTML form posting to `http://<admin>/reload`
/// needs no preflight, carries no `Authorization`, and `/reload` counts it
/// as a failed admin-key attempt from the operator's own address, with no
/// `Origin` / `Sec-Fetch-Site` check (the API refuses the same request
/// before credentials). Here: what Chromium sends for such a form post.
#[test]
fn a_cross_origin_form_post_to_reload_locks_the_operator_out() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .admin_extra("lockout: {threshold: 3, window_seconds: 60, duration_seconds: 60}\n"),
    );
    let port = port_of(&gw.admin_url());
    for _ in 0..4 {
        let raw = format!(
            "POST /reload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Origin: http://evil.example\r\nSec-Fetch-Site: cross-site\r\n\
             Sec-Fetch-Mode: navigate\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\na=b"
        );
        let (status, _) = raw_http(&gw.admin_url(), &raw);
        assert_ne!(status, 200);
    }
    assert_operator_not_locked_out(
        &gw,
        "four cross-site form posts to /reload (no Authorization)",
    );
}

/// The same through DNS rebinding: a page of a foreign name served from
/// the admin listener is same-origin to the browser, so its
/// `fetch('/reload', {method: 'POST', headers: {Authorization: ...}})` is
/// sent, and every wrong key counts against the operator's address, the
/// very thing the API's host-name check (`admin.allowed_hosts`) prevents.
#[test]
fn a_rebound_page_spends_the_lockout_through_reload() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .admin_extra("lockout: {threshold: 3, window_seconds: 60, duration_seconds: 60}\n"),
    );
    let port = port_of(&gw.admin_url());
    for _ in 0..4 {
        let raw = format!(
            "POST /reload HTTP/1.1\r\nHost: rebind.example:{port}\r\n\
             Origin: http://rebind.example:{port}\r\nSec-Fetch-Site: same-origin\r\n\
             Authorization: Bearer guessed-wrong\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        );
        let (status, body) = raw_http(&gw.admin_url(), &raw);
        assert_ne!(status, 200, "{body}");
    }
    assert_operator_not_locked_out(&gw, "a page under a foreign host name posting to /reload");
}

/// What Chromium really sends from a page of a foreign name (DNS
/// rebinding) for `fetch('/api/v1/identities', {headers: {Authorization}})`:
/// an `http://` page of a name is not a secure context, so no
/// `Sec-Fetch-Site`, and a same-origin GET carries no `Origin`. The
/// host-name check (`admin.allowed_hosts`) only looks at requests with one
/// of those headers, so this one is judged on its credentials and every
/// wrong key counts against the operator's address. (The rebinding test of
/// tests/hostile_console.rs sends both headers, which Chromium does not.)
#[test]
fn a_rebound_page_s_get_without_browser_headers_spends_the_lockout() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .admin_extra("lockout: {threshold: 3, window_seconds: 60, duration_seconds: 60}\n"),
    );
    let port = port_of(&gw.admin_url());
    let mut statuses = Vec::new();
    for i in 0..4 {
        let raw = format!(
            "GET /api/v1/identities HTTP/1.1\r\nHost: rebind.example:{port}\r\n\
             User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0 Safari/537.36\r\n\
             Accept: */*\r\nReferer: http://rebind.example:{port}/\r\n\
             Authorization: Bearer guess-{i}\r\nConnection: close\r\n\r\n"
        );
        statuses.push(raw_http(&gw.admin_url(), &raw).0);
    }
    assert_operator_not_locked_out(
        &gw,
        &format!("a page under a foreign host name (answered {statuses:?})"),
    );
}

// ---------------------------------------------------------------- in Chromium

mod browser {
    use super::common::browser as harness;
    use super::common::*;
    use serde_json::json;
    use std::path::Path;
    use std::time::Duration;

    const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/hostile.py");
    const TIMEOUT: Duration = Duration::from_secs(120);

    /// Runs hostile.py CHECK against `gw`; panics with its findings unless it exits 0.
    fn run(python: &Path, gw: &Gateway, check: &str, envs: &[(&str, &str)]) {
        harness::run(python, SCRIPT, &[check], gw, envs, TIMEOUT);
    }

    /// DNS rebinding in Chromium (`--host-resolver-rules=MAP rebind.test
    /// 127.0.0.1`): the page's API calls with wrong keys must be refused
    /// (403) and must not lock the operator out.
    #[test]
    fn a_rebound_page_in_chromium_is_refused_and_locks_nobody_out() {
        let Some(python) = harness::python() else {
            return;
        };
        let upstream = Upstream::echo();
        let gw = Gateway::start(
            GatewayConfig::embedded_temp()
                .upstream(&upstream.url())
                .admin_extra("lockout: {threshold: 3, window_seconds: 60, duration_seconds: 60}\n"),
        );
        run(&python, &gw, "rebind", &[]);
    }

    /// Sign out empties the lists, but the identity screen (name, id,
    /// trusted IPs), the project field and its heading keep the session's
    /// data in the page, for whoever uses the tab next.
    #[test]
    fn sign_out_leaves_nothing_of_the_session_in_the_page() {
        let Some(python) = harness::python() else {
            return;
        };
        let upstream = Upstream::echo();
        let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
        let admin = gw.admin();
        let project = unique("signout-project");
        let name = unique("signout-ident");
        let id = admin.create_identity(&name, "member");
        admin.attach_token_auth(
            &id,
            json!({"accessTokenTrustedIps": [{"ipAddress": "203.0.113.7"}]}),
        );
        admin.add_membership(&project, &id, json!({"role": "viewer"}));
        run(
            &python,
            &gw,
            "signout",
            &[
                ("TOKENGATE_PROJECT_ID", &project),
                ("TOKENGATE_IDENTITY_NAME", &name),
            ],
        );
    }
}

/// README ("Configuration"): "an HTTP/1.0 connection without keep-alive is
/// closed after its answer", and the admin listener now runs on the same
/// connection guard. The proxy listener closes it at once; the admin
/// listener answers (as HTTP/1.1, no `Connection: close`) and keeps the
/// connection open, so a 1.0 client reading to EOF hangs and each such
/// probe holds one of the listener's 1024 connections until the keep-alive
/// timeout.
#[test]
fn the_admin_listener_closes_an_http_1_0_connection_after_its_answer() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let addr: std::net::SocketAddr = gw
        .admin_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut eof = false;
    // Bounded: 3 s.
    while started.elapsed() < Duration::from_secs(3) {
        match s.read(&mut buf) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                eof = true;
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains(" 200 "), "no answer: {text}");
    assert!(
        eof,
        "the admin listener kept an HTTP/1.0 connection without keep-alive open for {:?} \
         after answering: {text}",
        started.elapsed()
    );
}
