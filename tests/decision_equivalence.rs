//! One decision, two implementations, no drift: generated token records, trusted IPs, clients, memberships, needs and instants must get the same answer from `auth::decide`, the Redis store's check script and the embedded store, and only an allowed request counts a use.

#![allow(clippy::unwrap_used)]

mod common;

use common::Redis;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use tokengate::auth::{self, Needs};
use tokengate::model::{
    default_trusted_ips, Identity, Membership, Millis, RoleGrant, TokenAuthConfig, TokenRecord,
};
use tokengate::store::embedded::EmbeddedStore;
use tokengate::store::redis::{Clock, RedisSettings, RedisStore};
use tokengate::store::{AuthOutcome, AuthRequest, MembershipWrite, PutMode, Store};
use tokengate::token::{AccessToken, Id};

/// Every generated instant sits around this one (2027), far from 0 so that
/// "0 = never" in the Redis record never collides with a real time.
const T0: Millis = 1_800_000_000_000;
/// The project every generated membership is in, and one nobody is in.
const PROJECT: &str = "p-main";
const OTHER_PROJECT: &str = "p-other";
const ORG: &str = "org";

/// Org roles an identity may hold: the contract's, a custom slug.
const ORG_ROLES: &[&str] = &["admin", "member", "no-access", "reader"];
const PROJECT_ROLES: &[&str] = &["admin", "viewer", "developer", "no-access"];
/// What a request may need: single roles, any-of lists, and lists with
/// empty members (which name no role at all).
const NEEDED: &[&str] = &[
    "admin",
    "member",
    "viewer",
    "developer",
    "admin,member",
    "viewer,developer",
    "no-access",
    ",",
    "admin,",
    "",
];

/// Trusted nets worth naming: defaults, /0 of each family, narrow prefixes
/// (/31, /127), an IPv4-mapped IPv6 net (kept in family 6 by the stores, so
/// it never matches a client, which is compared in canonical form).
const NETS: &[&str] = &[
    "0.0.0.0/0",
    "::/0",
    "10.0.0.0/8",
    "10.0.0.6/31",
    "192.168.1.1/32",
    "203.0.113.0/24",
    "fd00::/8",
    "2001:db8::/127",
    "2001:db8::1/128",
    "::ffff:10.0.0.0/104",
    "::/128",
];

/// Clients near those nets: inside, just outside, mapped, unspecified.
const CLIENTS: &[&str] = &[
    "10.0.0.6",
    "10.0.0.7",
    "10.0.0.8",
    "10.1.2.3",
    "11.0.0.1",
    "192.168.1.1",
    "192.168.1.2",
    "203.0.113.9",
    "::ffff:10.0.0.6",
    "::ffff:192.168.1.1",
    "::ffff:203.0.113.9",
    "2001:db8::",
    "2001:db8::1",
    "2001:db8::2",
    "fd12::1",
    "::1",
    "0.0.0.0",
    "::",
];

