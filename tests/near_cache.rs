//! The near cache of the Redis stores, from the outside: two real gateways, A and B, on one real Redis (or a three-node Redis Cluster) in front of one upstream.
//!
//! What must hold, whatever the implementation:
//! - a hot unlimited token is decided from B's memory: no `EVALSHA` in
//!   Redis's `INFO commandstats`, and B's cache-hit counter moves;
//! - every change made through A (revoke, identity delete or change, Token
//!   Auth removal or change, membership change, renewal) holds at B on B's
//!   very next request, after B has been shown to serve the token from its
//!   cache, with no pause in between;
//! - killing B's invalidation (tracking) connection never lets a token revoked
//!   meanwhile through B, and B caches again once the channel is back;
//! - limited tokens stay exact across gateways, and uses of unlimited tokens
//!   reach Redis (within seconds, and on a clean stop);
//! - `cache: {enabled: false}` checks every request in Redis, and the
//!   configuration is validated.
//!
//! Top-level tests follow the harness's cache setting
//! (`TOKENGATE_TEST_REDIS_CACHE=off` turns the cache off; scripts/test.sh runs
//! them both ways): with the cache off, the "served from cache" proofs are
//! skipped and the same outcomes must hold. Tests in `cache_on`, `cache_off`,
//! `config` and `harness` set the cache themselves and run once.
//!
//! A stats flush of an unlimited token's uses may itself be an `EVALSHA`, at
//! most once a second per gateway; a proof that a request was served from the
//! cache is therefore retried a few times, to step past a coinciding flush.

#![allow(clippy::unwrap_used)]

mod common;

use common::redis::{client_list, kill_client, resp_query, tracking_clients_of, ClientEntry};
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// Header carried by every request this file proxies; the upstream may also
/// receive other tests' requests, so ours are told apart by it.
const MARKER: &str = "x-test-marker";
const HITS: &str = "tokengate_store_cache_hits_total";
const MISSES: &str = "tokengate_store_cache_misses_total";
const COHERENT: &str = "tokengate_store_cache_coherent";
const REVOKED: &str = "access token has been revoked";
const EXHAUSTED: &str = "token usage limit reached";
const NO_PROJECT_ACCESS: &str = "identity has no access to this project";
/// How often a "served from the cache" proof is tried before it fails.
const PROOF_ATTEMPTS: usize = 6;

/// The Redis a pair of gateways shares.
enum Backend {
    Single(Redis),
    Cluster(RedisCluster),
}

impl Backend {
    fn single() -> Backend {
        Backend::Single(Redis::start())
    }

    fn cluster() -> Backend {
        Backend::Cluster(RedisCluster::start())
    }

    /// A gateway config on this store, cache as the harness says.
    fn config(&self) -> GatewayConfig {
        match self {
            Backend::Single(r) => GatewayConfig::redis(&r.url()),
            Backend::Cluster(c) => GatewayConfig::redis_cluster(&c.urls()),
        }
    }

    /// "127.0.0.1:N" of every node.
    fn addrs(&self) -> Vec<String> {
        match self {
            Backend::Single(r) => vec![r.addr()],
            Backend::Cluster(c) => c.addrs(),
        }
    }

    /// Calls of `name` on every node together, from `INFO commandstats`.
    fn calls(&self, name: &str) -> u64 {
        match self {
            Backend::Single(r) => r.command_calls(name),
            Backend::Cluster(c) => c.command_calls(name),
        }
    }

    fn evalsha(&self) -> u64 {
        self.calls("evalsha")
    }

    fn reset_stats(&self) {
        match self {
            Backend::Single(r) => r.reset_stats(),
            Backend::Cluster(c) => c.reset_stats(),
        }
    }

    /// Calls of every command that reads or writes data, on every node
    /// together: connection housekeeping (PING, HELLO, CLIENT, CLUSTER,
    /// COMMAND, SELECT, READONLY, AUTH) and the harness's INFO and CONFIG
    /// are left out. Commands run by scripts count too.
    fn data_commands(&self) -> u64 {
        let housekeeping = |name: &str| {
            matches!(
                name,
                "info" | "ping" | "echo" | "hello" | "select" | "readonly" | "auth" | "command"
            ) || ["client|", "cluster|", "command|", "config|"]
                .iter()
                .any(|p| name.starts_with(p))
        };
        self.addrs()
            .iter()
            .map(|addr| {
                let info = resp_query(addr, &["INFO", "commandstats"]).unwrap().text();
                info.lines()
                    .filter_map(|line| {
                        let (name, fields) =
                            line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
                        let calls = fields
                            .split(',')
                            .find_map(|f| f.strip_prefix("calls="))?
                            .parse::<u64>()
                            .ok()?;
                        (!housekeeping(name)).then_some(calls)
                    })
                    .sum::<u64>()
            })
            .sum()
    }
}

/// One upstream, two gateways on one store.
struct Pair {
    a: Gateway,
    b: Gateway,
    upstream: Upstream,
    marker: String,
    /// Whether the gateways run with the near cache, so the proofs apply.
    cached: bool,
    // Last, so the gateways stop before their store does.
    store: Backend,
}

impl Pair {
    /// Cache as the harness says (on unless TOKENGATE_TEST_REDIS_CACHE=off).
    fn start(store: Backend) -> Pair {
        Pair::start_with(store, redis_cache_on(), |cfg| cfg)
    }

    /// Cache forced on, whatever the harness says.
    fn start_cached(store: Backend) -> Pair {
        Pair::start_with(store, true, |cfg| cfg.store_cache(Some("{enabled: true}")))
    }

    fn start_with(
        store: Backend,
        cached: bool,
        configure: impl Fn(GatewayConfig) -> GatewayConfig,
    ) -> Pair {
        let upstream = Upstream::echo();
        let a = Gateway::start(configure(store.config()).upstream(&upstream.url()));
        let b = Gateway::start(configure(store.config()).upstream(&upstream.url()));
        assert_ne!(a.port(), b.port());
        Pair {
            a,
            b,
            upstream,
            marker: unique("near-cache"),
            cached,
            store,
        }
    }

