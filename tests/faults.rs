//! Faults around the gateway: an upstream that hangs (504 within the read
//! timeout), one that closes connections without answering or is not there
//! (502), and the gateway itself killed with SIGKILL again and again while
//! clients spend a use-limited token, between requests and in the middle of
//! them: never more than the limit gets through, on both stores, and the
//! upstream never sees more.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use common::*;
use serde_json::json;
use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

#[test]
fn a_hung_upstream_is_a_504_and_a_failing_one_a_502() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .upstream_timeouts(500, 300)
            .public_routes(&["/open"]),
    );
    upstream.set_delay(Duration::from_secs(3));
    let resp = get(&format!("{}/open/slow", gw.url()));
    assert_eq!(resp.expect_error(504), "upstream timed out");
    upstream.set_delay(Duration::ZERO);

    // An upstream that accepts and closes without a word.
    let closer = TcpListener::bind("127.0.0.1:0").unwrap();
    let closer_url = format!("http://{}", closer.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in closer.incoming().take(20) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            drop(s);
        }
    });
    let gw2 = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&closer_url)
            .public_routes(&["/open"]),
    );
    let resp = get(&format!("{}/open/x", gw2.url()));
    assert_eq!(resp.expect_error(502), "upstream unreachable or failed");

    // Nothing listening at all.
    let gw3 = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&Upstream::unreachable_url())
            .public_routes(&["/open"]),
    );
    let resp = get(&format!("{}/open/x", gw3.url()));
    assert_eq!(resp.expect_error(502), "upstream unreachable or failed");
    for g in [&gw, &gw2, &gw3] {
        assert!(g.metric("tokengate_upstream_errors_total").unwrap() >= 1.0);
    }
}

#[test]
fn header_fields_over_their_limit_are_a_431_and_never_forwarded() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .public_routes(&["/open"]),
    );
    let url = format!("{}/open/x", gw.url());
    let big = "a".repeat(40 * 1024);
    let resp = http("GET", &url, &[("X-Big", &big)], None);
    assert_eq!(resp.expect_error(431), "request header fields too large");
    // Many small ones add up the same way.
    let piece = "b".repeat(1024);
    let names: Vec<String> = (0..40).map(|i| format!("x-part-{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), piece.as_str())).collect();
    assert_eq!(http("GET", &url, &many, None).status, 431);
    assert_eq!(upstream.count(), 0);
    // Under the limit, as before.
    http("GET", &url, &[("X-Ok", &"c".repeat(16 * 1024))], None).expect_status(200);
    assert_eq!(upstream.count(), 1);
}

/// Sequential requests, with the gateway killed (SIGKILL) and restarted
/// every few of them: every answered use was durable before its answer.
fn case_kill_9_never_lets_more_than_the_limit_through(cfg: GatewayConfig) {
    const LIMIT: u64 = 12;
    let upstream = Upstream::echo();
    let mut gw = Gateway::start(cfg.upstream(&upstream.url()));
    let (_, token) = gw
        .admin()
        .identity_with_token("member", json!({"accessTokenNumUsesLimit": LIMIT}));
    let mut allowed = 0;
    let mut refused = 0;
    for round in 0..6 {
        for _ in 0..4 {
            let resp = get_with_token(&format!("{}/v1/things", gw.url()), &token.access_token);
            match resp.status {
                200 => allowed += 1,
                401 => refused += 1,
                other => panic!("round {round}: unexpected {other}: {}", resp.body),
            }
        }
        gw.restart();
    }
    assert_eq!(allowed, LIMIT, "exactly the limit got through");
    assert_eq!(refused, 24 - LIMIT);
    assert_eq!(upstream.count() as u64, LIMIT, "the upstream saw no more");
    assert_eq!(gw.admin().uses(&token.token_id), LIMIT);
}

on_both_stores!(
    case_kill_9_never_lets_more_than_the_limit_through,
    kill_9_never_lets_more_than_the_limit_through_redis,
    kill_9_never_lets_more_than_the_limit_through_embedded
);

/// Clients spending a limited token in parallel while the gateway is killed
/// (SIGKILL) in the middle of their requests and restarted, again and
/// again: the upstream never sees more than the limit, no client gets a
/// 200 that was not forwarded, and no forwarded request goes uncounted. A
/// request whose gateway died after counting its use and before forwarding
/// it spends that use (the client saw the connection fail, not a refusal).
fn case_kill_9_mid_request_never_lets_more_than_the_limit_through(cfg: GatewayConfig) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    const LIMIT: u64 = 40;
    let upstream = Upstream::echo();
    let mut gw = Gateway::start(cfg.upstream(&upstream.url()));
    let (_, token) = gw
        .admin()
        .identity_with_token("member", json!({"accessTokenNumUsesLimit": LIMIT}));
    let url = format!("{}/v1/things", gw.url());
    let auth = format!("Bearer {}", token.access_token);
    let stop = Arc::new(AtomicBool::new(false));
    let allowed = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, auth) = (url.clone(), auth.clone());
            let (stop, allowed) = (stop.clone(), allowed.clone());
            std::thread::spawn(move || {
                let mut unexpected = Vec::new();
                // Bounded: the kills below end in a few seconds.
                for _ in 0..5_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match try_http("GET", &url, &[("Authorization", &auth)], None) {
                        Ok(r) if r.status == 200 => {
                            allowed.fetch_add(1, Ordering::SeqCst);
                        }
                        // Past the limit, or the store not reachable yet.
                        Ok(r) if r.status == 401 || r.status == 503 => {}
                        Ok(r) => unexpected.push(format!("{}: {}", r.status, r.body)),
                        // Killed mid-request, or not listening yet.
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                unexpected
            })
        })
        .collect();
    for round in 0..5 {
        std::thread::sleep(Duration::from_millis(150 + 50 * round));
        gw.restart();
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let unexpected = c.join().unwrap();
        assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");
    }
    // Spend what is left, then nothing more passes.
    for _ in 0..LIMIT {
        let resp = get_with_token(&url, &token.access_token);
        match resp.status {
            200 => allowed.fetch_add(1, Ordering::SeqCst),
            401 => break,
            other => panic!("unexpected {other}: {}", resp.body),
        };
    }
    assert_eq!(get_with_token(&url, &token.access_token).status, 401);
    let forwarded = upstream.count() as u64;
    let allowed = allowed.load(Ordering::SeqCst);
    let uses = gw.admin().uses(&token.token_id);
    eprintln!("allowed {allowed}, forwarded {forwarded}, uses {uses} of {LIMIT}");
    assert!(forwarded <= LIMIT, "the upstream saw {forwarded} > {LIMIT}");
    assert!(allowed <= forwarded, "a 200 that was not forwarded");
    assert_eq!(uses, LIMIT, "every use spent, none beyond the limit");
}

on_both_stores!(
    case_kill_9_mid_request_never_lets_more_than_the_limit_through,
    kill_9_mid_request_never_lets_more_than_the_limit_through_redis,
    kill_9_mid_request_never_lets_more_than_the_limit_through_embedded
);
