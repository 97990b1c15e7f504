//! The store conformance suite: every case runs against the Redis store (a
//! real redis-server), the Redis store on a real three-node Redis Cluster, and
//! the embedded store (a real redb file), so every implementation gives the
//! same answers to the same questions.

#![allow(clippy::unwrap_used)]

mod common;

use common::Redis;
use std::net::IpAddr;
use std::sync::Arc;
use tokengate::auth::{Deny, Needs};
use tokengate::model::{
    default_trusted_ips, Identity, Membership, Millis, RoleGrant, TokenAuthConfig, TokenRecord,
};
use tokengate::rate_limit::{Per, RateLimit, Refusal};
use tokengate::store::embedded::EmbeddedStore;
use tokengate::store::redis::{CacheMetrics, CacheSettings, Clock, RedisSettings, RedisStore};
use tokengate::store::{
    AuthOutcome, AuthRequest, Deletion, MembershipWrite, OwnerChange, PutMode, Store,
};
use tokengate::token::{AccessToken, Id};

const T0: Millis = 1_800_000_000_000;

/// A store under test, with whatever keeps it alive.
struct Subject {
    store: Arc<dyn Store>,
    _redis: Option<Redis>,
    _dir: Option<tempfile::TempDir>,
}

/// The near cache's settings for a cached subject.
fn near_cache(on: bool) -> Option<CacheSettings> {
    on.then(|| CacheSettings {
        max_age: std::time::Duration::from_secs(60),
        max_identities: 1000,
        metrics: CacheMetrics::unregistered(),
    })
}

