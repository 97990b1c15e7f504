//! Token renewal (`POST /api/v1/auth/token/renew`, no Authorization header)
//! through a real gateway on both stores, in real time with waits of a few
//! seconds: a renewal before expiry extends the token by its TTL, never past
//! its MaxTTL (then it dies with "token reached its maximum TTL"); a periodic
//! token renews back to its period and outlives its MaxTTL; a renewal returns
//! the same token string, reports the seconds actually left, keeps the use
//! count, and is refused for a revoked, expired or unknown token.
//!
//! Timing: the gateway stamps a token's creation somewhere between the
//! moments the test sent the request and got the answer. "Past an expiry"
//! checks wait from the answer (so they are past it for sure); "still alive"
//! checks have most of a second of slack.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokengate::token::{fill_random, AccessToken};

const RENEW: &str = "/api/v1/auth/token/renew";

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Header carried by every request this test proxies. Other tests'
/// gateways may send to our echo upstream (a port they took for
/// "unreachable" can be ours a moment later), so our requests are counted by
/// this marker.
const MARKER: &str = "x-test-marker";

struct Env {
    upstream: Upstream,
    gw: Gateway,
    admin: Admin,
    marker: String,
}

impl Env {
    fn start(cfg: GatewayConfig) -> Env {
        let upstream = Upstream::echo();
        let gw = Gateway::start(cfg.upstream(&upstream.url()));
        let admin = gw.admin();
        Env {
            upstream,
            gw,
            admin,
            marker: unique("renewal"),
        }
    }

    /// A fresh identity with Token Auth `config` and one token; also returns
    /// the moment the creation answer arrived (the token was created before it).
    #[track_caller]
    fn token(&self, config: Value) -> (CreatedToken, Instant) {
        let id = self.admin.create_identity(&unique("renewer"), "member");
        self.admin.attach_token_auth(&id, config);
        let token = self.admin.create_token(&id, &unique("token"));
        (token, Instant::now())
    }

    fn proxy(&self, token: &str) -> Resp {
        let auth = format!("Bearer {token}");
        http(
            "GET",
            &format!("{}/v1/things", self.gw.url()),
            &[("Authorization", &auth), (MARKER, &self.marker)],
            None,
        )
    }

    /// How many of this test's requests reached the upstream.
    fn forwarded(&self) -> usize {
        self.upstream
            .requests()
            .iter()
            .filter(|r| r.header(MARKER) == Some(self.marker.as_str()))
            .count()
    }

    #[track_caller]
    fn works(&self, token: &str, when: &str) {
        let resp = self.proxy(token);
        assert_eq!(resp.status, 200, "{when}: {}", resp.body);
    }

    /// The proxy refuses `token` with a 401 and `message`, forwarding nothing.
    #[track_caller]
    fn dead(&self, token: &str, message: &str) {
        let before = self.forwarded();
        let resp = self.proxy(token);
        assert_eq!(resp.expect_error(401), message, "body: {}", resp.body);
        assert!(!resp.body.contains(token));
        assert_eq!(self.forwarded(), before);
    }

    /// A successful renewal of `token`: 200, the same token string, the
    /// contract's shape; returns `expiresIn`.
    #[track_caller]
    fn renew(&self, token: &CreatedToken) -> u64 {
        let resp = self.admin.renew(&token.access_token);
        resp.expect_status(200);
        let v = resp.json();
        assert_eq!(
            v["accessToken"], token.access_token,
            "a renewal must return the same token string"
        );
        assert_eq!(v["tokenType"], "Bearer");
        assert_eq!(
            v["accessTokenMaxTTL"], token.raw["accessTokenMaxTTL"],
            "accessTokenMaxTTL"
        );
        v["expiresIn"]
            .as_u64()
            .unwrap_or_else(|| panic!("no numeric expiresIn: {v}"))
    }

    /// A refused renewal: 401 with `message`, the token not in the body.
    #[track_caller]
    fn renew_refused(&self, token: &str, message: &str) {
        let resp = self.admin.renew(token);
        assert_eq!(resp.expect_error(401), message, "body: {}", resp.body);
        assert!(
            token.is_empty() || !resp.body.contains(token),
            "the error body has the token"
        );
    }

    fn uses(&self, token: &CreatedToken) -> u64 {
        self.admin.get_token(&token.token_id)["accessTokenNumUses"]
            .as_u64()
            .unwrap()
    }
}

// ---------------------------------------------------------------------------