    /// GET `path` through `gw` with `token` and our marker.
    fn send(&self, gw: &Gateway, path: &str, token: &str) -> Resp {
        let auth = format!("Bearer {token}");
        http(
            "GET",
            &format!("{}{path}", gw.url()),
            &[("Authorization", &auth), (MARKER, &self.marker)],
            None,
        )
    }

    /// The requests of this test the upstream received, oldest first.
    fn mine(&self) -> Vec<Recorded> {
        self.upstream
            .requests()
            .into_iter()
            .filter(|r| r.header(MARKER) == Some(self.marker.as_str()))
            .collect()
    }

    /// `gw` forwards GET `path` with `token`; returns what the upstream saw.
    #[track_caller]
    fn forwards(&self, gw: &Gateway, path: &str, token: &str) -> Recorded {
        let before = self.mine().len();
        self.send(gw, path, token).expect_status(200);
        let mine = self.mine();
        assert_eq!(
            mine.len(),
            before + 1,
            "an allowed request was not forwarded"
        );
        mine[before].clone()
    }

    /// `gw` forwards GET /v1/things with `token`.
    #[track_caller]
    fn allowed(&self, gw: &Gateway, token: &str) -> Recorded {
        self.forwards(gw, "/v1/things", token)
    }

    /// `gw` refuses GET `path` with `token` with `status`, forwarding
    /// nothing; returns the message.
    #[track_caller]
    fn refuses(&self, gw: &Gateway, path: &str, token: &str, status: u16) -> String {
        let before = self.mine().len();
        let resp = self.send(gw, path, token);
        let message = resp.expect_error(status);
        assert!(!resp.body.contains(token), "the error body has the token");
        assert_eq!(self.mine().len(), before, "a refused request was forwarded");
        message
    }

    #[track_caller]
    fn refused(&self, gw: &Gateway, token: &str, status: u16) -> String {
        self.refuses(gw, "/v1/things", token, status)
    }

    /// `gw` answers GET `path` with `token` with 200 without a round trip
    /// to Redis: no `EVALSHA` ran meanwhile and `gw`'s cache-hit counter
    /// moved. Retried up to [`PROOF_ATTEMPTS`] times, since a stats flush
    /// may coincide with one attempt. With the cache off, one plain 200.
    /// Returns what the upstream saw of the proving request.
    #[track_caller]
    fn served_from_cache(&self, gw: &Gateway, path: &str, token: &str) -> Recorded {
        if !self.cached {
            return self.forwards(gw, path, token);
        }
        let mut tries = Vec::new();
        for _ in 0..PROOF_ATTEMPTS {
            let hits = hits(gw);
            let evalsha = self.store.evalsha();
            let rec = self.forwards(gw, path, token);
            let evalsha = self.store.evalsha() - evalsha;
            let hits = hits_delta(gw, hits);
            if evalsha == 0 && hits > 0.0 {
                return rec;
            }
            tries.push(format!("{evalsha} EVALSHA, {hits} hits"));
        }
        panic!(
            "{path} was never served from {}'s cache in {PROOF_ATTEMPTS} tries: {tries:?}",
            gw.url()
        );
    }

    /// A new identity's token with this TTL and max TTL, created through A
    /// and then served from B's cache; the token and when it was created.
    fn token_cached_at_b(&self, name: &str, ttl: u64, max_ttl: u64) -> (String, Instant) {
        let admin_a = self.a.admin();
        let id = admin_a.create_identity(&unique(name), "member");
        admin_a.attach_token_auth(
            &id,
            json!({"accessTokenTTL": ttl, "accessTokenMaxTTL": max_ttl}),
        );
        let token = admin_a.create_token(&id, name);
        let created = Instant::now();
        self.allowed(&self.b, &token.access_token);
        self.served_from_cache(&self.b, "/v1/things", &token.access_token);
        (token.access_token, created)
    }

    /// GET /api/v1/projects/{project}/secrets, the path of a project route.
    fn project_path(project: &str) -> String {
        format!("/api/v1/projects/{project}/secrets")
    }

    /// The nodes holding a key that names identity `id` (`KEYS *id*`), or
    /// every node when no key names it literally.
    fn nodes_holding(&self, id: &str) -> Vec<String> {
        let pattern = format!("*{id}*");
        let holding: Vec<String> = self
            .store
            .addrs()
            .into_iter()
            .filter(|addr| {
                matches!(
                    resp_query(addr, &["KEYS", &pattern]),
                    Ok(Reply::Array(Some(keys))) if !keys.is_empty()
                )
            })
            .collect();
        if holding.is_empty() {
            self.store.addrs()
        } else {
            holding
        }
    }

    /// `gw`'s tracking connections on every node, as (node address, client).
    fn tracking_of(&self, gw: &Gateway) -> Vec<(String, ClientEntry)> {
        let pid = gw.pid().expect("the gateway is running");
        self.store
            .addrs()
            .into_iter()
            .flat_map(|addr| {
                tracking_clients_of(&addr, pid)
                    .into_iter()
                    .map(move |c| (addr.clone(), c))
            })
            .collect()
    }
}

/// The cache-hit counter of `gw`; panics when `/metrics` lacks it.
#[track_caller]
fn hits(gw: &Gateway) -> f64 {
    gw.metric(HITS)
        .unwrap_or_else(|| panic!("{}/metrics has no {HITS}", gw.admin_url()))
}

#[track_caller]
fn hits_delta(gw: &Gateway, before: f64) -> f64 {
    hits(gw) - before
}

/// The coherence gauge of `gw` (the lowest sample if it is labelled).
fn coherent(gw: &Gateway) -> Option<f64> {
    gw.metric_samples(COHERENT).into_iter().reduce(f64::min)
}

/// Sleeps until `at`: waiting for a token's clock, never for a process.
fn wait_until(at: Instant) {
    let left = at.saturating_duration_since(Instant::now());
    assert!(left <= Duration::from_secs(30), "waits stay short");
    std::thread::sleep(left);
}

// ---------------------------------------------------------------------------
// Changes through A hold at B on B's next request.

