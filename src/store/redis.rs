//! The Redis store, shared by every gateway. Each identity's records live in
//! one hash slot (`tg:{IID}:...`), so the request path is one EVALSHA of
//! `redis/check_and_consume.lua` and works on Redis Cluster. Global indexes (the
//! identity list, token id -> identity, project -> identities) live outside
//! that slot and are only touched by the management API. So do the per-org
//! indexes (org -> identities, project and org -> identities): each is one
//! key, so an org's page is one ZRANGE on whichever node holds it, and they
//! stay right because an identity's org never changes after creation.
//!
//! A project's owning organization is one more key outside every identity's
//! slot (`keys::project_owner_key`); how it stays consistent with memberships
//! without a cross-slot transaction is explained at `put_membership` and
//! `set_project_owner`.
//!
//! With the near cache on (`store.cache`), a gateway decides unlimited
//! tokens from its own copy of their records and writes their uses in
//! batches (`write_uses`); limited tokens, identities with a rate limit and
//! requests carrying a route's rate limit still take the one script.
//!
//! Submodules: `conn` (settings and connections), `keys` (key layout),
//! `record` (field encoding, with the legend of field letters), `scripts`
//! (the Lua scripts and the shared table of deny codes), `cache` (the near
//! cache), `tracking` (its invalidation channel, over `resp3`) and `uses`
//! (writing the uses it counted).

mod cache;
mod conn;
mod keys;
mod record;
mod resp3;
mod scripts;
mod tracking;
mod uses;

pub use cache::{CacheMetrics, CacheSettings};
pub use conn::{Clock, RedisSettings};
pub use record::pack_ip;

use super::{
    AuthOutcome, AuthRequest, Deletion, MembershipWrite, OwnerChange, Page, PutMode, Store,
    StoreError,
};
use crate::auth::Grant;
use crate::model::{now_millis, Identity, Membership, Millis, TokenAuthConfig, TokenRecord};
use crate::rate_limit::{Bucket, RateLimit, Refusal};
use crate::token::Id;
use async_trait::async_trait;
use cache::{Fill, NearCache, Question};
use conn::{unavailable, Client, Conn};
use keys::*;
use record::*;
use redis::{Cmd, Value};
use scripts::{Detail, *};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, OnceCell};

pub struct RedisStore {
    client: Client,
    settings: RedisSettings,
    // Created on first use, inside the runtime that serves requests (Pingora
    // builds its runtimes after start-up); a failed attempt is retried next time.
    conn: OnceCell<Conn>,
    cache: Option<Arc<NearCache>>,
    /// The cache's invalidation channel (with the cache).
    channel: Option<Arc<tracking::Channel>>,
    /// Redis's clock minus this machine's, in milliseconds, as last
    /// measured (`follow_clock`); 0 until then.
    clock_offset: Arc<AtomicI64>,
    /// Checks whose answers were lost, for `give_back` (started with the
    /// connection).
    give_backs: std::sync::OnceLock<mpsc::Sender<GiveBack>>,
}

