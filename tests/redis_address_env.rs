//! `store.url_env`: a gateway whose Redis address (password included) comes
//! from an environment variable rather than the file. It works when the
//! variable holds the URL, never logs it, and refuses to start, naming the
//! variable, when it is unset or wrong; check-config only warns when unset.

mod common;

use common::process::run_bounded;
use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const VAR: &str = "TG_TEST_REDIS_URL";
const PASSWORD: &str = "url-env-password-7d41c9";

fn store_from_env() -> &'static str {
    "kind: redis\nurl_env: TG_TEST_REDIS_URL\n"
}

/// The part of a failed [`Gateway::try_start`] message that the process
/// wrote (the message also quotes the config file).
fn log_part(err: &str) -> &str {
    err.split_once("\nlog:\n").map_or(err, |(_, log)| log)
}

/// `tokengate check-config path` with `VAR` set to `value`, or unset.
fn check_config(path: &Path, value: Option<&str>) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokengate"));
    cmd.arg("check-config").arg(path);
    match value {
        Some(v) => cmd.env(VAR, v),
        None => cmd.env_remove(VAR),
    };
    run_bounded("tokengate check-config", &mut cmd, Duration::from_secs(30))
}

#[test]
fn gateway_reads_its_redis_url_with_password_from_the_environment() {
    let redis = Redis::start();
    // Only a client that sends the password from the variable gets in.
    redis.query(&["CONFIG", "SET", "requirepass", PASSWORD]);
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}/0", redis.port());
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::redis("redis://unused.invalid:1/0")
            .section("store", store_from_env())
            .env(VAR, &url)
            .upstream(&upstream.url()),
    );
    let (id, token) = gw.admin().identity_with_token("member", json!({}));
    get_with_token(&format!("{}/v1/things", gw.url()), &token.access_token).expect_status(200);
    assert_eq!(
        upstream.last().header_all("x-tokengate-identity-id"),
        [id.as_str()]
    );
    assert_eq!(gw.admin().uses(&token.token_id), 1);

    let log = gw.log();
    assert!(
        log.contains(&format!("store redis (address from ${VAR})")),
        "the start-up line does not say where the address came from:\n{log}"
    );
    assert!(
        !log.contains(PASSWORD),
        "the Redis password was logged:\n{log}"
    );
}

#[test]
fn gateway_refuses_to_start_without_the_variable_and_check_config_warns() {
    let cfg = GatewayConfig::redis("redis://unused.invalid:1/0").section("store", store_from_env());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokengate.yaml");
    std::fs::write(&path, cfg.to_yaml()).expect("write config");

    let err = match Gateway::try_start(cfg.clone()) {
        Ok(_) => panic!("the gateway started without {VAR}"),
        Err(err) => err,
    };
    let log = log_part(&err);
    assert!(
        log.contains("store.url_env") && log.contains(VAR) && log.contains("not set"),
        "the refusal does not name the variable:\n{err}"
    );

    // Where the file is checked (CI) the secret is usually absent: a warning.
    let (code, out) = check_config(&path, None);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(": ok") && out.contains("warning") && out.contains(VAR),
        "{out}"
    );
    let (code, out) = check_config(&path, Some("redis://127.0.0.1:6379/0"));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning"), "{out}");
}

#[test]
fn a_variable_that_is_not_a_redis_url_is_refused_without_showing_it() {
    let bad = format!("https://:{PASSWORD}@127.0.0.1:6379/0");
    let cfg = GatewayConfig::redis("redis://unused.invalid:1/0")
        .section("store", store_from_env())
        .env(VAR, &bad);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokengate.yaml");
    std::fs::write(&path, cfg.to_yaml()).expect("write config");

    let err = match Gateway::try_start(cfg) {
        Ok(_) => panic!("the gateway started with {VAR}={bad}"),
        Err(err) => err,
    };
    let log = log_part(&err);
    assert!(
        log.contains(VAR) && log.contains("not a redis:// URL"),
        "the refusal does not name the variable:\n{err}"
    );
    assert!(!log.contains(PASSWORD), "the value was echoed:\n{log}");

    let (code, out) = check_config(&path, Some(&bad));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(VAR) && !out.contains(PASSWORD), "{out}");
}
