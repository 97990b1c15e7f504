//! An https upstream: certificates are verified by default (an upstream whose
//! CA the system does not know is a 502, nothing is served), `ca_file` trusts a
//! private CA, and `tls_verify: false` opts out. The upstream is a real TLS
//! server, `openssl s_server`, with a throwaway CA and certificate.

mod common;

use common::process::{run_bounded, Proc};
use common::*;
use std::process::Command;
use std::time::Duration;

/// `openssl s_server -www` on a free port, serving a leaf certificate for
/// localhost / 127.0.0.1 signed by a throwaway CA (`ca.pem`).
struct TlsUpstream {
    port: u16,
    ca: std::path::PathBuf,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let (code, out) = run_bounded(
        "openssl",
        Command::new("openssl").args(args).current_dir(dir),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "openssl {args:?}: {out}");
}

fn tls_upstream() -> TlsUpstream {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("write extensions");
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=tokengate test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    );
    let port = free_port();
    let log = d.join("s_server.log");
    let proc = Proc::spawn(
        "openssl s_server",
        Command::new("openssl")
            .args(["s_server", "-www", "-quiet", "-accept", &port.to_string()])
            .args(["-cert", "leaf.pem", "-key", "leaf.key"])
            .current_dir(d),
        &log,
        &log,
    );
    eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    TlsUpstream {
        port,
        ca: d.join("ca.pem"),
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
fn an_upstream_signed_by_a_private_ca_is_trusted_with_ca_file() {
    let up = tls_upstream();
    let cfg = GatewayConfig::embedded_temp()
        .upstream(&format!("https://127.0.0.1:{}", up.port))
        .public_routes(&["/"]);
    let upstream_section = format!(
        "url: \"https://127.0.0.1:{}\"\nca_file: {}",
        up.port,
        up.ca.display()
    );
    let gw = Gateway::start(cfg.section("upstream", &upstream_section));
    let r = get(&format!("{}/", gw.url()));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Ciphers supported"), "{}", r.body);
}

#[test]
fn an_upstream_with_an_unknown_ca_is_refused_by_default() {
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