/// With the near cache on, waits (bounded) until its invalidation channel is
/// up, so the cases run against a cache in use rather than one still off.
async fn ready(store: RedisStore) -> Arc<dyn Store> {
    store.ping().await.unwrap();
    if store.has_cache() {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !store.cache_in_use() {
            assert!(
                std::time::Instant::now() < deadline,
                "the near cache's invalidation channel never came up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    Arc::new(store)
}

async fn redis_subject(cache: bool) -> Subject {
    let redis = Redis::start();
    let store = RedisStore::new(RedisSettings {
        urls: vec![redis.url()],
        cluster: false,
        connect_timeout: std::time::Duration::from_secs(2),
        response_timeout: std::time::Duration::from_secs(2),
        retries: 1,
        cache: near_cache(cache),
        clock: Clock::Caller,
    })
    .unwrap();
    Subject {
        store: ready(store).await,
        _redis: Some(redis),
        _dir: None,
    }
}

/// Three real redis-server masters joined into a Redis Cluster, and a store
/// on them: every key of a request shares the identity's hash slot, so the
/// same scripts must work there unchanged.
struct Cluster {
    nodes: Vec<common::process::Proc>,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

fn start_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let mut ports = Vec::new();
    let addr = |p: &u16| format!("127.0.0.1:{p}");
    for i in 0..3 {
        // A free port can be taken by a parallel test before the node binds
        // it; then the node exits, and a new pair of ports is tried.
        let mut attempt = 0;
        let (node, port) = loop {
            attempt += 1;
            let (port, bus) = (common::free_port(), common::free_port());
            let node_dir = dir.path().join(format!("node{i}-{attempt}"));
            std::fs::create_dir_all(&node_dir).unwrap();
            let log = node_dir.join("redis.log");
            let mut cmd = std::process::Command::new("redis-server");
            cmd.args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
                .args([
                    "--port",
                    &port.to_string(),
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .arg("--dir")
                .arg(&node_dir);
            let node = common::process::Proc::spawn("redis-server (cluster)", &mut cmd, &log, &log);
            let up = common::poll_until(std::time::Duration::from_secs(20), || {
                common::redis::resp_query(&addr(&port), &["PING"]).is_ok()
            });
            if up {
                break (node, port);
            }
            assert!(
                attempt < 3,
                "cluster node {i} did not start; see {}",
                log.display()
            );
        };
        nodes.push(node);
        ports.push(port);
    }
    let mut create = std::process::Command::new("redis-cli");
    create.args(["--cluster", "create"]);
    create.args(ports.iter().map(addr));
    create.args(["--cluster-replicas", "0", "--cluster-yes"]);
    let (code, out) = common::process::run_bounded(
        "redis-cli --cluster create",
        &mut create,
        std::time::Duration::from_secs(30),
    );
    assert_eq!(code, 0, "cluster create failed: {out}");
    for p in &ports {
        common::eventually(std::time::Duration::from_secs(20), || {
            common::redis::resp_query(&addr(p), &["CLUSTER", "INFO"])
                .map(|r| r.text().contains("cluster_state:ok"))
                .unwrap_or(false)
        });
    }
    Cluster {
        nodes,
        ports,
        _dir: dir,
    }
}

struct ClusterSubject {
    store: Arc<dyn Store>,
    _cluster: Cluster,
}

async fn cluster_subject(cache: bool) -> ClusterSubject {
    let cluster = start_cluster();
    let store = RedisStore::new(RedisSettings {
        urls: cluster
            .ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect(),
        cluster: true,
        connect_timeout: std::time::Duration::from_secs(2),
        response_timeout: std::time::Duration::from_secs(2),
        retries: 2,
        cache: near_cache(cache),
        clock: Clock::Caller,
    })
    .unwrap();
    assert_eq!(cluster.nodes.len(), 3);
    ClusterSubject {
        store: ready(store).await,
        _cluster: cluster,
    }
}

fn embedded_subject() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
    Subject {
        store: Arc::new(store),
        _redis: None,
        _dir: Some(dir),
    }
}

fn identity(role: &str) -> Identity {
    Identity {
        id: Id::random(),
        name: format!("ident-{role}"),
        org_id: "org".into(),
        role: role.into(),
        has_delete_protection: false,
        created_at: T0,
        updated_at: T0,
    }
}

fn config(identity: Id) -> TokenAuthConfig {
    TokenAuthConfig {
        id: Id::random(),
        identity_id: identity,
        ttl: 3600,
        max_ttl: 7200,
        num_uses_limit: 0,
        trusted_ips: default_trusted_ips(),
        period: 0,
        rate_limit: None,
        created_at: T0,
        updated_at: T0,
    }
}

/// An identity with Token Auth and one token shaped by `shape`.
async fn setup(s: &dyn Store, shape: impl FnOnce(&mut TokenRecord)) -> (AccessToken, TokenRecord) {
    let ident = identity("member");
    s.create_identity(&ident).await.unwrap();
    assert!(s
        .put_token_auth(&config(ident.id), PutMode::Create)
        .await
        .unwrap());
    let token = AccessToken::generate(ident.id);
    let mut rec = TokenRecord {
        id: token.token_id,
        identity_id: ident.id,
        name: "t".into(),
        secret_hash: token.secret_hash(),
        created_at: T0,
        last_renewed_at: None,
        last_used_at: None,
        num_uses: 0,
        num_uses_limit: 0,
        ttl: 3600,
        max_ttl: 7200,
        period: 0,
        trusted_ips: default_trusted_ips(),
        revoked: false,
    };
    shape(&mut rec);
    assert!(s.create_token(&rec).await.unwrap());
    (token, rec)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn auth(
    s: &dyn Store,
    t: &AccessToken,
    from: &str,
    now: Millis,
    project: Option<&str>,
) -> AuthOutcome {
    s.authenticate(&AuthRequest {
        token: t,
        client_ip: ip(from),
        now,
        project,
        needs: Needs::ANY,
        route_rate_limit: None,
    })
    .await
    .unwrap()
}

/// A request on a route whose default rate limit is `route`.
async fn auth_on_route(
    s: &dyn Store,
    t: &AccessToken,
    now: Millis,
    route: Option<RateLimit>,
) -> AuthOutcome {
    s.authenticate(&AuthRequest {
        token: t,
        client_ip: ip("10.0.0.1"),
        now,
        project: None,
        needs: Needs::ANY,
        route_rate_limit: route,
    })
    .await
    .unwrap()
}

fn limit(requests: u32, window_seconds: u32, burst: u32, per: Per) -> RateLimit {
    RateLimit {
        requests,
        window_seconds,
        burst,
        per,
    }
}

/// Gives the identity of `rec` the rate limit `l` (or none), as a PATCH would.
async fn set_rate_limit(s: &dyn Store, rec: &TokenRecord, l: Option<RateLimit>) {
    let mut cfg = s.get_token_auth(rec.identity_id).await.unwrap().unwrap();
    cfg.rate_limit = l;
    assert!(s.put_token_auth(&cfg, PutMode::Update).await.unwrap());
}

/// Another token of the identity of `rec`, shaped like it.
async fn sibling(s: &dyn Store, rec: &TokenRecord) -> AccessToken {
    let token = AccessToken::generate(rec.identity_id);
    let twin = TokenRecord {
        id: token.token_id,
        secret_hash: token.secret_hash(),
        num_uses: 0,
        last_used_at: None,
        ..rec.clone()
    };
    assert!(s.create_token(&twin).await.unwrap());
    token
}

fn rate_limited(outcome: &AuthOutcome) -> Option<Refusal> {
    match outcome {
        Err(Deny::RateLimited(r)) => Some(*r),
        _ => None,
    }
}

async fn uses(s: &dyn Store, t: &AccessToken) -> u64 {
    s.get_token(t.token_id).await.unwrap().unwrap().num_uses
}

// ---- the cases ----

async fn allowed_request_counts_one_use(s: &dyn Store) {
    let (t, _) = setup(s, |_| {}).await;
    let g = auth(s, &t, "10.0.0.1", T0 + 1000, None).await.unwrap();
    assert_eq!(
        (g.identity_name.as_str(), g.org_role.as_str()),
        ("ident-member", "member")
    );
    assert_eq!(g.project_roles, None);
    let rec = s.get_token(t.token_id).await.unwrap().unwrap();
    assert_eq!((rec.num_uses, rec.last_used_at), (1, Some(T0 + 1000)));
}

async fn wrong_secret_and_unknown_token(s: &dyn Store) {
    let (t, _) = setup(s, |_| {}).await;
    // Same identity and token id, another secret: only the stored hash tells them apart.
    let forged = AccessToken::from_parts(t.identity_id, t.token_id, [9; 32]);
    assert_eq!(
        auth(s, &forged, "10.0.0.1", T0, None).await,
        Err(Deny::UnknownToken)
    );
    let stranger = AccessToken::generate(t.identity_id);
    assert_eq!(
        auth(s, &stranger, "10.0.0.1", T0, None).await,
        Err(Deny::UnknownToken)
    );
    let no_identity = AccessToken::generate(Id::random());
    assert_eq!(
        auth(s, &no_identity, "10.0.0.1", T0, None).await,
        Err(Deny::UnknownToken)
    );
    assert_eq!(uses(s, &t).await, 0);
}

async fn revoked_expired_and_max_ttl_do_not_consume(s: &dyn Store) {
    let (t, _) = setup(s, |r| {
        r.ttl = 10;
        r.max_ttl = 15;
    })
    .await;
    assert_eq!(
        auth(s, &t, "10.0.0.1", T0 + 10_000, None).await,
        Err(Deny::Expired)
    );
    assert!(s.set_renewed(t.token_id, T0 + 9_000).await.unwrap());
    assert!(auth(s, &t, "10.0.0.1", T0 + 14_000, None).await.is_ok());
    assert_eq!(
        auth(s, &t, "10.0.0.1", T0 + 15_000, None).await,
        Err(Deny::MaxTtlReached)
    );
    assert!(s.revoke_token(t.token_id).await.unwrap());
    assert_eq!(
        auth(s, &t, "10.0.0.1", T0 + 1_000, None).await,
        Err(Deny::Revoked)
    );
    assert_eq!(uses(s, &t).await, 1);
}

async fn periodic_token_lives_one_period_from_renewal(s: &dyn Store) {
    let (t, _) = setup(s, |r| {
        r.period = 60;
        r.max_ttl = 61;
    })
    .await;
    assert_eq!(
        auth(s, &t, "10.0.0.1", T0 + 60_000, None).await,
        Err(Deny::Expired)
    );
    s.set_renewed(t.token_id, T0 + 100_000).await.unwrap();
    assert!(auth(s, &t, "10.0.0.1", T0 + 150_000, None).await.is_ok());
}

async fn trusted_ips_checked_before_use_is_counted(s: &dyn Store) {
    let (t, _) = setup(s, |r| {
        r.trusted_ips = vec![
            "127.0.0.1/32".parse().unwrap(),
            "192.168.16.0/20".parse().unwrap(),
            "fd00::/7".parse().unwrap(),
            "2001:db8::/127".parse().unwrap(),
        ];
        r.num_uses_limit = 100;
    })
    .await;
    for ok in [
        "127.0.0.1",
        "::ffff:127.0.0.1",
        "192.168.31.255",
        "fdff::1",
        "2001:db8::1",
    ] {
        assert!(
            auth(s, &t, ok, T0, None).await.is_ok(),
            "{ok} should be trusted"
        );
    }
    for bad in ["127.0.0.2", "192.168.32.0", "fe00::1", "2001:db8::2", "::1"] {
        assert_eq!(
            auth(s, &t, bad, T0, None).await,
            Err(Deny::IpNotTrusted(ip(bad))),
            "{bad} should be refused"
        );
    }
    assert_eq!(uses(s, &t).await, 5);
}

async fn ipv4_only_list_refuses_ipv6(s: &dyn Store) {
    let (t, _) = setup(s, |r| r.trusted_ips = vec!["0.0.0.0/0".parse().unwrap()]).await;
    assert!(auth(s, &t, "8.8.8.8", T0, None).await.is_ok());
    assert!(matches!(
        auth(s, &t, "2001:db8::9", T0, None).await,
        Err(Deny::IpNotTrusted(_))
    ));
}

async fn use_limit_is_exact(s: &dyn Store) {
    let (t, _) = setup(s, |r| r.num_uses_limit = 5).await;
    for _ in 0..5 {
        assert!(auth(s, &t, "10.0.0.1", T0, None).await.is_ok());
    }
    assert_eq!(
        auth(s, &t, "10.0.0.1", T0, None).await,
        Err(Deny::UsageLimitReached)
    );
    assert_eq!(uses(s, &t).await, 5);
}

async fn concurrent_uses_never_exceed_the_limit(s: Arc<dyn Store>) {
    let (t, _) = setup(&*s, |r| r.num_uses_limit = 50).await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let s = s.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            auth(&*s, &t, "10.0.0.1", T0, None).await.is_ok()
        }));
    }
    let mut allowed = 0;
    for task in tasks {
        allowed += task.await.unwrap() as u32;
    }
    assert_eq!(allowed, 50);
    assert_eq!(uses(&*s, &t).await, 50);
}

async fn concurrent_requests_never_exceed_the_burst(s: Arc<dyn Store>) {
    let (t, rec) = setup(&*s, |_| {}).await;
    set_rate_limit(&*s, &rec, Some(limit(50, 60, 50, Per::Identity))).await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let s = s.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            auth(&*s, &t, "10.0.0.1", T0, None).await
        }));
    }
    let (mut allowed, mut limited) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => allowed += 1,
            Err(Deny::RateLimited(_)) => limited += 1,
            Err(d) => panic!("unexpected refusal {d:?}"),
        }
    }
    assert_eq!((allowed, limited), (50, 150));
    assert_eq!(uses(&*s, &t).await, 50);
}

