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
//! Submodules: `conn` (settings and connections), `clock` (Redis's clock
//! offset), `keys` (key layout), `record` (field encoding, with the legend
//! of field letters), `scripts` (the Lua scripts and the shared table of
//! deny codes), `check` (the request path: the scripted check-and-consume,
//! its nonce and retries), `give_back` (undoing checks whose replies were
//! lost), `tokens` (token records and lookups), `projects` (memberships and
//! project owners), `cache` (the near cache), `tracking` (its invalidation
//! channel, over `resp3`) and `uses` (writing the uses it counted). This
//! file holds the store handle, its connection and the `Store` trait.

mod cache;
mod check;
mod clock;
mod conn;
mod give_back;
mod keys;
mod projects;
mod record;
mod resp3;
mod scripts;
mod tokens;
mod tracking;
mod uses;

pub use cache::{CacheMetrics, CacheSettings};
pub use conn::{Clock, RedisSettings};
pub use record::pack_ip;

use super::{
    AuthOutcome, AuthRequest, Deletion, MembershipWrite, OwnerChange, Page, PutMode, Store,
    StoreError,
};
use crate::model::{now_millis, Identity, Membership, Millis, TokenAuthConfig, TokenRecord};
use crate::token::Id;
use async_trait::async_trait;
use cache::NearCache;
use clock::{follow_clock, measure_clock};
use conn::{unavailable, Client, Conn};
use give_back::{give_back, GiveBack, GIVE_BACK_QUEUE};
use keys::*;
use record::*;
use redis::Cmd;
use scripts::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
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

    /// How many ids a sorted-set index holds, and the page of them from
    /// `offset` (the records they name are read by the caller).
    async fn index_page(
        &self,
        index: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<Id>), StoreError> {
        let total: u64 = self.query(redis::cmd("ZCARD").arg(index)).await?;
        let (start, stop) = range(offset, limit);
        let ids: Vec<String> = self
            .query(redis::cmd("ZRANGE").arg(index).arg(start).arg(stop))
            .await?;
        Ok((total, ids.iter().filter_map(|s| Id::parse(s)).collect()))
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
}

#[async_trait]
impl Store for RedisStore {
    fn now(&self) -> Millis {
        let offset = self.clock_offset.load(Ordering::Relaxed);
        now_millis().saturating_add_signed(offset)
    }

    async fn authenticate(&self, req: &AuthRequest<'_>) -> Result<AuthOutcome, StoreError> {
        self.check_and_consume(req).await
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
        let (total, ids) = self.index_page(&index, offset, limit).await?;
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
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
        self.add_token(t).await
    }

    async fn get_token(&self, token_id: Id) -> Result<Option<TokenRecord>, StoreError> {
        self.read_token(token_id).await
    }

    async fn list_tokens(
        &self,
        identity: Id,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        self.read_tokens(identity, offset, limit).await
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

    async fn put_membership(&self, m: &Membership) -> Result<MembershipWrite, StoreError> {
        self.write_membership(m).await
    }

    async fn get_membership(
        &self,
        project: &str,
        identity: Id,
    ) -> Result<Option<Membership>, StoreError> {
        self.read_membership(project, identity).await
    }

    async fn delete_membership(
        &self,
        project: &str,
        identity: Id,
    ) -> Result<Option<Membership>, StoreError> {
        self.remove_membership(project, identity).await
    }

    async fn list_memberships(
        &self,
        project: &str,
        org: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Membership>, StoreError> {
        self.read_memberships(project, org, offset, limit).await
    }

    async fn project_owner(&self, project: &str) -> Result<Option<String>, StoreError> {
        self.read_project_owner(project).await
    }

    async fn set_project_owner(&self, project: &str, org: &str) -> Result<OwnerChange, StoreError> {
        self.write_project_owner(project, org).await
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
