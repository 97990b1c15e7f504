//! TLS on the gateway's listeners, with real processes and certificates made
//! at test time: SNI chooses between two certificates, requests over TLS
//! (HTTP/1.1 and HTTP/2) are authenticated and forwarded as on a plain
//! listener, which keeps working next to it; mTLS refuses a client without a
//! certificate from its CA; the admin listener speaks TLS; certificates are
//! reloaded by SIGHUP and a broken one is refused while the old one serves.

#![allow(clippy::unwrap_used)]

mod common;

use common::tls::{h2_request, CertFiles, Client, Pki};
use common::*;
use serde_json::json;
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// `server.tls` / `admin.tls` body listing these certificates.
fn tls_yaml(certs: &[&CertFiles], extra: &str) -> String {
    let mut s = String::from("certificates:\n");
    for c in certs {
        s.push_str(&format!(
            "  - {{cert: \"{}\", key: \"{}\"}}\n",
            c.cert.display(),
            c.key.display()
        ));
    }
    s.push_str(extra);
    s
}

fn get_head(path: &str, token: Option<&str>) -> String {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: gateway.test\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head
}

#[test]
fn sni_chooses_between_two_certificates() {
    let pki = Pki::new("tokengate test CA");
    let a = pki.server("a", "cert A", &["DNS:a.test"]);
    let b = pki.server("b", "cert B", &["DNS:*.b.test", "DNS:b.test"]);
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .public_routes(&["/open"])
            .server_tls(&tls_yaml(&[&a, &b], "")),
    );
    let client = Client::trusting(&pki.ca());
    let addr = gw.tls_addr();
    for (name, cn) in [
        ("a.test", "cert A"),
        ("b.test", "cert B"),
        ("api.b.test", "cert B"),
    ] {
        let tls = client.connect(&addr, name).unwrap();
        let seen = tls.presented();
        assert_eq!(seen.cn, cn, "for SNI {name}");
        let resp = client
            .request(&addr, name, &get_head("/open/x", None))
            .unwrap();
        assert_eq!(resp.status, 200, "for SNI {name}: {}", resp.body);
    }
    assert_eq!(
        client
            .connect(&addr, "a.test")
            .unwrap()
            .presented()
            .dns_names,
        ["a.test"]
    );
    // No SNI: the first certificate listed.
    let tls = client
        .clone()
        .without_sni()
        .connect(&addr, "a.test")
        .unwrap();
    assert_eq!(tls.presented().cn, "cert A");
    // A name no certificate has gets the first one too, which the client
    // then refuses for the name.
    let e = client.connect(&addr, "c.test").err().unwrap();
    assert!(e.contains("not valid for name"), "{e}");
}

#[test]
fn requests_over_tls_are_authenticated_and_forwarded_and_plain_listeners_keep_working() {
    let pki = Pki::new("tokengate test CA");
    let cert = pki.server("gw", "gateway", &["DNS:gateway.test"]);
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .server_tls(&tls_yaml(&[&cert], "")),
    );
    let (id, token) = gw.admin().identity_with_token("member", json!({}));
    let client = Client::trusting(&pki.ca());
    let addr = gw.tls_addr();

    let resp = client
        .request(
            &addr,
            "gateway.test",
            &get_head("/v1/things?x=1", Some(&token.access_token)),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = upstream.last();
    assert_eq!(seen.path, "/v1/things?x=1");
    assert_eq!(seen.header("x-tokengate-identity-id"), Some(id.as_str()));
    assert_eq!(
        seen.header("x-tokengate-token-id"),
        Some(token.token_id.as_str())
    );
    assert_eq!(seen.header("x-tokengate-client-ip"), Some("127.0.0.1"));
    assert!(!seen.has_header("authorization"));

    let n = upstream.count();
    let resp = client
        .request(&addr, "gateway.test", &get_head("/v1/things", None))
        .unwrap();
    assert_eq!(resp.status, 401, "{}", resp.body);
    assert_eq!(upstream.count(), n, "nothing forwarded");

    // The plain listener of the same gateway, unchanged.
    get_with_token(&format!("{}/v1/plain", gw.url()), &token.access_token).expect_status(200);
    assert_eq!(upstream.last().path, "/v1/plain");
    get(&format!("{}/v1/plain", gw.url())).expect_status(401);
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(no_plain_answer(&addr));
}

