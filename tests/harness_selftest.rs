//! Self-tests of the harness pieces that need no gateway: Redis control, the echo upstream, HTTP helpers, the config builder.

mod common;

use common::*;
use serde_json::json;
use std::net::TcpStream;
use std::time::Duration;

fn refuses_connections(addr: &str) -> bool {
    let addr = addr.parse().expect("socket address");
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
}

#[test]
fn redis_answers_commands_and_counts_them() {
    let redis = Redis::start();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/0", redis.port()));
    assert_eq!(redis.cmd(&["PING"]), "PONG");

    redis.reset_stats();
    assert_eq!(redis.command_calls("set"), 0);
    for i in 0..3 {
        assert_eq!(redis.cmd(&["SET", &format!("k{i}"), "v"]), "OK");
    }
    assert_eq!(redis.cmd(&["GET", "k1"]), "v");
    assert_eq!(redis.cmd(&["GET", "missing"]), "(nil)");
    assert_eq!(redis.command_calls("set"), 3);
    assert_eq!(redis.command_calls("SET"), 3, "names are case-insensitive");
    assert_eq!(redis.command_calls("get"), 2);
    assert_eq!(redis.dbsize(), 3);
    let mut keys = redis.keys("k*");
    keys.sort();
    assert_eq!(keys, ["k0", "k1", "k2"]);

    redis.reset_stats();
    assert_eq!(
        redis.command_calls("set"),
        0,
        "CONFIG RESETSTAT clears counts"
    );
}

#[test]
fn redis_counts_evalsha_and_reports_errors_as_text() {
    let redis = Redis::start();
    assert_eq!(redis.command_calls("evalsha"), 0);
    let sha = redis.cmd(&["SCRIPT", "LOAD", "return {ARGV[1], 7}"]);
    assert_eq!(sha.len(), 40, "SCRIPT LOAD answers a sha1: {sha}");
    let reply = redis.query(&["EVALSHA", &sha, "0", "hello"]);
    assert_eq!(
        reply,
        Reply::Array(Some(vec![
            Reply::Bulk(Some(b"hello".to_vec())),
            Reply::Int(7)
        ]))
    );
    assert_eq!(reply.text(), "hello\n7");
    assert_eq!(redis.command_calls("evalsha"), 1);
    assert_eq!(redis.command_calls("script|load"), 1);

    let err = redis.query(&["NOSUCHCOMMAND"]);
    assert!(err.is_error(), "{err:?}");
    assert!(err.text().starts_with("ERR"), "{}", err.text());
}

#[test]
fn redis_kill_then_restart_on_same_port_comes_back_empty() {
    let mut redis = Redis::start();
    let port = redis.port();
    redis.cmd(&["SET", "survives", "no"]);

    redis.kill();
    assert!(!redis.is_running());
    assert!(
        refuses_connections(&redis.addr()),
        "killed server still listening"
    );
    assert!(redis.try_query(&["PING"]).is_err());

    redis.restart();
    assert_eq!(redis.port(), port);
    assert!(redis.is_running());
    assert_eq!(redis.cmd(&["PING"]), "PONG");
    assert_eq!(
        redis.cmd(&["GET", "survives"]),
        "(nil)",
        "nothing is persisted"
    );
    assert!(redis.log().contains("Ready to accept connections"));
}

#[test]
fn dropping_redis_kills_its_process() {
    let redis = Redis::start();
    let addr = redis.addr();
    let pid = redis.pid().expect("running redis has a pid");
    drop(redis);
    assert!(refuses_connections(&addr));
    // Reaped by the drop, so no zombie entry remains either.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn two_redis_servers_get_distinct_ports() {
    let a = Redis::start();
    let b = Redis::start();
    assert_ne!(a.port(), b.port());
    a.cmd(&["SET", "where", "a"]);
    assert_eq!(b.cmd(&["GET", "where"]), "(nil)");
}