#[derive(Debug, Clone)]
enum ClientSpec {
    Named(&'static str),
    V4(u32),
    V6(u128),
    /// An IPv4 client as a dual-stack listener reports it.
    Mapped(u32),
}

impl ClientSpec {
    fn ip(&self) -> IpAddr {
        match self {
            ClientSpec::Named(s) => s.parse().unwrap(),
            ClientSpec::V4(a) => IpAddr::V4(Ipv4Addr::from(*a)),
            ClientSpec::V6(a) => IpAddr::V6(Ipv6Addr::from(*a)),
            ClientSpec::Mapped(a) => IpAddr::V6(Ipv4Addr::from(*a).to_ipv6_mapped()),
        }
    }
}

#[derive(Debug, Clone)]
enum NetSpec {
    Named(&'static str),
    /// A net around the client's own (canonical) address with this prefix,
    /// one address bit flipped when `flip` is set: a flip inside the
    /// prefix puts the client just outside, one after it leaves it inside.
    /// `mapped` writes an IPv4 client's net as its IPv4-mapped IPv6 form.
    AroundClient {
        prefix: u8,
        flip: Option<u8>,
        mapped: bool,
    },
}

#[derive(Debug, Clone)]
enum Trusted {
    Default,
    Empty,
    List(Vec<NetSpec>),
}

fn trusted_ips(t: &Trusted, client: IpAddr) -> Vec<IpNet> {
    let list = match t {
        Trusted::Default => return default_trusted_ips(),
        Trusted::Empty => return Vec::new(),
        Trusted::List(l) => l,
    };
    list.iter()
        .map(|n| match n {
            NetSpec::Named(s) => s.parse().unwrap(),
            NetSpec::AroundClient {
                prefix,
                flip,
                mapped,
            } => match client.to_canonical() {
                IpAddr::V4(v4) => {
                    let p = prefix % 33;
                    let mut a = u32::from(v4);
                    if let Some(b) = flip {
                        a ^= 1 << (31 - (b % 32));
                    }
                    let a = Ipv4Addr::from(a);
                    if *mapped {
                        IpNet::V6(Ipv6Net::new(a.to_ipv6_mapped(), 96 + p).unwrap())
                    } else {
                        IpNet::V4(Ipv4Net::new(a, p).unwrap())
                    }
                }
                IpAddr::V6(v6) => {
                    let p = prefix % 129;
                    let mut a = u128::from(v6);
                    if let Some(b) = flip {
                        a ^= 1 << (127 - (b % 128));
                    }
                    IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), p).unwrap())
                }
            },
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Presented {
    /// The token's own secret.
    Right,
    /// The token's id with another secret.
    WrongSecret,
    /// A token id that was never stored, for the same identity.
    UnknownId,
}

#[derive(Debug, Clone, Copy)]
enum MaxTtl {
    None,
    /// TTL expiry (from the last renewal) and MaxTTL (from creation) fall
    /// at the same instant.
    Tie,
    AboveTtl(u64),
    Any(u64),
}

#[derive(Debug, Clone)]
enum GrantSpec {
    Permanent(&'static str),
    /// A temporary grant; start and end in ms relative to `T0`, either
    /// possibly missing.
    Temporary {
        role: &'static str,
        start: Option<i64>,
        end: Option<i64>,
    },
}

#[derive(Debug, Clone, Copy)]
enum Asked {
    Nothing,
    /// The project of the membership (if one was written).
    Member,
    /// A project the identity is not in.
    Other,
}

#[derive(Debug, Clone)]
struct Case {
    presented: Presented,
    revoked: bool,
    created_ms: u64,
    /// Seconds and extra milliseconds after creation.
    renewed: Option<(u64, u64)>,
    ttl: u64,
    max_ttl: MaxTtl,
    period: u64,
    uses: u64,
    limit: u64,
    uses_at_limit: bool,
    trusted: Trusted,
    client: ClientSpec,
    org_role: &'static str,
    membership: Option<Vec<GrantSpec>>,
    asked: Asked,
    need_org: Option<&'static str>,
    need_project: Option<&'static str>,
    /// Which interesting instant `now` is taken from, and how far off it.
    anchor: usize,
    delta: i64,
}

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(list)
}

fn net_spec() -> impl Strategy<Value = NetSpec> {
    prop_oneof![
        pick(NETS).prop_map(NetSpec::Named),
        (
            any::<u8>(),
            proptest::option::of(any::<u8>()),
            proptest::bool::weighted(0.1)
        )
            .prop_map(|(prefix, flip, mapped)| NetSpec::AroundClient {
                prefix,
                flip,
                mapped
            }),
    ]
}

fn trusted() -> impl Strategy<Value = Trusted> {
    prop_oneof![
        3 => Just(Trusted::Default),
        1 => Just(Trusted::Empty),
        6 => proptest::collection::vec(net_spec(), 1..4).prop_map(Trusted::List),
    ]
}

fn client() -> impl Strategy<Value = ClientSpec> {
    prop_oneof![
        6 => pick(CLIENTS).prop_map(ClientSpec::Named),
        2 => any::<u32>().prop_map(ClientSpec::V4),
        1 => any::<u128>().prop_map(ClientSpec::V6),
        1 => any::<u32>().prop_map(ClientSpec::Mapped),
    ]
}

fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        (-400i64..400).prop_map(|s| s * 1000),
        -400_000i64..400_000,
    ]
}

