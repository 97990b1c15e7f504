//! Use limits: a token with limit L authenticates exactly L requests, on
//! either store, one after another or all at once, and with several gateways
//! sharing one Redis.

mod common;

use common::net::bearer;
use common::*;
use serde_json::json;

const EXHAUSTED: &str = "token usage limit reached";

fn case_limit_five(cfg: GatewayConfig) {
    let upstream = Upstream::echo();
    let gw = Gateway::start(cfg.upstream(&upstream.url()));
    let admin = gw.admin();
    let (id, token) = admin.identity_with_token("member", json!({"accessTokenNumUsesLimit": 5}));
    let url = format!("{}/v1/things", gw.url());

    for n in 1..=5 {
        let resp = get_with_token(&url, &token.access_token);
        assert_eq!(resp.status, 200, "request {n} of 5; body: {}", resp.body);
    }
    assert_eq!(upstream.count(), 5);
    assert_eq!(admin.uses(&token.token_id), 5);

    for n in 6..=7 {
        let resp = get_with_token(&url, &token.access_token);
        assert_eq!(resp.expect_error(401), EXHAUSTED, "request {n}");
        assert!(!resp.body.contains(&token.access_token));
    }
    assert_eq!(upstream.count(), 5, "an exhausted token was forwarded");
    assert_eq!(
        admin.uses(&token.token_id),
        5,
        "refused requests were counted"
    );

    // The limit is per token: a sibling token of the same identity is fresh.
    let sibling = admin.create_token(&id, "sibling");
    get_with_token(&url, &sibling.access_token).expect_status(200);
    assert_eq!(admin.uses(&sibling.token_id), 1);
    assert_eq!(upstream.count(), 6);
}

#[test]
fn limit_five_forwards_exactly_five_redis() {
    let redis = Redis::start();
    case_limit_five(GatewayConfig::redis(&redis.url()));
}

#[test]
fn limit_five_forwards_exactly_five_embedded() {
    case_limit_five(GatewayConfig::embedded_temp());
}

/// Fires `n` requests at once, request `i` to `urls[i % urls.len()]`, and
/// returns (status, message or transport error) per request.
fn race(urls: &[String], token: &str, n: usize) -> Vec<(u16, String)> {
    let auth = bearer(token);
    concurrently(n, |i| {
        let url = format!("{}/race/{i}", urls[i % urls.len()]);
        match try_http("GET", &url, &[("Authorization", &auth)], None) {
            Ok(resp) if resp.status == 200 => (200, String::new()),
            Ok(resp) => {
                let message = serde_json::from_str::<serde_json::Value>(&resp.body)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_string))
                    .unwrap_or(resp.body);
                (resp.status, message)
            }
            Err(e) => (0, e),
        }
    })
}

#[track_caller]
fn assert_exactly(results: &[(u16, String)], allowed: usize, token: &str) {
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let exhausted = results
        .iter()
        .filter(|(s, m)| *s == 401 && m == EXHAUSTED)
        .count();
    let other: Vec<_> = results
        .iter()
        .filter(|(s, m)| *s != 200 && !(*s == 401 && m == EXHAUSTED))
        .collect();
    assert!(
        other.is_empty(),
        "{} answers were neither 200 nor 401 {EXHAUSTED:?}, e.g. {:?}",
        other.len(),
        &other[..other.len().min(5)]
    );
    assert_eq!(ok, allowed, "requests allowed");
    assert_eq!(exhausted, results.len() - allowed, "requests refused");
    assert!(results.iter().all(|(_, m)| !m.contains(token)));
}

#[test]
fn two_gateways_sharing_redis_allow_exactly_the_limit_under_concurrency() {
    let redis = Redis::start();
    let upstream = Upstream::echo();
    let cfg = GatewayConfig::redis(&redis.url()).upstream(&upstream.url());
    let gw1 = Gateway::start(cfg.clone());
    let gw2 = Gateway::start(cfg.fresh_ports());
    assert_ne!(gw1.port(), gw2.port());
    let (_, token) = gw1
        .admin()
        .identity_with_token("member", json!({"accessTokenNumUsesLimit": 50}));

    let results = race(&[gw1.url(), gw2.url()], &token.access_token, 200);
    assert_exactly(&results, 50, &token.access_token);
    assert_eq!(upstream.count(), 50, "requests that reached the upstream");
    let mut paths: Vec<String> = upstream.requests().into_iter().map(|r| r.path).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 50, "each allowed request forwarded once");
    // Both gateways see the same count.
    assert_eq!(gw1.admin().uses(&token.token_id), 50);
    assert_eq!(gw2.admin().uses(&token.token_id), 50);

    // And both refuse the next one.
    for gw in [&gw1, &gw2] {
        let resp = get_with_token(&format!("{}/after", gw.url()), &token.access_token);
        assert_eq!(resp.expect_error(401), EXHAUSTED);
    }
    assert_eq!(upstream.count(), 50);
}

#[test]
fn embedded_allows_exactly_the_limit_under_concurrency() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let admin = gw.admin();
    let (_, token) = admin.identity_with_token("member", json!({"accessTokenNumUsesLimit": 50}));

    let results = race(&[gw.url()], &token.access_token, 200);
    assert_exactly(&results, 50, &token.access_token);
    assert_eq!(upstream.count(), 50, "requests that reached the upstream");
    assert_eq!(admin.uses(&token.token_id), 50);
}