impl RedisStore {
    /// Checks the URLs; connects lazily.
    pub fn new(settings: RedisSettings) -> Result<RedisStore, StoreError> {
        let cache = settings.cache.clone().map(|c| Arc::new(NearCache::new(c)));
        Ok(RedisStore {
            client: Client::new(&settings)?,
            channel: cache
                .clone()
                .map(|c| tracking::Channel::new(c, settings.response_timeout)),
            cache,
            settings,
            conn: OnceCell::new(),
            clock_offset: Arc::new(AtomicI64::new(0)),
            give_backs: std::sync::OnceLock::new(),
        })
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let conn = self.client.connect(&self.settings).await?;
                let (tx, rx) = mpsc::channel(GIVE_BACK_QUEUE);
                if self.give_backs.set(tx).is_ok() {
                    tokio::spawn(give_back(conn.clone(), rx));
                }
                if self.settings.clock == Clock::Redis {
                    let offset = self.clock_offset.clone();
                    measure_clock(&mut conn.clone(), &offset).await;
                    tokio::spawn(follow_clock(conn.clone(), offset));
                }
                if let (Some(cache), Some(channel)) = (&self.cache, &self.channel) {
                    self.start_cache_tasks(cache.clone(), channel.clone(), conn.clone());
                }
                Ok::<_, StoreError>(conn)
            })
            .await?;
        Ok(conn.clone())
    }

    /// The near cache's invalidation channel, and the task that writes the
    /// uses it counted and sweeps it, in the runtime that made the data
    /// connection. Both live as long as the process.
    fn start_cache_tasks(
        &self,
        cache: Arc<NearCache>,
        channel: Arc<tracking::Channel>,
        conn: Conn,
    ) {
        tokio::spawn(tracking::run(channel, self.settings.clone(), conn.clone()));
        tokio::spawn(uses::write_every_second(cache, conn));
    }

    pub fn has_cache(&self) -> bool {
        self.cache.is_some()
    }

    /// True while the near cache's invalidation channel is up, so requests
    /// may be decided from it.
    pub fn cache_in_use(&self) -> bool {
        self.cache.as_ref().is_some_and(|c| c.is_coherent())
    }

    /// Keeps the near cache's counted uses from travelling to Redis while
    /// held: a read of Redis plus `with_pending` under it sees each use once.
    async fn uses_settled(&self) -> Option<tokio::sync::RwLockReadGuard<'_, ()>> {
        match &self.cache {
            Some(c) => Some(c.flush.read().await),
            None => None,
        }
    }

    /// `t` as this gateway knows it: what Redis holds plus the uses counted
    /// here and not yet written (read under `uses_settled`).
    fn with_pending(&self, mut t: TokenRecord) -> TokenRecord {
        if let Some(u) = self.cache.as_ref().and_then(|c| c.pending_for(t.id)) {
            t.num_uses += u.uses;
            t.last_used_at = Some(t.last_used_at.unwrap_or(0).max(u.last_used_at));
        }
        t
    }

    /// Forgets what the near cache holds for `identity`, after this gateway
    /// changed it: Redis also says so over the invalidation channel, but
    /// this gateway's own next request must not wait for that message.
    fn forget(&self, identity: Id) {
        if let Some(cache) = &self.cache {
            cache.invalidate(identity);
        }
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

    /// Runs the check script. When its reply is lost (a dropped connection,
    /// a timeout: the script may have run), the same check goes again with
    /// the same nonce, which the script answers from memory rather than
    /// counting a second use; the cluster client does so by itself
    /// (`retries`). When no reply comes at all, the client is refused (503)
    /// and `give_back` undoes whatever the script counted.
    async fn check(
        &self,
        inv: &redis::ScriptInvocation<'_>,
        iid: Id,
        tid: Id,
        nonce: &str,
    ) -> Result<Vec<Value>, StoreError> {
        let mut c = self.conn().await?;
        let tries = if self.settings.cluster {
            1
        } else {
            1 + self.settings.retries
        };
        let mut lost = None;
        for _ in 0..tries {
            match inv.invoke_async(&mut c).await {
                Ok(answer) => return Ok(answer),
                // Redis answered with an error: the script did not count.
                Err(e) if !e.is_io_error() => return Err(unavailable(e)),
                Err(e) => lost = Some(e),
            }
        }
        let back = GiveBack {
            check: check_key(iid, nonce),
            tokens: tokens_key(iid),
            token: tid,
            remember_ms: self.remember_ms(),
            until: Instant::now() + std::time::Duration::from_millis(self.remember_ms()),
        };
        if self
            .give_backs
            .get()
            .is_none_or(|q| q.try_send(back).is_err())
        {
            log::error!(
                "store: the answer to a check of token {} was lost and too many others wait to be given back; its use stays counted",
                tid.hex()
            );
        }
        Err(lost.map_or_else(|| corrupt("no attempt made"), unavailable))
    }

    /// How long an allowed check's answer is remembered (`check_key`):
    /// longer than every attempt at it can take, so a check sent again finds
    /// it, and short enough that remembering every counted request of a busy
    /// gateway stays small.
    fn remember_ms(&self) -> u64 {
        let s = &self.settings;
        let attempt = s.connect_timeout + s.response_timeout;
        let budget = attempt.as_millis() as u64 * (1 + s.retries as u64);
        (2 * budget).max(10_000)
    }

    /// The identity a token id belongs to (see `keys.rs`): the identity
    /// its first 8 bytes name, if that identity has the token, else the
    /// index of tokens whose ids do not name their identity.
    async fn token_identity(&self, tid: Id) -> Result<Option<Id>, StoreError> {
        if let Some(iid) = self.identity_by_prefix(tid).await? {
            let has: bool = self
                .query(redis::cmd("HEXISTS").arg(tokens_key(iid)).arg(&tid.0[..]))
                .await?;
            if has {
                return Ok(Some(iid));
            }
        }
        let iid: Option<String> = self
            .query(redis::cmd("HGET").arg(TOKEN_INDEX).arg(tid.hex()))
            .await?;
        Ok(iid.as_deref().and_then(Id::parse))
    }

    /// The identity registered under the first 8 bytes of `id`.
    async fn identity_by_prefix(&self, id: Id) -> Result<Option<Id>, StoreError> {
        let iid: Option<Vec<u8>> = self
            .query(
                redis::cmd("HGET")
                    .arg(IDENTITY_PREFIXES)
                    .arg(&id.prefix()[..]),
            )
            .await?;
        Ok(iid.and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok().map(Id)))
    }
}

