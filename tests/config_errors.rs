//! Configuration errors: `tokengate check-config` and `tokengate serve` both
//! refuse a bad file with a non-zero exit and a message naming the key path;
//! the example config/tokengate.yaml passes.

mod common;

use common::*;

/// The part of a failed [`Gateway::try_start`] message that the process
/// wrote (the message also quotes the config file, which must not count).
fn log_part(err: &str) -> &str {
    err.split_once("\nlog:\n").map_or(err, |(_, log)| log)
}

/// Both commands refuse `cfg`, and each output contains every one of `needles`.
#[track_caller]
fn refused(cfg: GatewayConfig, needles: &[&str]) {
    let yaml = cfg.to_yaml();
    let (code, out) = Gateway::check_config_yaml(&yaml);
    assert_ne!(code, 0, "check-config accepted:\n{yaml}\noutput:\n{out}");
    assert_ne!(code, -1, "check-config died of a signal:\n{out}");
    for needle in needles {
        assert!(
            out.contains(needle),
            "check-config output does not name {needle:?}:\n{out}\nconfig:\n{yaml}"
        );
    }

    match Gateway::try_start(cfg) {
        Ok(_) => panic!("tokengate serve started with a bad config:\n{yaml}"),
        Err(err) => {
            assert!(
                err.starts_with("tokengate exited with")
                    && !err.starts_with("tokengate exited with exit status: 0 "),
                "serve did not exit with a failure: {err}"
            );
            let log = log_part(&err);
            for needle in needles {
                assert!(
                    log.contains(needle),
                    "serve's output does not name {needle:?}:\n{log}"
                );
            }
        }
    }
}

fn base() -> GatewayConfig {
    GatewayConfig::embedded_temp()
}

#[test]
fn the_example_config_and_the_harness_config_pass() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/tokengate.yaml");
    let (code, out) = Gateway::check_config(example);
    assert_eq!(code, 0, "check-config {example}:\n{out}");
    // The baseline every refusal below differs from by one key.
    let (code, out) = Gateway::check_config_yaml(&base().to_yaml());
    assert_eq!(code, 0, "check-config of the harness config:\n{out}");
}

#[test]
fn unknown_top_level_key() {
    refused(base().extra("listen_forever: true"), &["listen_forever"]);
}

#[test]
fn unknown_nested_key() {
    let port = free_port();
    refused(
        base().section(
            "server",
            &format!("listen: [\"127.0.0.1:{port}\"]\nlisen: 1"),
        ),
        &["server", "lisen"],
    );
}

#[test]
fn bad_cidr_in_trusted_proxies() {
    refused(
        base().trusted_proxies(&["10.0.0.0/33"]),
        &["trusted_proxies[0]", "10.0.0.0/33"],
    );
    refused(
        base().trusted_proxies(&["127.0.0.1/32", "not-an-ip"]),
        &["trusted_proxies[1]", "not-an-ip"],
    );
}

#[test]
fn bad_upstream_url_scheme() {
    refused(base().upstream("ftp://127.0.0.1:21"), &["upstream.url"]);
}

#[test]
fn out_of_range_numbers() {
    refused(base().threads(0), &["server.threads"]);
    refused(base().threads(257), &["server.threads"]);
    refused(base().max_body_bytes(70000), &["project.max_body_bytes"]);
}

#[test]
fn redis_store_without_url() {
    refused(base().section("store", "kind: redis"), &["store.url"]);
}

#[test]
fn duplicate_header_names() {
    refused(
        base().header_name("org_role", "X-Tokengate-Identity-Id"),
        &["headers", "x-tokengate-identity-id"],
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    refused(
        base()
            .threads(0)
            .trusted_proxies(&["10.0.0.0/33"])
            .upstream("ftp://127.0.0.1:21"),
        &["server.threads", "trusted_proxies[0]", "upstream.url"],
    );
}

#[test]
fn a_taken_listen_port_stops_the_gateway_at_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port to hold");
    let port = taken.local_addr().expect("local addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("gw.yaml");
    std::fs::write(
        &cfg,
        format!(
            "server: {{listen: ['127.0.0.1:{port}']}}\nupstream: {{url: 'http://127.0.0.1:1'}}\nstore: {{path: {}}}\n",
            dir.path().join("s.redb").display()
        ),
    )
    .expect("write config");
    let (code, out) = common::process::run_bounded(
        "tokengate serve on a taken port",
        std::process::Command::new(env!("CARGO_BIN_EXE_tokengate"))
            .args(["serve", "--config"])
            .arg(&cfg),
        std::time::Duration::from_secs(10),
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{out}"
    );
    assert!(out.contains("Address already in use"), "{out}");
    drop(taken);
}