fn case_revocations(p: &Pair) {
    let admin_a = p.a.admin();
    let admin_b = p.b.admin();
    let id = admin_a.create_identity(&unique("revoked"), "member");
    admin_a.attach_token_auth(&id, json!({}));
    let by_id = admin_a.create_token(&id, "by-id");
    let by_holder = admin_a.create_token(&id, "by-holder");
    let through_b = admin_a.create_token(&id, "through-b");
    let bystander = admin_a.create_token(&id, "bystander");
    for t in [&by_id, &by_holder, &through_b, &bystander] {
        p.allowed(&p.b, &t.access_token);
        p.served_from_cache(&p.b, "/v1/things", &t.access_token);
    }

    // By token id through A's management API.
    admin_a.revoke_token(&by_id.token_id);
    assert_eq!(p.refused(&p.b, &by_id.access_token, 401), REVOKED);
    for _ in 0..3 {
        assert_eq!(p.refused(&p.b, &by_id.access_token, 401), REVOKED);
    }
    assert_eq!(p.refused(&p.a, &by_id.access_token, 401), REVOKED);

    // By the holder, through A's /api/v1/auth/token/revoke.
    admin_a
        .self_revoke(&by_holder.access_token)
        .expect_status(200);
    assert_eq!(p.refused(&p.b, &by_holder.access_token, 401), REVOKED);

    // Through B's own management API: B's own change holds at B too.
    admin_b.revoke_token(&through_b.token_id);
    assert_eq!(p.refused(&p.b, &through_b.access_token, 401), REVOKED);
    assert_eq!(p.refused(&p.a, &through_b.access_token, 401), REVOKED);

    // The identity's other token is untouched.
    p.allowed(&p.b, &bystander.access_token);
}

#[test]
fn revocations_through_a_are_refused_at_b_on_the_next_request() {
    case_revocations(&Pair::start(Backend::single()));
}

#[test]
fn revocations_through_a_are_refused_at_b_on_the_next_request_cluster() {
    case_revocations(&Pair::start(Backend::cluster()));
}

#[test]
fn identity_deletion_and_token_auth_removal_through_a_are_refused_at_b() {
    let p = Pair::start(Backend::single());
    let admin_a = p.a.admin();

    // Identity deletion revokes all its tokens.
    let (doomed, first) = admin_a.identity_with_token("member", json!({}));
    let second = admin_a.create_token(&doomed, "second");
    for t in [&first, &second] {
        p.allowed(&p.b, &t.access_token);
        p.served_from_cache(&p.b, "/v1/things", &t.access_token);
    }
    admin_a.delete_identity(&doomed);
    p.refused(&p.b, &first.access_token, 401);
    p.refused(&p.b, &second.access_token, 401);
    p.refused(&p.a, &first.access_token, 401);

    // Token Auth removal revokes every token it issued.
    let (stripped, first) = admin_a.identity_with_token("member", json!({}));
    let second = admin_a.create_token(&stripped, "second");
    for t in [&first, &second] {
        p.allowed(&p.b, &t.access_token);
        p.served_from_cache(&p.b, "/v1/things", &t.access_token);
    }
    admin_a.remove_token_auth(&stripped);
    p.refused(&p.b, &first.access_token, 401);
    p.refused(&p.b, &second.access_token, 401);
    // Attaching Token Auth again does not bring the old tokens back.
    admin_a.attach_token_auth(&stripped, json!({}));
    p.refused(&p.b, &first.access_token, 401);
    p.refused(&p.b, &second.access_token, 401);
    let fresh = admin_a.create_token(&stripped, "fresh");
    p.allowed(&p.b, &fresh.access_token);
}

#[test]
fn identity_changes_through_a_show_in_b_headers_on_the_next_request() {
    let p = Pair::start(Backend::single());
    let admin_a = p.a.admin();
    let (id, token) = admin_a.identity_with_token("member", json!({}));
    let t = &token.access_token;
    p.allowed(&p.b, t);
    let rec = p.served_from_cache(&p.b, "/v1/things", t);
    assert_eq!(rec.header_all("x-tokengate-org-role"), ["member"]);

    // Org role: member -> admin, seen on B's next request.
    admin_a.update_identity(&id, json!({"role": "admin"}));
    let rec = p.allowed(&p.b, t);
    assert_eq!(rec.header_all("x-tokengate-org-role"), ["admin"]);
    // And the management API at B now takes the token as an admin's.
    Admin::with_token(&p.b.url(), t).ok("GET", "/api/v1/identities", None);

    // Back to member once B has cached the admin role again.
    let rec = p.served_from_cache(&p.b, "/v1/things", t);
    assert_eq!(rec.header_all("x-tokengate-org-role"), ["admin"]);
    admin_a.update_identity(&id, json!({"role": "member"}));
    let rec = p.allowed(&p.b, t);
    assert_eq!(rec.header_all("x-tokengate-org-role"), ["member"]);
    Admin::with_token(&p.b.url(), t)
        .call("GET", "/api/v1/identities", None)
        .expect_error(403);

    // Name: the injected identity name follows.
    let rec = p.served_from_cache(&p.b, "/v1/things", t);
    let old_name = rec.header("x-tokengate-identity-name").unwrap().to_string();
    let new_name = unique("renamed");
    admin_a.update_identity(&id, json!({"name": new_name}));
    let rec = p.allowed(&p.b, t);
    assert_eq!(
        rec.header_all("x-tokengate-identity-name"),
        [new_name.as_str()],
        "was {old_name}"
    );
}