/// How often the gateway measures Redis's clock against its own.
const CLOCK_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Measures Redis's clock against this machine's (`TIME`, the midpoint of
/// the round trip), for `Store::now`; keeps the last offset on failure.
async fn measure_clock(c: &mut Conn, offset: &AtomicI64) {
    let before = now_millis();
    let Ok((secs, micros)) = redis::cmd("TIME").query_async::<(u64, u64)>(c).await else {
        return;
    };
    let after = now_millis();
    let redis_ms = secs * 1000 + micros / 1000;
    let local_ms = before + (after.saturating_sub(before)) / 2;
    offset.store(redis_ms as i64 - local_ms as i64, Ordering::Relaxed);
}

/// Keeps `offset` current for as long as the process runs.
async fn follow_clock(mut c: Conn, offset: Arc<AtomicI64>) {
    loop {
        tokio::time::sleep(CLOCK_EVERY).await;
        measure_clock(&mut c, &offset).await;
    }
}

/// A check's own key: 16 random bytes, hex (one allocation: this runs on
/// every scripted check).
fn new_nonce() -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut b = [0u8; 16];
    crate::token::fill_random(&mut b);
    let mut out = String::with_capacity(32);
    for x in b {
        out.push(char::from(DIGITS[usize::from(x >> 4)]));
        out.push(char::from(DIGITS[usize::from(x & 0xf)]));
    }
    out
}

/// How many lost checks may wait to be given back; past it, a use stays
/// counted (and is logged).
const GIVE_BACK_QUEUE: usize = 4096;

/// A check whose answer never came back.
struct GiveBack {
    check: String,
    tokens: String,
    token: Id,
    remember_ms: u64,
    /// Until when its answer is remembered: after that it cannot be undone.
    until: Instant,
}

/// Undoes checks whose answers never came back (see `cancel_check.lua`),
/// one at a time for as long as the process runs: each is tried until it
/// lands or its answer is forgotten (then a use the script counted stays
/// counted, the one window where a refused request spends a use). One at a
/// time, because they come in bursts exactly when Redis is failing: many
/// concurrent retries against a node that is gone would only add to the
/// client's trouble while the cluster recovers.
async fn give_back(mut c: Conn, mut queue: mpsc::Receiver<GiveBack>) {
    while let Some(g) = queue.recv().await {
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            let mut inv = CANCEL_CHECK.prepare_invoke();
            inv.key(&g.check)
                .key(&g.tokens)
                .arg(&g.token.0[..])
                .arg(g.remember_ms);
            match inv.invoke_async::<i64>(&mut c).await {
                Ok(n) => {
                    log::warn!(
                        "store: the answer to a check of token {} was lost; the client was refused (503){}",
                        g.token.hex(),
                        if n == 1 { " and its use given back" } else { "" }
                    );
                    break;
                }
                Err(e) if Instant::now() + pause >= g.until => {
                    log::error!(
                        "store: the answer to a check of token {} was lost and Redis could not be reached to give its use back ({e}); the use stays counted",
                        g.token.hex()
                    );
                    break;
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(1));
                }
            }
        }
    }
}

