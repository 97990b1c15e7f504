//! The access log: one JSON line per request with who, what, which project,
//! how it ended and how long it took; credential values in the query
//! redacted; the file reopened after SIGHUP or SIGUSR1 (logrotate); and a
//! writer that cannot keep up drops and counts records instead of slowing
//! requests.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn with_access_file(cfg: GatewayConfig, path: &Path) -> GatewayConfig {
    cfg.section(
        "access_log",
        &format!("destination: file\npath: {}\n", path.display()),
    )
}

/// The record of request `id`, waiting for the writer to get to it.
#[track_caller]
fn record_of(path: &Path, id: &str) -> Value {
    let mut found = None;
    eventually(Duration::from_secs(10), || {
        found = json_lines(path).into_iter().find(|r| r["reqId"] == id);
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no access record for {id} in {}", path.display()))
}

fn call(gw: &Gateway, method: &str, target: &str, token: Option<&str>, id: &str) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("X-Request-Id", id)];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    http(method, &format!("{}{target}", gw.url()), &headers, None)
}

#[test]
fn every_request_gets_one_line_with_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let upstream = Upstream::echo();
    let gw = Gateway::start(with_access_file(
        GatewayConfig::embedded_temp().upstream(&upstream.url()),
        &path,
    ));
    let admin = gw.admin();
    let (id, token) = admin.identity_with_token("member", json!({}));
    let project = unique("proj");
    admin.add_membership(&project, &id, json!({"role": "viewer"}));
    let name = admin.get_identity(&id)["name"]
        .as_str()
        .unwrap()
        .to_string();

    // Forwarded, with a project and a credential in the query.
    let target = format!("/v1/things?projectId={project}&access_token=hunter2&x=1");
    let resp = call(&gw, "GET", &target, Some(&token.access_token), "al-ok");
    resp.expect_status(200);
    let r = record_of(&path, "al-ok");
    assert_eq!(r["log"], "access");
    assert_eq!(r["method"], "GET");
    assert_eq!(
        r["path"],
        format!("/v1/things?projectId={project}&access_token=[REDACTED]&x=1")
    );
    assert_eq!(r["clientIp"], "127.0.0.1");
    assert_eq!(r["identityId"], id.as_str());
    assert_eq!(r["identityName"], name.as_str());
    assert_eq!(r["tokenId"], token.token_id.as_str());
    assert_eq!(r["project"], project.as_str());
    assert_eq!(r["outcome"], "forwarded");
    assert_eq!(r["reason"], Value::Null);
    assert_eq!(r["status"], 200);
    assert_eq!(r["upstreamStatus"], 200);
    assert_eq!(r["responseBytes"], resp.body.len());
    assert!(r["durationMs"].as_f64().unwrap() > 0.0, "{r}");
    let upstream_ms = r["upstreamMs"].as_f64().unwrap();
    assert!(upstream_ms > 0.0 && upstream_ms <= r["durationMs"].as_f64().unwrap());
    let time = r["time"].as_str().unwrap();
    assert!(time.starts_with("20") && time.ends_with('Z'), "{time}");

    // A request body's size is counted.
    let resp = http(
        "POST",
        &format!("{}/v1/things", gw.url()),
        &[
            ("X-Request-Id", "al-post"),
            ("Authorization", &format!("Bearer {}", token.access_token)),
            ("Content-Type", "application/json"),
        ],
        Some(r#"{"a":"0123456789"}"#),
    );
    resp.expect_status(200);
    assert_eq!(record_of(&path, "al-post")["requestBytes"], 18);

    // The upstream failing: its status and the outcome.
    upstream.set_status(503);
    call(
        &gw,
        "GET",
        "/v1/things",
        Some(&token.access_token),
        "al-5xx",
    )
    .expect_status(503);
    let r = record_of(&path, "al-5xx");
    assert_eq!(
        (r["status"].as_u64(), r["upstreamStatus"].as_u64()),
        (Some(503), Some(503))
    );
    upstream.set_status(200);

    // Refusals name the token that was tried and why, and nothing more.
    admin.revoke_token(&token.token_id);
    call(
        &gw,
        "GET",
        "/v1/things",
        Some(&token.access_token),
        "al-revoked",
    )
    .expect_status(401);
    let r = record_of(&path, "al-revoked");
    assert_eq!(r["outcome"], "denied");
    assert_eq!(r["reason"], "revoked");
    assert_eq!(r["tokenId"], token.token_id.as_str());
    assert_eq!(r["identityId"], id.as_str());
    assert_eq!(r["identityName"], Value::Null);
    assert_eq!(r["upstreamStatus"], Value::Null);
    assert_eq!(r["status"], 401);

    call(&gw, "GET", "/v1/things", None, "al-none").expect_status(401);
    let r = record_of(&path, "al-none");
    assert_eq!(r["reason"], "missing Authorization header");
    assert_eq!(r["tokenId"], Value::Null);

    let raw = raw_request("GET", "/v1/a/../b", &[("X-Request-Id", "al-bad")], None);
    assert_eq!(raw_http(&gw.addr(), &raw).0, 400);
    let r = record_of(&path, "al-bad");
    assert_eq!(r["outcome"], "bad_request");
    assert_eq!(r["path"], "/v1/a/../b", "the target as received");

    call(
        &gw,
        "GET",
        &format!("/api/v1/identities/{id}"),
        None,
        "al-mgmt",
    )
    .expect_status(401);
    let r = record_of(&path, "al-mgmt");
    assert_eq!(r["outcome"], "management");
    assert_eq!(r["status"], 401);

    // One line per request, the management calls above included; no secret.
    let all = json_lines(&path);
    let ours = all
        .iter()
        .filter(|r| r["reqId"].as_str().unwrap_or("").starts_with("al-"))
        .count();
    assert_eq!(ours, 7);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&token.access_token) && !text.contains("hunter2"));
    assert!(!text.contains(ADMIN_KEY));
}

