//! Rate limits through the real gateway: 10 per second holding across two
//! gateways on one Redis (what reaches the upstream stays within what GCRA
//! allows for the time the run took), 429 with `Retry-After` and the
//! `RateLimit` headers, no use spent by a refusal, per-identity and
//! per-token buckets, a PATCH taking effect at once, a route's default, and
//! the management API held to the same limit; on both stores.
//!
//! No assertion depends on how fast the machine is: the bound on what got
//! through is computed from the instants measured around the run.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Every request this file proxies carries this header with a value of its
/// own, so other tests' traffic to a shared upstream port never counts.
const MARKER: &str = "x-test-marker";

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn send(url: &str, token: &str, marker: &str) -> Result<Resp, String> {
    let auth = format!("Bearer {token}");
    try_http(
        "GET",
        url,
        &[("Authorization", &auth), (MARKER, marker)],
        None,
    )
}

fn forwarded(upstream: &Upstream, marker: &str) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| r.header(MARKER) == Some(marker))
        .count()
}

/// A 429 of the rate limit `policy` (`"identity";q=10;w=1`): Infisical's
/// error shape, `Retry-After` in whole seconds (at least 1), and the IETF
/// draft's `RateLimit-Policy` and `RateLimit` headers agreeing with it.
#[track_caller]
fn assert_rate_limited(resp: &Resp, policy: &str) -> u64 {
    let message = resp.expect_error(429);
    assert_eq!(resp.json()["error"], "RateLimitExceeded");
    assert!(message.starts_with("rate limit of "), "{message}");
    let wait: u64 = resp
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", resp.headers))
        .parse()
        .unwrap();
    assert!(wait >= 1);
    assert_eq!(resp.header("ratelimit-policy"), Some(policy));
    let name = policy.split(';').next().unwrap();
    assert_eq!(
        resp.header("ratelimit"),
        Some(format!("{name};r=0;t={wait}").as_str())
    );
    wait
}