fn grant(role: &str, window: Option<(Millis, Millis)>) -> RoleGrant {
    RoleGrant {
        id: Id::random(),
        role: role.into(),
        is_temporary: window.is_some(),
        temporary_mode: window.map(|_| "relative".into()),
        temporary_range: window.map(|_| "1h".into()),
        temporary_access_start_time: window.map(|w| w.0),
        temporary_access_end_time: window.map(|w| w.1),
    }
}

async fn project_membership_in_the_same_step(s: &dyn Store) {
    let (t, rec) = setup(s, |_| {}).await;
    let mut m = Membership {
        id: Id::random(),
        project_id: "proj-a".into(),
        identity_id: rec.identity_id,
        roles: vec![
            grant("viewer", None),
            grant("admin", Some((T0, T0 + 1_000_000))),
        ],
        created_at: T0,
        updated_at: T0,
    };
    assert_eq!(
        s.put_membership(&m).await.unwrap(),
        MembershipWrite::Written
    );
    let g = auth(s, &t, "10.0.0.1", T0 + 1, Some("proj-a"))
        .await
        .unwrap();
    assert_eq!(g.project_roles.as_deref(), Some("viewer,admin"));
    let g = auth(s, &t, "10.0.0.1", T0 + 1_000_000, Some("proj-a"))
        .await
        .unwrap();
    assert_eq!(g.project_roles.as_deref(), Some("viewer"));
    assert_eq!(
        auth(s, &t, "10.0.0.1", T0, Some("proj-b")).await,
        Err(Deny::NoProjectAccess)
    );
    m.roles = vec![grant("admin", Some((T0, T0 + 1000)))];
    assert_eq!(
        s.put_membership(&m).await.unwrap(),
        MembershipWrite::Written
    );
    assert!(auth(s, &t, "10.0.0.1", T0 + 999, Some("proj-a"))
        .await
        .is_ok());
    assert_eq!(
        auth(s, &t, "10.0.0.1", T0 + 1000, Some("proj-a")).await,
        Err(Deny::NoProjectAccess)
    );
    m.roles = vec![grant("no-access", None)];
    assert_eq!(
        s.put_membership(&m).await.unwrap(),
        MembershipWrite::Written
    );
    assert_eq!(
        auth(s, &t, "10.0.0.1", T0, Some("proj-a")).await,
        Err(Deny::NoProjectAccess)
    );
    // Refusals for the project never consumed a use.
    assert_eq!(uses(s, &t).await, 3);
}