/// The roles a request needs as the check script reads them: "" is "any
/// role", so a list naming no role at all (`Some("")`, which `auth::decide`
/// refuses) goes as "," (a list whose every member is empty: no role matches).
fn needed(roles: Option<&str>) -> &str {
    match roles {
        None => "",
        Some("") => ",",
        Some(r) => r,
    }
}

#[async_trait]
impl Store for RedisStore {
    fn now(&self) -> Millis {
        let offset = self.clock_offset.load(Ordering::Relaxed);
        now_millis().saturating_add_signed(offset)
    }

    async fn authenticate(&self, req: &AuthRequest<'_>) -> Result<AuthOutcome, StoreError> {
        let (iid, tid) = (req.token.identity_id, req.token.token_id);
        let presented = req.token.secret_hash();
        let mut ticket = None;
        if let (Some(cache), Some(channel)) = (&self.cache, &self.channel) {
            // Whatever another gateway changed and Redis already told us
            // about counts before this decision (see tracking.rs).
            channel.drain();
            let at = Instant::now();
            // A route's rate limit is counted in Redis, so the cache never
            // decides such a request (an identity's own limit keeps the
            // identity out of the cache altogether: see cache.rs).
            if req.route_rate_limit.is_none() {
                let q = Question {
                    identity: iid,
                    token: tid,
                    presented: &presented,
                    client_ip: req.client_ip,
                    now: req.now,
                    needs: req.needs,
                    project: req.project,
                };
                if let Some(outcome) = cache.decide(&q, at) {
                    return Ok(outcome);
                }
                cache.count_miss();
            }
            ticket = cache.begin_fill(iid, at);
        }
        let project = req.project.unwrap_or("");
        // The script picks the bucket: only it knows the identity's own limit.
        let own = |token| {
            rate_key(&Bucket {
                identity: iid,
                token,
                route: None,
            })
        };
        let route_bucket = match &req.route_rate_limit {
            Some(l) => rate_key(&Bucket::of(l, iid, tid, true)),
            None => own(None),
        };
        let nonce = new_nonce();
        let mut inv = CHECK_AND_CONSUME.prepare_invoke();
        inv.key(tokens_key(iid))
            .key(identity_key(iid))
            .key(membership_key(iid, project))
            .key(own(None))
            .key(own(Some(tid)))
            .key(route_bucket)
            .key(check_key(iid, &nonce))
            .arg(&presented[..])
            .arg(&pack_ip(req.client_ip)[..])
            .arg(match self.settings.clock {
                Clock::Redis => String::new(),
                Clock::Caller => req.now.to_string(),
            })
            .arg(if req.project.is_some() { "1" } else { "0" })
            .arg(needed(req.needs.org_role))
            .arg(if ticket.is_some() { "1" } else { "0" })
            .arg(&tid.0[..])
            .arg(req.route_rate_limit.map(|l| l.encode()).unwrap_or_default())
            .arg(needed(req.needs.project_role))
            .arg(self.remember_ms());
        let answer = self.check(&inv, iid, tid, &nonce).await?;
        let code = match answer.first() {
            Some(Value::Int(c)) => *c,
            _ => return Err(corrupt("unexpected script answer")),
        };
        if code != 0 {
            let detail = Detail {
                ip: req.client_ip,
                rate: rate_refusal(&answer),
            };
            let deny = scripts::deny_from_code(code, &detail)
                .ok_or_else(|| corrupt("unexpected script answer"))?;
            return Ok(Err(deny));
        }
        let grant = Grant {
            identity_name: value_string(answer.get(1))?,
            org_role: value_string(answer.get(2))?,
            project_roles: req
                .project
                .map(|_| value_string(answer.get(3)))
                .transpose()?,
        };
        // With a ticket, an unlimited token's answer carries its records
        // (a limited one's does not: it is never kept).
        if let (Some(cache), Some(ticket), Some(record)) = (&self.cache, ticket, answer.get(4)) {
            let token = decode_token(iid, tid, value_bytes(Some(record))?)?;
            if token.num_uses_limit != 0 {
                return Err(corrupt("unexpected script answer"));
            }
            // The script left this use to be counted here.
            cache.count_use(tid, iid, req.now);
            let fill = Fill {
                identity: Identity {
                    id: iid,
                    name: grant.identity_name.clone(),
                    role: grant.org_role.clone(),
                    // Only the name and the role are read on the request path.
                    org_id: String::new(),
                    has_delete_protection: false,
                    created_at: 0,
                    updated_at: 0,
                },
                token,
                project: match req.project {
                    None => None,
                    Some(p) => Some((
                        p.to_string(),
                        membership_from_grants(iid, p, &value_string(answer.get(5))?)?,
                    )),
                },
            };
            let node = value_string(answer.get(6))?;
            if self.channel.as_ref().is_some_and(|c| c.listens_to(&node)) {
                cache.finish_fill(ticket, fill);
            }
        }
        Ok(Ok(grant))
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
            // Taken already (two identities sharing 8 bytes, about one in
            // 2^60): the other keeps it, and this one's tokens go to the
            // token index instead (see `create_token`).
            redis::cmd("HSETNX")
                .arg(IDENTITY_PREFIXES)
                .arg(&identity.id.prefix()[..])
                .arg(&identity.id.0[..])
                .clone(),
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
        self.forget(identity.id);
        Ok(n == 1)
    }

