//! Redis outages: while the store is down the gateway fails closed (503 JSON,
//! nothing forwarded, the management API refuses too); when Redis comes back
//! on the same port the same gateway process recovers by itself.

mod common;

use common::net::{bearer, Monitor};
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const UNAVAILABLE: &str = "token store unavailable";

/// Short store timeouts so an outage answers quickly.
fn config(redis: &Redis, upstream: &Upstream) -> GatewayConfig {
    GatewayConfig::redis(&redis.url())
        .redis_timeouts(300, 500, 1)
        .upstream(&upstream.url())
}

#[track_caller]
fn assert_unavailable(resp: &Resp, token: &str) {
    assert_eq!(resp.expect_error(503), UNAVAILABLE, "body: {}", resp.body);
    assert!(!resp.body.contains(token));
}

#[test]
fn redis_outage_fails_closed_and_recovers_without_a_gateway_restart() {
    let mut redis = Redis::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let upstream = Upstream::echo();
    let gw = Gateway::start(config(&redis, &upstream));
    let admin = gw.admin();
    let (id, token) = admin.identity_with_token("member", json!({}));
    let url = format!("{}/v1/things", gw.url());
    get_with_token(&url, &token.access_token).expect_status(200);
    assert_eq!(upstream.count(), 1);

    redis.kill();
    // With the near cache on, the gateway first notices that its
    // invalidation channel is gone (its connection closes with Redis), and
    // from then on checks every request in Redis. No write can happen in a
    // dead Redis, so the moment in between decides nothing stale.
    channel_down(&gw);

    for _ in 0..3 {
        let started = Instant::now();
        let resp = get_with_token(&url, &token.access_token);
        assert_unavailable(&resp, &token.access_token);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the 503 took {:?} with 300/500 ms store timeouts",
            started.elapsed()
        );
    }
    assert_eq!(
        upstream.count(),
        1,
        "a request was forwarded during the outage"
    );

    // A malformed token is still refused without the store.
    let mut malformed = token.access_token.clone().into_bytes();
    malformed[40] = if malformed[40] == b'A' { b'B' } else { b'A' };
    let malformed = String::from_utf8(malformed).expect("ASCII");
    assert_eq!(
        get_with_token(&url, &malformed).expect_error(401),
        "malformed access token"
    );

    // The management API fails closed as well.
    let resp = admin.call("GET", &format!("/api/v1/identities/{id}"), None);
    resp.expect_error(503);
    let resp = admin.call(
        "POST",
        "/api/v1/identities",
        Some(json!({"name": unique("during-outage"), "organizationId": ORG_ID})),
    );
    resp.expect_error(503);
    let resp = admin.call(
        "GET",
        &format!("/api/v1/auth/token-auth/tokens/{}", token.token_id),
        None,
    );
    resp.expect_error(503);
    assert_eq!(upstream.count(), 1);

    // Each failure is counted under the store operation that failed.
    for op in ["authenticate", "create_identity", "get_token"] {
        let name = format!("tokengate_store_operation_errors_total{{operation=\"{op}\"}}");
        let count = gw.metric(&name);
        assert!(count.is_some_and(|n| n >= 1.0), "{name}: {count:?}");
    }

    // Same port, data kept (AOF, fsync always): the gateway recovers alone.
    redis.restart();
    let mut statuses = Vec::new();
    eventually(Duration::from_secs(20), || {
        let resp = get_with_token(&url, &token.access_token);
        statuses.push(resp.status);
        resp.status == 200
    });
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "answers while Redis came back: {statuses:?}"
    );
    assert_eq!(
        upstream.count(),
        2,
        "exactly the one successful request was forwarded"
    );
    let rec = upstream.last();
    assert_eq!(rec.header("x-tokengate-identity-id"), Some(id.as_str()));
    assert!(!rec.has_header("authorization"));

    // Uses survived the crash, and no refused request was counted.
    assert_eq!(
        admin.get_token(&token.token_id)["accessTokenNumUses"].as_u64(),
        Some(2)
    );
    assert_eq!(admin.get_identity(&id)["id"], id.as_str());
    let (_, fresh) = admin.identity_with_token("member", json!({}));
    get_with_token(&url, &fresh.access_token).expect_status(200);

    // Back to one round trip per request: the script is cached again.
    let mut monitor = Monitor::start(&redis);
    get_with_token(&url, &token.access_token).expect_status(200);
    assert_eq!(monitor.client_commands(&redis), ["EVALSHA"]);
    assert!(!gw.log().contains(&token.access_token));
}

#[test]
fn redis_restart_without_data_fails_closed_for_lost_tokens() {
    let mut redis = Redis::start();
    let upstream = Upstream::echo();
    let gw = Gateway::start(config(&redis, &upstream));
    let admin = gw.admin();
    let (_, token) = admin.identity_with_token("member", json!({"accessTokenNumUsesLimit": 3}));
    let url = format!("{}/v1/things", gw.url());
    get_with_token(&url, &token.access_token).expect_status(200);

    // Nothing persisted: the token, its counter and its identity are gone.
    redis.restart();
    assert_eq!(redis.dbsize(), 0);
    let mut last = None;
    eventually(Duration::from_secs(20), || {
        let resp = get_with_token(&url, &token.access_token);
        assert_ne!(
            resp.status, 200,
            "a token lost with its store was let through (fail open)"
        );
        let done = resp.status != 503;
        last = Some(resp);
        done
    });
    let resp = last.expect("polled at least once");
    assert_eq!(resp.expect_error(401), "invalid access token");
    assert_eq!(upstream.count(), 1);

    // The store works again: new identities and tokens can be issued and used.
    let (id, fresh) = admin.identity_with_token("member", json!({}));
    let mut monitor = Monitor::start(&redis);
    let auth = bearer(&fresh.access_token);
    http("GET", &url, &[("Authorization", &auth)], None).expect_status(200);
    assert_eq!(
        upstream.last().header("x-tokengate-identity-id"),
        Some(id.as_str())
    );
    assert_eq!(
        monitor.client_commands(&redis),
        ["EVALSHA"],
        "one round trip per request after the restart"
    );
}

/// Waits (bounded) until the gateway reports its near cache off, which it
/// always is with the cache disabled.
fn channel_down(gw: &Gateway) {
    eventually(Duration::from_secs(5), || {
        let metrics = http("GET", &format!("{}/metrics", gw.admin_url()), &[], None);
        metrics.status == 200 && metrics.body.contains("tokengate_store_cache_coherent 0")
    });
}
