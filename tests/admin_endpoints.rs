//! The admin listener: /healthz, /readyz (follows the store) and /metrics
//! (counts by bounded labels; never a token or an identity).

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn metrics_count_outcomes_and_reasons_without_identifying_anyone() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let admin = gw.admin();
    let (id, token) = admin.identity_with_token("member", json!({"accessTokenNumUsesLimit": 1}));
    assert_eq!(
        get_with_token(&format!("{}/a", gw.url()), &token.access_token).status,
        200
    );
    assert_eq!(
        get_with_token(&format!("{}/a", gw.url()), &token.access_token).status,
        401
    );
    assert_eq!(get(&format!("{}/a", gw.url())).status, 401);

    // Requests are counted in Pingora's logging step, just after the answer
    // is sent, so the last one may not be in yet when the scrape arrives.
    let scrape = || {
        let metrics = get(&format!("{}/metrics", gw.admin_url()));
        assert_eq!(metrics.status, 200);
        metrics.body
    };
    let mut text = String::new();
    poll_until(Duration::from_secs(5), || {
        text = scrape();
        text.contains(r#"tokengate_requests_total{outcome="denied"} 2"#)
    });
    assert!(
        text.contains(r#"tokengate_requests_total{outcome="forwarded"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"tokengate_requests_total{outcome="denied"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"tokengate_auth_denied_total{reason="usage_limit"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("tokengate_auth_duration_seconds_count 2"),
        "{text}"
    );
    // The one forwarded request: the upstream's 200, and how long it took.
    assert!(
        text.contains(r#"tokengate_upstream_responses_total{class="2xx"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("tokengate_upstream_duration_seconds_count 1"),
        "{text}"
    );
    // The management calls of `identity_with_token`, by route, never by id.
    assert!(
        text.contains(
            r#"tokengate_management_requests_total{method="POST",route="identities",status="2xx"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"tokengate_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    for secret_or_id in [
        token.access_token.as_str(),
        token.token_id.as_str(),
        id.as_str(),
    ] {
        assert!(
            !text.contains(secret_or_id),
            "metrics mention {secret_or_id}"
        );
    }
}

#[test]
fn readiness_follows_the_store_and_liveness_does_not() {
    let mut redis = Redis::start();
    let gw = Gateway::start(GatewayConfig::redis(&redis.url()).redis_timeouts(300, 300, 0));
    let ready = || get(&format!("{}/readyz", gw.admin_url())).status;
    let live = || get(&format!("{}/healthz", gw.admin_url())).status;
    assert_eq!((ready(), live()), (200, 200));
    redis.kill();
    eventually(Duration::from_secs(10), || ready() == 503);
    assert_eq!(live(), 200);
    redis.restart();
    eventually(Duration::from_secs(20), || ready() == 200);
}
