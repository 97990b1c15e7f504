//! The Redis store, shared by every gateway. Each identity's records live in
//! one hash slot (`tg:{IID}:...`), so the request path is one EVALSHA of
//! `check_and_consume.lua` and works on Redis Cluster. Global indexes (the
//! identity list, token id -> identity, project -> identities) live outside
//! that slot and are only touched by the management API. So do the per-org
//! indexes (org -> identities, project and org -> identities): each is one
//! key, so an org's page is one ZRANGE on whichever node holds it, and they
//! stay right because an identity's org never changes after creation.

use super::{AuthOutcome, AuthRequest, Deletion, Page, PutMode, Store, StoreError};
use crate::auth::{Deny, Grant};
use crate::model::{Identity, Membership, Millis, TokenAuthConfig, TokenRecord};
use crate::token::{Id, SecretHash};
use async_trait::async_trait;
use ipnet::IpNet;
use redis::aio::ConnectionManager;
use redis::{Cmd, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::OnceCell;

static CHECK_AND_CONSUME: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("check_and_consume.lua")));

// Small single-slot scripts for the management API: each makes a
// read-check-write atomic without WATCH (which a multiplexed connection cannot use).
static HSET_IF_EXISTS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
         redis.call('HSET', KEYS[1], unpack(ARGV)) return 1",
    )
});
static PUT_CONFIG: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local has = redis.call('EXISTS', KEYS[2]) == 1
         if ARGV[1] == 'create' then
           if has or redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
         elseif not has then return 0 end
         redis.call('SET', KEYS[2], ARGV[2]) return 1",
    )
});
static CREATE_TOKEN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
         redis.call('HSET', KEYS[2], unpack(ARGV, 3))
         redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2]) return 1",
    )
});
// Answers the identity's org with the write, so the per-org project index is
// fed from the same read that checked the identity exists.
static PUT_MEMBERSHIP: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
         redis.call('HSET', KEYS[2], 'j', ARGV[1], 'g', ARGV[2])
         redis.call('SADD', KEYS[3], ARGV[3])
         return {1, redis.call('HGET', KEYS[1], 'o') or ''}",
    )
});
// Keys built inside these two scripts share the identity's hash tag, so they
// are in the same slot as the declared keys.
static REMOVE_CONFIG: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local cfg = redis.call('GET', KEYS[1])
         if not cfg then return false end
         redis.call('DEL', KEYS[1])
         for _, tid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
           redis.call('HSET', ARGV[1] .. 't:' .. tid, 'x', '1')
         end
         return cfg",
    )
});
static DELETE_IDENTITY: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local protected = redis.call('HGET', KEYS[1], 'p')
         if not protected then return {0, {}, {}} end
         if protected == '1' then return {2, {}, {}} end
         local tids = redis.call('ZRANGE', KEYS[3], 0, -1)
         local projects = redis.call('SMEMBERS', KEYS[4])
         for _, tid in ipairs(tids) do redis.call('DEL', ARGV[1] .. 't:' .. tid) end
         for _, p in ipairs(projects) do redis.call('DEL', ARGV[1] .. 'm:' .. p) end
         redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
         return {1, tids, projects}",
    )
});

const IDENTITIES: &str = "tg:identities";
/// The identity hash field holding its organization.
const ORG_FIELD: &str = "o";
const TOKEN_INDEX: &str = "tg:tokens";

fn prefix(iid: Id) -> String {
    format!("tg:{{{}}}:", iid.hex())
}
fn identity_key(iid: Id) -> String {
    format!("tg:{{{}}}:i", iid.hex())
}
fn config_key(iid: Id) -> String {
    format!("tg:{{{}}}:a", iid.hex())
}
fn token_key(iid: Id, tid: Id) -> String {
    format!("tg:{{{}}}:t:{}", iid.hex(), tid.hex())
}
fn token_list_key(iid: Id) -> String {
    format!("tg:{{{}}}:ts", iid.hex())
}
fn membership_key(iid: Id, project: &str) -> String {
    format!("tg:{{{}}}:m:{project}", iid.hex())
}
fn identity_projects_key(iid: Id) -> String {
    format!("tg:{{{}}}:ps", iid.hex())
}
fn project_key(project: &str) -> String {
    format!("tg:p:{project}")
}
// Org and project ids never contain ':' or braces (model::is_valid_scope_id),
// so these names cannot collide with each other or borrow a hash tag.
fn org_key(org: &str) -> String {
    format!("tg:o:{org}")
}
fn project_org_key(project: &str, org: &str) -> String {
    format!("tg:p:{project}:o:{org}")
}