#[test]
fn echo_upstream_records_request_and_answers_json() {
    let up = Upstream::echo();
    assert_eq!(up.url(), format!("http://127.0.0.1:{}", up.port()));
    let resp = http(
        "POST",
        &format!("{}/v1/things?a=1&b=two", up.url()),
        &[("X-Custom", "yes"), ("Authorization", "Bearer abc")],
        Some(r#"{"workspaceId":"p1"}"#),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let v = resp.json();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/v1/things?a=1&b=two");
    assert_eq!(v["headers"]["x-custom"], json!(["yes"]));
    assert_eq!(v["headers"]["authorization"], json!(["Bearer abc"]));
    assert_eq!(v["headers"]["content-type"], json!(["application/json"]));
    assert_eq!(v["body"], r#"{"workspaceId":"p1"}"#);

    assert_eq!(up.count(), 1);
    let rec = up.last();
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.path, "/v1/things?a=1&b=two");
    assert_eq!(rec.path_only(), "/v1/things");
    assert_eq!(rec.header("X-CUSTOM"), Some("yes"));
    assert_eq!(rec.body_str(), r#"{"workspaceId":"p1"}"#);

    up.clear();
    assert_eq!(up.count(), 0);
    assert!(up.requests().is_empty());
}

#[test]
fn echo_upstream_keeps_duplicate_and_underscore_headers() {
    let up = Upstream::echo();
    let raw = raw_request(
        "GET",
        "/dup",
        &[
            ("X-Tokengate-Identity-Id", "spoof-1"),
            ("x-tokengate-identity-id", "spoof-2"),
            ("x_tokengate_identity_id", "spoof-3"),
        ],
        None,
    );
    let (status, body) = raw_http(&up.url(), &raw);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("echo JSON");
    assert_eq!(
        v["headers"]["x-tokengate-identity-id"],
        json!(["spoof-1", "spoof-2"])
    );
    assert_eq!(v["headers"]["x_tokengate_identity_id"], json!(["spoof-3"]));

    let rec = up.last();
    assert_eq!(
        rec.header_all("x-tokengate-identity-id"),
        ["spoof-1", "spoof-2"]
    );
    assert_eq!(rec.header("x_tokengate_identity_id"), Some("spoof-3"));
    assert_eq!(rec.header("connection"), Some("close"));
}

#[test]
fn echo_upstream_serves_infisical_secrets_shape() {
    let up = Upstream::echo();
    let url = format!(
        "{}/api/v3/secrets/raw?workspaceId=proj%201&environment=dev&secretPath=%2F",
        up.url()
    );
    let resp = http(
        "GET",
        &url,
        &[
            ("x-tokengate-identity-id", "id-42"),
            ("x-tokengate-project-role", "viewer"),
        ],
        None,
    );
    assert_eq!(resp.status, 200);
    let v = resp.json();
    assert_eq!(v["imports"], json!([]));
    let secrets = v["secrets"].as_array().expect("secrets array");
    assert_eq!(secrets.len(), 2);
    let by_key = |k: &str| {
        secrets
            .iter()
            .find(|s| s["secretKey"] == k)
            .unwrap_or_else(|| panic!("no secret {k} in {v}"))
            .clone()
    };
    assert_eq!(by_key("IDENTITY")["secretValue"], "id-42");
    assert_eq!(by_key("PROJECT_ROLE")["secretValue"], "viewer");
    for s in secrets {
        assert_eq!(s["workspace"], "proj 1");
        assert_eq!(s["environment"], "dev");
        assert_eq!(s["secretPath"], "/");
        for field in [
            "id",
            "_id",
            "workspace",
            "environment",
            "version",
            "type",
            "secretKey",
            "secretValue",
            "secretComment",
            "secretPath",
            "tags",
            "secretReminderNote",
            "secretReminderRepeatDays",
            "skipMultilineEncoding",
            "metadata",
            "secretMetadata",
        ] {
            assert!(s.get(field).is_some(), "secret lacks {field}: {s}");
        }
    }

    let single = http(
        "GET",
        &format!(
            "{}/api/v3/secrets/raw/IDENTITY?workspaceId=p2&environment=prod",
            up.url()
        ),
        &[("x-tokengate-identity-id", "id-7")],
        None,
    )
    .json();
    assert_eq!(single["secret"]["secretKey"], "IDENTITY");
    assert_eq!(single["secret"]["secretValue"], "id-7");
    assert_eq!(single["secret"]["workspace"], "p2");
}

#[test]
fn echo_upstream_keeps_connections_alive_and_can_be_slowed() {
    let up = Upstream::echo();
    let session = Session::new();
    for _ in 0..3 {
        assert_eq!(session.http("GET", &up.url(), &[], None).status, 200);
    }
    assert_eq!(up.connections(), 1, "keep-alive reuses one connection");

    up.set_status(503);
    up.set_delay(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let resp = get(&format!("{}/slow", up.url()));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(resp.status, 503, "4xx/5xx are answers, not errors");
    assert_eq!(resp.json()["path"], "/slow");
}

#[test]
fn unreachable_url_refuses_connections() {
    let url = Upstream::unreachable_url();
    let err = try_http("GET", &url, &[], None).expect_err("nothing listens there");
    assert!(!err.is_empty());
}

#[test]
fn get_with_token_sends_bearer() {
    let up = Upstream::echo();
    let resp = get_with_token(&format!("{}/x", up.url()), "tok123");
    assert_eq!(
        resp.json()["headers"]["authorization"],
        json!(["Bearer tok123"])
    );
}

#[test]
fn expect_error_checks_infisical_error_shape() {
    let good = Resp {
        status: 401,
        headers: vec![],
        body: json!({"reqId": "r1", "statusCode": 401, "message": "token expired", "error": "Unauthorized"})
            .to_string(),
    };
    assert_eq!(good.expect_error(401), "token expired");
    let bad = Resp {
        status: 401,
        headers: vec![],
        body: "nope".into(),
    };
    assert!(std::panic::catch_unwind(|| bad.expect_error(401)).is_err());
}

#[test]
fn eventually_polls_until_true() {
    let mut n = 0;
    eventually(Duration::from_secs(5), || {
        n += 1;
        n >= 3
    });
    assert_eq!(n, 3);
    assert!(!poll_until(Duration::from_millis(50), || false));
}

#[test]
#[should_panic(expected = "condition not met")]
fn eventually_panics_after_timeout() {
    eventually(Duration::from_millis(50), || false);
}

#[test]
fn concurrently_runs_every_index() {
    let results = concurrently(8, |i| i * 2);
    assert_eq!(results, (0..8).map(|i| i * 2).collect::<Vec<_>>());
}

#[test]
fn gateway_config_yaml_has_harness_defaults() {
    let cfg = GatewayConfig::redis("redis://127.0.0.1:7777/0")
        .upstream("http://127.0.0.1:3000")
        .trusted_proxies(&["10.0.0.0/8"])
        .public_routes(&["/api/status"])
        .forward_authorization(true);
    let yaml = cfg.to_yaml();
    let lp = cfg.listen_port();
    let ap = cfg.admin_port();
    assert_ne!(lp, ap);
    for needle in [
        format!("  listen: [\"127.0.0.1:{lp}\"]"),
        "  threads: 2".to_string(),
        "  grace_period_seconds: 0".to_string(),
        format!("  listen: \"127.0.0.1:{ap}\""),
        "  api_key_env: TOKENGATE_ADMIN_KEY".to_string(),
        "  url: \"http://127.0.0.1:3000\"".to_string(),
        "  kind: redis".to_string(),
        "  url: \"redis://127.0.0.1:7777/0\"".to_string(),
        "trusted_proxies: [\"10.0.0.0/8\"]".to_string(),
        "public_routes: [\"/api/status\"]".to_string(),
        "    - path: \"/api/*/projects/{projectId}\"".to_string(),
        "    - body: \"projectId\"".to_string(),
        "  identity_id: \"x-tokengate-identity-id\"".to_string(),
        "  project_role: \"x-tokengate-project-role\"".to_string(),
        "  forward_authorization: true".to_string(),
    ] {
        assert!(
            yaml.lines().any(|l| l == needle),
            "missing line {needle:?} in:\n{yaml}"
        );
    }

    let custom = GatewayConfig::embedded_temp()
        .section(
            "upstream",
            "url: \"http://127.0.0.1:1\"\nread_timeout_ms: 50",
        )
        .omit("public_routes")
        .extra("bogus_key: 1");
    let yaml = custom.to_yaml();
    assert!(yaml.contains("upstream:\n  url: \"http://127.0.0.1:1\"\n  read_timeout_ms: 50\n"));
    assert!(yaml.contains("  kind: embedded\n  path: \"tokengate.redb\"\n"));
    assert!(!yaml.contains("public_routes"));
    assert!(yaml.ends_with("bogus_key: 1\n"));
    assert_eq!(yaml.matches("upstream:").count(), 1);

    let second = cfg.clone().fresh_ports();
    assert_ne!(second.listen_port(), cfg.listen_port());
}