#[test]
fn ten_per_second_holds_across_two_gateways_on_one_redis() {
    let redis = Redis::start();
    let upstream = Upstream::echo();
    let cfg = GatewayConfig::redis(&redis.url()).upstream(&upstream.url());
    let a = Gateway::start(cfg.clone());
    let b = Gateway::start(cfg.fresh_ports());
    let admin = a.admin();
    let limit = json!({"requests": 10, "windowSeconds": 1, "burst": 10, "per": "identity"});
    let (id, t1) = admin.identity_with_token("member", json!({"accessTokenRateLimit": limit}));
    // Two tokens of the identity, one per gateway: per identity, they share.
    let t2 = admin.create_token(&id, "second");
    let marker = unique("rate");
    let urls = [a.url(), b.url()];

    // Four clients, two per gateway, each at most 300 requests and 2 s,
    // paced a little so the run spans more than one window.
    const CLIENTS: usize = 4;
    let start_ms = wall_ms();
    let started = Instant::now();
    let results: Vec<Vec<Resp>> = concurrently(CLIENTS, |i| {
        let token = if i % 2 == 0 {
            &t1.access_token
        } else {
            &t2.access_token
        };
        let url = format!("{}/v1/things/{i}", urls[i % 2]);
        let mut got = Vec::new();
        for _ in 0..300 {
            if started.elapsed() >= Duration::from_millis(2_000) {
                break;
            }
            got.push(send(&url, token, &marker).unwrap());
            std::thread::sleep(Duration::from_millis(4));
        }
        got
    });
    let end_ms = wall_ms() + 1;

    let all: Vec<&Resp> = results.iter().flatten().collect();
    let ok = all.iter().filter(|r| r.status == 200).count();
    let limited: Vec<&&Resp> = all.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        ok + limited.len(),
        all.len(),
        "only 200 and 429: {:?}",
        all.iter().find(|r| r.status != 200 && r.status != 429)
    );
    let through = forwarded(&upstream, &marker);
    assert_eq!(through, ok, "every 200 was forwarded, every 429 was not");
    // GCRA at 10 per second with a burst of 10: at most the burst plus one
    // per 100 ms of the time the gateways' clocks could have read.
    let bound = 10 + (end_ms - start_ms) as usize / 100;
    assert!(
        through <= bound,
        "{through} requests reached the upstream in {} ms; GCRA allows {bound}",
        end_ms - start_ms
    );
    assert!(through >= 10, "the burst itself was allowed: {through}");
    assert!(!limited.is_empty(), "{} requests, none refused", all.len());
    for r in &limited {
        assert_rate_limited(r, "\"identity\";q=10;w=1");
    }
    // A refusal spends no use: the uses are exactly what got through.
    let uses = admin.uses(&t1.token_id) + admin.uses(&t2.token_id);
    assert_eq!(uses as usize, through);
    // Counted under its deny reason on the gateways that refused.
    let denied: f64 = [&a, &b]
        .iter()
        .map(|gw| {
            gw.metrics_text()
                .lines()
                .find(|l| l.starts_with("tokengate_auth_denied_total{reason=\"rate_limited\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(denied as usize, limited.len());
    eprintln!(
        "10/s across two gateways: {} requests in {} ms, {through} forwarded (bound {bound}), {} refused",
        all.len(),
        end_ms - start_ms,
        limited.len()
    );
}

/// Per token or per identity, the 429 and its headers, no use spent, and a
/// PATCH that removes or changes the limit taking effect on the next request.
fn case_scope_headers_and_patch(cfg: GatewayConfig) {
    let upstream = Upstream::echo();
    let gw = Gateway::start(cfg.upstream(&upstream.url()));
    let admin = gw.admin();
    let marker = unique("scope");
    let url = format!("{}/v1/things", gw.url());
    let per_token = json!({"requests": 2, "windowSeconds": 60, "per": "token"});
    let (id, a) = admin.identity_with_token("member", json!({"accessTokenRateLimit": per_token}));
    let b = admin.create_token(&id, "b");
    for t in [&a, &a, &b, &b] {
        send(&url, &t.access_token, &marker)
            .unwrap()
            .expect_status(200);
    }
    let last_used = admin.get_token(&a.token_id)["accessTokenLastUsedAt"].clone();
    assert!(last_used.is_string());
    for t in [&a, &b] {
        let resp = send(&url, &t.access_token, &marker).unwrap();
        let wait = assert_rate_limited(&resp, "\"token\";q=2;w=60");
        assert!((1..=30).contains(&wait), "one request costs 30 s: {wait}");
        assert!(resp
            .expect_error(429)
            .contains("2 requests per 60 seconds per token"));
        assert!(!resp.body.contains(&t.access_token));
    }
    assert_eq!(forwarded(&upstream, &marker), 4);
    assert_eq!((admin.uses(&a.token_id), admin.uses(&b.token_id)), (2, 2));
    assert_eq!(
        admin.get_token(&a.token_id)["accessTokenLastUsedAt"],
        last_used,
        "a refusal stamps no lastUsedAt"
    );

    // Per identity: the two tokens now draw from one (fresh) bucket.
    let per_identity = json!({"requests": 3, "windowSeconds": 60, "burst": 3, "per": "identity"});
    let cfg = admin.update_token_auth(&id, json!({"accessTokenRateLimit": per_identity}));
    assert_eq!(cfg["accessTokenRateLimit"], per_identity);
    let statuses: Vec<u16> = [&a, &b, &a, &b]
        .iter()
        .map(|t| send(&url, &t.access_token, &marker).unwrap().status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429]);

    // Removed: applies at once, to tokens issued before the change too.
    let cfg = admin.update_token_auth(&id, json!({"accessTokenRateLimit": null}));
    assert_eq!(cfg["accessTokenRateLimit"], json!(null));
    for t in [&a, &b, &a, &b, &a] {
        send(&url, &t.access_token, &marker)
            .unwrap()
            .expect_status(200);
    }
    assert_eq!(forwarded(&upstream, &marker), 4 + 3 + 5);
    assert_eq!(admin.uses(&a.token_id) + admin.uses(&b.token_id), 4 + 3 + 5);
    // A PATCH of another field keeps the limit off; GET shows it.
    admin.update_token_auth(&id, json!({"accessTokenNumUsesLimit": 0}));
    let got = admin.ok(
        "GET",
        &format!("/api/v1/auth/token-auth/identities/{id}"),
        None,
    );
    assert_eq!(
        got["identityTokenAuth"]["accessTokenRateLimit"],
        json!(null)
    );
}

on_both_stores!(
    case_scope_headers_and_patch,
    scope_headers_and_patch_redis,
    scope_headers_and_patch_embedded
);

/// A route's `rate_limit` applies to identities without one of their own,
/// only on that route; an identity's own limit wins; the management API is
/// held to the caller identity's own limit.
fn case_route_default_and_management(cfg: GatewayConfig) {
    let upstream = Upstream::echo();
    let routes =
        "- {path: /limited, rate_limit: {requests: 2, window_seconds: 60}}\n- {path: /free}\n";
    let gw = Gateway::start(cfg.upstream(&upstream.url()).section("routes", routes));
    let admin = gw.admin();
    let marker = unique("route");
    let limited = format!("{}/limited/x", gw.url());
    let free = format!("{}/free/x", gw.url());
    let (id, t) = admin.identity_with_token("member", json!({}));
    let statuses: Vec<u16> = (0..3)
        .map(|_| send(&limited, &t.access_token, &marker).unwrap().status)
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    let resp = send(&limited, &t.access_token, &marker).unwrap();
    assert_rate_limited(&resp, "\"identity\";q=2;w=60");
    for _ in 0..4 {
        send(&free, &t.access_token, &marker)
            .unwrap()
            .expect_status(200);
    }
    // The identity's own limit replaces the route's.
    admin.update_token_auth(
        &id,
        json!({"accessTokenRateLimit": {"requests": 4, "windowSeconds": 60}}),
    );
    let statuses: Vec<u16> = (0..5)
        .map(|_| send(&limited, &t.access_token, &marker).unwrap().status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 429]);
    assert_eq!(forwarded(&upstream, &marker), 2 + 4 + 4);
    assert_eq!(admin.uses(&t.token_id), 2 + 4 + 4);

    // An admin identity's token on the management API: its own limit holds.
    let (_, boss) = admin.identity_with_token(
        "admin",
        json!({"accessTokenRateLimit": {"requests": 2, "windowSeconds": 60}}),
    );
    let as_boss = Admin::with_token(&gw.url(), &boss.access_token);
    for _ in 0..2 {
        as_boss
            .call("GET", "/api/v1/identities", None)
            .expect_status(200);
    }
    let resp = as_boss.call("GET", "/api/v1/identities", None);
    assert_rate_limited(&resp, "\"identity\";q=2;w=60");
    assert_eq!(admin.uses(&boss.token_id), 2);
}

on_both_stores!(
    case_route_default_and_management,
    route_default_and_management_redis,
    route_default_and_management_embedded
);

#[test]
fn bad_rate_limits_are_refused_naming_the_field() {
    let gw = Gateway::start(GatewayConfig::embedded_temp());
    let admin = gw.admin();
    let id = admin.create_identity(&unique("bad"), "member");
    for (body, field) in [
        (
            json!({"requests": 0, "windowSeconds": 1}),
            "accessTokenRateLimit.requests",
        ),
        (json!({"requests": 1}), "accessTokenRateLimit.windowSeconds"),
        (
            json!({"requests": 1, "windowSeconds": 86400, "burst": 2}),
            "accessTokenRateLimit.burst",
        ),
        (
            json!({"requests": 1, "windowSeconds": 1, "per": "org"}),
            "accessTokenRateLimit.per",
        ),
        (
            json!({"requests": 1, "windowSeconds": 1, "extra": 1}),
            "accessTokenRateLimit.extra",
        ),
        (json!(10), "accessTokenRateLimit"),
    ] {
        let resp = admin.call(
            "POST",
            &format!("/api/v1/auth/token-auth/identities/{id}"),
            Some(json!({"accessTokenRateLimit": body})),
        );
        resp.expect_error(422);
        assert_eq!(resp.json()["details"][0]["field"], field, "{body}");
    }
}