/// Connection settings for the Redis store.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// One URL for a single Redis; the seed nodes of a Redis Cluster otherwise.
    pub urls: Vec<String>,
    pub cluster: bool,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub retries: usize,
}

enum Client {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// A live connection to a single Redis or to a cluster; both are cheap to
/// clone (shared, multiplexed) and reconnect by themselves.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub struct RedisStore {
    client: Client,
    settings: RedisSettings,
    // Created on first use, inside the runtime that serves requests (Pingora
    // builds its runtimes after start-up); a failed attempt is retried next time.
    conn: OnceCell<Conn>,
}

impl RedisStore {
    /// Checks the URLs; connects lazily.
    pub fn new(settings: RedisSettings) -> Result<RedisStore, StoreError> {
        let bad = |e: redis::RedisError| StoreError::Unavailable(format!("bad redis url: {e}"));
        let client = if settings.cluster {
            Client::Cluster(
                redis::cluster::ClusterClient::builder(settings.urls.clone())
                    .connection_timeout(settings.connect_timeout)
                    .response_timeout(settings.response_timeout)
                    .retries(settings.retries as u32)
                    .build()
                    .map_err(bad)?,
            )
        } else {
            let url = settings.urls.first().map(String::as_str).unwrap_or("");
            Client::Single(redis::Client::open(url).map_err(bad)?)
        };
        Ok(RedisStore {
            client,
            settings,
            conn: OnceCell::new(),
        })
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                match &self.client {
                    Client::Single(client) => {
                        let cfg = redis::aio::ConnectionManagerConfig::new()
                            .set_connection_timeout(self.settings.connect_timeout)
                            .set_response_timeout(self.settings.response_timeout)
                            .set_number_of_retries(self.settings.retries)
                            .set_factor(10)
                            .set_max_delay(200);
                        ConnectionManager::new_with_config(client.clone(), cfg)
                            .await
                            .map(Conn::Single)
                    }
                    Client::Cluster(client) => {
                        client.get_async_connection().await.map(Conn::Cluster)
                    }
                }
            })
            .await
            .map_err(unavailable)?;
        Ok(conn.clone())
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut c = self.conn().await?;
        cmd.query_async(&mut c).await.map_err(unavailable)
    }

    async fn script<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut c = self.conn().await?;
        inv.invoke_async(&mut c).await.map_err(unavailable)
    }

    async fn token_identity(&self, tid: Id) -> Result<Option<Id>, StoreError> {
        let iid: Option<String> = self
            .query(redis::cmd("HGET").arg(TOKEN_INDEX).arg(tid.hex()))
            .await?;
        Ok(iid.as_deref().and_then(Id::parse))
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// The client IP as the script expects it: family byte + 16 address bytes.
pub fn pack_ip(ip: IpAddr) -> [u8; 17] {
    let mut out = [0u8; 17];
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out[0] = 6;
            out[1..].copy_from_slice(&v6.octets());
        }
    }
    out
}

/// Trusted nets keep their own family (no canonicalisation, unlike client
/// IPs), so every entry reads back exactly as written.
fn pack_nets(nets: &[IpNet]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nets.len() * 18);
    for n in nets {
        match n {
            IpNet::V4(v4) => {
                out.push(4);
                out.extend_from_slice(&v4.network().octets());
                out.extend_from_slice(&[0; 12]);
            }
            IpNet::V6(v6) => {
                out.push(6);
                out.extend_from_slice(&v6.network().octets());
            }
        }
        out.push(n.prefix_len());
    }
    out
}

fn unpack_nets(b: &[u8]) -> Option<Vec<IpNet>> {
    if b.len() % 18 != 0 {
        return None;
    }
    b.chunks(18)
        .map(|e| {
            let ip: IpAddr = match e[0] {
                4 => IpAddr::from([e[1], e[2], e[3], e[4]]),
                6 => IpAddr::from(<[u8; 16]>::try_from(&e[1..17]).ok()?),
                _ => return None,
            };
            IpNet::new(ip, e[17]).ok()
        })
        .collect()
}