    async fn delete_identity(&self, id: Id) -> Result<Deletion, StoreError> {
        let Some(identity) = self.get_identity(id).await? else {
            return Ok(Deletion::NotFound);
        };
        let mut inv = DELETE_IDENTITY.prepare_invoke();
        inv.key(identity_key(id))
            .key(config_key(id))
            .key(tokens_key(id))
            .key(identity_projects_key(id))
            .arg(prefix(id));
        // The script re-checks existence and protection: it is the atomic step.
        let (status, tids, projects): (i64, Vec<Vec<u8>>, Vec<String>) = self.script(&inv).await?;
        self.forget(id);
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
        let tids: Vec<String> = tids
            .iter()
            .filter_map(|t| <[u8; 16]>::try_from(t.as_slice()).ok())
            .map(|t| Id(t).hex())
            .collect();
        if !tids.is_empty() {
            cmds.push(redis::cmd("HDEL").arg(TOKEN_INDEX).arg(&tids).clone());
        }
        let mut inv = HDEL_IF_EQUAL.prepare_invoke();
        inv.key(IDENTITY_PREFIXES)
            .arg(&id.prefix()[..])
            .arg(&id.0[..]);
        self.script::<i64>(&inv).await?;
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
            .arg(to_json(cfg)?)
            .arg(cfg.rate_limit.map(|l| l.encode()).unwrap_or_default());
        let n: i64 = self.script(&inv).await?;
        self.forget(cfg.identity_id);
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
            .key(tokens_key(identity))
            .key(identity_key(identity));
        let s: Option<String> = self.script(&inv).await?;
        self.forget(identity);
        s.as_deref().map(from_json).transpose()
    }

    async fn create_token(&self, t: &TokenRecord) -> Result<bool, StoreError> {
        let iid = t.identity_id;
        // A token id that does not lead to its identity by its first 8 bytes
        // is listed in the token index, before the token exists: a crash in
        // between leaves an index entry for nothing, never a token that
        // cannot be found.
        if self.identity_by_prefix(t.id).await? != Some(iid) {
            self.query::<()>(
                redis::cmd("HSET")
                    .arg(TOKEN_INDEX)
                    .arg(t.id.hex())
                    .arg(iid.hex()),
            )
            .await?;
        }
        let mut inv = CREATE_TOKEN.prepare_invoke();
        inv.key(config_key(iid))
            .key(tokens_key(iid))
            .arg(&t.id.0[..])
            .arg(encode_token(t));
        let n: i64 = self.script(&inv).await?;
        Ok(n == 1)
    }

    async fn get_token(&self, token_id: Id) -> Result<Option<TokenRecord>, StoreError> {
        let Some(iid) = self.token_identity(token_id).await? else {
            return Ok(None);
        };
        let _settled = self.uses_settled().await;
        let rec: Option<Vec<u8>> = self
            .query(redis::cmd("HGET").arg(tokens_key(iid)).arg(&token_id.0[..]))
            .await?;
        rec.map(|b| decode_token(iid, token_id, &b).map(|t| self.with_pending(t)))
            .transpose()
    }