fn grant() -> impl Strategy<Value = GrantSpec> {
    prop_oneof![
        pick(PROJECT_ROLES).prop_map(GrantSpec::Permanent),
        (
            pick(PROJECT_ROLES),
            proptest::option::weighted(0.9, offset()),
            proptest::option::weighted(0.9, offset())
        )
            .prop_map(|(role, start, end)| GrantSpec::Temporary { role, start, end }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let presented = prop_oneof![
        8 => Just(Presented::Right),
        1 => Just(Presented::WrongSecret),
        1 => Just(Presented::UnknownId),
    ];
    let times = (
        0u64..5000,
        proptest::option::of((0u64..300, prop_oneof![3 => Just(0u64), 1 => 0u64..1000])),
        prop_oneof![1 => Just(0u64), 4 => 1u64..120],
        prop_oneof![
            Just(MaxTtl::None),
            Just(MaxTtl::Tie),
            (0u64..200).prop_map(MaxTtl::AboveTtl),
            (0u64..400).prop_map(MaxTtl::Any),
        ],
        prop_oneof![4 => Just(0u64), 1 => 1u64..120],
    );
    let uses = (
        0u64..6,
        prop_oneof![Just(0u64), 1u64..5],
        proptest::bool::weighted(0.3),
    );
    let access = (
        trusted(),
        client(),
        pick(ORG_ROLES),
        proptest::option::weighted(0.7, proptest::collection::vec(grant(), 0..4)),
        prop_oneof![
            2 => Just(Asked::Nothing),
            5 => Just(Asked::Member),
            1 => Just(Asked::Other),
        ],
        proptest::option::weighted(0.3, pick(NEEDED)),
        proptest::option::weighted(0.3, pick(NEEDED)),
    );
    let now = (
        any::<usize>(),
        prop_oneof![
            Just(0i64),
            Just(-1i64),
            Just(1i64),
            Just(-1000i64),
            Just(1000i64),
            -600_000i64..600_000,
        ],
    );
    (
        presented,
        proptest::bool::weighted(0.1),
        times,
        uses,
        access,
        now,
    )
        .prop_map(
            |(
                presented,
                revoked,
                (created_ms, renewed, ttl, max_ttl, period),
                (uses, limit, uses_at_limit),
                (trusted, client, org_role, membership, asked, need_org, need_project),
                (anchor, delta),
            )| Case {
                presented,
                revoked,
                created_ms,
                renewed,
                ttl,
                max_ttl,
                period,
                uses,
                limit,
                uses_at_limit,
                trusted,
                client,
                org_role,
                membership,
                asked,
                need_org,
                need_project,
                anchor,
                delta,
            },
        )
}

/// The records and the request one case stands for.
struct Built {
    identity: Identity,
    config: TokenAuthConfig,
    token: TokenRecord,
    membership: Option<Membership>,
    presented: AccessToken,
    client: IpAddr,
    now: Millis,
    project: Option<&'static str>,
    needs: Needs<'static>,
}

fn at(offset: i64) -> Millis {
    T0.saturating_add_signed(offset).max(1)
}

fn build(c: &Case) -> Built {
    let iid = Id::random();
    let identity = Identity {
        id: iid,
        // The name is the identity's own, so a grant naming another
        // identity (keys mixed up between cases) would show.
        name: format!("ident-{}", iid.hex()),
        org_id: ORG.into(),
        role: c.org_role.into(),
        has_delete_protection: false,
        created_at: T0,
        updated_at: T0,
    };
    let created_at = T0 + c.created_ms;
    let renewed_secs = c.renewed.map_or(0, |(s, _)| s);
    let last_renewed_at = c.renewed.map(|(s, ms)| created_at + s * 1000 + ms);
    let max_ttl = match c.max_ttl {
        MaxTtl::None => 0,
        // With a whole-second renewal, base + ttl == created + max_ttl.
        MaxTtl::Tie => renewed_secs + c.ttl,
        MaxTtl::AboveTtl(k) => c.ttl + k,
        MaxTtl::Any(m) => m,
    };
    let num_uses = if c.uses_at_limit && c.limit > 0 {
        c.limit
    } else {
        c.uses
    };
    let client = c.client.ip();
    let issued = AccessToken::generate(iid);
    let token = TokenRecord {
        id: issued.token_id,
        identity_id: iid,
        name: "t".into(),
        secret_hash: issued.secret_hash(),
        created_at,
        last_renewed_at,
        last_used_at: None,
        num_uses,
        num_uses_limit: c.limit,
        ttl: c.ttl,
        max_ttl,
        period: c.period,
        trusted_ips: trusted_ips(&c.trusted, client),
        revoked: c.revoked,
    };
    let config = TokenAuthConfig {
        id: Id::random(),
        identity_id: iid,
        ttl: c.ttl,
        max_ttl,
        num_uses_limit: c.limit,
        trusted_ips: default_trusted_ips(),
        period: c.period,
        // Rate limits are not part of `auth::decide`: none anywhere.
        rate_limit: None,
        created_at: T0,
        updated_at: T0,
    };
    let membership = c.membership.as_ref().map(|grants| Membership {
        id: Id::random(),
        project_id: PROJECT.into(),
        identity_id: iid,
        roles: grants
            .iter()
            .map(|g| match g {
                GrantSpec::Permanent(role) => RoleGrant {
                    id: Id::random(),
                    role: (*role).into(),
                    is_temporary: false,
                    temporary_mode: None,
                    temporary_range: None,
                    temporary_access_start_time: None,
                    temporary_access_end_time: None,
                },
                GrantSpec::Temporary { role, start, end } => RoleGrant {
                    id: Id::random(),
                    role: (*role).into(),
                    is_temporary: true,
                    temporary_mode: Some("relative".into()),
                    temporary_range: None,
                    temporary_access_start_time: start.map(at),
                    temporary_access_end_time: end.map(at),
                },
            })
            .collect(),
        created_at: T0,
        updated_at: T0,
    });
    let presented = match c.presented {
        Presented::Right => issued,
        Presented::WrongSecret => AccessToken::from_parts(iid, issued.token_id, rand_secret()),
        Presented::UnknownId => AccessToken::generate(iid),
    };
    // The instants where an answer can change, `now` is one of them moved
    // by `delta` (0, a millisecond, a second or anywhere within 10 minutes).
    let base = last_renewed_at.unwrap_or(created_at);
    let mut anchors = vec![
        T0,
        created_at,
        base,
        base + c.ttl * 1000,
        created_at + max_ttl * 1000,
        base + c.period * 1000,
    ];
    for g in membership.iter().flat_map(|m| &m.roles) {
        anchors.extend(g.temporary_access_start_time);
        anchors.extend(g.temporary_access_end_time);
    }
    let now = anchors[c.anchor % anchors.len()]
        .saturating_add_signed(c.delta)
        .max(1);
    let project = match c.asked {
        Asked::Nothing => None,
        Asked::Member => Some(PROJECT),
        Asked::Other => Some(OTHER_PROJECT),
    };
    Built {
        identity,
        config,
        token,
        membership,
        presented,
        client,
        now,
        project,
        needs: Needs {
            org_role: c.need_org,
            project_role: c.need_project,
        },
    }
}

/// A random secret: 256 fresh bits are never the token's own.
fn rand_secret() -> [u8; 32] {
    let mut secret = [0u8; 32];
    tokengate::token::fill_random(&mut secret);
    secret
}

/// What `auth::decide` answers on the generated records themselves.
fn expected(b: &Built) -> AuthOutcome {
    let token = (b.presented.token_id == b.token.id).then_some(&b.token);
    let project = match b.project {
        None => auth::Project::NotNamed,
        Some(p) if p == PROJECT => auth::Project::Named(b.membership.as_ref()),
        Some(_) => auth::Project::Named(None),
    };
    auth::decide(auth::Facts {
        token,
        identity: Some(&b.identity),
        presented: &b.presented.secret_hash(),
        client_ip: b.client,
        now: b.now,
        needs: b.needs,
        project,
    })
}

/// Writes the case's records through the `Store` trait.
async fn write(s: &dyn Store, b: &Built) {
    s.create_identity(&b.identity).await.unwrap();
    assert!(s.put_token_auth(&b.config, PutMode::Create).await.unwrap());
    assert!(s.create_token(&b.token).await.unwrap());
    if let Some(m) = &b.membership {
        assert_eq!(s.put_membership(m).await.unwrap(), MembershipWrite::Written);
    }
}

/// Asks `s` and checks the use was counted exactly when it was allowed.
async fn ask(s: &dyn Store, b: &Built, name: &str) -> Result<AuthOutcome, TestCaseError> {
    let req = AuthRequest {
        token: &b.presented,
        client_ip: b.client,
        now: b.now,
        project: b.project,
        needs: b.needs,
        route_rate_limit: None,
    };
    let outcome = s.authenticate(&req).await.unwrap();
    let after = s.get_token(b.token.id).await.unwrap().unwrap().num_uses;
    let counted = u64::from(outcome.is_ok());
    prop_assert_eq!(
        after,
        b.token.num_uses + counted,
        "{}: uses after {:?}",
        name,
        outcome
    );
    Ok(outcome)
}

struct Stores {
    redis: Arc<dyn Store>,
    embedded: Arc<dyn Store>,
}

async fn one_case(stores: &Stores, c: &Case) -> Result<(), TestCaseError> {
    let b = build(c);
    write(stores.redis.as_ref(), &b).await;
    write(stores.embedded.as_ref(), &b).await;
    let want = expected(&b);
    let redis = ask(stores.redis.as_ref(), &b, "redis").await?;
    let embedded = ask(stores.embedded.as_ref(), &b, "embedded").await?;
    prop_assert_eq!(
        (&redis, &embedded),
        (&want, &want),
        "(redis, embedded) vs auth::decide; now {}, token {:?}, membership {:?}",
        b.now,
        b.token,
        b.membership
    );
    Ok(())
}

/// The cases a run tries: `PROPTEST_CASES` when set, else enough to cover
/// the generator's corners in about a minute on a small machine.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8000)
}

/// One redis-server and one embedded store for a whole run, with the
/// runtime that drives them; every case has its own identity (fresh ids),
/// so cases never see each other. The server and the directory live as long
/// as the returned guards.
fn harness() -> (Redis, tempfile::TempDir, tokio::runtime::Runtime, Stores) {
    let redis_server = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let stores = rt.block_on(async {
        let redis = RedisStore::new(RedisSettings {
            urls: vec![redis_server.url()],
            cluster: false,
            connect_timeout: std::time::Duration::from_secs(2),
            response_timeout: std::time::Duration::from_secs(2),
            retries: 1,
            // Near cache off: the Lua script decides every request.
            cache: None,
            clock: Clock::Caller,
        })
        .unwrap();
        redis.ping().await.unwrap();
        Stores {
            redis: Arc::new(redis),
            embedded: Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap()),
        }
    });
    (redis_server, dir, rt, stores)
}