/// The contract copies the Token Auth configuration onto a token when it is
/// created, so a change leaves existing tokens as they were; what the change
/// affects is the tokens created afterwards, through either gateway.
#[test]
fn token_auth_change_through_a_binds_tokens_created_afterwards_at_b() {
    let p = Pair::start(Backend::single());
    let admin_a = p.a.admin();
    let admin_b = p.b.admin();
    let id = admin_a.create_identity(&unique("configured"), "member");
    admin_a.attach_token_auth(&id, json!({}));
    // B reads the configuration (creating a token with it) and caches the token.
    let before = admin_b.create_token(&id, "before");
    p.allowed(&p.b, &before.access_token);
    p.served_from_cache(&p.b, "/v1/things", &before.access_token);

    admin_a.update_token_auth(
        &id,
        json!({"accessTokenTrustedIps": [{"ipAddress": "10.0.0.0/8"}]}),
    );
    // The existing token keeps the configuration it was created with.
    p.allowed(&p.b, &before.access_token);
    // A token created through B after the change has the new trusted IPs.
    let after_b = admin_b.create_token(&id, "after-b");
    assert_eq!(
        p.refused(&p.b, &after_b.access_token, 403),
        "IP 127.0.0.1 is not in the token's trusted IPs"
    );
    let after_a = admin_a.create_token(&id, "after-a");
    p.refused(&p.b, &after_a.access_token, 403);

    // A use limit set through A binds the next token created through B.
    admin_a.update_token_auth(
        &id,
        json!({"accessTokenTrustedIps": [{"ipAddress": "127.0.0.1"}], "accessTokenNumUsesLimit": 1}),
    );
    let limited = admin_b.create_token(&id, "limited");
    p.allowed(&p.b, &limited.access_token);
    assert_eq!(p.refused(&p.b, &limited.access_token, 401), EXHAUSTED);
    assert_eq!(p.refused(&p.a, &limited.access_token, 401), EXHAUSTED);
    p.allowed(&p.b, &before.access_token);
}

#[test]
fn membership_changes_through_a_hold_at_b_on_the_next_request() {
    let p = Pair::start(Backend::single());
    let admin_a = p.a.admin();
    let (id, token) = admin_a.identity_with_token("member", json!({}));
    let t = &token.access_token;
    let project = unique("project");
    let path = Pair::project_path(&project);
    let role = |rec: &Recorded| {
        assert_eq!(rec.header_all("x-tokengate-project-id"), [project.as_str()]);
        rec.header_all("x-tokengate-project-role")
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };

    // No membership yet, asked twice (a negative answer may be cached).
    assert_eq!(p.refuses(&p.b, &path, t, 403), NO_PROJECT_ACCESS);
    assert_eq!(p.refuses(&p.b, &path, t, 403), NO_PROJECT_ACCESS);

    // Added through A: B's next request passes.
    admin_a.add_membership(&project, &id, json!({"role": "viewer"}));
    assert_eq!(role(&p.forwards(&p.b, &path, t)), ["viewer"]);
    assert_eq!(role(&p.served_from_cache(&p.b, &path, t)), ["viewer"]);

    // Role changed through A: B injects the new role on its next request.
    let membership = format!("/api/v1/projects/{project}/memberships/identities/{id}");
    admin_a.ok(
        "PATCH",
        &membership,
        Some(json!({"roles": [{"role": "admin"}]})),
    );
    assert_eq!(role(&p.forwards(&p.b, &path, t)), ["admin"]);
    assert_eq!(role(&p.served_from_cache(&p.b, &path, t)), ["admin"]);

    // Down to no-access: refused.
    admin_a.ok(
        "PATCH",
        &membership,
        Some(json!({"roles": [{"role": "no-access"}]})),
    );
    assert_eq!(p.refuses(&p.b, &path, t, 403), NO_PROJECT_ACCESS);

    // Back to viewer, cached again, then removed through A: refused.
    admin_a.ok(
        "PATCH",
        &membership,
        Some(json!({"roles": [{"role": "viewer"}]})),
    );
    assert_eq!(role(&p.forwards(&p.b, &path, t)), ["viewer"]);
    assert_eq!(role(&p.served_from_cache(&p.b, &path, t)), ["viewer"]);
    admin_a.remove_membership(&project, &id);
    assert_eq!(p.refuses(&p.b, &path, t, 403), NO_PROJECT_ACCESS);
    assert_eq!(p.refuses(&p.a, &path, t, 403), NO_PROJECT_ACCESS);

    // The token itself is fine: requests naming no project still pass.
    p.allowed(&p.b, t);
}

/// Renewal through A moves the token's expiry; B, which cached the token
/// before the renewal, must go by the new expiry, not the one it cached.
#[test]
fn renewal_through_a_is_honoured_at_b_past_the_first_expiry() {
    let p = Pair::start(Backend::single());
    let admin_a = p.a.admin();
    let (token, created) = p.token_cached_at_b("renewed", 8, 120);
    let t = &token;

    wait_until(created + Duration::from_secs(4));
    let renew_sent = Instant::now();
    let renewed = admin_a.renew(t);
    renewed.expect_status(200);
    let expires_in = renewed.json()["expiresIn"].as_u64().unwrap();
    assert!(
        expires_in >= 7,
        "renewal gives a full TTL again: {expires_in}"
    );

    // Past the first expiry (created + 8 s) and well before the new one
    // (renewed + 8 s, at least created + 12 s), with no request at B since
    // the renewal: B must not go by the expiry it had cached.
    let check_at = created + Duration::from_millis(9_500);
    let renewed_until = renew_sent + Duration::from_secs(8);
    wait_until(check_at);
    assert!(
        Instant::now() + Duration::from_millis(500) < renewed_until,
        "the machine stalled past the renewed expiry; nothing can be concluded"
    );
    p.allowed(&p.b, t);
    p.allowed(&p.a, t);
}

/// A token cached at B expires at B when its TTL is over: the cache never
/// keeps a token alive.
#[test]
fn a_token_cached_at_b_expires_at_b_on_time() {
    let p = Pair::start(Backend::single());
    let (token, created) = p.token_cached_at_b("expiring", 3, 60);
    let t = &token;

    wait_until(created + Duration::from_millis(4_200));
    for _ in 0..3 {
        assert_eq!(p.refused(&p.b, t, 401), "token expired");
    }
    assert_eq!(p.refused(&p.a, t, 401), "token expired");
}

// ---------------------------------------------------------------------------
// Uses: limited tokens exact, unlimited ones counted and never lost.

