//! An https upstream: certificates are verified by default (a self-signed
//! upstream is a 502, nothing is served), and `tls_verify: false` opts out.
//! The upstream is a real TLS server, `openssl s_server`, with a throwaway cert.

mod common;

use common::process::{run_bounded, Proc};
use common::*;
use std::process::Command;
use std::time::Duration;

/// `openssl s_server -www` on a free port with a fresh self-signed certificate.
struct TlsUpstream {
    port: u16,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

fn tls_upstream() -> TlsUpstream {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, cert) = (dir.path().join("k.pem"), dir.path().join("c.pem"));
    let (code, out) = run_bounded(
        "openssl req",
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}");
    let port = free_port();
    let log = dir.path().join("s_server.log");
    let proc = Proc::spawn(
        "openssl s_server",
        Command::new("openssl")
            .args(["s_server", "-www", "-quiet", "-accept", &port.to_string()])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key),
        &log,
        &log,
    );
    eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    TlsUpstream {
        port,
        _proc: proc,
        _dir: dir,
    }
}

fn gateway_to(up: &TlsUpstream, verify: Option<bool>) -> Gateway {
    let mut cfg = GatewayConfig::embedded_temp()
        .upstream(&format!("https://127.0.0.1:{}", up.port))
        .public_routes(&["/"]);
    if let Some(v) = verify {
        cfg = cfg.upstream_tls_verify(v);
    }
    Gateway::start(cfg)
}

#[test]
fn a_self_signed_upstream_is_refused_by_default() {
    let up = tls_upstream();
    let gw = gateway_to(&up, None);
    let r = get(&format!("{}/", gw.url()));
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.json()["error"], "BadGateway");
}

#[test]
fn tls_verify_false_reaches_the_upstream_over_tls() {
    let up = tls_upstream();
    let gw = gateway_to(&up, Some(false));
    let r = get(&format!("{}/", gw.url()));
    assert_eq!(r.status, 200, "{}", r.body);
    // s_server -www answers with a page describing the TLS session it served.
    assert!(r.body.contains("Ciphers supported"), "{}", r.body);
}
