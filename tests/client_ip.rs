//! Trusted IPs and the client address: the TCP peer, or, behind a trusted
//! proxy, the first untrusted X-Forwarded-For hop from the right. Clients at
//! 127.0.0.2 are real sockets bound to that address (Linux routes all of
//! 127.0.0.0/8 to lo), talking to the gateway on 127.0.0.1.

mod common;

use common::net::{bearer, raw_http_from};
use common::*;
use serde_json::json;

fn trusted_for(cidr: &str) -> serde_json::Value {
    json!({"accessTokenTrustedIps": [{"ipAddress": cidr}]})
}

/// GET /whoami from a socket bound to `from`, with the token and one
/// X-Forwarded-For header line per entry of `xff`.
#[track_caller]
fn request(gw: &Gateway, from: &str, token: &str, xff: &[&str]) -> Resp {
    let auth = bearer(token);
    let mut headers = vec![("Authorization", auth.as_str())];
    for value in xff {
        headers.push(("X-Forwarded-For", value));
    }
    raw_http_from(
        from,
        &gw.addr(),
        &raw_request("GET", "/whoami", &headers, None),
    )
}

/// Expects the 403 naming `ip`, nothing forwarded, no use consumed.
#[track_caller]
fn refused_for_ip(
    gw: &Gateway,
    upstream: &Upstream,
    token: &CreatedToken,
    from: &str,
    xff: &[&str],
    ip: &str,
) {
    let admin = gw.admin();
    let count = upstream.count();
    let used = admin.uses(&token.token_id);
    let resp = request(gw, from, &token.access_token, xff);
    assert_eq!(
        resp.expect_error(403),
        format!("IP {ip} is not in the token's trusted IPs"),
        "request from {from} with X-Forwarded-For {xff:?}"
    );
    assert!(!resp.body.contains(&token.access_token));
    assert_eq!(upstream.count(), count, "a refused request was forwarded");
    assert_eq!(
        admin.uses(&token.token_id),
        used,
        "a request refused for its IP consumed a use (from {from}, X-Forwarded-For {xff:?})"
    );
}

/// Expects the request to be forwarded and counted.
#[track_caller]
fn allowed(gw: &Gateway, upstream: &Upstream, token: &CreatedToken, from: &str, xff: &[&str]) {
    let admin = gw.admin();
    let count = upstream.count();
    let used = admin.uses(&token.token_id);
    let resp = request(gw, from, &token.access_token, xff);
    assert_eq!(
        resp.status, 200,
        "request from {from} with X-Forwarded-For {xff:?}; body: {}",
        resp.body
    );
    assert_eq!(upstream.count(), count + 1);
    assert_eq!(
        upstream.last().header("x-tokengate-token-id"),
        Some(token.token_id.as_str())
    );
    assert_eq!(admin.uses(&token.token_id), used + 1);
}

// ---------------------------------------------------------------------------

fn case_untrusted_peer(cfg: GatewayConfig) {
    let upstream = Upstream::echo();
    let gw = Gateway::start(cfg.upstream(&upstream.url()));
    let admin = gw.admin();
    let (id, token) = admin.identity_with_token("member", trusted_for("127.0.0.1/32"));

    refused_for_ip(&gw, &upstream, &token, "127.0.0.2", &[], "127.0.0.2");
    // X-Forwarded-For from a peer that is not a trusted proxy is ignored.
    refused_for_ip(
        &gw,
        &upstream,
        &token,
        "127.0.0.2",
        &["127.0.0.1"],
        "127.0.0.2",
    );
    refused_for_ip(
        &gw,
        &upstream,
        &token,
        "127.0.0.2",
        &["10.0.0.1, 127.0.0.1"],
        "127.0.0.2",
    );
    assert_eq!(admin.uses(&token.token_id), 0);
    assert_eq!(upstream.count(), 0);

    // The same token from 127.0.0.1 works, whatever the client claims.
    allowed(&gw, &upstream, &token, "127.0.0.1", &[]);
    allowed(&gw, &upstream, &token, "127.0.0.1", &["6.6.6.6"]);
    assert_eq!(admin.uses(&token.token_id), 2);

    // A bare address is a /32; a wider block takes its whole range.
    admin.update_token_auth(&id, trusted_for("127.0.0.2"));
    let bare = admin.create_token(&id, "bare");
    allowed(&gw, &upstream, &bare, "127.0.0.2", &[]);
    assert_eq!(
        upstream.last().header("x-tokengate-client-ip"),
        Some("127.0.0.2")
    );
    refused_for_ip(&gw, &upstream, &bare, "127.0.0.1", &[], "127.0.0.1");
    admin.update_token_auth(&id, trusted_for("127.0.0.0/30"));
    let block = admin.create_token(&id, "block");
    allowed(&gw, &upstream, &block, "127.0.0.1", &[]);
    allowed(&gw, &upstream, &block, "127.0.0.2", &[]);
    refused_for_ip(&gw, &upstream, &block, "127.0.0.4", &[], "127.0.0.4");

    // Tokens keep the trusted IPs they were issued with.
    refused_for_ip(&gw, &upstream, &token, "127.0.0.2", &[], "127.0.0.2");
}