    // All of an identity's tokens are one hash, read whole and sorted here:
    // listing is a management call, and a per-token index would cost every
    // token memory for as long as it exists.
    async fn list_tokens(
        &self,
        identity: Id,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let _settled = self.uses_settled().await;
        let all: Vec<(Vec<u8>, Vec<u8>)> = self
            .query(redis::cmd("HGETALL").arg(tokens_key(identity)))
            .await?;
        let mut tokens = Vec::with_capacity(all.len());
        for (tid, rec) in &all {
            let tid = <[u8; 16]>::try_from(tid.as_slice()).map_err(|_| corrupt("token id"))?;
            tokens.push(decode_token(identity, Id(tid), rec)?);
        }
        // Newest first; ties by id, so pages do not overlap.
        tokens.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let count = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        Ok(tokens
            .into_iter()
            .skip(start)
            .take(count)
            .map(|t| self.with_pending(t))
            .collect())
    }

    async fn rename_token(
        &self,
        token_id: Id,
        name: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        if !self.update_token(token_id, "name", name).await? {
            return Ok(None);
        }
        self.get_token(token_id).await
    }

    async fn revoke_token(&self, token_id: Id) -> Result<bool, StoreError> {
        self.update_token(token_id, "revoke", "").await
    }

    async fn set_renewed(&self, token_id: Id, at: Millis) -> Result<bool, StoreError> {
        self.update_token(token_id, "renew", &at.to_string()).await
    }

    // Ownership and membership live in different slots, so they cannot be
    // one script on a Cluster. The order makes it safe anyway:
    // 1. the owner is checked and, if there is none, claimed by the identity's
    //    organization in one single-key script: of two organizations racing
    //    for a new project exactly one is answered its own, and the other
    //    stops here having written nothing;
    // 2. only then is the membership written (the identity's slot, where the
    //    request path reads it), then the project's indexes;
    // 3. a membership that did not exist before is checked against the owner
    //    once more, after the indexes: `set_project_owner` writes the owner
    //    first and reads the indexes after, so of a reassignment and a new
    //    member racing, at least one sees the other and backs out (removing
    //    what it wrote). An existing membership needs no second look: it is
    //    already in the indexes, so no reassignment away from its
    //    organization can succeed while it is there.
    // A claim whose write then fails (identity deleted meanwhile, store
    // outage) is kept: the project stays with that organization, which is
    // where it was going, and nothing of another organization got in.
    async fn put_membership(&self, m: &Membership) -> Result<MembershipWrite, StoreError> {
        let iid = m.identity_id;
        let org: Option<String> = self
            .query(redis::cmd("HGET").arg(identity_key(iid)).arg(ORG_FIELD))
            .await?;
        let Some(org) = org else {
            return Ok(MembershipWrite::NoIdentity);
        };
        if self.claim_project(&m.project_id, &org).await? != org {
            return Ok(MembershipWrite::OtherOrganization);
        }
        let mut inv = PUT_MEMBERSHIP.prepare_invoke();
        inv.key(identity_key(iid))
            .key(membership_key(iid, &m.project_id))
            .key(identity_projects_key(iid))
            .arg(to_json(m)?)
            .arg(encode_grants(m))
            .arg(&m.project_id);
        let (written, org, existed): (i64, String, i64) = self.script(&inv).await?;
        self.forget(iid);
        if written == 0 {
            return Ok(MembershipWrite::NoIdentity);
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
        if existed == 0 && self.project_owner(&m.project_id).await?.as_deref() != Some(&org) {
            self.delete_membership(&m.project_id, iid).await?;
            return Ok(MembershipWrite::OtherOrganization);
        }
        Ok(MembershipWrite::Written)
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
        // The project's indexes go first and the record last: a write racing
        // this delete can then leave at worst an index entry without a record
        // (which blocks a change of owner), never a live record the indexes
        // do not list (a member no listing shows and no owner change sees).
        let mut cmds = vec![redis::cmd("ZREM")
            .arg(project_key(project))
            .arg(identity.hex())
            .clone()];
        // No org means the identity is being deleted; that removes its entries.
        if let Some(org) = org {
            cmds.push(
                redis::cmd("ZREM")
                    .arg(project_org_key(project, &org))
                    .arg(identity.hex())
                    .clone(),
            );
        }
        cmds.push(
            redis::cmd("DEL")
                .arg(membership_key(identity, project))
                .clone(),
        );
        cmds.push(
            redis::cmd("SREM")
                .arg(identity_projects_key(identity))
                .arg(project)
                .clone(),
        );
        self.run_each(&cmds).await?;
        self.forget(identity);
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

    async fn project_owner(&self, project: &str) -> Result<Option<String>, StoreError> {
        self.query(redis::cmd("GET").arg(project_owner_key(project)))
            .await
    }

    // The mirror of `put_membership`'s step 3: write the owner first, then
    // read who the members are, and put the previous owner back if any of
    // them is of another organization. A member being added concurrently has
    // either reached the indexes before the read here (and this change backs
    // out) or will read the new owner after its write (and backs out itself).
    async fn set_project_owner(&self, project: &str, org: &str) -> Result<OwnerChange, StoreError> {
        let key = project_owner_key(project);
        let previous: Option<String> = self
            .query(redis::cmd("SET").arg(&key).arg(org).arg("GET"))
            .await?;
        let members: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(project_key(project))
                    .arg(0)
                    .arg(-1),
            )
            .await?;
        for iid in members.iter().filter_map(|s| Id::parse(s)) {
            let member_org: Option<String> = self
                .query(redis::cmd("HGET").arg(identity_key(iid)).arg(ORG_FIELD))
                .await?;
            // No org: the identity is being deleted, and its memberships with it.
            if member_org.is_some_and(|o| o != org) {
                let mut inv = RESTORE_OWNER.prepare_invoke();
                inv.key(&key)
                    .arg(org)
                    .arg(previous.as_deref().unwrap_or(""));
                self.script::<i64>(&inv).await?;
                return Ok(OwnerChange::MembersOfAnotherOrganization);
            }
        }
        Ok(OwnerChange::Set { previous })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query::<()>(&redis::cmd("PING")).await
    }

    /// Writes the uses the near cache counted since its last batch. The
    /// runtime that served requests is gone by now, and its connection with
    /// it, so this opens its own on a thread of its own.
    fn flush(&self) -> Result<(), StoreError> {
        let Some(cache) = &self.cache else {
            return Ok(());
        };
        let uses = cache.take_pending();
        if uses.is_empty() {
            return Ok(());
        }
        uses::write_on_stop(&self.client, &self.settings, uses)
    }
}

impl RedisStore {
    /// Claims `project` for `org` if nobody owns it; answers its owner.
    async fn claim_project(&self, project: &str, org: &str) -> Result<String, StoreError> {
        let mut inv = CLAIM_PROJECT.prepare_invoke();
        inv.key(project_owner_key(project)).arg(org);
        self.script(&inv).await
    }