/// TTL 2 s, MaxTTL 60 s: renewed after 1.2 s, the token lives past its
/// original expiry, until 2 s after the renewal.
fn case_renewal_extends_by_the_ttl(cfg: GatewayConfig) {
    let env = Env::start(cfg);
    let (token, created) = env.token(json!({"accessTokenTTL": 2, "accessTokenMaxTTL": 60}));
    let t = &token.access_token;
    env.works(t, "fresh");

    sleep_until(created + ms(1200));
    let left = env.renew(&token);
    let renewed = Instant::now();
    assert!(
        (1..=2).contains(&left),
        "expiresIn {left} after a renewal with TTL 2"
    );
    let record = env.admin.get_token(&token.token_id);
    assert!(
        record["accessTokenLastRenewedAt"].is_string(),
        "lastRenewedAt not set: {record}"
    );

    // Past the original expiry (creation + 2 s), inside the renewed one.
    sleep_until(created + ms(2150));
    env.works(t, "after the original expiry, renewed");

    // The renewal gave 2 s, not more.
    sleep_until(renewed + ms(2100));
    env.dead(t, "token expired");
    env.renew_refused(t, "token expired");
}

on_both_stores!(
    case_renewal_extends_by_the_ttl,
    renewal_extends_by_the_ttl_redis,
    renewal_extends_by_the_ttl_embedded
);

/// TTL 3 s, MaxTTL 4 s: renewed after 2 s, the token gets what MaxTTL leaves
/// (under 2 s, not 3), outlives its TTL, dies at MaxTTL and cannot be renewed.
fn case_renewal_stops_at_max_ttl(cfg: GatewayConfig) {
    let env = Env::start(cfg);
    let (token, created) = env.token(json!({"accessTokenTTL": 3, "accessTokenMaxTTL": 4}));
    let t = &token.access_token;
    assert_eq!(token.raw["accessTokenMaxTTL"], 4);

    sleep_until(created + ms(2000));
    let left = env.renew(&token);
    assert!(
        left <= 2,
        "renewed 2 s into a 4 s MaxTTL with TTL 3: expiresIn {left}, more than MaxTTL leaves"
    );

    // Past the TTL from creation: alive thanks to the renewal.
    sleep_until(created + ms(3100));
    env.works(t, "after the TTL, renewed, before MaxTTL");

    // Past MaxTTL from creation: dead, though TTL from the renewal (2 + 3 s) is not over.
    sleep_until(created + ms(4050));
    env.dead(t, "token reached its maximum TTL");
    env.renew_refused(t, "token reached its maximum TTL");
    env.dead(t, "token reached its maximum TTL");
}

on_both_stores!(
    case_renewal_stops_at_max_ttl,
    renewal_stops_at_max_ttl_redis,
    renewal_stops_at_max_ttl_embedded
);

/// Period 2 s with TTL and MaxTTL of 1 s: each renewal resets the expiry to
/// the period, and the token lives on past its MaxTTL; unrenewed, it expires.
fn case_periodic_token_renews_to_its_period(cfg: GatewayConfig) {
    let env = Env::start(cfg);
    let (token, created) = env.token(json!({
        "accessTokenTTL": 1,
        "accessTokenMaxTTL": 1,
        "accessTokenPeriod": 2,
    }));
    let t = &token.access_token;
    assert!(
        (1..=2).contains(&token.expires_in),
        "a periodic token's expiresIn at creation: {}",
        token.expires_in
    );
    assert_eq!(token.raw["tokenData"]["accessTokenPeriod"], 2);

    sleep_until(created + ms(1200));
    let left = env.renew(&token);
    let first_renewal = Instant::now();
    assert!((1..=2).contains(&left), "expiresIn {left} with period 2");

    // Past MaxTTL (1 s) and past the first period (2 s).
    sleep_until(created + ms(2100));
    env.works(t, "past MaxTTL and the first period, renewed");
    let left = env.renew(&token);
    let second_renewal = Instant::now();
    assert!((1..=2).contains(&left), "expiresIn {left} with period 2");

    // Past the first renewal's period: alive thanks to the second.
    sleep_until(first_renewal + ms(2100));
    env.works(t, "past the first renewal's period, renewed again");

    // Not renewed again: it expires at the end of its period.
    sleep_until(second_renewal + ms(2100));
    env.dead(t, "token expired");
    env.renew_refused(t, "token expired");
}

