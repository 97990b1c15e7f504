//! Live reload: SIGHUP or the admin listener's `POST /reload` applies a
//! changed config file while requests keep flowing, none lost; an invalid
//! file, or one that changes what needs a restart, is refused by name and
//! the running configuration keeps serving.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rewrite(gw: &Gateway, cfg: &GatewayConfig) {
    std::fs::write(gw.config_path(), cfg.to_yaml()).unwrap();
}

fn reloads(gw: &Gateway, result: &str) -> f64 {
    gw.metric(&format!(
        "tokengate_config_reloads_total{{result=\"{result}\"}}"
    ))
    .unwrap()
}

fn post_reload(gw: &Gateway, key: Option<&str>) -> Resp {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    http(
        "POST",
        &format!("{}/reload", gw.admin_url()),
        &headers,
        None,
    )
}

#[test]
fn sighup_applies_a_new_config_while_requests_keep_flowing() {
    let upstream = Upstream::echo();
    let mut gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let (_, token) = gw.admin().identity_with_token("member", json!({}));
    let open = format!("{}/open/x", gw.url());
    get(&open).expect_status(401);

    // A bounded stream of authenticated requests, on fresh and kept-alive
    // connections, running across the reloads.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let load = {
        let url = format!("{}/v1/things", gw.url());
        let token = token.access_token.clone();
        let stop = stop.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let session = Session::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed)
                && statuses.len() < 5000
                && Instant::now() < deadline
            {
                let auth = format!("Bearer {token}");
                let resp = if statuses.len() % 2 == 0 {
                    session.http("GET", &url, &[("Authorization", &auth)], None)
                } else {
                    http("GET", &url, &[("Authorization", &auth)], None)
                };
                statuses.push(resp.status);
                done.fetch_add(1, Ordering::Relaxed);
            }
            statuses
        })
    };
    // Each step waits until more requests went through, so every reload
    // happens with the stream running.
    let progress = |n: usize| {
        let from = done.load(Ordering::Relaxed);
        eventually(Duration::from_secs(20), || {
            done.load(Ordering::Relaxed) >= from + n
        });
    };
    progress(50);

    let changed = gw.config().clone().public_routes(&["/open"]);
    rewrite(&gw, &changed);
    gw.signal("HUP");
    eventually(Duration::from_secs(10), || get(&open).status == 200);
    assert_eq!(reloads(&gw, "ok"), 1.0);
    progress(50);

    // Back again, by the admin call this time.
    rewrite(&gw, &changed.clone().public_routes(&[]));
    post_reload(&gw, Some(ADMIN_KEY)).expect_status(200);
    get(&open).expect_status(401);
    assert_eq!(reloads(&gw, "ok"), 2.0);
    progress(50);

    stop.store(true, Ordering::Relaxed);
    let statuses = load.join().unwrap();
    assert!(
        statuses.len() >= 150,
        "too few requests to judge: {}",
        statuses.len()
    );
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        statuses.len()
    );
    assert!(gw.is_running());
    assert!(gw.log().contains("configuration reloaded from"));
}

#[test]
fn a_bad_config_is_refused_and_the_running_one_keeps_serving() {
    let upstream = Upstream::echo();
    let base = GatewayConfig::embedded_temp()
        .upstream(&upstream.url())
        .public_routes(&["/open"]);
    let mut gw = Gateway::start(base.clone());
    let open = format!("{}/open/x", gw.url());
    get(&open).expect_status(200);

    // Invalid: refused with the key named, by signal and by call.
    rewrite(&gw, &base.clone().trusted_proxies(&["not-a-cidr"]));
    gw.signal("HUP");
    eventually(Duration::from_secs(10), || reloads(&gw, "failed") == 1.0);
    assert!(
        gw.log().contains("configuration reload refused"),
        "{}",
        gw.log()
    );
    let resp = post_reload(&gw, Some(ADMIN_KEY));
    assert_eq!(resp.status, 422, "{}", resp.body);
    let body: Value = serde_json::from_str(&resp.body).unwrap();
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("trusted_proxies[0]"),
        "{body}"
    );
    get(&open).expect_status(200);

    // Valid, but it needs a restart: each such key is named.
    let moved = base
        .clone()
        .section("store", "kind: embedded\npath: elsewhere.redb\n")
        .threads(3);
    rewrite(&gw, &moved);
    let resp = post_reload(&gw, Some(ADMIN_KEY));
    assert_eq!(resp.status, 422, "{}", resp.body);
    let errors = serde_json::from_str::<Value>(&resp.body).unwrap()["errors"].to_string();
    assert!(
        errors.contains("server.threads cannot change without a restart"),
        "{errors}"
    );
    assert!(
        errors.contains("store cannot change without a restart"),
        "{errors}"
    );
    assert_eq!(reloads(&gw, "failed"), 3.0);
    assert_eq!(reloads(&gw, "ok"), 0.0);
    get(&open).expect_status(200);
    assert!(gw.is_running());
}

#[test]
fn reloading_by_call_needs_the_admin_key_and_post() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    assert_eq!(post_reload(&gw, None).status, 401);
    assert_eq!(post_reload(&gw, Some("wrong-key")).status, 401);
    let (_, token) = gw.admin().identity_with_token("admin", json!({}));
    assert_eq!(
        post_reload(&gw, Some(&token.access_token)).status,
        401,
        "the admin key only"
    );
    assert_eq!(
        http("GET", &format!("{}/reload", gw.admin_url()), &[], None).status,
        405
    );
    assert_eq!(reloads(&gw, "ok") + reloads(&gw, "failed"), 0.0);
    post_reload(&gw, Some(ADMIN_KEY)).expect_status(200);
    assert_eq!(reloads(&gw, "ok"), 1.0);
}

#[test]
fn reloaded_log_settings_and_header_names_take_effect() {
    let upstream = Upstream::echo();
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.log");
    let base = GatewayConfig::embedded_temp().upstream(&upstream.url());
    let gw = Gateway::start(base.clone());
    let (id, token) = gw.admin().identity_with_token("member", json!({}));
    let url = format!("{}/v1/things", gw.url());

    let changed = base.header_name("identity_id", "x-caller-id").section(
        "access_log",
        &format!("destination: file\npath: {}\n", access.display()),
    );
    rewrite(&gw, &changed);
    post_reload(&gw, Some(ADMIN_KEY)).expect_status(200);
    let resp = http(
        "GET",
        &url,
        &[
            ("Authorization", &format!("Bearer {}", token.access_token)),
            ("X-Request-Id", "after-reload"),
        ],
        None,
    );
    resp.expect_status(200);
    let seen = upstream
        .requests()
        .into_iter()
        .find(|r| r.header("x-request-id") == Some("after-reload"))
        .unwrap();
    assert_eq!(seen.header("x-caller-id"), Some(id.as_str()));
    assert!(!seen.has_header("x-tokengate-identity-id"));
    eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&access).is_ok_and(|t| t.contains("\"reqId\":\"after-reload\""))
    });
}