#[test]
fn untrusted_ip_is_refused_without_consuming_a_use_redis() {
    let redis = Redis::start();
    case_untrusted_peer(GatewayConfig::redis(&redis.url()));
}

#[test]
fn untrusted_ip_is_refused_without_consuming_a_use_embedded() {
    case_untrusted_peer(GatewayConfig::embedded_temp());
}

// ---------------------------------------------------------------------------

fn case_trusted_proxy(cfg: GatewayConfig) {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        cfg.upstream(&upstream.url())
            .trusted_proxies(&["127.0.0.1/32"]),
    );
    let admin = gw.admin();

    // The proxy's own token: the header now decides who the client is.
    let (_, local) = admin.identity_with_token("member", trusted_for("127.0.0.1/32"));
    refused_for_ip(
        &gw,
        &upstream,
        &local,
        "127.0.0.1",
        &["127.0.0.2"],
        "127.0.0.2",
    );
    // Without the header (or with only trusted hops) the proxy is the client.
    allowed(&gw, &upstream, &local, "127.0.0.1", &[]);
    allowed(&gw, &upstream, &local, "127.0.0.1", &["127.0.0.1"]);

    let (_, far) = admin.identity_with_token("member", trusted_for("10.1.2.3/32"));
    // 10.1.2.3 is the first untrusted hop from the right; what it was told is ignored.
    allowed(&gw, &upstream, &far, "127.0.0.1", &["127.0.0.9, 10.1.2.3"]);
    allowed(&gw, &upstream, &far, "127.0.0.1", &["6.6.6.6, 10.1.2.3"]);
    // The upstream is told the address tokengate resolved, not what the client claimed.
    assert_eq!(
        upstream.last().header("x-tokengate-client-ip"),
        Some("10.1.2.3")
    );
    // Trusted hops on the right are skipped.
    allowed(&gw, &upstream, &far, "127.0.0.1", &["10.1.2.3, 127.0.0.1"]);
    // Several header lines form one list, in order.
    allowed(
        &gw,
        &upstream,
        &far,
        "127.0.0.1",
        &["10.1.2.3", "127.0.0.1"],
    );
    assert_eq!(admin.uses(&far.token_id), 4);

    // The leftmost value is never believed on its own.
    refused_for_ip(
        &gw,
        &upstream,
        &far,
        "127.0.0.1",
        &["10.1.2.3, 127.0.0.9"],
        "127.0.0.9",
    );
    refused_for_ip(
        &gw,
        &upstream,
        &far,
        "127.0.0.1",
        &["10.1.2.3, 6.6.6.6"],
        "6.6.6.6",
    );
    refused_for_ip(
        &gw,
        &upstream,
        &far,
        "127.0.0.1",
        &["6.6.6.6, 127.0.0.1"],
        "6.6.6.6",
    );
    refused_for_ip(
        &gw,
        &upstream,
        &far,
        "127.0.0.1",
        &["10.1.2.3", "6.6.6.6"],
        "6.6.6.6",
    );
    // A peer that is not a trusted proxy cannot set the header at all.
    refused_for_ip(
        &gw,
        &upstream,
        &far,
        "127.0.0.2",
        &["10.1.2.3"],
        "127.0.0.2",
    );
    assert_eq!(admin.uses(&far.token_id), 4);
}

#[test]
fn forwarded_for_is_honoured_only_from_trusted_proxies_redis() {
    let redis = Redis::start();
    case_trusted_proxy(GatewayConfig::redis(&redis.url()));
}

#[test]
fn forwarded_for_is_honoured_only_from_trusted_proxies_embedded() {
    case_trusted_proxy(GatewayConfig::embedded_temp());
}