/// The token's hash fields. Zero values and the default "anywhere" IP list are
/// left out: the script reads a missing field as zero / anywhere, which keeps
/// the record small.
fn token_fields(t: &TokenRecord) -> Vec<(&'static str, Vec<u8>)> {
    let mut f: Vec<(&'static str, Vec<u8>)> = vec![
        ("h", t.secret_hash.to_vec()),
        ("c", t.created_at.to_string().into_bytes()),
    ];
    let mut num = |k: &'static str, v: u64| {
        if v > 0 {
            f.push((k, v.to_string().into_bytes()));
        }
    };
    num("t", t.ttl);
    num("m", t.max_ttl);
    num("d", t.period);
    num("k", t.num_uses_limit);
    num("u", t.num_uses);
    num("r", t.last_renewed_at.unwrap_or(0));
    num("l", t.last_used_at.unwrap_or(0));
    if t.trusted_ips != crate::model::default_trusted_ips() {
        f.push(("i", pack_nets(&t.trusted_ips)));
    }
    if t.revoked {
        f.push(("x", b"1".to_vec()));
    }
    if !t.name.is_empty() {
        f.push(("n", t.name.clone().into_bytes()));
    }
    f
}

fn token_from_hash(
    iid: Id,
    tid: Id,
    h: &HashMap<String, Vec<u8>>,
) -> Result<Option<TokenRecord>, StoreError> {
    let Some(hash) = h.get("h") else {
        return Ok(None);
    };
    let secret_hash: SecretHash = hash
        .as_slice()
        .try_into()
        .map_err(|_| corrupt("token hash"))?;
    let num = |k: &str| -> Result<u64, StoreError> {
        match h.get(k) {
            None => Ok(0),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| corrupt(k)),
        }
    };
    let opt = |v: u64| (v > 0).then_some(v);
    Ok(Some(TokenRecord {
        id: tid,
        identity_id: iid,
        name: h
            .get("n")
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default(),
        secret_hash,
        created_at: num("c")?,
        last_renewed_at: opt(num("r")?),
        last_used_at: opt(num("l")?),
        num_uses: num("u")?,
        num_uses_limit: num("k")?,
        ttl: num("t")?,
        max_ttl: num("m")?,
        period: num("d")?,
        trusted_ips: match h.get("i") {
            None => crate::model::default_trusted_ips(),
            Some(b) => unpack_nets(b).ok_or_else(|| corrupt("trusted ips"))?,
        },
        revoked: h.contains_key("x"),
    }))
}

fn identity_fields(i: &Identity) -> Vec<(&'static str, String)> {
    vec![
        ("n", i.name.clone()),
        ("r", i.role.clone()),
        (ORG_FIELD, i.org_id.clone()),
        ("p", if i.has_delete_protection { "1" } else { "0" }.into()),
        ("c", i.created_at.to_string()),
        ("u", i.updated_at.to_string()),
    ]
}

fn identity_from_hash(id: Id, h: &HashMap<String, String>) -> Result<Option<Identity>, StoreError> {
    let Some(name) = h.get("n") else {
        return Ok(None);
    };
    let num = |k: &str| {
        h.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt(k))
    };
    Ok(Some(Identity {
        id,
        name: name.clone(),
        org_id: h.get(ORG_FIELD).cloned().unwrap_or_default(),
        role: h.get("r").cloned().ok_or_else(|| corrupt("role"))?,
        has_delete_protection: h.get("p").map(|p| p == "1").unwrap_or(false),
        created_at: num("c")?,
        updated_at: num("u")?,
    }))
}

/// Membership grants as the script reads them: "start,end,role\n" per grant,
/// "0,0" for a permanent one.
fn encode_grants(m: &Membership) -> String {
    let mut out = String::new();
    for g in &m.roles {
        let (s, e) = if g.is_temporary {
            // An end of 0 would read as permanent; 1 keeps an unbounded-less grant inactive.
            (
                g.temporary_access_start_time.unwrap_or(0),
                g.temporary_access_end_time.unwrap_or(0).max(1),
            )
        } else {
            (0, 0)
        };
        out.push_str(&format!("{s},{e},{}\n", g.role));
    }
    out
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| corrupt(&e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(&e.to_string()))
}

fn deny_from_code(code: i64, ip: IpAddr) -> Result<Deny, StoreError> {
    Ok(match code {
        1 => Deny::UnknownToken,
        2 => Deny::Revoked,
        3 => Deny::Expired,
        4 => Deny::MaxTtlReached,
        5 => Deny::IpNotTrusted(ip.to_canonical()),
        6 => Deny::UsageLimitReached,
        7 => Deny::NoProjectAccess,
        8 => Deny::OrgRoleNotAllowed,
        _ => return Err(corrupt("unexpected script answer")),
    })
}

