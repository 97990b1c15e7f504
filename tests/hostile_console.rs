//! Hostile tests of the console's serving and the management API's browser
//! boundary on both listeners (`api/origin.rs`, `admin.rs`, `console.rs`).
//! Each test here demonstrated a finding of a hostile review (it failed
//! before its fix) and now keeps it fixed.

mod common;

use common::*;

/// DNS rebinding: a page of `http://rebind.example:A` whose name the
/// attacker re-points at 127.0.0.1 is, to the browser, same-origin with
/// itself, and it sends `Host: rebind.example:A` with a matching `Origin`.
/// Were it answered, every wrong bearer it sent would count towards the
/// lockout of the address the operator's browser shares (127.0.0.1),
/// locking the operator out from a web page; a browser is answered only by
/// address, `localhost` or a name in `admin.allowed_hosts`.
#[test]
fn a_rebound_foreign_host_name_is_not_the_listener_s_origin() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .admin_extra("lockout: {threshold: 3, window_seconds: 60, duration_seconds: 60}\n"),
    );
    let port = port_of(&gw.admin_url());
    let host = format!("rebind.example:{port}");
    let origin = format!("http://rebind.example:{port}");
    for _ in 0..4 {
        let raw = format!(
            "GET /api/v1/identities HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\
             Sec-Fetch-Site: same-origin\r\nAuthorization: Bearer guessed-wrong\r\n\
             Connection: close\r\n\r\n"
        );
        let (status, body) = raw_http(&gw.admin_url(), &raw);
        assert_eq!(
            status, 403,
            "a page of a foreign name ({origin}) was taken for the listener's own: {body}"
        );
    }
    // The operator, on the same address, is not locked out by the page.
    assert_operator_not_locked_out(&gw, "a page under a foreign host name");
}

/// `POST /reload` checks the same admin key as the management API, so
/// guesses there count towards the same lockout (they once did not).
#[test]
fn reload_key_guesses_count_towards_the_lockout() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .admin_extra("lockout: {threshold: 3, window_seconds: 60, duration_seconds: 60}\n"),
    );
    let reload = format!("{}/reload", gw.admin_url());
    // Guesses at /reload are not counted: the API stays open after many.
    for i in 0..6 {
        let wrong = format!("Bearer guess-{i}-of-the-admin-key");
        let resp = http("POST", &reload, &[("Authorization", &wrong)], None);
        assert!(resp.status == 401 || resp.status == 429, "{}", resp.body);
    }
    let api = http(
        "GET",
        &format!("{}/api/v1/identities", gw.admin_url()),
        &[("Authorization", "Bearer still-guessing")],
        None,
    );
    assert_eq!(
        api.status, 429,
        "six wrong admin keys at /reload did not count towards the lockout (threshold 3): {} {}",
        api.status, api.body
    );
}

/// Once an address is locked out of the management API (429 on both
/// listeners), `/reload` no longer tells it a right admin key from a wrong
/// one.
#[test]
fn reload_confirms_the_admin_key_to_a_locked_out_address() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .admin_extra("lockout: {threshold: 2, window_seconds: 60, duration_seconds: 60}\n"),
    );
    let api = format!("{}/api/v1/identities", gw.admin_url());
    for i in 0..3 {
        let wrong = format!("Bearer wrong-{i}");
        http("GET", &api, &[("Authorization", &wrong)], None);
    }
    let auth = admin_auth();
    let locked = http("GET", &api, &[("Authorization", &auth)], None);
    assert_eq!(locked.status, 429, "not locked out: {}", locked.body);
    let right = http(
        "POST",
        &format!("{}/reload", gw.admin_url()),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(
        right.status, 429,
        "a locked-out address had its admin key guess confirmed by /reload: {} {}",
        right.status, right.body
    );
}

/// The admin listener, which answers the whole management API and the
/// console, cuts a client trickling its request header at
/// `server.header_timeout_seconds`, as the proxy listener does (it once held
/// such a connection open).
#[test]
fn the_admin_listener_cuts_a_header_trickled_past_the_deadline() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .server_extra("keepalive_timeout_seconds: 30\nheader_timeout_seconds: 2\n"),
    );
    let addr: std::net::SocketAddr = gw
        .admin_url()
        .trim_start_matches("http://")
        .parse()
        .expect("admin address");
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("connect to the admin listener");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    s.write_all(b"GET /api/v1/identities HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("start a header");
    let started = Instant::now();
    let mut closed = false;
    let mut buf = [0u8; 4096];
    // Bounded: 10 s, five times the deadline.
    while started.elapsed() < Duration::from_secs(10) {
        if s.write_all(b"X-Slow: 1\r\n").is_err() {
            closed = true;
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            // A 408 (or any answer) also ends the trickle.
            Ok(_) => {
                closed = true;
                break;
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "the admin listener still reads a header trickled for {:?} (header_timeout_seconds: 2)",
        started.elapsed()
    );
}