#[test]
fn a_limited_token_authenticates_exactly_its_limit_across_both_gateways() {
    const LIMIT: u64 = 20;
    const RACERS: usize = 48;
    let p = Pair::start(Backend::single());
    let admin_a = p.a.admin();
    let (_, token) =
        admin_a.identity_with_token("member", json!({"accessTokenNumUsesLimit": LIMIT}));
    let t = &token.access_token;

    // Both gateways have seen (and may have cached) the token.
    p.allowed(&p.a, t);
    p.allowed(&p.b, t);
    // Each further use at B is spent in Redis.
    let evalsha = p.store.evalsha();
    for _ in 0..3 {
        p.allowed(&p.b, t);
    }
    let spent = p.store.evalsha() - evalsha;
    assert!(
        spent >= 3,
        "3 uses of a limited token at B ran {spent} EVALSHA"
    );
    let used = 5;

    // The rest raced through A and B at once.
    let auth = format!("Bearer {t}");
    let results = concurrently(RACERS, |i| {
        let gw = if i % 2 == 0 { &p.a } else { &p.b };
        let url = format!("{}/race/{i}", gw.url());
        match try_http(
            "GET",
            &url,
            &[("Authorization", &auth), (MARKER, &p.marker)],
            None,
        ) {
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
    });
    let ok = results.iter().filter(|(s, _)| *s == 200).count() as u64;
    assert_eq!(ok, LIMIT - used, "successes in the race: {results:?}");
    for (status, message) in results.iter().filter(|(s, _)| *s != 200) {
        assert_eq!((*status, message.as_str()), (401, EXHAUSTED));
    }
    assert_eq!(p.mine().len() as u64, LIMIT, "forwarded requests");
    eventually(Duration::from_secs(5), || {
        admin_a.uses(&token.token_id) == LIMIT
    });
    assert_eq!(p.refused(&p.b, t, 401), EXHAUSTED);
    assert_eq!(p.refused(&p.a, t, 401), EXHAUSTED);
    assert_eq!(admin_a.uses(&token.token_id), LIMIT);
}

#[test]
fn unlimited_token_uses_reach_redis_and_survive_a_clean_stop() {
    const THREADS: usize = 8;
    const EACH: usize = 5;
    const BEFORE_STOP: u64 = 15;
    let mut p = Pair::start(Backend::single());
    let admin_a = p.a.admin();
    let (_, token) = admin_a.identity_with_token("member", json!({}));
    let t = &token.access_token;

    // N requests through A and B at once.
    let auth = format!("Bearer {t}");
    let statuses = concurrently(THREADS, |i| {
        let gw = if i % 2 == 0 { &p.a } else { &p.b };
        (0..EACH)
            .map(|j| {
                let url = format!("{}/count/{i}/{j}", gw.url());
                http(
                    "GET",
                    &url,
                    &[("Authorization", &auth), (MARKER, &p.marker)],
                    None,
                )
                .status
            })
            .collect::<Vec<_>>()
    });
    assert!(statuses.iter().flatten().all(|s| *s == 200), "{statuses:?}");
    let n = (THREADS * EACH) as u64;
    let mut seen = Vec::new();
    let reached = poll_until(Duration::from_secs(5), || {
        let uses = admin_a.uses(&token.token_id);
        seen.push(uses);
        uses == n
    });
    assert!(reached, "numUses never reached {n}; seen {seen:?}");
    let record = admin_a.get_token(&token.token_id);
    assert!(
        record["accessTokenLastUsedAt"].is_string(),
        "lastUsedAt not set: {record}"
    );

    // Uses at B just before a clean stop are written before B exits.
    for _ in 0..BEFORE_STOP {
        p.allowed(&p.b, t);
    }
    p.b.stop();
    let mut seen = Vec::new();
    let reached = poll_until(Duration::from_secs(5), || {
        let uses = admin_a.uses(&token.token_id);
        seen.push(uses);
        uses == n + BEFORE_STOP
    });
    assert!(
        reached,
        "numUses never reached {} after SIGTERM of B; seen {seen:?}",
        n + BEFORE_STOP
    );
}

/// 200 tokens, each cached at B, each revoked through A and checked at B at
/// once: every one refused. The time from A's answer to B's refusal is
/// printed for the record, never asserted.
#[test]
fn two_hundred_revocations_through_a_are_each_refused_at_b() {
    const TOKENS: usize = 200;
    let p = Pair::start(Backend::single());
    let admin_a = p.a.admin();
    let identities: Vec<String> = (0..4)
        .map(|_| {
            let id = admin_a.create_identity(&unique("many"), "member");
            admin_a.attach_token_auth(&id, json!({}));
            id
        })
        .collect();
    let mut latencies = Vec::with_capacity(TOKENS);
    for i in 0..TOKENS {
        let token = admin_a.create_token(&identities[i % identities.len()], &format!("t{i}"));
        p.allowed(&p.b, &token.access_token);
        p.served_from_cache(&p.b, "/v1/things", &token.access_token);
        let forwarded = p.mine().len();
        admin_a.revoke_token(&token.token_id);
        let revoked = Instant::now();
        let resp = p.send(&p.b, "/v1/things", &token.access_token);
        latencies.push(revoked.elapsed());
        assert_eq!(
            resp.expect_error(401),
            REVOKED,
            "revocation {i} of {TOKENS} was not refused at B"
        );
        assert_eq!(p.mine().len(), forwarded, "revoked token {i} was forwarded");
    }
    latencies.sort();
    eprintln!(
        "revoke through A -> refusal at B (including B's round trip): p50 {:?}, p99 {:?}, max {:?}",
        latencies[TOKENS / 2],
        latencies[TOKENS * 99 / 100],
        latencies[TOKENS - 1]
    );
}

// ---------------------------------------------------------------------------

/// Tests that need the cache on, whatever the harness says.
mod cache_on {
    use super::*;

    /// A Redis that stops answering without closing anything (CLIENT PAUSE:
    /// the link stalls) turns B's cache off once a PING goes unanswered for
    /// the response timeout, and it comes back when Redis answers again.
    #[test]
    fn a_stalled_redis_turns_the_cache_off_until_it_answers() {
        let p = Pair::start_with(Backend::single(), true, |cfg| {
            cfg.store_cache(None).redis_timeouts(1000, 300, 0)
        });
        let admin_a = p.a.admin();
        let (_, token) = admin_a.identity_with_token("member", json!({}));
        let t = &token.access_token;
        p.allowed(&p.b, t);
        p.served_from_cache(&p.b, "/v1/things", t);
        assert_eq!(coherent(&p.b), Some(1.0));

        let Backend::Single(redis) = &p.store else {
            unreachable!("a single Redis was asked for")
        };
        assert_eq!(redis.cmd(&["CLIENT", "PAUSE", "3000", "ALL"]), "OK");
        // Bounded by the pause: the gauge must drop while Redis is silent.
        let dropped = poll_until(Duration::from_millis(2500), || coherent(&p.b) == Some(0.0));
        assert!(dropped, "B kept its cache while Redis did not answer");
        eventually(Duration::from_secs(15), || coherent(&p.b) == Some(1.0));
        p.served_from_cache(&p.b, "/v1/things", t);
    }

    /// With no `cache` key at all (the default for kind: redis), a hot
    /// unlimited token is decided from B's memory.
    #[test]
    fn a_hot_unlimited_token_is_served_from_b_memory_by_default() {
        const REQUESTS: u64 = 60;
        let p = Pair::start_with(Backend::single(), true, |cfg| cfg.store_cache(None));
        let admin_a = p.a.admin();
        let (_, token) = admin_a.identity_with_token("member", json!({}));
        let t = &token.access_token;
        p.allowed(&p.a, t);
        p.allowed(&p.b, t);
        p.served_from_cache(&p.b, "/v1/things", t);
        for gw in [&p.a, &p.b] {
            eventually(Duration::from_secs(10), || coherent(gw) == Some(1.0));
        }
        // B's first request for the token was a miss.
        let misses = p.b.metric(MISSES);
        assert!(misses.is_some_and(|m| m >= 1.0), "{MISSES}: {misses:?}");
        // Wait for the uses so far to be flushed, so the window below holds
        // only what its own requests cause.
        let before = p.mine().len() as u64;
        eventually(Duration::from_secs(5), || {
            admin_a.uses(&token.token_id) == before
        });

        p.store.reset_stats();
        let hits_before = hits(&p.b);
        let started = Instant::now();
        for i in 0..REQUESTS {
            p.send(&p.b, &format!("/v1/hot/{i}"), t).expect_status(200);
        }
        let elapsed = started.elapsed();
        let evalsha = p.store.evalsha();
        let commands = p.store.data_commands();
        let hits = hits_delta(&p.b, hits_before);
        // A stats flush runs at most once a second per gateway.
        let flushes = 2 * (1 + elapsed.as_secs());
        assert!(
            evalsha <= flushes,
            "{REQUESTS} requests of a hot token at B ran {evalsha} EVALSHA in {elapsed:?}"
        );
        assert!(
            commands < REQUESTS / 2,
            "{REQUESTS} requests of a hot token at B ran {commands} Redis commands"
        );
        // A flush writes the token's uses, which invalidates it everywhere
        // (the flushing gateway too): one miss per flush at most.
        assert!(
            hits >= (REQUESTS - flushes) as f64,
            "{REQUESTS} requests, {hits} cache hits"
        );
        // And their uses reach Redis.
        let total = before + REQUESTS;
        eventually(Duration::from_secs(5), || {
            admin_a.uses(&token.token_id) == total
        });
    }

    fn case_tracking_connection_killed(p: &Pair) {
        let admin_a = p.a.admin();
        let (id, token) = admin_a.identity_with_token("member", json!({}));
        let t = &token.access_token;
        p.allowed(&p.a, t);
        p.allowed(&p.b, t);
        p.served_from_cache(&p.b, "/v1/things", t);
        for gw in [&p.a, &p.b] {
            eventually(Duration::from_secs(10), || coherent(gw) == Some(1.0));
        }

        // B's tracking connections, on every node that holds the
        // identity's keys at least (A's are left alone).
        let nodes = p.nodes_holding(&id);
        let victims = p.tracking_of(&p.b);
        for addr in &nodes {
            assert!(
                victims.iter().any(|(a, _)| a == addr),
                "B has no tracking connection on {addr}; clients there:\n{}",
                client_list(addr)
                    .iter()
                    .map(|c| c.line.clone())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        let a_tracking = p.tracking_of(&p.a);
        assert!(!a_tracking.is_empty(), "A has no tracking connection");
        // Once one is lost B may close its others itself, so a later kill
        // may find its connection gone already.
        for (addr, client) in &victims {
            let gone = |a: &str, id: u64| !client_list(a).iter().any(|c| c.id == id);
            assert!(
                kill_client(addr, client.id) || gone(addr, client.id),
                "CLIENT KILL ID {} on {addr} failed and the client is still there",
                client.id
            );
        }
        // A's channel was not touched.
        let a_after: Vec<u64> = p.tracking_of(&p.a).iter().map(|(_, c)| c.id).collect();
        for (_, c) in &a_tracking {
            assert!(
                a_after.contains(&c.id),
                "A's tracking connection {} went",
                c.id
            );
        }
        // Revoked while B's invalidations have nowhere to go.
        admin_a.revoke_token(&token.token_id);
        let forwarded = p.mine().len();
        let started = Instant::now();
        let mut answers = Vec::new();
        for _ in 0..400 {
            if started.elapsed() >= Duration::from_secs(2) {
                break;
            }
            answers.push(p.send(&p.b, "/v1/things", t).status);
        }
        assert!(
            answers.len() >= 10,
            "only {} requests in 2 s",
            answers.len()
        );
        assert!(
            answers.iter().all(|s| *s == 401 || *s == 503),
            "B answered a revoked token with {answers:?}"
        );
        assert_eq!(p.mine().len(), forwarded, "B forwarded a revoked token");

        // The channel comes back by itself, on a new connection.
        let killed: Vec<u64> = victims.iter().map(|(_, c)| c.id).collect();
        let mut last = Vec::new();
        let back = poll_until(Duration::from_secs(15), || {
            last = p.tracking_of(&p.b);
            coherent(&p.b) == Some(1.0)
                && nodes.iter().all(|addr| {
                    last.iter()
                        .any(|(a, c)| a == addr && !killed.contains(&c.id))
                })
        });
        assert!(
            back,
            "B's invalidation channel did not come back (gauge {:?}, tracking {:?})",
            coherent(&p.b),
            last
        );
        for _ in 0..3 {
            assert_eq!(p.refused(&p.b, t, 401), REVOKED);
        }
        // And B caches again: a fresh token is served from its memory.
        let fresh = admin_a.create_token(&id, "fresh");
        p.allowed(&p.b, &fresh.access_token);
        p.served_from_cache(&p.b, "/v1/things", &fresh.access_token);
        // Changes keep reaching B over the new channel.
        admin_a.revoke_token(&fresh.token_id);
        assert_eq!(p.refused(&p.b, &fresh.access_token, 401), REVOKED);
    }

    #[test]
    fn killing_b_tracking_connection_never_lets_a_revoked_token_through() {
        case_tracking_connection_killed(&Pair::start_cached(Backend::single()));
    }

    #[test]
    fn killing_b_tracking_connections_never_lets_a_revoked_token_through_cluster() {
        case_tracking_connection_killed(&Pair::start_cached(Backend::cluster()));
    }

    /// On a cluster too (cache on by default there as well), a hot token
    /// costs no EVALSHA on any node.
    #[test]
    fn a_hot_token_is_served_from_b_memory_on_a_cluster_by_default() {
        let p = Pair::start_with(Backend::cluster(), true, |cfg| cfg.store_cache(None));
        let (_, token) = p.a.admin().identity_with_token("member", json!({}));
        p.allowed(&p.b, &token.access_token);
        for _ in 0..5 {
            p.served_from_cache(&p.b, "/v1/things", &token.access_token);
        }
        eventually(Duration::from_secs(10), || coherent(&p.b) == Some(1.0));
    }
}

/// The switch: with the cache off every request is checked in Redis.
mod cache_off {
    use super::*;

    #[test]
    fn with_the_cache_disabled_b_runs_one_evalsha_per_request() {
        const REQUESTS: u64 = 10;
        let p = Pair::start_with(Backend::single(), false, |cfg| {
            cfg.store_cache(Some("{enabled: false}"))
        });
        let admin_a = p.a.admin();
        let (_, token) = admin_a.identity_with_token("member", json!({}));
        let t = &token.access_token;
        p.allowed(&p.b, t);
        p.allowed(&p.b, t);
        p.store.reset_stats();
        for _ in 0..REQUESTS {
            p.allowed(&p.b, t);
        }
        assert_eq!(p.store.evalsha(), REQUESTS);
        // Uses are counted in the same step, so they show at once.
        assert_eq!(admin_a.uses(&token.token_id), REQUESTS + 2);
        admin_a.revoke_token(&token.token_id);
        assert_eq!(p.refused(&p.b, t, 401), REVOKED);
    }
}

/// `store.cache` is validated at start-up.
mod config {
    use super::*;

    #[track_caller]
    fn refused(cfg: GatewayConfig, needles: &[&str]) {
        let yaml = cfg.to_yaml();
        let (code, out) = Gateway::check_config_yaml(&yaml);
        assert_ne!(code, 0, "check-config accepted:\n{yaml}");
        for needle in needles {
            assert!(out.contains(needle), "{needle:?} not named in:\n{out}");
        }
        let err = match Gateway::try_start(cfg) {
            Ok(_) => panic!("the gateway started with:\n{yaml}"),
            Err(e) => e,
        };
        // The harness's message quotes the config; only the log counts.
        let err = err
            .split_once("\nlog:\n")
            .map_or(err.as_str(), |(_, log)| log);
        for needle in needles {
            assert!(err.contains(needle), "{needle:?} not named in:\n{err}");
        }
    }

    #[track_caller]
    fn accepted(cfg: GatewayConfig) {
        let yaml = cfg.to_yaml();
        let (code, out) = Gateway::check_config_yaml(&yaml);
        assert_eq!(code, 0, "check-config refused:\n{yaml}\n{out}");
    }

    fn redis() -> GatewayConfig {
        GatewayConfig::redis("redis://127.0.0.1:6379/0")
    }

    #[test]
    fn the_embedded_store_refuses_a_cache_section() {
        for cache in [
            "{enabled: true}",
            "{enabled: false}",
            "{max_age_seconds: 60}",
        ] {
            refused(
                GatewayConfig::embedded_temp().store_cache(Some(cache)),
                &["store.cache"],
            );
        }
    }

    #[test]
    fn max_age_seconds_is_bounded() {
        for age in ["0", "-1", "3601"] {
            refused(
                redis().store_cache(Some(&format!("{{enabled: true, max_age_seconds: {age}}}"))),
                &["store.cache.max_age_seconds"],
            );
        }
        for age in ["1", "60", "3600"] {
            accepted(
                redis().store_cache(Some(&format!("{{enabled: true, max_age_seconds: {age}}}"))),
            );
        }
    }

    #[test]
    fn the_cache_section_is_accepted_for_both_redis_kinds() {
        let cluster = || {
            GatewayConfig::redis_cluster(&[
                "redis://127.0.0.1:7000".to_string(),
                "redis://127.0.0.1:7001".to_string(),
            ])
        };
        for cache in [
            Some("{enabled: true, max_age_seconds: 60}"),
            Some("{enabled: false}"),
            Some("{}"),
            None,
        ] {
            accepted(redis().store_cache(cache));
            accepted(cluster().store_cache(cache));
        }
        refused(
            redis().store_cache(Some("{enabled: true, max_age_secs: 5}")),
            &["max_age_secs"],
        );
    }

    /// The start-up line names the store and whether the cache is on.
    #[test]
    fn the_start_up_line_states_the_store_and_cache_mode() {
        let redis = Redis::start();
        for (cache, says) in [
            (
                Some("{enabled: true, max_age_seconds: 30}"),
                "store redis, near cache on (max age 30 s)",
            ),
            (Some("{enabled: false}"), "store redis, near cache off"),
        ] {
            let gw = Gateway::start(GatewayConfig::redis(&redis.url()).store_cache(cache));
            assert!(gw.log().contains(says), "{says:?} not in:\n{}", gw.log());
        }
        let gw = Gateway::start(GatewayConfig::embedded_temp());
        assert!(gw.log().contains("store embedded ("), "{}", gw.log());
    }
}

/// The harness pieces these tests rely on, checked on their own.
mod harness {
    use super::*;
    use common::gateway::redis_cache_override;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    #[test]
    fn the_cache_switch_writes_the_store_cache_key() {
        assert_eq!(redis_cache_override(None), None);
        assert_eq!(redis_cache_override(Some("")), None);
        assert_eq!(redis_cache_override(Some("on")), None);
        assert_eq!(
            redis_cache_override(Some("off")).as_deref(),
            Some("{enabled: false}")
        );
        assert!(std::panic::catch_unwind(|| redis_cache_override(Some("of"))).is_err());

        let off = GatewayConfig::redis("redis://127.0.0.1:1/0")
            .store_cache(Some("{enabled: false}"))
            .to_yaml();
        assert!(
            off.contains("store:\n  kind: redis\n  url: \"redis://127.0.0.1:1/0\"\n  cache: {enabled: false}\n"),
            "{off}"
        );
        let default = GatewayConfig::redis("redis://127.0.0.1:1/0")
            .store_cache(None)
            .to_yaml();
        assert!(!default.contains("cache"), "{default}");
        let cluster = GatewayConfig::redis_cluster(&[
            "redis://127.0.0.1:1".to_string(),
            "redis://127.0.0.1:2".to_string(),
        ])
        .store_cache(None)
        .to_yaml();
        assert!(
            cluster.contains(
                "  kind: redis-cluster\n  nodes: [\"redis://127.0.0.1:1\", \"redis://127.0.0.1:2\"]\n"
            ),
            "{cluster}"
        );
        // The cluster config the harness writes is one the gateway takes.
        let (code, out) = Gateway::check_config_yaml(&cluster);
        assert_eq!(code, 0, "{out}");
        // Whatever the environment says, the harness config follows it.
        let env_yaml = GatewayConfig::redis("redis://127.0.0.1:1/0").to_yaml();
        assert_eq!(env_yaml.contains("enabled: false"), !redis_cache_on());
    }

    /// Sends raw RESP commands and reads until `until` shows up.
    fn converse(stream: &mut TcpStream, commands: &[&[&str]], until: &str) -> String {
        let mut req = Vec::new();
        for args in commands {
            req.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in *args {
                req.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
            }
        }
        stream.write_all(&req).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains(until) {
            let n = stream.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "connection closed; got {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    fn client_id(stream: &mut TcpStream) -> u64 {
        let reply = converse(stream, &[&["CLIENT", "ID"]], "\r\n");
        reply.trim().trim_start_matches(':').parse().unwrap()
    }

    /// The finder used by the CLIENT KILL tests picks exactly the tracking
    /// connections of one process: RESP3 broadcast tracking, and RESP2
    /// tracking with its redirect target, but neither a plain connection of
    /// the same process nor another process's tracking connection.
    #[test]
    fn the_tracking_connection_finder_picks_one_process_s_tracking_connections() {
        let redis = Redis::start();
        let connect = || TcpStream::connect(redis.addr()).unwrap();

        let mut resp3 = connect();
        let resp3_id = client_id(&mut resp3);
        converse(
            &mut resp3,
            &[
                &["HELLO", "3"],
                &["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "tg:"],
            ],
            "+OK\r\n",
        );
        let mut plain = connect();
        let plain_id = client_id(&mut plain);
        let mut sink = connect();
        let sink_id = client_id(&mut sink);
        converse(
            &mut sink,
            &[&["SUBSCRIBE", "__redis__:invalidate"]],
            "invalidate",
        );
        let mut resp2 = connect();
        let resp2_id = client_id(&mut resp2);
        let sink_arg = sink_id.to_string();
        converse(
            &mut resp2,
            &[&["CLIENT", "TRACKING", "on", "REDIRECT", &sink_arg, "BCAST"]],
            "+OK\r\n",
        );

        // Another process with a tracking connection of its own.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("other.log");
        let script = format!(
            "import socket,time\ns=socket.create_connection(('127.0.0.1',{}))\n\
             s.sendall(b'HELLO 3\\r\\nCLIENT TRACKING on BCAST\\r\\n')\n\
             d=b''\nwhile d.count(b'+OK')<1: d+=s.recv(4096)\nprint('ready',flush=True)\ntime.sleep(30)\n",
            redis.port()
        );
        let mut other = common::process::Proc::spawn(
            "python3 tracking client",
            std::process::Command::new("python3").arg("-c").arg(&script),
            &log,
            &log,
        );
        eventually(Duration::from_secs(10), || {
            common::process::read_lossy(&log).contains("ready")
        });

        let mut mine: Vec<u64> = tracking_clients_of(&redis.addr(), std::process::id())
            .iter()
            .map(|c| c.id)
            .collect();
        mine.sort();
        let mut expected = vec![resp3_id, sink_id, resp2_id];
        expected.sort();
        assert_eq!(
            mine, expected,
            "plain connection {plain_id} must not be picked"
        );
        let theirs = tracking_clients_of(&redis.addr(), other.pid());
        assert_eq!(theirs.len(), 1, "{theirs:?}");
        assert!(theirs[0].tracking() && theirs[0].flags.contains('B'));
        assert!(!expected.contains(&theirs[0].id));

        // Killing it closes exactly that connection.
        assert!(kill_client(&redis.addr(), resp3_id));
        assert!(!kill_client(&redis.addr(), resp3_id), "killed twice");
        let mut buf = [0u8; 64];
        resp3
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert!(matches!(resp3.read(&mut buf), Ok(0) | Err(_)));
        let left: Vec<u64> = tracking_clients_of(&redis.addr(), std::process::id())
            .iter()
            .map(|c| c.id)
            .collect();
        assert!(!left.contains(&resp3_id), "{left:?}");
        assert_eq!(
            client_id(&mut plain),
            plain_id,
            "the plain connection lives on"
        );
        other.kill9();
    }
}