/// Plain HTTP sent to a TLS port: no HTTP answer comes back.
fn no_plain_answer(addr: &str) -> bool {
    common::http::try_raw_http(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").is_err()
}

#[test]
fn http2_through_the_gateway() {
    let pki = Pki::new("tokengate test CA");
    let cert = pki.server("gw", "gateway", &["DNS:gateway.test"]);
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .server_tls(&tls_yaml(&[&cert], "")),
    );
    let admin = gw.admin();
    let (id, token) = admin.identity_with_token("member", json!({}));
    admin.add_membership("p1", &id, json!({"role": "viewer"}));
    let client = Client::trusting(&pki.ca());
    let addr = gw.tls_addr();
    let request = |path: &str, token: Option<&str>| {
        let mut req = ::http::Request::builder()
            .method("GET")
            .uri(format!("https://gateway.test{path}"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        h2_request(&client, &addr, "gateway.test", req.body(()).unwrap()).unwrap()
    };

    let (alpn, resp) = request(
        "/api/v3/secrets/raw?workspaceId=p1&environment=dev",
        Some(&token.access_token),
    );
    assert_eq!(alpn, "h2");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = upstream.last();
    // Sent upstream in origin-form, to the upstream's own host.
    assert_eq!(
        seen.path,
        "/api/v3/secrets/raw?workspaceId=p1&environment=dev"
    );
    assert_eq!(
        seen.header("host"),
        Some(upstream.url().trim_start_matches("http://"))
    );
    assert_eq!(seen.header("x-tokengate-identity-id"), Some(id.as_str()));
    assert_eq!(seen.header("x-tokengate-project-id"), Some("p1"));
    assert_eq!(seen.header("x-tokengate-project-role"), Some("viewer"));
    assert!(!seen.has_header("authorization"));

    // Refusals over h2 are the same JSON errors, and forward nothing.
    let n = upstream.count();
    let (_, resp) = request(
        "/api/v3/secrets/raw?workspaceId=p2",
        Some(&token.access_token),
    );
    assert_eq!(resp.status, 403, "{}", resp.body);
    let (_, resp) = request("/v1/things", None);
    assert_eq!(resp.status, 401, "{}", resp.body);
    assert_eq!(resp.json()["statusCode"], 401);
    let (_, resp) = request("/v1/a/../things", Some(&token.access_token));
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert_eq!(upstream.count(), n, "nothing forwarded");

    // HTTP/1.1 clients on the same listener still get HTTP/1.1.
    let tls = client
        .clone()
        .alpn(&["h2", "http/1.1"])
        .connect(&addr, "gateway.test")
        .unwrap();
    assert_eq!(tls.alpn().as_deref(), Some("h2"));
    let tls = client.connect(&addr, "gateway.test").unwrap();
    assert_eq!(tls.alpn().as_deref(), Some("http/1.1"));
}

#[test]
fn mtls_refuses_a_client_without_a_certificate_from_its_ca() {
    let pki = Pki::new("tokengate test CA");
    let cert = pki.server("gw", "gateway", &["DNS:gateway.test"]);
    let clients = Pki::new("client CA");
    let good = clients.client("good", "client one");
    let strangers = Pki::new("another CA");
    let stranger = strangers.client("stranger", "client two");
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .public_routes(&["/open"])
            .server_tls(&tls_yaml(
                &[&cert],
                &format!("client_ca: \"{}\"\n", clients.ca().display()),
            )),
    );
    let client = Client::trusting(&pki.ca());
    let addr = gw.tls_addr();
    let head = get_head("/open/x", None);

    let e = client.request(&addr, "gateway.test", &head).err();
    assert!(e.is_some(), "a client without a certificate was served");
    let e = client
        .clone()
        .with_identity(&stranger)
        .request(&addr, "gateway.test", &head)
        .err();
    assert!(e.is_some(), "a certificate from another CA was accepted");
    assert_eq!(upstream.count(), 0, "nothing forwarded");

    let resp = client
        .clone()
        .with_identity(&good)
        .request(&addr, "gateway.test", &head)
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(upstream.count(), 1);
    // Not an identity: nothing of the client certificate is forwarded.
    assert!(upstream
        .last()
        .headers
        .iter()
        .all(|(_, v)| !v.contains("client one")));
}

#[test]
fn the_admin_listener_speaks_tls() {
    let pki = Pki::new("tokengate test CA");
    let cert = pki.server("admin", "admin", &["DNS:localhost"]);
    // The harness waits for /healthz over TLS before this returns.
    let gw = Gateway::start(
        GatewayConfig::embedded_temp().admin_tls(&tls_yaml(&[&cert], ""), &pki.ca()),
    );
    let addr = format!("127.0.0.1:{}", gw.admin_port());
    let client = Client::trusting(&pki.ca());
    let resp = client
        .request(
            &addr,
            "localhost",
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\n",
        )
        .unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.body.contains("tokengate_config_reloads_total"));
    let resp = client
        .request(
            &addr,
            "localhost",
            &format!("POST /reload HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Length: 0\r\n"),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let req = ::http::Request::get("https://localhost/healthz")
        .body(())
        .unwrap();
    let (alpn, resp) = h2_request(&client, &addr, "localhost", req).unwrap();
    assert_eq!((alpn.as_str(), resp.status), ("h2", 200));
    assert!(no_plain_answer(&addr));
}

/// True once the peer has closed `s` (a read ends or fails other than by
/// the read timeout).
fn closed(s: &mut impl Read) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

#[test]
fn a_stalled_handshake_or_h2_preface_is_cut_at_the_header_deadline() {
    let pki = Pki::new("tokengate test CA");
    let cert = pki.server("gw", "gateway", &["DNS:gateway.test"]);
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .public_routes(&["/"])
            .server_extra("header_timeout_seconds: 1\n")
            .server_tls(&tls_yaml(&[&cert], "")),
    );
    let addr = gw.tls_addr();
    let client = Client::trusting(&pki.ca());
    // Connected, and not a byte of handshake.
    let mut silent = TcpStream::connect(&addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Accepting goes on meanwhile: the handshake is not the accept loop's.
    let tls = client.connect(&addr, "gateway.test").unwrap();
    assert_eq!(tls.presented().cn, "gateway");
    eventually(Duration::from_secs(15), || closed(&mut silent));

    // Handshake done with h2, and no connection preface.
    let mut h2 = client
        .clone()
        .alpn(&["h2"])
        .connect(&addr, "gateway.test")
        .unwrap();
    assert_eq!(h2.alpn().as_deref(), Some("h2"));
    h2.0.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    eventually(Duration::from_secs(15), || closed(&mut h2.0));
}

fn reloads(gw: &Gateway, result: &str) -> f64 {
    gw.metric(&format!(
        "tokengate_config_reloads_total{{result=\"{result}\"}}"
    ))
    .unwrap()
}

fn copy(from: &CertFiles, to: &CertFiles) {
    std::fs::copy(&from.cert, &to.cert).unwrap();
    std::fs::copy(&from.key, &to.key).unwrap();
}

#[test]
fn certificates_are_reloaded_on_sighup_and_a_broken_one_is_refused() {
    let pki = Pki::new("tokengate test CA");
    let first = pki.server("first", "first", &["DNS:gateway.test"]);
    let second = pki.server("second", "second", &["DNS:gateway.test"]);
    let other = pki.server("other", "other", &["DNS:gateway.test"]);
    let live = CertFiles {
        cert: pki.dir().join("live.pem"),
        key: pki.dir().join("live.key"),
    };
    copy(&first, &live);
    let mut gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .public_routes(&["/"])
            .server_tls(&tls_yaml(&[&live], "")),
    );
    let client = Client::trusting(&pki.ca());
    let addr = gw.tls_addr();
    let served = || {
        client
            .connect(&addr, "gateway.test")
            .unwrap()
            .presented()
            .cn
    };
    assert_eq!(served(), "first");
    // A connection open across the reload keeps working.
    let mut kept = client.connect(&addr, "gateway.test").unwrap();

    // Renewed in place, as certbot or cert-manager do, then SIGHUP.
    copy(&second, &live);
    gw.signal("HUP");
    eventually(Duration::from_secs(10), || reloads(&gw, "ok") == 1.0);
    assert_eq!(served(), "second");
    let resp = kept
        .exchange("GET /x HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        .unwrap();
    assert_ne!(resp.status, 0);

    // A key that is not the certificate's: refused, the key named, and
    // the current certificate keeps serving.
    std::fs::copy(&other.key, &live.key).unwrap();
    gw.signal("HUP");
    eventually(Duration::from_secs(10), || reloads(&gw, "failed") == 1.0);
    assert!(
        gw.log().contains("server.tls.certificates[0]: the key in"),
        "{}",
        gw.log()
    );
    assert_eq!(served(), "second");
    // A file gone: the same, by call this time, each problem named.
    std::fs::remove_file(&live.cert).unwrap();
    let resp = http(
        "POST",
        &format!("{}/reload", gw.admin_url()),
        &[("Authorization", &format!("Bearer {ADMIN_KEY}"))],
        None,
    );
    assert_eq!(resp.status, 422, "{}", resp.body);
    assert!(
        resp.body
            .contains("server.tls.certificates[0].cert: cannot read"),
        "{}",
        resp.body
    );
    assert_eq!(served(), "second");
    assert!(gw.is_running());
}

#[test]
fn a_gateway_with_a_bad_certificate_does_not_start() {
    let pki = Pki::new("tokengate test CA");
    let a = pki.server("a", "a", &["DNS:a.test"]);
    let b = pki.server("b", "b", &["DNS:b.test"]);
    let no_name = pki.server("plain", "no names", &[]);
    let mismatched = CertFiles {
        cert: a.cert.clone(),
        key: b.key.clone(),
    };
    for (certs, expected) in [
        (vec![&mismatched], "server.tls.certificates[0]: the key in"),
        (vec![&a, &no_name], "server.tls.certificates[1]: "),
    ] {
        let e =
            Gateway::try_start(GatewayConfig::embedded_temp().server_tls(&tls_yaml(&certs, "")))
                .err()
                .unwrap();
        assert!(e.contains(expected), "{e}");
    }
    // One certificate needs no name: it is everyone's.
    Gateway::start(GatewayConfig::embedded_temp().server_tls(&tls_yaml(&[&no_name], "")));
}

/// The README's TLS example, with its files made by the openssl commands it
/// shows (in spirit: here by the test CA), passes `check-config`, and a key
/// that does not match is caught by it.
#[test]
fn the_readme_tls_example_passes_check_config() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("\n## TLS")
        .nth(1)
        .expect("a TLS section in README.md");
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a yaml block in the TLS section");
    let pki = Pki::new("tokengate test CA");
    let dir = pki.dir();
    let api = pki.server("api", "api", &["DNS:api.example.com"]);
    let internal = pki.server("internal", "internal", &["DNS:*.internal.example.com"]);
    let admin = pki.server("admin", "admin", &["DNS:localhost"]);
    let clients = Pki::new("client CA");
    let files = [
        ("api.pem", &api.cert),
        ("api.key", &api.key),
        ("internal.pem", &internal.cert),
        ("internal.key", &internal.key),
        ("admin.pem", &admin.cert),
        ("admin.key", &admin.key),
    ];
    for (name, from) in files {
        std::fs::copy(from, dir.join(format!("tls-{name}"))).unwrap();
    }
    std::fs::copy(clients.ca(), dir.join("tls-clients-ca.pem")).unwrap();
    let text = yaml.replace("/etc/tokengate/tls/", &format!("{}/tls-", dir.display()));
    let (code, out) = Gateway::check_config_yaml(&text);
    assert_eq!(code, 0, "{out}\n{text}");

    std::fs::copy(&admin.key, dir.join("tls-api.key")).unwrap();
    let (code, out) = Gateway::check_config_yaml(&text);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("server.tls.certificates[0]: the key in"),
        "{out}"
    );
}

/// HTTP/2 names the host in `:authority` (clients send no Host header):
/// host routes match it as they match Host over HTTP/1.1.
#[test]
fn http2_requests_match_host_routes_by_authority() {
    let pki = Pki::new("tokengate test CA");
    let cert = pki.server("gw", "gateway", &["DNS:gateway.test", "DNS:open.test"]);
    let main = Upstream::echo();
    let open = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&main.url())
            .server_tls(&tls_yaml(&[&cert], ""))
            .section("upstreams", &format!("open:\n  urls: ['{}']\n", open.url()))
            .section(
                "routes",
                "- {path: /pub, host: open.test, auth: public, upstream: open}\n",
            ),
    );
    let client = Client::trusting(&pki.ca());
    let addr = gw.tls_addr();
    let get = |authority: &str| {
        let req = ::http::Request::get(format!("https://{authority}/pub/x"))
            .body(())
            .unwrap();
        h2_request(&client, &addr, authority, req).unwrap().1
    };
    assert_eq!(get("open.test").status, 200);
    assert_eq!((open.count(), main.count()), (1, 0));
    // Another authority: the host route does not apply, a token is needed.
    assert_eq!(get("gateway.test").status, 401);
    assert_eq!((open.count(), main.count()), (1, 0));
}