fn value_string(v: Option<&Value>) -> Result<String, StoreError> {
    match v {
        Some(Value::BulkString(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
        Some(Value::SimpleString(s)) => Ok(s.clone()),
        _ => Err(corrupt("unexpected script answer")),
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn authenticate(&self, req: &AuthRequest<'_>) -> Result<AuthOutcome, StoreError> {
        let (iid, tid) = (req.token.identity_id, req.token.token_id);
        let project = req.project.unwrap_or("");
        let mut inv = CHECK_AND_CONSUME.prepare_invoke();
        inv.key(token_key(iid, tid))
            .key(identity_key(iid))
            .key(membership_key(iid, project))
            .arg(&req.token.secret_hash()[..])
            .arg(&pack_ip(req.client_ip)[..])
            .arg(req.now)
            .arg(if req.project.is_some() { "1" } else { "0" })
            .arg(req.required_role.unwrap_or(""));
        let answer: Vec<Value> = self.script(&inv).await?;
        let code = match answer.first() {
            Some(Value::Int(c)) => *c,
            _ => return Err(corrupt("unexpected script answer")),
        };
        if code != 0 {
            return Ok(Err(deny_from_code(code, req.client_ip)?));
        }
        let roles = value_string(answer.get(3))?;
        Ok(Ok(Grant {
            identity_name: value_string(answer.get(1))?,
            org_role: value_string(answer.get(2))?,
            project_roles: req.project.map(|_| roles),
        }))
    }

    async fn create_identity(&self, identity: &Identity) -> Result<(), StoreError> {
        // Record first, index second: a crash in between leaves an unlisted
        // identity rather than a listed one that does not exist.
        self.query::<()>(
            redis::cmd("HSET")
                .arg(identity_key(identity.id))
                .arg(identity_fields(identity)),
        )
        .await?;
        self.run_each(&[
            redis::cmd("ZADD")
                .arg(IDENTITIES)
                .arg(identity.created_at)
                .arg(identity.id.hex())
                .clone(),
            redis::cmd("ZADD")
                .arg(org_key(&identity.org_id))
                .arg(identity.created_at)
                .arg(identity.id.hex())
                .clone(),
        ])
        .await
    }

    async fn get_identity(&self, id: Id) -> Result<Option<Identity>, StoreError> {
        let h: HashMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(identity_key(id)))
            .await?;
        identity_from_hash(id, &h)
    }

    async fn update_identity(&self, identity: &Identity) -> Result<bool, StoreError> {
        // The org field is left out: it keeps the value written at creation.
        let fields: Vec<_> = identity_fields(identity)
            .into_iter()
            .filter(|(k, _)| *k != ORG_FIELD)
            .collect();
        let mut inv = HSET_IF_EXISTS.prepare_invoke();
        inv.key(identity_key(identity.id)).arg(fields);
        let n: i64 = self.script(&inv).await?;
        Ok(n == 1)
    }

    async fn delete_identity(&self, id: Id) -> Result<Deletion, StoreError> {
        let Some(identity) = self.get_identity(id).await? else {
            return Ok(Deletion::NotFound);
        };
        let mut inv = DELETE_IDENTITY.prepare_invoke();
        inv.key(identity_key(id))
            .key(config_key(id))
            .key(token_list_key(id))
            .key(identity_projects_key(id))
            .arg(prefix(id));
        // The script re-checks existence and protection: it is the atomic step.
        let (status, tids, projects): (i64, Vec<String>, Vec<String>) = self.script(&inv).await?;
        match status {
            1 => {}
            2 => return Ok(Deletion::Protected),
            _ => return Ok(Deletion::NotFound),
        }
        // The identity's own slot is already clean; now the global indexes.
        let mut cmds = vec![
            redis::cmd("ZREM").arg(IDENTITIES).arg(id.hex()).clone(),
            redis::cmd("ZREM")
                .arg(org_key(&identity.org_id))
                .arg(id.hex())
                .clone(),
        ];
        if !tids.is_empty() {
            cmds.push(redis::cmd("HDEL").arg(TOKEN_INDEX).arg(&tids).clone());
        }
        for project in &projects {
            for key in [
                project_key(project),
                project_org_key(project, &identity.org_id),
            ] {
                cmds.push(redis::cmd("ZREM").arg(key).arg(id.hex()).clone());
            }
        }
        self.run_each(&cmds).await?;
        Ok(Deletion::Deleted(identity))
    }

    async fn list_identities(
        &self,
        org: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Identity>, StoreError> {
        let index = org.map_or_else(|| IDENTITIES.to_string(), org_key);
        let total: u64 = self.query(redis::cmd("ZCARD").arg(&index)).await?;
        let ids: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(&index)
                    .arg(range(offset, limit).0)
                    .arg(range(offset, limit).1),
            )
            .await?;
        let mut items = Vec::with_capacity(ids.len());
        for id in ids.iter().filter_map(|s| Id::parse(s)) {
            if let Some(i) = self.get_identity(id).await? {
                items.push(i);
            }
        }
        Ok(Page { items, total })
    }

    async fn put_token_auth(
        &self,
        cfg: &TokenAuthConfig,
        mode: PutMode,
    ) -> Result<bool, StoreError> {
        let mut inv = PUT_CONFIG.prepare_invoke();
        inv.key(identity_key(cfg.identity_id))
            .key(config_key(cfg.identity_id))
            .arg(if mode == PutMode::Create {
                "create"
            } else {
                "update"
            })
            .arg(to_json(cfg)?);
        let n: i64 = self.script(&inv).await?;
        Ok(n == 1)
    }

    async fn get_token_auth(&self, identity: Id) -> Result<Option<TokenAuthConfig>, StoreError> {
        let s: Option<String> = self
            .query(redis::cmd("GET").arg(config_key(identity)))
            .await?;
        s.as_deref().map(from_json).transpose()
    }

    async fn remove_token_auth(&self, identity: Id) -> Result<Option<TokenAuthConfig>, StoreError> {
        let mut inv = REMOVE_CONFIG.prepare_invoke();
        inv.key(config_key(identity))
            .key(token_list_key(identity))
            .arg(prefix(identity));
        let s: Option<String> = self.script(&inv).await?;
        s.as_deref().map(from_json).transpose()
    }

    async fn create_token(&self, t: &TokenRecord) -> Result<bool, StoreError> {
        let mut inv = CREATE_TOKEN.prepare_invoke();
        inv.key(config_key(t.identity_id))
            .key(token_key(t.identity_id, t.id))
            .key(token_list_key(t.identity_id))
            .arg(t.created_at)
            .arg(t.id.hex())
            .arg(token_fields(t));
        let n: i64 = self.script(&inv).await?;
        if n == 0 {
            return Ok(false);
        }
        self.query::<()>(
            redis::cmd("HSET")
                .arg(TOKEN_INDEX)
                .arg(t.id.hex())
                .arg(t.identity_id.hex()),
        )
        .await?;
        Ok(true)
    }

    async fn get_token(&self, token_id: Id) -> Result<Option<TokenRecord>, StoreError> {
        let Some(iid) = self.token_identity(token_id).await? else {
            return Ok(None);
        };
        let h: HashMap<String, Vec<u8>> = self
            .query(redis::cmd("HGETALL").arg(token_key(iid, token_id)))
            .await?;
        token_from_hash(iid, token_id, &h)
    }

    async fn list_tokens(
        &self,
        identity: Id,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let tids: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(token_list_key(identity))
                    .arg(range(offset, limit).0)
                    .arg(range(offset, limit).1)
                    .arg("REV"),
            )
            .await?;
        let tids: Vec<Id> = tids.iter().filter_map(|s| Id::parse(s)).collect();
        let mut p = redis::pipe();
        for tid in &tids {
            p.cmd("HGETALL").arg(token_key(identity, *tid));
        }
        let mut c = self.conn().await?;
        let hashes: Vec<HashMap<String, Vec<u8>>> =
            p.query_async(&mut c).await.map_err(unavailable)?;
        let mut out = Vec::with_capacity(tids.len());
        for (tid, h) in tids.iter().zip(&hashes) {
            if let Some(t) = token_from_hash(identity, *tid, h)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    async fn rename_token(
        &self,
        token_id: Id,
        name: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        if !self.hset_token(token_id, &[("n", name)]).await? {
            return Ok(None);
        }
        self.get_token(token_id).await
    }

    async fn revoke_token(&self, token_id: Id) -> Result<bool, StoreError> {
        self.hset_token(token_id, &[("x", "1")]).await
    }

    async fn set_renewed(&self, token_id: Id, at: Millis) -> Result<bool, StoreError> {
        self.hset_token(token_id, &[("r", &at.to_string())]).await
    }

    async fn put_membership(&self, m: &Membership) -> Result<bool, StoreError> {
        let iid = m.identity_id;
        // The identity's slot first, atomically with the identity's existence:
        // it is what the request path reads. Then the project's index.
        let mut inv = PUT_MEMBERSHIP.prepare_invoke();
        inv.key(identity_key(iid))
            .key(membership_key(iid, &m.project_id))
            .key(identity_projects_key(iid))
            .arg(to_json(m)?)
            .arg(encode_grants(m))
            .arg(&m.project_id);
        let (written, org): (i64, String) = self.script(&inv).await?;
        if written == 0 {
            return Ok(false);
        }
        let add = |key: String| {
            redis::cmd("ZADD")
                .arg(key)
                .arg("NX")
                .arg(m.created_at)
                .arg(iid.hex())
                .clone()
        };
        self.run_each(&[
            add(project_key(&m.project_id)),
            add(project_org_key(&m.project_id, &org)),
        ])
        .await?;
        Ok(true)
    }

    async fn get_membership(
        &self,
        project: &str,
        identity: Id,
    ) -> Result<Option<Membership>, StoreError> {
        let s: Option<String> = self
            .query(
                redis::cmd("HGET")
                    .arg(membership_key(identity, project))
                    .arg("j"),
            )
            .await?;
        s.as_deref().map(from_json).transpose()
    }

    async fn delete_membership(
        &self,
        project: &str,
        identity: Id,
    ) -> Result<Option<Membership>, StoreError> {
        let Some(m) = self.get_membership(project, identity).await? else {
            return Ok(None);
        };
        let org: Option<String> = self
            .query(
                redis::cmd("HGET")
                    .arg(identity_key(identity))
                    .arg(ORG_FIELD),
            )
            .await?;
        let mut cmds = vec![
            redis::cmd("DEL")
                .arg(membership_key(identity, project))
                .clone(),
            redis::cmd("SREM")
                .arg(identity_projects_key(identity))
                .arg(project)
                .clone(),
            redis::cmd("ZREM")
                .arg(project_key(project))
                .arg(identity.hex())
                .clone(),
        ];
        // No org means the identity is being deleted; that removes its entries.
        if let Some(org) = org {
            cmds.push(
                redis::cmd("ZREM")
                    .arg(project_org_key(project, &org))
                    .arg(identity.hex())
                    .clone(),
            );
        }
        self.run_each(&cmds).await?;
        Ok(Some(m))
    }

    async fn list_memberships(
        &self,
        project: &str,
        org: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Membership>, StoreError> {
        let index = match org {
            Some(org) => project_org_key(project, org),
            None => project_key(project),
        };
        let total: u64 = self.query(redis::cmd("ZCARD").arg(&index)).await?;
        let ids: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(&index)
                    .arg(range(offset, limit).0)
                    .arg(range(offset, limit).1),
            )
            .await?;
        let mut items = Vec::with_capacity(ids.len());
        for iid in ids.iter().filter_map(|s| Id::parse(s)) {
            if let Some(m) = self.get_membership(project, iid).await? {
                items.push(m);
            }
        }
        Ok(Page { items, total })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query::<()>(&redis::cmd("PING")).await
    }
}

impl RedisStore {
    async fn hset_token(&self, token_id: Id, fields: &[(&str, &str)]) -> Result<bool, StoreError> {
        let Some(iid) = self.token_identity(token_id).await? else {
            return Ok(false);
        };
        let mut inv = HSET_IF_EXISTS.prepare_invoke();
        inv.key(token_key(iid, token_id)).arg(fields);
        let n: i64 = self.script(&inv).await?;
        Ok(n == 1)
    }

    /// Sends commands one after another. They may live in different hash
    /// slots, which a cluster cannot pipeline; management calls are rare
    /// enough that the extra round trips do not matter.
    async fn run_each(&self, cmds: &[Cmd]) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        for cmd in cmds {
            cmd.query_async::<()>(&mut c).await.map_err(unavailable)?;
        }
        Ok(())
    }
}

/// ZRANGE's start and inclusive end for `limit` (at least 1) items from
/// `offset`. Redis indexes are i64: larger offsets are past any set's end.
fn range(offset: u64, limit: u64) -> (i64, i64) {
    let start = i64::try_from(offset).unwrap_or(i64::MAX);
    let end = i64::try_from(offset.saturating_add(limit.max(1)) - 1).unwrap_or(i64::MAX);
    (start, end)
}
