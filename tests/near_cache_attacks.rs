//! What the near cache cannot hear, and the backstop that bounds it.
//!
//! SWAPDB replaces the data a gateway reads without Redis naming a single
//! key on the invalidation channel (no `invalidate` push is sent), so a token
//! that is gone from the gateway's database stays allowed from another
//! gateway's copy until `store.cache.max_age_seconds` (the README says to
//! rename SWAPDB away, and the gateway warns when it is available). This
//! proves the maximum age really ends such a copy.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;

const HITS: &str = "tokengate_store_cache_hits_total";

#[test]
fn what_swapdb_changes_is_seen_within_the_maximum_age() {
    let redis = Redis::start();
    let upstream = Upstream::echo();
    let cfg = || {
        GatewayConfig::redis(&redis.url())
            .upstream(&upstream.url())
            .store_cache(Some("{enabled: true, max_age_seconds: 1}"))
    };
    let a = Gateway::start(cfg());
    let b = Gateway::start(cfg());
    let (_id, token) = a.admin().identity_with_token("member", json!({}));
    let auth = format!("Bearer {}", token.access_token);
    let get = |gw: &Gateway| {
        http(
            "GET",
            &format!("{}/v1/things", gw.url()),
            &[("Authorization", &auth)],
            None,
        )
    };

    // B holds the token: a request answered from its copy (the hit counter moves).
    get(&b).expect_status(200);
    let mut from_cache = false;
    for _ in 0..6 {
        let before = b.metric(HITS).unwrap();
        get(&b).expect_status(200);
        if b.metric(HITS).unwrap() > before {
            from_cache = true;
            break;
        }
    }
    assert!(from_cache, "B never served the token from its cache");

    // The gateways' database is swapped for an empty one: the token is gone.
    assert_eq!(redis.cmd(&["SWAPDB", "0", "1"]), "OK");
    get(&a).expect_error(401);
    // B heard nothing; its copy ends at its maximum age, and from then on B
    // refuses every time.
    eventually(std::time::Duration::from_secs(5), || get(&b).status == 401);
    for _ in 0..20 {
        get(&b).expect_error(401);
    }
    assert!(
        b.log().contains("accepts SWAPDB"),
        "the gateway did not warn that SWAPDB is available"
    );
}
