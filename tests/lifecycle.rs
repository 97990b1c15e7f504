//! Stopping and upgrading a running gateway: SIGTERM lets requests in
//! flight finish and returns as soon as nothing is left (not after the whole
//! grace period); a graceful upgrade (a new process with `serve --upgrade`,
//! then SIGQUIT to the old one) replaces the gateway under a stream of
//! requests without losing one.

#![allow(clippy::unwrap_used)]

mod common;

use common::http::exchange;
use common::process::Proc;
use common::*;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn sigterm_with_nothing_in_flight_stops_without_waiting_out_the_grace_period() {
    let upstream = Upstream::echo();
    let mut gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .public_routes(&["/open"])
            .grace_period_seconds(60),
    );
    // An idle keep-alive connection does not hold the stop.
    let session = Session::new();
    session
        .http("GET", &format!("{}/open/x", gw.url()), &[], None)
        .expect_status(200);
    let started = Instant::now();
    let status = gw.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?} of a 60 s grace period with nothing in flight",
        started.elapsed()
    );
    assert!(gw.log().contains("drained in"), "{}", gw.log());
}

#[test]
fn sigterm_lets_a_request_in_flight_finish() {
    let upstream = Upstream::echo();
    upstream.set_delay(Duration::from_millis(1500));
    let mut gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .public_routes(&["/open"])
            .grace_period_seconds(30),
    );
    let url = format!("{}/open/slow", gw.url());
    let slow = std::thread::spawn(move || try_http("GET", &url, &[], None));
    eventually(Duration::from_secs(10), || upstream.count() == 1);
    gw.signal("TERM");
    let resp = slow
        .join()
        .unwrap()
        .expect("the request in flight was answered");
    assert_eq!(resp.status, 200, "{}", resp.body);
    // And the gateway then stopped by itself.
    eventually(Duration::from_secs(20), || !gw.is_running());
    // No new connection is taken while draining.
    assert!(try_http("GET", &format!("{}/open/late", gw.url()), &[], None).is_err());
}

#[test]
fn a_connection_accepted_before_sigterm_gets_its_first_request_served() {
    let upstream = Upstream::echo();
    let mut gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .public_routes(&["/open"])
            .grace_period_seconds(30),
    );
    let before = gw.metric("tokengate_open_connections").unwrap_or(0.0);
    let addr: std::net::SocketAddr = gw.url().trim_start_matches("http://").parse().unwrap();
    let conn = std::net::TcpStream::connect(addr).unwrap();
    // Accepted, but its request not yet sent (as a request in flight on
    // the wire is when a stop or an upgrade begins).
    eventually(Duration::from_secs(10), || {
        gw.metric("tokengate_open_connections").unwrap_or(0.0) > before
    });
    gw.signal("TERM");
    eventually(Duration::from_secs(10), || {
        gw.log().contains("SIGTERM: draining")
    });
    std::thread::sleep(Duration::from_millis(200));
    let resp = exchange(conn, &raw_request("GET", "/open/late", &[], None))
        .expect("the accepted connection was answered, not closed");
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(upstream.count(), 1);
    eventually(Duration::from_secs(20), || !gw.is_running());
}

#[test]
fn a_graceful_upgrade_loses_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let upgrade_socket = dir.path().join("upgrade.sock");
    let upstream = Upstream::echo();
    // Redis: the embedded store's file stays locked by the old process
    // while it drains, so an upgrade needs a store both can use.
    let redis = Redis::start();
    let mut old = Gateway::start(
        GatewayConfig::redis(&redis.url())
            .upstream(&upstream.url())
            .public_routes(&["/open"])
            .grace_period_seconds(2)
            .server_extra(&format!("upgrade_socket: {}\n", upgrade_socket.display())),
    );
    let url = format!("{}/open/x", old.url());
    get(&url).expect_status(200);

    // A bounded stream of requests, each on a new connection, across the handover.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, done, url) = (stop.clone(), done.clone(), url.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 20_000 && Instant::now() < deadline {
                match try_http("GET", &url, &[], None) {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failures.push(format!("status {}", r.status)),
                    Err(e) => failures.push(e),
                }
                n += 1;
                done.store(n, Ordering::Relaxed);
            }
            (n, failures)
        })
    };
    let progress = |n: usize| {
        let from = done.load(Ordering::Relaxed);
        eventually(Duration::from_secs(20), || {
            done.load(Ordering::Relaxed) >= from + n
        });
    };
    progress(50);

    // The new process waits on the upgrade socket for the old one's sockets.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokengate"));
    cmd.arg("serve")
        .arg("--config")
        .arg(old.config_path())
        .arg("--upgrade")
        .current_dir(old.dir())
        .env("TOKENGATE_ADMIN_KEY", ADMIN_KEY)
        .env("RUST_LOG", "info");
    let new_out = dir.path().join("new.out");
    let new_err = dir.path().join("new.err");
    let mut new = Proc::spawn("tokengate (new)", &mut cmd, &new_out, &new_err);
    if !poll_until(Duration::from_secs(20), || upgrade_socket.exists()) {
        panic!(
            "no upgrade socket; new process:\n{}",
            std::fs::read_to_string(&new_err).unwrap_or_default()
        );
    }
    old.signal("QUIT");
    // The old process hands over, drains and exits; the new one serves.
    eventually(Duration::from_secs(30), || !old.is_running());
    progress(50);
    stop.store(true, Ordering::Relaxed);
    let (sent, failures) = load.join().unwrap();
    let new_log = std::fs::read_to_string(&new_err).unwrap_or_default();
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {:?}\nnew process log:\n{new_log}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(sent >= 100, "too few requests to judge: {sent}");
    assert!(
        new.exited().is_none(),
        "the new process stopped:\n{new_log}"
    );
    assert!(
        new_log.contains("the socket the previous process handed over"),
        "{new_log}"
    );
    get(&url).expect_status(200);
    new.signal("TERM");
    assert!(new.wait_timeout(Duration::from_secs(20)).is_some());
}

#[test]
fn an_upgrade_with_the_embedded_store_is_refused_with_the_reason() {
    let upstream = Upstream::echo();
    let cfg = GatewayConfig::embedded_temp().upstream(&upstream.url());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(&path, cfg.to_yaml()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .arg("--upgrade")
        .current_dir(dir.path())
        .env("TOKENGATE_ADMIN_KEY", ADMIN_KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("serve --upgrade needs the Redis store"),
        "{err}"
    );
}
