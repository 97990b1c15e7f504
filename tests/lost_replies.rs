//! Redis replies lost after the check script ran (a link cut, a Redis that
//! froze): a request that gets through counts one use, and a request refused
//! with 503 counts none. A relay between gateway and Redis loses the replies.

#![allow(clippy::unwrap_used)]

mod common;

use common::relay::{Relay, Replies};
use common::*;
use serde_json::json;
use std::time::Duration;

/// A gateway whose Redis connection goes through `relay`, with no near
/// cache (its own connection would share the relay's losses) and short
/// store timeouts.
fn gateway(relay: &Relay, upstream: &Upstream, response_ms: u64, retries: u32) -> Gateway {
    Gateway::start(
        GatewayConfig::redis(&format!("redis://{}", relay.addr()))
            .store_cache(Some("{enabled: false}"))
            .redis_timeouts(1000, response_ms, retries)
            .upstream(&upstream.url()),
    )
}

#[test]
fn a_check_whose_reply_was_lost_is_sent_again_and_counted_once() {
    const LIMIT: u64 = 5;
    let redis = Redis::start();
    let relay = Relay::start(&redis.addr());
    let upstream = Upstream::echo();
    let gw = gateway(&relay, &upstream, 1000, 2);
    let (id, token) = gw
        .admin()
        .identity_with_token("member", json!({"accessTokenNumUsesLimit": LIMIT}));
    for i in 0..LIMIT {
        if i % 2 == 1 {
            relay.set(Replies::LoseNextAndCut);
        }
        let resp = get_with_token(&format!("{}/v1/things", gw.url()), &token.access_token);
        assert_eq!(resp.status, 200, "request {i}: {}", resp.body);
        // A repeat is answered from memory, with the identity as first found.
        let seen = upstream.last();
        assert_eq!(seen.header("x-tokengate-identity-id"), Some(id.as_str()));
        assert!(seen
            .header("x-tokengate-identity-name")
            .is_some_and(|n| n.starts_with("identity-")));
        assert_eq!(seen.header("x-tokengate-org-role"), Some("member"));
    }
    assert_eq!(relay.lost(), 2, "two replies were lost on the way back");
    let over = get_with_token(&format!("{}/v1/things", gw.url()), &token.access_token);
    assert_eq!(over.status, 401, "past the limit: {}", over.body);
    assert_eq!(upstream.count() as u64, LIMIT);
    assert_eq!(
        gw.admin().uses(&token.token_id),
        LIMIT,
        "no use counted twice"
    );
}

#[test]
fn a_check_that_never_answers_is_refused_and_its_use_given_back() {
    const LIMIT: u64 = 3;
    let redis = Redis::start();
    let relay = Relay::start(&redis.addr());
    let upstream = Upstream::echo();
    let gw = gateway(&relay, &upstream, 300, 1);
    let (_, token) = gw
        .admin()
        .identity_with_token("member", json!({"accessTokenNumUsesLimit": LIMIT}));
    let call = || get_with_token(&format!("{}/v1/things", gw.url()), &token.access_token);
    // The first call also loads the script into Redis.
    assert_eq!(call().status, 200);

    // Redis runs the check (and counts the use), then its answers are late:
    // later than the gateway waits.
    redis.reset_stats();
    relay.set(Replies::Hold);
    let refused = call();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(relay.lost() >= 1, "Redis did answer, too late");
    assert!(
        redis.command_calls("evalsha") >= 1,
        "the check ran in Redis (and counted its use)"
    );
    relay.set(Replies::Pass);

    // The gateway gives that use back once Redis's answers flow again.
    assert!(
        poll_until(Duration::from_secs(15), || gw.admin().uses(&token.token_id)
            == 1),
        "the refused request's use was never given back: {} uses",
        gw.admin().uses(&token.token_id)
    );
    assert_eq!(upstream.count(), 1, "the refused request was not forwarded");
    for i in 1..LIMIT {
        let resp = call();
        assert_eq!(resp.status, 200, "request {i}: {}", resp.body);
    }
    let over = call();
    assert_eq!(over.status, 401, "past the limit: {}", over.body);
    assert_eq!(upstream.count() as u64, LIMIT);
}