#[test]
fn decide_redis_and_embedded_agree() {
    let (_redis, _dir, rt, stores) = harness();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        // Where a shrunk failure is kept and replayed first (the crate's
        // root is the working directory of its tests).
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/decision_equivalence.txt",
        ))),
        ..Config::default()
    });
    let result = runner.run(&case(), |c| rt.block_on(one_case(&stores, &c)));
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Drift the property found (and the Redis record now closes with a flag):
/// a token whose trusted-IP list is empty. `auth::decide` (and so the
/// embedded store) trusts no client at all; the Redis record wrote the
/// default list ("anywhere") as no entries and the empty list the same way,
/// so the script admitted every client. The API never writes such a token
/// (a Token Auth configuration needs at least one trusted IP), but the
/// `Store` trait accepts one.
#[test]
fn empty_trusted_ips_refuse_every_client_on_every_store() {
    let c = Case {
        presented: Presented::Right,
        revoked: false,
        created_ms: 0,
        renewed: None,
        ttl: 0,
        max_ttl: MaxTtl::None,
        period: 0,
        uses: 0,
        limit: 0,
        uses_at_limit: false,
        trusted: Trusted::Empty,
        client: ClientSpec::Named("10.0.0.6"),
        org_role: "admin",
        membership: None,
        asked: Asked::Nothing,
        need_org: None,
        need_project: None,
        anchor: 0,
        delta: 0,
    };
    let (_redis, _dir, rt, stores) = harness();
    rt.block_on(one_case(&stores, &c)).unwrap();
}
