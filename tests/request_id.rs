//! Request ids: a client's plain `X-Request-Id` is kept, anything else is
//! replaced by a fresh id; the same id reaches the upstream, comes back in
//! the response's `X-Request-Id`, and is the `reqId` of every error body
//! (refusals, the management API, upstream failures).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;

const HEADER: &str = "x-request-id";

/// The request the upstream saw with this id, found by it: another test's
/// gateway may send to our upstream too, so `last()` could be theirs.
#[track_caller]
fn seen_with(upstream: &Upstream, id: &str) -> Recorded {
    let mut all: Vec<Recorded> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.header_all(HEADER).contains(&id))
        .collect();
    assert_eq!(all.len(), 1, "requests upstream with id {id}");
    all.remove(0)
}

fn is_fresh(id: &str) -> bool {
    id.len() == 20 && id.starts_with("req-") && id[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn a_clients_id_goes_upstream_and_comes_back() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let (_, token) = gw.admin().identity_with_token("member", json!({}));
    let auth = format!("Bearer {}", token.access_token);
    let url = format!("{}/v1/things", gw.url());

    let resp = http(
        "GET",
        &url,
        &[("Authorization", &auth), ("X-Request-Id", "trace-42.a:b_c")],
        None,
    );
    resp.expect_status(200);
    assert_eq!(resp.header(HEADER), Some("trace-42.a:b_c"));
    seen_with(&upstream, "trace-42.a:b_c");

    // None sent: a fresh one, the same on both sides.
    let resp = http("GET", &url, &[("Authorization", &auth)], None);
    let id = resp.header(HEADER).unwrap().to_string();
    assert!(is_fresh(&id), "{id}");
    seen_with(&upstream, &id);
    let again = http("GET", &url, &[("Authorization", &auth)], None);
    assert_ne!(again.header(HEADER), Some(id.as_str()), "ids repeat");
}

#[test]
fn ids_that_cannot_be_passed_on_safely_are_replaced() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let (_, token) = gw.admin().identity_with_token("member", json!({}));
    let auth = format!("Bearer {}", token.access_token);
    let url = format!("{}/v1/things", gw.url());
    let long = "a".repeat(129);
    for sent in [
        vec!["has space"],
        vec!["a/b"],
        vec!["quote\"d"],
        vec![long.as_str()],
        vec!["one", "two"],
        // A token fits the alphabet: it must not travel upstream as an id.
        vec![token.access_token.as_str()],
    ] {
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend(sent.iter().map(|v| ("X-Request-Id", *v)));
        let resp = http("GET", &url, &headers, None);
        resp.expect_status(200);
        let id = resp.header(HEADER).unwrap().to_string();
        assert!(is_fresh(&id), "{sent:?} -> {id}");
        let seen = seen_with(&upstream, &id);
        assert_eq!(seen.header_all(HEADER), vec![id.as_str()], "{sent:?}");
    }
}

#[test]
fn every_error_body_names_the_requests_id() {
    // Port 1: nothing listens there, and no other test's upstream can take it
    // (a free port picked as "unreachable" could be another test's a moment later).
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream("http://127.0.0.1:1"));
    let url = format!("{}/v1/things", gw.url());

    // A refusal before the store.
    let resp = http("GET", &url, &[("X-Request-Id", "no-token-1")], None);
    resp.expect_error(401);
    assert_eq!(resp.header(HEADER), Some("no-token-1"));
    assert_eq!(resp.json()["reqId"], "no-token-1");

    // The management API.
    let resp = http(
        "GET",
        &format!("{}/api/v1/identities/not-a-uuid", gw.url()),
        &[("X-Request-Id", "mgmt-1")],
        None,
    );
    assert!(resp.status >= 400, "{}", resp.status);
    assert_eq!(resp.header(HEADER), Some("mgmt-1"));
    assert_eq!(resp.json()["reqId"], "mgmt-1");

    // The upstream failing.
    let (_, token) = gw.admin().identity_with_token("member", json!({}));
    let auth = format!("Bearer {}", token.access_token);
    let resp = http("GET", &url, &[("Authorization", &auth)], None);
    resp.expect_error(502);
    let id = resp.header(HEADER).unwrap();
    assert!(is_fresh(id), "{id}");
    assert_eq!(resp.json()["reqId"], id);
}