async fn membership_crud_and_listing(s: &dyn Store) {
    let a = identity("member");
    let b = identity("member");
    s.create_identity(&a).await.unwrap();
    s.create_identity(&b).await.unwrap();
    for (i, who) in [&a, &b].iter().enumerate() {
        let m = Membership {
            id: Id::random(),
            project_id: "p1".into(),
            identity_id: who.id,
            roles: vec![grant("member", None)],
            created_at: T0 + i as u64,
            updated_at: T0,
        };
        assert_eq!(
            s.put_membership(&m).await.unwrap(),
            MembershipWrite::Written
        );
    }
    let page = s.list_memberships("p1", None, 0, 10).await.unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(
        page.items.iter().map(|m| m.identity_id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );
    assert_eq!(
        s.list_memberships("p1", None, 1, 10)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let got = s.get_membership("p1", a.id).await.unwrap().unwrap();
    assert_eq!(got.roles[0].role, "member");
    assert_eq!(
        s.delete_membership("p1", a.id)
            .await
            .unwrap()
            .map(|m| m.identity_id),
        Some(a.id)
    );
    assert_eq!(s.get_membership("p1", a.id).await.unwrap(), None);
    assert_eq!(
        s.list_memberships("p1", None, 0, 10).await.unwrap().total,
        1
    );
    assert_eq!(
        s.list_memberships("p2", None, 0, 10).await.unwrap().total,
        0
    );
}

async fn identity_crud_and_listing(s: &dyn Store) {
    let mut a = identity("member");
    let mut b = identity("admin");
    b.created_at = T0 + 5;
    s.create_identity(&a).await.unwrap();
    s.create_identity(&b).await.unwrap();
    assert_eq!(s.get_identity(a.id).await.unwrap(), Some(a.clone()));
    let page = s.list_identities(None, 0, 10).await.unwrap();
    assert_eq!((page.total, page.items.len()), (2, 2));
    assert_eq!(page.items[0].id, a.id);
    assert_eq!(
        s.list_identities(None, 1, 1).await.unwrap().items[0].id,
        b.id
    );
    a.role = "admin".into();
    a.name = "renamed".into();
    assert!(s.update_identity(&a).await.unwrap());
    assert_eq!(s.get_identity(a.id).await.unwrap().unwrap().name, "renamed");
    let ghost = identity("member");
    assert!(!s.update_identity(&ghost).await.unwrap());
    assert_eq!(s.get_identity(ghost.id).await.unwrap(), None);
    b.has_delete_protection = true;
    assert!(s.update_identity(&b).await.unwrap());
    assert!(
        s.get_identity(b.id)
            .await
            .unwrap()
            .unwrap()
            .has_delete_protection
    );
}

fn identity_in(org: &str, created_at: Millis) -> Identity {
    Identity {
        org_id: org.into(),
        created_at,
        ..identity("member")
    }
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> Id) -> Vec<Id> {
    items.iter().map(id).collect()
}

async fn identities_list_per_org(s: &dyn Store) {
    // Interleaved creation, and an org whose id extends another's: the filter
    // is an exact match and keeps the oldest-first order within the org.
    let a1 = identity_in("org-a", T0 + 1);
    let b1 = identity_in("org-b", T0 + 2);
    let a2 = identity_in("org-a", T0 + 3);
    let aa = identity_in("org-aa", T0 + 4);
    let a3 = identity_in("org-a", T0 + 5);
    for i in [&a1, &b1, &a2, &aa, &a3] {
        s.create_identity(i).await.unwrap();
    }
    let page = s.list_identities(Some("org-a"), 0, 10).await.unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(ids(&page.items, |i| i.id), vec![a1.id, a2.id, a3.id]);
    let page = s.list_identities(Some("org-a"), 1, 1).await.unwrap();
    assert_eq!((page.total, ids(&page.items, |i| i.id)), (3, vec![a2.id]));
    let page = s.list_identities(Some("org-a"), 3, 10).await.unwrap();
    assert_eq!((page.total, page.items.len()), (3, 0));
    let page = s.list_identities(Some("org-b"), 0, 10).await.unwrap();
    assert_eq!((page.total, ids(&page.items, |i| i.id)), (1, vec![b1.id]));
    let page = s.list_identities(Some("org-none"), 0, 10).await.unwrap();
    assert_eq!((page.total, page.items.len()), (0, 0));
    assert_eq!(s.list_identities(None, 0, 10).await.unwrap().total, 5);

    assert!(matches!(
        s.delete_identity(a2.id).await.unwrap(),
        Deletion::Deleted(_)
    ));
    let page = s.list_identities(Some("org-a"), 0, 10).await.unwrap();
    assert_eq!(
        (page.total, ids(&page.items, |i| i.id)),
        (2, vec![a1.id, a3.id])
    );
    assert_eq!(s.list_identities(None, 0, 10).await.unwrap().total, 4);
}

async fn identity_org_is_fixed_at_creation(s: &dyn Store) {
    let a = identity_in("org-a", T0);
    s.create_identity(&a).await.unwrap();
    let moved = Identity {
        org_id: "org-b".into(),
        name: "renamed".into(),
        ..a.clone()
    };
    assert!(s.update_identity(&moved).await.unwrap());
    let stored = s.get_identity(a.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.org_id.as_str(), stored.name.as_str()),
        ("org-a", "renamed")
    );
    assert_eq!(
        s.list_identities(Some("org-a"), 0, 10).await.unwrap().total,
        1
    );
    assert_eq!(
        s.list_identities(Some("org-b"), 0, 10).await.unwrap().total,
        0
    );
}

async fn memberships_list_per_org(s: &dyn Store) {
    let a1 = identity_in("org-a", T0);
    let b1 = identity_in("org-b", T0);
    let a2 = identity_in("org-a", T0);
    // A project belongs to one organization, so org-b's identity is a
    // member of org-b's projects; the listing must still keep each
    // organization to its own members (data written before projects had
    // owners may mix them).
    for (n, i) in [&a1, &b1, &a2].into_iter().enumerate() {
        s.create_identity(i).await.unwrap();
        let projects = if i.org_id == "org-a" {
            ["p1", "p2"]
        } else {
            ["q1", "q2"]
        };
        for project in projects {
            let m = Membership {
                id: Id::random(),
                project_id: project.into(),
                identity_id: i.id,
                roles: vec![grant("member", None)],
                created_at: T0 + n as u64,
                updated_at: T0,
            };
            assert_eq!(
                s.put_membership(&m).await.unwrap(),
                MembershipWrite::Written
            );
        }
    }
    let page = s
        .list_memberships("p1", Some("org-a"), 0, 10)
        .await
        .unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(ids(&page.items, |m| m.identity_id), vec![a1.id, a2.id]);
    let page = s.list_memberships("p1", Some("org-a"), 1, 1).await.unwrap();
    assert_eq!(
        (page.total, ids(&page.items, |m| m.identity_id)),
        (2, vec![a2.id])
    );
    let page = s
        .list_memberships("p1", Some("org-b"), 0, 10)
        .await
        .unwrap();
    assert_eq!((page.total, page.items.len()), (0, 0));
    let page = s
        .list_memberships("q1", Some("org-b"), 0, 10)
        .await
        .unwrap();
    assert_eq!(
        (page.total, ids(&page.items, |m| m.identity_id)),
        (1, vec![b1.id])
    );
    assert_eq!(
        s.list_memberships("q1", Some("org-a"), 0, 10)
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        s.list_memberships("p1", Some("org-c"), 0, 10)
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        s.list_memberships("p1", None, 0, 10).await.unwrap().total,
        2
    );

    // Replacing a membership keeps it listed once.
    let mut m = s.get_membership("p1", a1.id).await.unwrap().unwrap();
    m.roles = vec![grant("viewer", None)];
    assert_eq!(
        s.put_membership(&m).await.unwrap(),
        MembershipWrite::Written
    );
    assert_eq!(
        s.list_memberships("p1", Some("org-a"), 0, 10)
            .await
            .unwrap()
            .total,
        2
    );

    assert!(s.delete_membership("p1", a1.id).await.unwrap().is_some());
    let page = s
        .list_memberships("p1", Some("org-a"), 0, 10)
        .await
        .unwrap();
    assert_eq!(
        (page.total, ids(&page.items, |m| m.identity_id)),
        (1, vec![a2.id])
    );
    assert_eq!(
        s.list_memberships("p2", Some("org-a"), 0, 10)
            .await
            .unwrap()
            .total,
        2
    );

    assert!(matches!(
        s.delete_identity(b1.id).await.unwrap(),
        Deletion::Deleted(_)
    ));
    for project in ["q1", "q2"] {
        let page = s
            .list_memberships(project, Some("org-b"), 0, 10)
            .await
            .unwrap();
        assert_eq!((page.total, page.items.len()), (0, 0), "{project}");
    }
    assert_eq!(
        s.list_memberships("p2", None, 0, 10).await.unwrap().total,
        2
    );
}

/// A membership in project `project` for a new identity of `org`.
async fn member_of(s: &dyn Store, org: &str, project: &str) -> (Identity, Membership) {
    let i = identity_in(org, T0);
    s.create_identity(&i).await.unwrap();
    let m = Membership {
        id: Id::random(),
        project_id: project.into(),
        identity_id: i.id,
        roles: vec![grant("admin", None)],
        created_at: T0,
        updated_at: T0,
    };
    (i, m)
}

async fn first_membership_claims_the_project(s: &dyn Store) {
    assert_eq!(s.project_owner("owned").await.unwrap(), None);
    let (a1, m1) = member_of(s, "org-a", "owned").await;
    assert_eq!(
        s.put_membership(&m1).await.unwrap(),
        MembershipWrite::Written
    );
    assert_eq!(
        s.project_owner("owned").await.unwrap().as_deref(),
        Some("org-a")
    );
    // Another identity of the same organization gets in; updates too.
    let (_, m2) = member_of(s, "org-a", "owned").await;
    assert_eq!(
        s.put_membership(&m2).await.unwrap(),
        MembershipWrite::Written
    );
    let mut again = m1.clone();
    again.roles = vec![grant("viewer", None)];
    assert_eq!(
        s.put_membership(&again).await.unwrap(),
        MembershipWrite::Written
    );
    // An identity that does not exist claims nothing.
    let ghost = Membership {
        identity_id: Id::random(),
        project_id: "unclaimed".into(),
        ..m1.clone()
    };
    assert_eq!(
        s.put_membership(&ghost).await.unwrap(),
        MembershipWrite::NoIdentity
    );
    assert_eq!(s.project_owner("unclaimed").await.unwrap(), None);
    // Removing every member does not free the project.
    s.delete_membership("owned", a1.id).await.unwrap();
    s.delete_membership("owned", m2.identity_id).await.unwrap();
    assert_eq!(
        s.project_owner("owned").await.unwrap().as_deref(),
        Some("org-a")
    );
}

async fn other_organizations_are_refused(s: &dyn Store) {
    let (_, ma) = member_of(s, "org-a", "pa").await;
    assert_eq!(
        s.put_membership(&ma).await.unwrap(),
        MembershipWrite::Written
    );
    let (b, mb) = member_of(s, "org-b", "pa").await;
    assert_eq!(
        s.put_membership(&mb).await.unwrap(),
        MembershipWrite::OtherOrganization
    );
    // Nothing of the refused write is anywhere: not readable, not listed,
    // not usable on the request path.
    assert_eq!(s.get_membership("pa", b.id).await.unwrap(), None);
    assert_eq!(
        s.list_memberships("pa", None, 0, 10).await.unwrap().total,
        1
    );
    assert_eq!(
        s.list_memberships("pa", Some("org-b"), 0, 10)
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        s.project_owner("pa").await.unwrap().as_deref(),
        Some("org-a")
    );
}

async fn owner_is_set_explicitly_unless_another_org_has_members(s: &dyn Store) {
    // An unclaimed project is given to an organization, whose members then
    // get in and others do not.
    assert_eq!(
        s.set_project_owner("given", "org-b").await.unwrap(),
        OwnerChange::Set { previous: None }
    );
    let (_, ma) = member_of(s, "org-a", "given").await;
    assert_eq!(
        s.put_membership(&ma).await.unwrap(),
        MembershipWrite::OtherOrganization
    );
    let (b, mb) = member_of(s, "org-b", "given").await;
    assert_eq!(
        s.put_membership(&mb).await.unwrap(),
        MembershipWrite::Written
    );
    // It cannot move while org-b has a member there.
    assert_eq!(
        s.set_project_owner("given", "org-a").await.unwrap(),
        OwnerChange::MembersOfAnotherOrganization
    );
    assert_eq!(
        s.project_owner("given").await.unwrap().as_deref(),
        Some("org-b")
    );
    // Setting the same owner again is no change at all.
    assert_eq!(
        s.set_project_owner("given", "org-b").await.unwrap(),
        OwnerChange::Set {
            previous: Some("org-b".into())
        }
    );
    // Once the member is gone, it moves, and org-a's identity gets in.
    s.delete_membership("given", b.id).await.unwrap();
    assert_eq!(
        s.set_project_owner("given", "org-a").await.unwrap(),
        OwnerChange::Set {
            previous: Some("org-b".into())
        }
    );
    assert_eq!(
        s.put_membership(&ma).await.unwrap(),
        MembershipWrite::Written
    );
    assert_eq!(
        s.put_membership(&mb).await.unwrap(),
        MembershipWrite::OtherOrganization
    );
}

async fn racing_first_writes_exactly_one_org_wins(s: Arc<dyn Store>) {
    // Many rounds, each a new project that identities of two organizations
    // try to join at the same moment.
    for round in 0..20 {
        let project = format!("race-{round}");
        let (a, ma) = member_of(&*s, "org-a", &project).await;
        let (b, mb) = member_of(&*s, "org-b", &project).await;
        let (sa, sb) = (s.clone(), s.clone());
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let (ba, bb) = (barrier.clone(), barrier);
        let ta = tokio::spawn(async move {
            ba.wait().await;
            sa.put_membership(&ma).await.unwrap()
        });
        let tb = tokio::spawn(async move {
            bb.wait().await;
            sb.put_membership(&mb).await.unwrap()
        });
        let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
        let owner = s.project_owner(&project).await.unwrap();
        let (winner, loser) = match (ra, rb) {
            (MembershipWrite::Written, MembershipWrite::OtherOrganization) => (a.id, b.id),
            (MembershipWrite::OtherOrganization, MembershipWrite::Written) => (b.id, a.id),
            other => panic!("{project}: exactly one must win, got {other:?}"),
        };
        let winner_org = if winner == a.id { "org-a" } else { "org-b" };
        assert_eq!(owner.as_deref(), Some(winner_org), "{project}");
        assert!(s.get_membership(&project, winner).await.unwrap().is_some());
        assert_eq!(s.get_membership(&project, loser).await.unwrap(), None);
        assert_eq!(
            s.list_memberships(&project, None, 0, 10)
                .await
                .unwrap()
                .total,
            1,
            "{project}"
        );
    }
}

async fn role_change_is_seen_on_the_next_check(s: &dyn Store) {
    let (t, rec) = setup(s, |_| {}).await;
    let mut ident = s.get_identity(rec.identity_id).await.unwrap().unwrap();
    ident.role = "admin".into();
    s.update_identity(&ident).await.unwrap();
    assert_eq!(
        auth(s, &t, "10.0.0.1", T0, None).await.unwrap().org_role,
        "admin"
    );
}

async fn token_auth_config_create_update_remove(s: &dyn Store) {
    let ident = identity("member");
    let cfg = config(ident.id);
    assert!(
        !s.put_token_auth(&cfg, PutMode::Create).await.unwrap(),
        "no identity yet"
    );
    s.create_identity(&ident).await.unwrap();
    assert!(
        !s.put_token_auth(&cfg, PutMode::Update).await.unwrap(),
        "nothing to update"
    );
    assert!(s.put_token_auth(&cfg, PutMode::Create).await.unwrap());
    assert!(
        !s.put_token_auth(&cfg, PutMode::Create).await.unwrap(),
        "attached twice"
    );
    let mut changed = cfg.clone();
    changed.num_uses_limit = 9;
    changed.trusted_ips = vec!["10.0.0.0/8".parse().unwrap()];
    assert!(s.put_token_auth(&changed, PutMode::Update).await.unwrap());
    assert_eq!(
        s.get_token_auth(ident.id).await.unwrap(),
        Some(changed.clone())
    );
    assert_eq!(s.remove_token_auth(ident.id).await.unwrap(), Some(changed));
    assert_eq!(s.get_token_auth(ident.id).await.unwrap(), None);
    assert_eq!(s.remove_token_auth(ident.id).await.unwrap(), None);
}

async fn tokens_need_token_auth_and_list_newest_first(s: &dyn Store) {
    let (t1, rec) = setup(s, |_| {}).await;
    let t2 = AccessToken::generate(rec.identity_id);
    let mut rec2 = rec.clone();
    rec2.id = t2.token_id;
    rec2.secret_hash = t2.secret_hash();
    rec2.created_at = T0 + 10;
    rec2.name = String::new();
    assert!(s.create_token(&rec2).await.unwrap());
    let list = s.list_tokens(rec.identity_id, 0, 10).await.unwrap();
    assert_eq!(
        list.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![t2.token_id, t1.token_id]
    );
    assert_eq!(list[0], rec2, "a stored token reads back unchanged");
    assert_eq!(
        s.list_tokens(rec.identity_id, 1, 10).await.unwrap().len(),
        1
    );
    assert_eq!(
        s.rename_token(t1.token_id, "renamed")
            .await
            .unwrap()
            .unwrap()
            .name,
        "renamed"
    );
    assert_eq!(s.rename_token(Id::random(), "x").await.unwrap(), None);
    assert!(!s.revoke_token(Id::random()).await.unwrap());
    assert!(!s.set_renewed(Id::random(), T0).await.unwrap());

    let lonely = identity("member");
    s.create_identity(&lonely).await.unwrap();
    let mut orphan = rec.clone();
    orphan.identity_id = lonely.id;
    orphan.id = Id::random();
    assert!(
        !s.create_token(&orphan).await.unwrap(),
        "no Token Auth, no token"
    );
}

async fn removing_token_auth_revokes_every_token(s: &dyn Store) {
    let (t, rec) = setup(s, |_| {}).await;
    s.remove_token_auth(rec.identity_id).await.unwrap();
    assert_eq!(auth(s, &t, "10.0.0.1", T0, None).await, Err(Deny::Revoked));
    assert!(s.get_token(t.token_id).await.unwrap().unwrap().revoked);
}

async fn deleting_an_identity_removes_everything(s: &dyn Store) {
    let (t, rec) = setup(s, |_| {}).await;
    let m = Membership {
        id: Id::random(),
        project_id: "pz".into(),
        identity_id: rec.identity_id,
        roles: vec![grant("member", None)],
        created_at: T0,
        updated_at: T0,
    };
    assert_eq!(
        s.put_membership(&m).await.unwrap(),
        MembershipWrite::Written
    );
    let Deletion::Deleted(gone) = s.delete_identity(rec.identity_id).await.unwrap() else {
        panic!("the identity should be deleted");
    };
    assert_eq!(gone.id, rec.identity_id);
    assert_eq!(
        auth(s, &t, "10.0.0.1", T0, None).await,
        Err(Deny::UnknownToken)
    );
    assert_eq!(s.get_identity(rec.identity_id).await.unwrap(), None);
    assert_eq!(s.get_token(t.token_id).await.unwrap(), None);
    assert_eq!(s.get_token_auth(rec.identity_id).await.unwrap(), None);
    assert_eq!(
        s.list_memberships("pz", None, 0, 10).await.unwrap().total,
        0
    );
    assert_eq!(s.list_identities(None, 0, 10).await.unwrap().total, 0);
    assert_eq!(
        s.delete_identity(rec.identity_id).await.unwrap(),
        Deletion::NotFound
    );
}

async fn offsets_past_the_end_give_empty_pages(s: &dyn Store) {
    let (_, rec) = setup(s, |_| {}).await;
    for offset in [2, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
        let ids = s.list_identities(None, offset, 100).await.unwrap();
        assert_eq!((ids.items.len(), ids.total), (0, 1), "offset {offset}");
        assert!(s
            .list_tokens(rec.identity_id, offset, 100)
            .await
            .unwrap()
            .is_empty());
        let ms = s.list_memberships("p", None, offset, 100).await.unwrap();
        assert!(ms.items.is_empty());
    }
}

async fn required_org_role_refuses_without_consuming(s: &dyn Store) {
    let (t, rec) = setup(s, |r| r.num_uses_limit = 1).await;
    let ask = |role| AuthRequest {
        token: &t,
        client_ip: ip("10.0.0.1"),
        now: T0,
        project: None,
        needs: Needs {
            org_role: role,
            project_role: None,
        },
        route_rate_limit: None,
    };
    let refused = s.authenticate(&ask(Some("admin"))).await.unwrap();
    assert_eq!(refused, Err(Deny::OrgRoleNotAllowed));
    assert_eq!(uses(s, &t).await, 0, "a refused caller keeps its uses");
    let mut ident = s.get_identity(rec.identity_id).await.unwrap().unwrap();
    ident.role = "admin".into();
    s.update_identity(&ident).await.unwrap();
    assert!(s.authenticate(&ask(Some("admin"))).await.unwrap().is_ok());
    assert_eq!(uses(s, &t).await, 1);
}

async fn required_roles_refuse_without_consuming(s: &dyn Store) {
    let (t, rec) = setup(s, |r| r.num_uses_limit = 2).await;
    let m = Membership {
        id: Id::random(),
        project_id: "proj-r".into(),
        identity_id: rec.identity_id,
        roles: vec![grant("viewer", None), grant("admin", Some((T0, T0 + 1000)))],
        created_at: T0,
        updated_at: T0,
    };
    s.put_membership(&m).await.unwrap();
    let ask = |now, org_role, project_role| AuthRequest {
        token: &t,
        client_ip: ip("10.0.0.1"),
        now,
        project: Some("proj-r"),
        needs: Needs {
            org_role,
            project_role,
        },
        route_rate_limit: None,
    };
    // The admin grant has expired at T0 + 1000: only viewer is active.
    let refused = s
        .authenticate(&ask(T0 + 1000, None, Some("admin")))
        .await
        .unwrap();
    assert_eq!(refused, Err(Deny::ProjectRoleNotAllowed));
    let refused = s
        .authenticate(&ask(T0 + 1000, Some("admin,owner"), Some("viewer")))
        .await
        .unwrap();
    assert_eq!(refused, Err(Deny::OrgRoleNotAllowed));
    assert_eq!(uses(s, &t).await, 0, "a refused caller keeps its uses");
    // Any one of a list will do, for either role.
    let g = s
        .authenticate(&ask(T0 + 1000, Some("admin,member"), Some("admin,viewer")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.project_roles.as_deref(), Some("viewer"));
    assert!(s
        .authenticate(&ask(T0 + 1, None, Some("admin")))
        .await
        .unwrap()
        .is_ok());
    assert_eq!(uses(s, &t).await, 2);
}

async fn delete_protection_is_checked_in_the_same_step(s: &dyn Store) {
    let (t, rec) = setup(s, |_| {}).await;
    let mut ident = s.get_identity(rec.identity_id).await.unwrap().unwrap();
    ident.has_delete_protection = true;
    s.update_identity(&ident).await.unwrap();
    assert_eq!(
        s.delete_identity(ident.id).await.unwrap(),
        Deletion::Protected
    );
    assert!(s.get_identity(ident.id).await.unwrap().is_some());
    assert!(
        auth(s, &t, "10.0.0.1", T0, None).await.is_ok(),
        "nothing was revoked"
    );
    ident.has_delete_protection = false;
    s.update_identity(&ident).await.unwrap();
    assert!(matches!(
        s.delete_identity(ident.id).await.unwrap(),
        Deletion::Deleted(_)
    ));
}

async fn memberships_need_an_existing_identity(s: &dyn Store) {
    let ghost = Membership {
        id: Id::random(),
        project_id: "p-ghost".into(),
        identity_id: Id::random(),
        roles: vec![grant("admin", None)],
        created_at: T0,
        updated_at: T0,
    };
    assert_eq!(
        s.put_membership(&ghost).await.unwrap(),
        MembershipWrite::NoIdentity
    );
    assert_eq!(
        s.get_membership("p-ghost", ghost.identity_id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.list_memberships("p-ghost", None, 0, 10)
            .await
            .unwrap()
            .total,
        0
    );
}

async fn trusted_ips_read_back_exactly(s: &dyn Store) {
    // Whatever the API lets through, the record must survive the store: an
    // IPv6 net over the v4-mapped range included (stores never reinterpret it).
    let nets: Vec<ipnet::IpNet> = vec![
        "::ffff:10.0.0.0/104".parse().unwrap(),
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    let (t, rec) = setup(s, |r| r.trusted_ips = nets.clone()).await;
    let back = s.get_token(t.token_id).await.unwrap().unwrap();
    assert_eq!(back, rec);
    assert!(auth(s, &t, "10.9.9.9", T0, None).await.is_ok());
    assert!(s.revoke_token(t.token_id).await.unwrap());
    assert_eq!(auth(s, &t, "10.9.9.9", T0, None).await, Err(Deny::Revoked));
}

async fn rate_limit_refuses_past_the_burst_without_consuming(s: &dyn Store) {
    let (a, rec) = setup(s, |_| {}).await;
    let b = sibling(s, &rec).await;
    let l = limit(3, 1, 3, Per::Identity);
    set_rate_limit(s, &rec, Some(l)).await;
    // Per identity: the two tokens share one bucket.
    for t in [&a, &b, &a] {
        assert!(auth(s, t, "10.0.0.1", T0, None).await.is_ok());
    }
    for t in [&b, &a] {
        let refused = auth(s, t, "10.0.0.1", T0, None).await;
        assert_eq!(
            rate_limited(&refused),
            Some(Refusal {
                limit: l,
                retry_after_ms: 334,
            }),
            "{refused:?}"
        );
    }
    assert_eq!((uses(s, &a).await, uses(s, &b).await), (2, 1));
    let stamped = s.get_token(b.token_id).await.unwrap().unwrap().last_used_at;
    assert_eq!(stamped, Some(T0), "a refusal stamps no lastUsedAt");
    // Refusals did not advance the bucket: one interval later, one more fits.
    assert!(rate_limited(&auth(s, &b, "10.0.0.1", T0 + 333, None).await).is_some());
    assert!(auth(s, &b, "10.0.0.1", T0 + 334, None).await.is_ok());
    assert!(rate_limited(&auth(s, &a, "10.0.0.1", T0 + 334, None).await).is_some());
    assert_eq!(uses(s, &b).await, 2);
}

async fn per_token_limits_count_each_token(s: &dyn Store) {
    let (a, rec) = setup(s, |_| {}).await;
    let b = sibling(s, &rec).await;
    set_rate_limit(s, &rec, Some(limit(2, 60, 2, Per::Token))).await;
    for t in [&a, &a, &b, &b] {
        assert!(auth(s, t, "10.0.0.1", T0, None).await.is_ok());
    }
    for t in [&a, &b] {
        let r = rate_limited(&auth(s, t, "10.0.0.1", T0, None).await).unwrap();
        assert_eq!((r.retry_after_ms, r.limit.per), (30_000, Per::Token));
    }
}

async fn a_changed_or_removed_limit_applies_at_once(s: &dyn Store) {
    let (t, rec) = setup(s, |_| {}).await;
    set_rate_limit(s, &rec, Some(limit(1, 60, 1, Per::Identity))).await;
    assert!(auth(s, &t, "10.0.0.1", T0, None).await.is_ok());
    assert!(rate_limited(&auth(s, &t, "10.0.0.1", T0, None).await).is_some());
    set_rate_limit(s, &rec, None).await;
    for _ in 0..5 {
        assert!(auth(s, &t, "10.0.0.1", T0, None).await.is_ok());
    }
    // Back on: the identity's bucket is as the last allowed request left it.
    set_rate_limit(s, &rec, Some(limit(1, 60, 1, Per::Identity))).await;
    assert!(rate_limited(&auth(s, &t, "10.0.0.1", T0 + 1_000, None).await).is_some());
    // Loosened: the same bucket, read with the new policy.
    set_rate_limit(s, &rec, Some(limit(100, 60, 100, Per::Identity))).await;
    assert!(auth(s, &t, "10.0.0.1", T0 + 1_000, None).await.is_ok());
    assert_eq!(uses(s, &t).await, 7);
    // Token Auth removed and attached again: no limit is left behind.
    s.remove_token_auth(rec.identity_id).await.unwrap();
    assert!(s
        .put_token_auth(&config(rec.identity_id), PutMode::Create)
        .await
        .unwrap());
    let fresh = sibling(s, &rec).await;
    for _ in 0..3 {
        assert!(auth(s, &fresh, "10.0.0.1", T0 + 1_000, None).await.is_ok());
    }
}

async fn a_route_default_applies_only_without_an_own_limit(s: &dyn Store) {
    let (t, rec) = setup(s, |_| {}).await;
    let route = limit(2, 60, 2, Per::Identity);
    for _ in 0..2 {
        assert!(auth_on_route(s, &t, T0, Some(route)).await.is_ok());
    }
    let r = rate_limited(&auth_on_route(s, &t, T0, Some(route)).await).unwrap();
    assert_eq!(r.limit, route);
    // Other routes, without a default, are not limited.
    assert!(auth_on_route(s, &t, T0, None).await.is_ok());
    // Another route's default is a bucket of its own.
    let other = limit(1, 60, 1, Per::Token);
    assert!(auth_on_route(s, &t, T0, Some(other)).await.is_ok());
    assert!(rate_limited(&auth_on_route(s, &t, T0, Some(other)).await).is_some());
    // The identity's own limit wins over any route's.
    let own = limit(5, 60, 5, Per::Identity);
    set_rate_limit(s, &rec, Some(own)).await;
    for _ in 0..5 {
        assert!(auth_on_route(s, &t, T0, Some(route)).await.is_ok());
    }
    let r = rate_limited(&auth_on_route(s, &t, T0, Some(route)).await).unwrap();
    assert_eq!(r.limit, own);
    assert_eq!(uses(s, &t).await, 2 + 1 + 1 + 5);
}

async fn the_rate_limit_is_checked_after_every_other_check(s: &dyn Store) {
    let (t, rec) = setup(s, |r| {
        r.num_uses_limit = 2;
        r.trusted_ips = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    set_rate_limit(s, &rec, Some(limit(1, 60, 1, Per::Identity))).await;
    // Refused for what comes first: the bucket is untouched.
    assert!(matches!(
        auth(s, &t, "192.0.2.1", T0, None).await,
        Err(Deny::IpNotTrusted(_))
    ));
    assert_eq!(
        auth(s, &t, "10.0.0.1", T0, Some("nowhere")).await,
        Err(Deny::NoProjectAccess)
    );
    assert!(auth(s, &t, "10.0.0.1", T0, None).await.is_ok());
    assert!(rate_limited(&auth(s, &t, "10.0.0.1", T0, None).await).is_some());
    assert!(auth(s, &t, "10.0.0.1", T0 + 60_000, None).await.is_ok());
    // Exhausted: the use limit answers, not the (full) bucket.
    assert_eq!(
        auth(s, &t, "10.0.0.1", T0 + 60_000, None).await,
        Err(Deny::UsageLimitReached)
    );
    assert_eq!(uses(s, &t).await, 2);
}

async fn ping_answers(s: &dyn Store) {
    s.ping().await.unwrap();
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        contract!(@variant redis_store, super::redis_subject(false).await; $($case),*);
        contract!(@variant redis_store_cached, super::redis_subject(true).await; $($case),*);
        contract!(@variant redis_cluster_store, super::cluster_subject(false).await; $($case),*);
        contract!(@variant redis_cluster_store_cached, super::cluster_subject(true).await; $($case),*);
        contract!(@variant embedded_store, super::embedded_subject(); $($case),*);
    };
    (@variant $name:ident, $subject:expr; $($case:ident),*) => {
        mod $name {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let s = $subject;
                    super::$case(&*s.store).await;
                }
            )*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_uses_never_exceed_the_limit() {
                let s = $subject;
                super::concurrent_uses_never_exceed_the_limit(s.store.clone()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_requests_never_exceed_the_burst() {
                let s = $subject;
                super::concurrent_requests_never_exceed_the_burst(s.store.clone()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn racing_first_writes_exactly_one_org_wins() {
                let s = $subject;
                super::racing_first_writes_exactly_one_org_wins(s.store.clone()).await;
            }
        }
    };
}

contract!(
    allowed_request_counts_one_use,
    wrong_secret_and_unknown_token,
    revoked_expired_and_max_ttl_do_not_consume,
    periodic_token_lives_one_period_from_renewal,
    trusted_ips_checked_before_use_is_counted,
    ipv4_only_list_refuses_ipv6,
    use_limit_is_exact,
    project_membership_in_the_same_step,
    membership_crud_and_listing,
    identity_crud_and_listing,
    identities_list_per_org,
    identity_org_is_fixed_at_creation,
    memberships_list_per_org,
    first_membership_claims_the_project,
    other_organizations_are_refused,
    owner_is_set_explicitly_unless_another_org_has_members,
    role_change_is_seen_on_the_next_check,
    token_auth_config_create_update_remove,
    tokens_need_token_auth_and_list_newest_first,
    removing_token_auth_revokes_every_token,
    deleting_an_identity_removes_everything,
    offsets_past_the_end_give_empty_pages,
    required_org_role_refuses_without_consuming,
    required_roles_refuse_without_consuming,
    delete_protection_is_checked_in_the_same_step,
    memberships_need_an_existing_identity,
    trusted_ips_read_back_exactly,
    rate_limit_refuses_past_the_burst_without_consuming,
    per_token_limits_count_each_token,
    a_changed_or_removed_limit_applies_at_once,
    a_route_default_applies_only_without_an_own_limit,
    the_rate_limit_is_checked_after_every_other_check,
    ping_answers,
);

// The near cache, beyond answering like every other store (the `_cached`
// variants above): it really takes unlimited tokens off Redis, keeps their
// uses, and hears about changes another gateway makes.

/// Two cached stores on one Redis, as two gateways would be.
async fn cached_pair() -> (Redis, Arc<dyn Store>, Arc<dyn Store>) {
    let redis = Redis::start();
    let make = || {
        RedisStore::new(RedisSettings {
            urls: vec![redis.url()],
            cluster: false,
            connect_timeout: std::time::Duration::from_secs(2),
            response_timeout: std::time::Duration::from_secs(2),
            retries: 1,
            cache: near_cache(true),
            clock: Clock::Caller,
        })
        .unwrap()
    };
    let a = ready(make()).await;
    let b = ready(make()).await;
    (redis, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_decides_unlimited_tokens_without_redis_and_keeps_their_uses() {
    let (redis, a, b) = cached_pair().await;
    let (t, _) = setup(&*a, |_| {}).await;
    auth(&*b, &t, "10.0.0.1", T0 + 1000, None).await.unwrap();
    redis.reset_stats();
    for i in 0..10 {
        auth(&*b, &t, "10.0.0.1", T0 + 2000 + i, None)
            .await
            .unwrap();
    }
    assert_eq!(redis.command_calls("evalsha"), 0, "decided from the cache");
    // Refusals from the cached record need no Redis either.
    assert_eq!(
        auth(&*b, &t, "10.0.0.1", T0 + 3600 * 1000, None).await,
        Err(Deny::Expired)
    );
    assert_eq!(redis.command_calls("evalsha"), 0);
    // B knows its own uses at once; A (and Redis) once the batch is written.
    assert_eq!(uses(&*b, &t).await, 11);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while uses(&*a, &t).await != 11 {
        assert!(std::time::Instant::now() < deadline, "uses never written");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let rec = a.get_token(t.token_id).await.unwrap().unwrap();
    assert_eq!(rec.last_used_at, Some(T0 + 2009));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_hears_a_revoke_made_by_another_gateway() {
    let (_redis, a, b) = cached_pair().await;
    let (t, _) = setup(&*a, |_| {}).await;
    auth(&*b, &t, "10.0.0.1", T0 + 1000, None).await.unwrap();
    auth(&*b, &t, "10.0.0.1", T0 + 1000, None).await.unwrap();
    assert!(a.revoke_token(t.token_id).await.unwrap());
    // The invalidation travels on B's own connection: bounded wait, and no
    // allow is accepted after the first refusal.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match auth(&*b, &t, "10.0.0.1", T0 + 1000, None).await {
            Err(Deny::Revoked) => break,
            Ok(_) => assert!(std::time::Instant::now() < deadline, "B kept allowing"),
            Err(d) => panic!("unexpected refusal {d:?}"),
        }
    }
    for _ in 0..20 {
        assert_eq!(
            auth(&*b, &t, "10.0.0.1", T0 + 1000, None).await,
            Err(Deny::Revoked)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_leaves_limited_tokens_to_redis() {
    let (redis, _a, b) = cached_pair().await;
    let (t, _) = setup(&*b, |r| r.num_uses_limit = 3).await;
    // The first call also loads the script (a refused EVALSHA counts too).
    auth(&*b, &t, "10.0.0.1", T0 + 1000, None).await.unwrap();
    redis.reset_stats();
    for _ in 0..2 {
        auth(&*b, &t, "10.0.0.1", T0 + 1000, None).await.unwrap();
    }
    assert_eq!(
        auth(&*b, &t, "10.0.0.1", T0 + 1000, None).await,
        Err(Deny::UsageLimitReached)
    );
    assert_eq!(redis.command_calls("evalsha"), 3);
    assert_eq!(uses(&*b, &t).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_never_decides_a_rate_limited_request() {
    let (redis, a, b) = cached_pair().await;
    let (t, rec) = setup(&*a, |_| {}).await;
    // Cached at B while the identity has no limit.
    auth(&*b, &t, "10.0.0.1", T0, None).await.unwrap();
    redis.reset_stats();
    auth(&*b, &t, "10.0.0.1", T0, None).await.unwrap();
    assert_eq!(redis.command_calls("evalsha"), 0, "decided from B's cache");
    // A limit set through A: every request at B now goes to the script.
    set_rate_limit(&*a, &rec, Some(limit(3, 60, 3, Per::Identity))).await;
    redis.reset_stats();
    let mut allowed = 0;
    for _ in 0..6 {
        allowed += auth(&*b, &t, "10.0.0.1", T0, None).await.is_ok() as u32;
    }
    assert_eq!(allowed, 3, "B held to A's new limit at once");
    assert_eq!(redis.command_calls("evalsha"), 6);
    // Without the limit, the cache serves the identity again; a route's
    // default still sends each request it covers to Redis.
    set_rate_limit(&*a, &rec, None).await;
    auth(&*b, &t, "10.0.0.1", T0, None).await.unwrap();
    redis.reset_stats();
    auth(&*b, &t, "10.0.0.1", T0, None).await.unwrap();
    assert_eq!(redis.command_calls("evalsha"), 0);
    let route = limit(2, 60, 2, Per::Token);
    let outcomes = [
        auth_on_route(&*b, &t, T0, Some(route)).await.is_ok(),
        auth_on_route(&*b, &t, T0, Some(route)).await.is_ok(),
        auth_on_route(&*b, &t, T0, Some(route)).await.is_ok(),
    ];
    assert_eq!(outcomes, [true, true, false]);
    assert_eq!(redis.command_calls("evalsha"), 3);
    auth(&*b, &t, "10.0.0.1", T0, None).await.unwrap();
    assert_eq!(
        redis.command_calls("evalsha"),
        3,
        "the rest still from the cache"
    );
}

// Time, on Redis: every gateway in front of one Redis must decide alike, so
// the check script reads Redis's clock, and what a gateway stamps comes from
// Redis's clock as it last measured it. `Clock::Caller` (every case above)
// exists only so those cases can choose their instants.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_decides_expiry_by_its_own_clock_whatever_the_gateway_says() {
    let redis = Redis::start();
    let store = ready(
        RedisStore::new(RedisSettings {
            urls: vec![redis.url()],
            cluster: false,
            connect_timeout: std::time::Duration::from_secs(2),
            response_timeout: std::time::Duration::from_secs(2),
            retries: 1,
            cache: None,
            clock: Clock::Redis,
        })
        .unwrap(),
    )
    .await;
    // Same machine: Redis's clock and ours agree to within a round trip.
    let now = store.now();
    assert!(now.abs_diff(tokengate::model::now_millis()) < 1000);
    let hour = 3600 * 1000;

    // Young by Redis's clock, asked by a gateway three hours ahead.
    let (young, young_rec) = setup(&*store, |r| r.created_at = now).await;
    assert!(auth(&*store, &young, "10.0.0.1", now + 3 * hour, None)
        .await
        .is_ok());

    // Expired by Redis's clock, asked by a gateway whose clock says it was
    // made a second ago.
    let (old, rec) = setup(&*store, |r| r.created_at = now - 2 * hour).await;
    assert_eq!(
        auth(&*store, &old, "10.0.0.1", rec.created_at + 1000, None).await,
        Err(Deny::Expired)
    );

    // A membership window too: started by Redis's clock, though not yet by
    // the asking gateway's.
    let project = "clock-project";
    let m = Membership {
        id: Id::random(),
        identity_id: young_rec.identity_id,
        project_id: project.into(),
        roles: vec![grant("viewer", Some((now - hour, now + hour)))],
        created_at: now,
        updated_at: now,
    };
    assert_eq!(
        store.put_membership(&m).await.unwrap(),
        MembershipWrite::Written
    );
    assert!(
        auth(&*store, &young, "10.0.0.1", now - 2 * hour, Some(project))
            .await
            .is_ok()
    );
    assert_eq!(uses(&*store, &young).await, 2);
}