    /// Runs `update_token.lua`'s `what` on a token; `false` if it does not exist.
    async fn update_token(
        &self,
        token_id: Id,
        what: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let Some(iid) = self.token_identity(token_id).await? else {
            return Ok(false);
        };
        let mut inv = UPDATE_TOKEN.prepare_invoke();
        inv.key(tokens_key(iid))
            .arg(&token_id.0[..])
            .arg(what)
            .arg(value);
        let n: i64 = self.script(&inv).await?;
        self.forget(iid);
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

/// The rate-limit refusal in a check script's answer (`{code, "", ms to
/// wait, limit}`), if it is one.
fn rate_refusal(answer: &[Value]) -> Option<Refusal> {
    let retry_after_ms = match answer.get(2)? {
        Value::Int(ms) => u64::try_from(*ms).ok()?,
        _ => return None,
    };
    let limit = RateLimit::decode(&value_string(answer.get(3)).ok()?)?;
    Some(Refusal {
        limit,
        retry_after_ms,
    })
}

/// ZRANGE's start and inclusive end for `limit` (at least 1) items from
/// `offset`. Redis indexes are i64: larger offsets are past any set's end.
fn range(offset: u64, limit: u64) -> (i64, i64) {
    let start = i64::try_from(offset).unwrap_or(i64::MAX);
    let end = i64::try_from(offset.saturating_add(limit.max(1)) - 1).unwrap_or(i64::MAX);
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::new_nonce;

    #[test]
    fn a_nonce_is_32_lowercase_hex_digits_and_fresh_each_time() {
        let a = new_nonce();
        assert_eq!(a.len(), 32, "{a}");
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{a}"
        );
        assert_ne!(a, new_nonce());
    }
}