#[test]
fn the_file_is_reopened_after_sighup_and_sigusr1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let upstream = Upstream::echo();
    let mut gw = Gateway::start(with_access_file(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .public_routes(&["/open"]),
        &path,
    ));
    call(&gw, "GET", "/open/1", None, "rot-1").expect_status(200);
    record_of(&path, "rot-1");

    for (n, signal) in [(2, "HUP"), (3, "USR1")] {
        let rotated: PathBuf = dir.path().join(format!("access.log.{n}"));
        std::fs::rename(&path, &rotated).unwrap();
        gw.signal(signal);
        // The writer reopens before its next write; wait until a request's
        // line lands in a new file at the old path.
        let id = format!("rot-{n}");
        call(&gw, "GET", "/open/x", None, &id).expect_status(200);
        record_of(&path, &id);
        assert!(gw.is_running(), "SIGUSR1 or SIGHUP ended the gateway");
        assert!(
            json_lines(&rotated)
                .iter()
                .all(|r| r["reqId"] != id.as_str()),
            "{id} went to the rotated file"
        );
    }
    assert_eq!(
        json_lines(&dir.path().join("access.log.2"))[0]["reqId"],
        "rot-1"
    );
}

#[test]
fn stdout_gets_the_lines_when_asked() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .public_routes(&["/open"])
            .section("access_log", "destination: stdout\n"),
    );
    call(&gw, "GET", "/open/1", None, "out-1").expect_status(200);
    eventually(Duration::from_secs(10), || {
        gw.log().lines().any(|l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v["reqId"] == "out-1" && v["log"] == "access")
        })
    });
}

#[test]
fn a_writer_that_cannot_keep_up_drops_and_counts_without_slowing_requests() {
    // A FIFO nobody reads: the writer blocks once the pipe (64 KiB) is full.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("access.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    // Opening a FIFO for writing waits for a reader: hold the read end open
    // (and never read) from a thread while the gateway starts.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::File::open(fifo).unwrap())
    };
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .public_routes(&["/open"])
            .section(
                "access_log",
                &format!("destination: file\npath: {}\nqueue: 16\n", fifo.display()),
            ),
    );
    let read_end = reader.join().unwrap();

    // Far more lines than the pipe and the queue hold together.
    let session = Session::new();
    for i in 0..600 {
        let url = format!("{}/open/{i}/{}", gw.url(), "p".repeat(200));
        session.http("GET", &url, &[], None).expect_status(200);
    }
    let dropped = gw
        .metric("tokengate_log_records_dropped_total{log=\"access\"}")
        .unwrap();
    assert!(dropped > 0.0, "nothing dropped with a stalled writer");
    assert!(dropped < 600.0, "{dropped}");
    drop(read_end);
}

#[test]
fn management_calls_on_the_admin_listener_get_their_line_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let upstream = Upstream::echo();
    let gw = Gateway::start(with_access_file(
        GatewayConfig::embedded_temp().upstream(&upstream.url()),
        &path,
    ));
    let auth = format!("Bearer {ADMIN_KEY}");
    http(
        "GET",
        &format!("{}/api/v1/identities?limit=5", gw.admin_url()),
        &[("X-Request-Id", "al-admin-ok"), ("Authorization", &auth)],
        None,
    )
    .expect_status(200);
    http(
        "GET",
        &format!("{}/api/v1/identities", gw.admin_url()),
        &[("X-Request-Id", "al-admin-401")],
        None,
    )
    .expect_status(401);
    let r = record_of(&path, "al-admin-ok");
    assert_eq!(r["outcome"], "management");
    assert_eq!(r["status"], 200);
    assert_eq!(r["method"], "GET");
    assert_eq!(r["path"], "/api/v1/identities?limit=5");
    assert_eq!(r["clientIp"], "127.0.0.1");
    let r = record_of(&path, "al-admin-401");
    assert_eq!(r["status"], 401);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(ADMIN_KEY));
}