on_both_stores!(
    case_periodic_token_renews_to_its_period,
    periodic_token_renews_to_its_period_redis,
    periodic_token_renews_to_its_period_embedded
);

/// No waiting: renewal keeps the token string and the use count, needs no
/// Authorization header, and is refused for revoked, deleted, unknown or
/// malformed tokens.
fn case_renewal_keeps_uses_and_refuses_dead_tokens(cfg: GatewayConfig) {
    let env = Env::start(cfg);
    let (token, _) = env.token(json!({
        "accessTokenTTL": 3600,
        "accessTokenMaxTTL": 7200,
        "accessTokenNumUsesLimit": 3,
    }));
    let t = &token.access_token;

    // Renewal does not reset the use count: three uses in all, two renewals.
    env.works(t, "use 1");
    let left = env.renew(&token);
    assert!(
        (3590..=3600).contains(&left),
        "expiresIn {left} right after renewing with TTL 3600"
    );
    assert_eq!(env.uses(&token), 1, "a renewal changed the use count");
    env.works(t, "use 2");
    env.renew(&token);
    assert_eq!(env.uses(&token), 2, "a renewal changed the use count");
    env.works(t, "use 3");
    env.dead(t, "token usage limit reached");
    assert_eq!(env.uses(&token), 3);
    // Renewal itself is not a use, and is not forwarded.
    assert_eq!(env.forwarded(), 3);

    // Renewal needs no Authorization header (env.renew sends none); one sent
    // anyway, even a wrong one, does not matter.
    let (other, _) = env.token(json!({}));
    let resp = http(
        "POST",
        &format!("{}{RENEW}", env.gw.url()),
        &[("Authorization", "Bearer not-the-admin-key")],
        Some(&json!({ "accessToken": other.access_token }).to_string()),
    );
    resp.expect_status(200);
    assert_eq!(resp.json()["accessToken"], other.access_token);

    // Revoked by id, revoked by its holder, identity deleted: 401.
    let (by_id, _) = env.token(json!({}));
    env.renew(&by_id);
    env.admin.revoke_token(&by_id.token_id);
    env.renew_refused(&by_id.access_token, "access token has been revoked");
    let (by_holder, _) = env.token(json!({}));
    env.admin
        .self_revoke(&by_holder.access_token)
        .expect_status(200);
    env.renew_refused(&by_holder.access_token, "access token has been revoked");
    let (orphan, _) = env.token(json!({}));
    let orphan_identity = orphan.raw["tokenData"]["identityId"].as_str().unwrap();
    env.admin.delete_identity(orphan_identity);
    let resp = env.admin.renew(&orphan.access_token);
    resp.expect_error(401);
    assert!(!resp.body.contains(&orphan.access_token));

    // A well-formed token with the right ids and a wrong secret: 401, and
    // the real token's renewal state is untouched.
    let (victim, _) = env.token(json!({}));
    let real = AccessToken::parse(&victim.access_token).unwrap();
    let mut secret = [0u8; 32];
    fill_random(&mut secret);
    let forged = AccessToken::from_parts(real.identity_id, real.token_id, secret).expose();
    env.renew_refused(&forged, "invalid access token");
    assert_eq!(
        env.admin.get_token(&victim.token_id)["accessTokenLastRenewedAt"],
        Value::Null,
        "a forged renewal renewed the real token"
    );

    // Bad requests.
    let anon = Admin::anonymous(&env.gw.url());
    let resp = anon.call("POST", RENEW, Some(json!({})));
    assert!(resp.expect_error(422).contains("accessToken"));
    let resp = anon.call("POST", RENEW, Some(json!({"accessToken": 42})));
    assert!(resp.expect_error(422).contains("accessToken"));
    env.renew_refused("tgat_garbage", "invalid access token");
    env.renew_refused("", "invalid access token");
    let resp = http(
        "POST",
        &format!("{}{RENEW}", env.gw.url()),
        &[],
        Some("{\"accessToken\": "),
    );
    resp.expect_error(400);

    assert_eq!(env.forwarded(), 3, "a renewal reached the upstream");
    for rec in env.upstream.requests() {
        assert!(
            !rec.path_only().starts_with("/api/v1/auth/token/"),
            "a renewal or revocation was forwarded: {}",
            rec.path
        );
    }
}

on_both_stores!(
    case_renewal_keeps_uses_and_refuses_dead_tokens,
    renewal_keeps_uses_and_refuses_dead_tokens_redis,
    renewal_keeps_uses_and_refuses_dead_tokens_embedded
);
