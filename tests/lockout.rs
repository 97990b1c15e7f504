//! Lockout: an address that keeps failing to authenticate to the management
//! API (wrong admin keys, unknown tokens) is refused with 429 for a while,
//! even with the right key, then let in again; other addresses and the
//! proxied API are not affected; each lockout is counted.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn repeated_failed_authentication_locks_the_address_out_for_a_while() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .admin_extra("lockout: {threshold: 3, window_seconds: 60, duration_seconds: 2}\n")
            .server_extra("header_timeout_seconds: 2\n"),
    );
    let (_, token) = gw.admin().identity_with_token("member", json!({}));
    let guesser = Admin::with_token(&gw.url(), "not-the-admin-key");
    for _ in 0..3 {
        guesser
            .call("GET", "/api/v1/identities", None)
            .expect_status(401);
    }
    // Locked out: even the right key is refused, before it is checked.
    let resp = gw.admin().call("GET", "/api/v1/identities", None);
    assert_eq!(resp.status, 429, "{}", resp.body);
    assert!(
        resp.body.contains("too many failed authentications"),
        "{}",
        resp.body
    );
    let wait: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After: {wait}");
    // Refused before its body is waited for (or memory set aside for it): a
    // body announced and never sent gets the 429, not the body's 408.
    let announced = raw_http_resp(
        &gw.addr(),
        "POST /api/v1/identities HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 1000000\r\nConnection: close\r\n\r\n{",
    );
    assert_eq!(announced.status, 429, "{}", announced.body);
    // Renewals from the address too: guessing tokens is the same attack.
    assert_eq!(gw.admin().renew(&token.access_token).status, 429);
    // The proxied API is not the management API: it is not locked.
    get_with_token(&format!("{}/v1/things", gw.url()), &token.access_token).expect_status(200);
    assert_eq!(gw.metric("tokengate_management_lockouts_total"), Some(1.0));
    assert!(gw.log().contains("locked out of the management API"));

    // After the duration, the right key works and clears the count.
    eventually(Duration::from_secs(10), || {
        gw.admin().call("GET", "/api/v1/identities", None).status == 200
    });
    guesser
        .call("GET", "/api/v1/identities", None)
        .expect_status(401);
    gw.admin()
        .call("GET", "/api/v1/identities", None)
        .expect_status(200);
    guesser
        .call("GET", "/api/v1/identities", None)
        .expect_status(401);
    guesser
        .call("GET", "/api/v1/identities", None)
        .expect_status(401);
    gw.admin()
        .call("GET", "/api/v1/identities", None)
        .expect_status(200);
    assert_eq!(gw.metric("tokengate_management_lockouts_total"), Some(1.0));
}
