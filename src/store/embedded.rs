//! The embedded store: one redb file, for a single gateway (the default).
//!
//! The whole data set lives in memory behind one mutex and every change is
//! written through to the file. Because only this process opens the file (redb
//! locks it), memory and disk cannot disagree, and the request path needs no
//! I/O at all for the common case:
//! - a use of an unlimited token only changes statistics (`numUses`,
//!   `lastUsedAt`); it is kept in memory and flushed to disk within
//!   `FLUSH_EVERY` (the window a kill -9 can lose; no security decision is in it);
//! - a use of a limited token, and every management change, is committed
//!   durably (fsync) before the answer, so it survives kill -9; a use whose
//!   commit fails is refused (503) and taken back, so it is not spent;
//! - rate-limit state (one number per bucket) lives in memory only, checked
//!   and advanced under the same lock as the rest of the decision.
//!
//! Every commit holds a second, disk mutex, taken before the state mutex, so
//! commits reach the file in the order their changes were made. A management
//! change decides under the state mutex, lets it go for the fsync (holding
//! only the disk mutex, which every writer takes) and applies its change in
//! memory after; the periodic flush holds only the disk mutex too. So the
//! request path never waits for a disk: requests are answered while an
//! operator's change commits, and see it once it is durable.

use super::{
    AuthOutcome, AuthRequest, Deletion, MembershipWrite, OwnerChange, Page, PutMode, Store,
    StoreError,
};
use crate::auth::{self, Deny, Facts, Project};
use crate::model::{Identity, Membership, Millis, TokenAuthConfig, TokenRecord};
use crate::rate_limit::{self, Bucket, Verdict};
use crate::token::Id;
use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a use of an unlimited token may stay in memory before it is on disk.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

// Values are JSON: small, readable with a debugger, and versionable.
const IDENTITIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("identities");
const CONFIGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("token_auth");
const TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tokens");
/// Key: project id, 0xff, identity id bytes.
const MEMBERSHIPS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("memberships");
/// Key: project id; value: the owning organization's id (plain text). A new
/// table, so a file written before projects had owners opens with none.
const OWNERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("project_owners");

/// Everything the store holds, as it is on disk (plus unflushed statistics).
#[derive(Default)]
struct State {
    identities: HashMap<Id, Identity>,
    configs: HashMap<Id, TokenAuthConfig>,
    tokens: HashMap<Id, TokenRecord>,
    /// Ordered by project, then identity, so a project's memberships are one range.
    memberships: BTreeMap<(String, Id), Membership>,
    /// Project id -> the organization that owns it.
    owners: HashMap<String, String>,
    /// Tokens whose statistics changed in memory only, awaiting the flush.
    dirty: HashSet<Id>,
    /// Rate-limit state: each bucket's TAT in microseconds. Never written to
    /// the file: a restart forgets it, which at worst admits one more burst.
    buckets: HashMap<Bucket, u64>,
    /// `buckets` is swept when it reaches this size.
    buckets_sweep_at: usize,
}

struct Inner {
    db: Database,
    state: Mutex<State>,
    /// Held across every commit, and taken before `state`: commits then reach
    /// the file in the order their snapshots were taken, so an older copy of a
    /// record never overwrites a newer one, while the flush can write without
    /// holding `state` (the request path never waits for its fsync).
    disk: Mutex<()>,
    /// Limited-token uses counted in memory and waiting for the group commit.
    pending: Mutex<Pending>,
    /// Wakes the group-commit thread.
    wake: Condvar,
    /// Tests hold a management commit here until told to go on.
    #[cfg(test)]
    hold: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// Tests make the group commit fail while this is set.
    #[cfg(test)]
    fail_commits: std::sync::atomic::AtomicBool,
}

/// Uses waiting to be made durable (how many per token), and the requests
/// waiting on them.
#[derive(Default)]
struct Pending {
    tokens: HashMap<Id, u64>,
    waiters: Vec<oneshot::Sender<Result<(), StoreError>>>,
}

pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

fn err<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn enc<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn dec<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn membership_key(project: &str, identity: Id) -> Vec<u8> {
    let mut k = Vec::with_capacity(project.len() + 17);
    k.extend_from_slice(project.as_bytes());
    k.push(0xff); // never inside UTF-8, so project ids cannot collide
    k.extend_from_slice(&identity.0);
    k
}

/// One change to write to the file.
enum Write<'a> {
    Identity(&'a Identity),
    DeleteIdentity(Id),
    Config(&'a TokenAuthConfig),
    DeleteConfig(Id),
    Token(&'a TokenRecord),
    DeleteToken(Id),
    Membership(&'a Membership),
    DeleteMembership(&'a str, Id),
    /// Project, organization.
    Owner(&'a str, &'a str),
}

/// Commits `writes` in one durable transaction.
fn commit(db: &Database, writes: &[Write<'_>]) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(err)?;
    {
        let mut ids = txn.open_table(IDENTITIES).map_err(err)?;
        let mut cfgs = txn.open_table(CONFIGS).map_err(err)?;
        let mut toks = txn.open_table(TOKENS).map_err(err)?;
        let mut mems = txn.open_table(MEMBERSHIPS).map_err(err)?;
        let mut owners = txn.open_table(OWNERS).map_err(err)?;
        for w in writes {
            match w {
                Write::Identity(i) => ids.insert(&i.id.0[..], enc(i)?.as_slice()).map(drop),
                Write::DeleteIdentity(id) => ids.remove(&id.0[..]).map(drop),
                Write::Config(c) => cfgs
                    .insert(&c.identity_id.0[..], enc(c)?.as_slice())
                    .map(drop),
                Write::DeleteConfig(id) => cfgs.remove(&id.0[..]).map(drop),
                Write::Token(t) => toks.insert(&t.id.0[..], enc(t)?.as_slice()).map(drop),
                Write::DeleteToken(id) => toks.remove(&id.0[..]).map(drop),
                Write::Membership(m) => mems
                    .insert(
                        membership_key(&m.project_id, m.identity_id).as_slice(),
                        enc(m)?.as_slice(),
                    )
                    .map(drop),
                Write::DeleteMembership(p, id) => {
                    mems.remove(membership_key(p, *id).as_slice()).map(drop)
                }
                Write::Owner(p, org) => owners.insert(p.as_bytes(), org.as_bytes()).map(drop),
            }
            .map_err(err)?;
        }
    }
    txn.commit().map_err(err)
}

/// Every value of a table, decoded.
fn load_table<T: serde::de::DeserializeOwned>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<&[u8], &[u8]>,
) -> Result<Vec<T>, StoreError> {
    let t = txn.open_table(table).map_err(err)?;
    let mut out = Vec::new();
    for row in t.iter().map_err(err)? {
        let (_, v) = row.map_err(err)?;
        out.push(dec(v.value())?);
    }
    Ok(out)
}

fn page<T>(items: impl Iterator<Item = T>, total: u64, offset: u64, limit: u64) -> Page<T> {
    let skip = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    Page {
        items: items.skip(skip).take(take).collect(),
        total,
    }
}

/// Runs blocking file I/O from async code without stalling the runtime's
/// other tasks (when the runtime can hand them to another thread).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the database file, loads it, and starts the background flush.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let db = Database::create(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        // Create the tables up front so loading never meets a missing table.
        let txn = db.begin_write().map_err(err)?;
        for t in [IDENTITIES, CONFIGS, TOKENS, MEMBERSHIPS, OWNERS] {
            txn.open_table(t).map_err(err)?;
        }
        txn.commit().map_err(err)?;

        let mut state = State {
            buckets_sweep_at: BUCKETS_BEFORE_SWEEP,
            ..State::default()
        };
        let read = db.begin_read().map_err(err)?;
        for i in load_table::<Identity>(&read, IDENTITIES)? {
            state.identities.insert(i.id, i);
        }
        for c in load_table::<TokenAuthConfig>(&read, CONFIGS)? {
            state.configs.insert(c.identity_id, c);
        }
        for t in load_table::<TokenRecord>(&read, TOKENS)? {
            state.tokens.insert(t.id, t);
        }
        for m in load_table::<Membership>(&read, MEMBERSHIPS)? {
            state
                .memberships
                .insert((m.project_id.clone(), m.identity_id), m);
        }
        {
            let t = read.open_table(OWNERS).map_err(err)?;
            for row in t.iter().map_err(err)? {
                let (p, org) = row.map_err(err)?;
                let text = |b: &[u8]| {
                    String::from_utf8(b.to_vec()).map_err(|e| StoreError::Corrupt(e.to_string()))
                };
                state.owners.insert(text(p.value())?, text(org.value())?);
            }
        }
        drop(read);

        let inner = Arc::new(Inner {
            db,
            state: Mutex::new(state),
            disk: Mutex::new(()),
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            #[cfg(test)]
            hold: Mutex::new(None),
            #[cfg(test)]
            fail_commits: std::sync::atomic::AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("tokengate-flush".into())
            .spawn(move || flush_loop(weak))
            .map_err(err)?;
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("tokengate-commit".into())
            .spawn(move || group_commit_loop(weak))
            .map_err(err)?;
        Ok(EmbeddedStore { inner })
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        self.inner.lock()
    }

    /// Commits `writes` without holding the state mutex (the caller holds the
    /// disk mutex, so no other change can come in between), then takes it
    /// again for the caller to apply the change in memory.
    fn commit_unlocked<'s>(
        &'s self,
        st: MutexGuard<'s, State>,
        writes: &[Write<'_>],
    ) -> Result<MutexGuard<'s, State>, StoreError> {
        drop(st);
        #[cfg(test)]
        {
            let held = self
                .inner
                .hold
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(go_on) = held {
                let _ = go_on.recv();
            }
        }
        blocking(|| commit(&self.inner.db, writes))?;
        self.lock()
    }

    /// The disk mutex, then the state mutex: for changes that are committed.
    fn lock_for_write(&self) -> Result<(MutexGuard<'_, ()>, MutexGuard<'_, State>), StoreError> {
        let disk = self.inner.disk.lock().unwrap_or_else(|p| p.into_inner());
        Ok((disk, self.lock()?))
    }
}

impl Inner {
    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        // A panic while holding the lock cannot leave memory ahead of disk
        // (changes are applied only after their commit), so the data is usable.
        Ok(self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Writes the statistics of every dirty token. The snapshot is taken
    /// under both mutexes, the fsync happens under the disk mutex only.
    fn flush(&self) -> Result<(), StoreError> {
        let _disk = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        let snapshot: Vec<TokenRecord> = {
            let mut st = self.lock()?;
            let dirty = std::mem::take(&mut st.dirty);
            dirty
                .iter()
                .filter_map(|id| st.tokens.get(id))
                .cloned()
                .collect()
        };
        if snapshot.is_empty() {
            return Ok(());
        }
        let writes: Vec<Write<'_>> = snapshot.iter().map(Write::Token).collect();
        if let Err(e) = commit(&self.db, &writes) {
            // Not on disk yet: try again at the next flush.
            let mut st = self.lock()?;
            st.dirty.extend(snapshot.iter().map(|t| t.id));
            return Err(e);
        }
        Ok(())
    }
}

impl Inner {
    /// Commits every pending limited-token use in one transaction (one fsync
    /// for all the requests that arrived meanwhile), then answers their waiters.
    fn group_commit(&self) {
        let _disk = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        let Pending { tokens, waiters } = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *p)
        };
        if waiters.is_empty() {
            return;
        }
        let result = self.lock().and_then(|st| {
            let snapshot: Vec<TokenRecord> = tokens
                .keys()
                .filter_map(|id| st.tokens.get(id))
                .cloned()
                .collect();
            drop(st);
            #[cfg(test)]
            if self.fail_commits.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(StoreError::Unavailable("injected commit failure".into()));
            }
            let writes: Vec<Write<'_>> = snapshot.iter().map(Write::Token).collect();
            commit(&self.db, &writes)
        });
        if result.is_err() {
            // Their requests are refused (503), so their uses are not
            // spent: take them back, leaving the uses counted since (the
            // next batch's) as they are. Nothing of this batch is on disk.
            if let Ok(mut st) = self.lock() {
                for (id, n) in &tokens {
                    if let Some(t) = st.tokens.get_mut(id) {
                        t.num_uses = t.num_uses.saturating_sub(*n);
                    }
                }
            }
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

/// Commits limited-token uses as they arrive; ends when the store is dropped.
fn group_commit_loop(inner: Weak<Inner>) {
    loop {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        {
            let p = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            if p.waiters.is_empty() {
                // Bounded wait, so the thread notices when the store is gone.
                let _ = inner.wake.wait_timeout(p, Duration::from_millis(100));
            }
        }
        inner.group_commit();
    }
}

/// Makes in-memory statistics durable; ends when the store is dropped.
fn flush_loop(inner: Weak<Inner>) {
    loop {
        std::thread::sleep(FLUSH_EVERY);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Err(e) = inner.flush() {
            log::error!("embedded store flush failed: {e}");
        }
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        if let Err(e) = self.inner.flush() {
            log::error!("embedded store flush on close failed: {e}");
        }
    }
}

/// The decision for `req` under the state lock: every check of
/// `auth::decide`, then the rate limit (the identity's own, else the
/// route's), whose bucket advances only when the request is allowed. The
/// caller counts the use under the same lock.
fn admit(st: &mut State, req: &AuthRequest<'_>) -> AuthOutcome {
    let (tid, iid) = (req.token.token_id, req.token.identity_id);
    let project = match req.project {
        None => Project::NotNamed,
        Some(p) => Project::Named(st.memberships.get(&(p.to_string(), iid))),
    };
    let grant = auth::decide(Facts {
        token: st.tokens.get(&tid).filter(|t| t.identity_id == iid),
        identity: st.identities.get(&iid),
        presented: &req.token.secret_hash(),
        client_ip: req.client_ip,
        now: req.now,
        needs: req.needs,
        project,
    })?;
    let own = st.configs.get(&iid).and_then(|c| c.rate_limit);
    let Some((limit, from_route)) = own
        .map(|l| (l, false))
        .or(req.route_rate_limit.map(|l| (l, true)))
    else {
        return Ok(grant);
    };
    let bucket = Bucket::of(&limit, iid, tid, from_route);
    let stored = st.buckets.get(&bucket).copied().unwrap_or(0);
    match rate_limit::check(&limit, stored, req.now) {
        Verdict::Refused(r) => Err(Deny::RateLimited(r)),
        Verdict::Allowed { tat_us, .. } => {
            st.buckets.insert(bucket, tat_us);
            st.sweep_buckets(req.now);
            Ok(grant)
        }
    }
}

/// Buckets kept before the spent ones are swept out.
const BUCKETS_BEFORE_SWEEP: usize = 4096;

impl State {
    /// Drops buckets whose TAT has passed (they read as empty anyway), once
    /// there are many, so memory follows the identities being limited.
    fn sweep_buckets(&mut self, now: Millis) {
        if self.buckets.len() >= self.buckets_sweep_at {
            let now_us = now.saturating_mul(1000);
            self.buckets.retain(|_, tat| *tat > now_us);
            self.buckets_sweep_at = (self.buckets.len() * 2).max(BUCKETS_BEFORE_SWEEP);
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn authenticate(&self, req: &AuthRequest<'_>) -> Result<AuthOutcome, StoreError> {
        let tid = req.token.token_id;
        let (decision, durable) = {
            let mut st = self.lock()?;
            let decision = admit(&mut st, req);
            if decision.is_err() {
                return Ok(decision);
            }
            let Some(token) = st.tokens.get_mut(&tid) else {
                return Ok(decision);
            };
            token.num_uses += 1;
            token.last_used_at = Some(req.now);
            if token.num_uses_limit == 0 {
                // Statistics only: counted in memory, written by the next flush.
                st.dirty.insert(tid);
                return Ok(decision);
            }
            // A limited token: the use is a security decision and is on disk
            // before the answer. It is counted in memory now (so concurrent
            // requests see it) and made durable by the group commit, which
            // writes every use that arrived meanwhile with one fsync.
            let (tx, rx) = oneshot::channel();
            let mut p = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            *p.tokens.entry(tid).or_insert(0) += 1;
            p.waiters.push(tx);
            self.inner.wake.notify_one();
            (decision, rx)
        };
        match durable.await {
            Ok(Ok(())) => Ok(decision),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Unavailable("the group commit stopped".into())),
        }
    }

    async fn create_identity(&self, identity: &Identity) -> Result<(), StoreError> {
        let (_disk, st) = self.lock_for_write()?;
        let mut st = self.commit_unlocked(st, &[Write::Identity(identity)])?;
        st.identities.insert(identity.id, identity.clone());
        Ok(())
    }

    async fn get_identity(&self, id: Id) -> Result<Option<Identity>, StoreError> {
        Ok(self.lock()?.identities.get(&id).cloned())
    }

    async fn update_identity(&self, identity: &Identity) -> Result<bool, StoreError> {
        let (_disk, st) = self.lock_for_write()?;
        let Some(stored) = st.identities.get(&identity.id) else {
            return Ok(false);
        };
        let identity = Identity {
            org_id: stored.org_id.clone(),
            ..identity.clone()
        };
        let mut st = self.commit_unlocked(st, &[Write::Identity(&identity)])?;
        st.identities.insert(identity.id, identity);
        Ok(true)
    }

    async fn delete_identity(&self, id: Id) -> Result<Deletion, StoreError> {
        let (_disk, st) = self.lock_for_write()?;
        let Some(identity) = st.identities.get(&id).cloned() else {
            return Ok(Deletion::NotFound);
        };
        if identity.has_delete_protection {
            return Ok(Deletion::Protected);
        }
        let tokens: Vec<Id> = st
            .tokens
            .values()
            .filter(|t| t.identity_id == id)
            .map(|t| t.id)
            .collect();
        let memberships: Vec<(String, Id)> = st
            .memberships
            .keys()
            .filter(|(_, i)| *i == id)
            .cloned()
            .collect();
        let mut writes = vec![Write::DeleteIdentity(id), Write::DeleteConfig(id)];
        writes.extend(tokens.iter().map(|t| Write::DeleteToken(*t)));
        writes.extend(
            memberships
                .iter()
                .map(|(p, i)| Write::DeleteMembership(p, *i)),
        );
        let mut st = self.commit_unlocked(st, &writes)?;
        drop(writes);
        st.identities.remove(&id);
        st.configs.remove(&id);
        for t in &tokens {
            st.tokens.remove(t);
            st.dirty.remove(t);
        }
        for k in &memberships {
            st.memberships.remove(k);
        }
        Ok(Deletion::Deleted(identity))
    }

    async fn list_identities(
        &self,
        org: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Identity>, StoreError> {
        let st = self.lock()?;
        let mut all: Vec<&Identity> = st
            .identities
            .values()
            .filter(|i| org.is_none_or(|o| i.org_id == o))
            .collect();
        all.sort_by_key(|i| (i.created_at, i.id));
        let total = all.len() as u64;
        Ok(page(all.into_iter().cloned(), total, offset, limit))
    }

    async fn put_token_auth(
        &self,
        cfg: &TokenAuthConfig,
        mode: PutMode,
    ) -> Result<bool, StoreError> {
        let (_disk, st) = self.lock_for_write()?;
        let exists = st.configs.contains_key(&cfg.identity_id);
        let ok = match mode {
            PutMode::Create => !exists && st.identities.contains_key(&cfg.identity_id),
            PutMode::Update => exists,
        };
        if ok {
            let mut st = self.commit_unlocked(st, &[Write::Config(cfg)])?;
            st.configs.insert(cfg.identity_id, cfg.clone());
        }
        Ok(ok)
    }

    async fn get_token_auth(&self, identity: Id) -> Result<Option<TokenAuthConfig>, StoreError> {
        Ok(self.lock()?.configs.get(&identity).cloned())
    }

    async fn remove_token_auth(&self, identity: Id) -> Result<Option<TokenAuthConfig>, StoreError> {
        let (_disk, st) = self.lock_for_write()?;
        let Some(cfg) = st.configs.get(&identity).cloned() else {
            return Ok(None);
        };
        let revoked: Vec<TokenRecord> = st
            .tokens
            .values()
            .filter(|t| t.identity_id == identity)
            .map(|t| TokenRecord {
                revoked: true,
                ..t.clone()
            })
            .collect();
        let mut writes = vec![Write::DeleteConfig(identity)];
        writes.extend(revoked.iter().map(Write::Token));
        let mut st = self.commit_unlocked(st, &writes)?;
        drop(writes);
        st.configs.remove(&identity);
        // Onto the records as they are now: uses counted during the commit
        // stay counted (and, if only in memory, are flushed with the flag).
        for t in revoked {
            if let Some(current) = st.tokens.get_mut(&t.id) {
                current.revoked = true;
            }
        }
        Ok(Some(cfg))
    }

    async fn create_token(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        let (_disk, st) = self.lock_for_write()?;
        if !st.configs.contains_key(&token.identity_id) {
            return Ok(false);
        }
        let mut st = self.commit_unlocked(st, &[Write::Token(token)])?;
        st.tokens.insert(token.id, token.clone());
        Ok(true)
    }

    async fn get_token(&self, token_id: Id) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.lock()?.tokens.get(&token_id).cloned())
    }

    async fn list_tokens(
        &self,
        identity: Id,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let st = self.lock()?;
        let mut all: Vec<&TokenRecord> = st
            .tokens
            .values()
            .filter(|t| t.identity_id == identity)
            .collect();
        all.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
        let total = all.len() as u64;
        Ok(page(all.into_iter().cloned(), total, offset, limit).items)
    }

    async fn rename_token(
        &self,
        token_id: Id,
        name: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.update_token(token_id, |t| t.name = name.to_string())
    }

    async fn revoke_token(&self, token_id: Id) -> Result<bool, StoreError> {
        Ok(self.update_token(token_id, |t| t.revoked = true)?.is_some())
    }

    async fn set_renewed(&self, token_id: Id, at: Millis) -> Result<bool, StoreError> {
        Ok(self
            .update_token(token_id, |t| t.last_renewed_at = Some(at))?
            .is_some())
    }

    async fn put_membership(&self, m: &Membership) -> Result<MembershipWrite, StoreError> {
        // The owner check, the claim and the write happen under one lock and
        // in one transaction, so two organizations cannot both claim a project.
        let (_disk, st) = self.lock_for_write()?;
        let Some(org) = st.identities.get(&m.identity_id).map(|i| i.org_id.clone()) else {
            return Ok(MembershipWrite::NoIdentity);
        };
        let claim = match st.owners.get(&m.project_id) {
            Some(owner) if *owner != org => return Ok(MembershipWrite::OtherOrganization),
            Some(_) => false,
            None => true,
        };
        let mut writes = vec![Write::Membership(m)];
        if claim {
            writes.push(Write::Owner(&m.project_id, &org));
        }
        let mut st = self.commit_unlocked(st, &writes)?;
        if claim {
            st.owners.insert(m.project_id.clone(), org);
        }
        st.memberships
            .insert((m.project_id.clone(), m.identity_id), m.clone());
        Ok(MembershipWrite::Written)
    }

    async fn get_membership(
        &self,
        project: &str,
        identity: Id,
    ) -> Result<Option<Membership>, StoreError> {
        let st = self.lock()?;
        Ok(st
            .memberships
            .get(&(project.to_string(), identity))
            .cloned())
    }

    async fn delete_membership(
        &self,
        project: &str,
        identity: Id,
    ) -> Result<Option<Membership>, StoreError> {
        let (_disk, st) = self.lock_for_write()?;
        let key = (project.to_string(), identity);
        if !st.memberships.contains_key(&key) {
            return Ok(None);
        }
        let mut st = self.commit_unlocked(st, &[Write::DeleteMembership(project, identity)])?;
        Ok(st.memberships.remove(&key))
    }

    async fn list_memberships(
        &self,
        project: &str,
        org: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Membership>, StoreError> {
        let st = self.lock()?;
        let in_org = |m: &Membership| {
            org.is_none_or(|o| {
                st.identities
                    .get(&m.identity_id)
                    .is_some_and(|i| i.org_id == o)
            })
        };
        let mut all: Vec<&Membership> = st
            .memberships
            .range((project.to_string(), Id([0; 16]))..=(project.to_string(), Id([0xff; 16])))
            .map(|(_, m)| m)
            .filter(|m| in_org(m))
            .collect();
        all.sort_by_key(|m| (m.created_at, m.identity_id));
        let total = all.len() as u64;
        Ok(page(all.into_iter().cloned(), total, offset, limit))
    }

    async fn project_owner(&self, project: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock()?.owners.get(project).cloned())
    }

    async fn set_project_owner(&self, project: &str, org: &str) -> Result<OwnerChange, StoreError> {
        let (_disk, st) = self.lock_for_write()?;
        let foreign = st
            .memberships
            .range((project.to_string(), Id([0; 16]))..=(project.to_string(), Id([0xff; 16])))
            .any(|((_, iid), _)| st.identities.get(iid).is_some_and(|i| i.org_id != org));
        if foreign {
            return Ok(OwnerChange::MembersOfAnotherOrganization);
        }
        let mut st = self.commit_unlocked(st, &[Write::Owner(project, org)])?;
        let previous = st.owners.insert(project.to_string(), org.to_string());
        Ok(OwnerChange::Set { previous })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _st = self.lock()?;
        self.inner.db.begin_read().map(drop).map_err(err)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}

impl EmbeddedStore {
    /// Applies `change` to a token, durably; `None` if it does not exist.
    fn update_token(
        &self,
        token_id: Id,
        change: impl FnOnce(&mut TokenRecord),
    ) -> Result<Option<TokenRecord>, StoreError> {
        let (_disk, st) = self.lock_for_write()?;
        let Some(mut changed) = st.tokens.get(&token_id).cloned() else {
            return Ok(None);
        };
        change(&mut changed);
        let mut st = self.commit_unlocked(st, &[Write::Token(&changed)])?;
        // Onto the record as it is now: the fields a management change makes
        // (name, revocation, renewal) come from `changed`, while uses counted
        // during the commit stay counted (if only in memory, the flush writes
        // them with the change).
        let Some(current) = st.tokens.get_mut(&token_id) else {
            return Ok(Some(changed));
        };
        current.name = changed.name;
        current.revoked = changed.revoked;
        current.last_renewed_at = changed.last_renewed_at;
        Ok(Some(current.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Needs;
    use crate::model::default_trusted_ips;
    use crate::token::AccessToken;
    use std::sync::mpsc;

    fn identity(id: Id) -> Identity {
        Identity {
            id,
            name: "i".into(),
            org_id: "org".into(),
            role: "member".into(),
            has_delete_protection: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    /// An identity with Token Auth and one token (`limit` uses, 0: none),
    /// written through the store.
    async fn with_token(store: &EmbeddedStore, limit: u64) -> AccessToken {
        let iid = Id::random();
        let token = AccessToken::generate(iid);
        store.create_identity(&identity(iid)).await.unwrap();
        let cfg = TokenAuthConfig {
            id: Id::random(),
            identity_id: iid,
            ttl: 0,
            max_ttl: 0,
            num_uses_limit: limit,
            trusted_ips: default_trusted_ips(),
            period: 0,
            created_at: 0,
            updated_at: 0,
            rate_limit: None,
        };
        assert!(store.put_token_auth(&cfg, PutMode::Create).await.unwrap());
        let record = TokenRecord {
            id: token.token_id,
            identity_id: iid,
            name: "t".into(),
            secret_hash: token.secret_hash(),
            created_at: 0,
            last_renewed_at: None,
            last_used_at: None,
            num_uses: 0,
            num_uses_limit: limit,
            ttl: 0,
            max_ttl: 0,
            period: 0,
            trusted_ips: default_trusted_ips(),
            revoked: false,
        };
        assert!(store.create_token(&record).await.unwrap());
        token
    }

    /// A request with `token` from a trusted address, needing nothing.
    fn ask(token: &AccessToken) -> AuthRequest<'_> {
        AuthRequest {
            token,
            client_ip: "10.0.0.1".parse().unwrap(),
            now: 1,
            project: None,
            needs: Needs::ANY,
            route_rate_limit: None,
        }
    }

    /// A management change holding its commit open does not hold requests:
    /// one is answered meanwhile (before the fix it waited for the fsync).
    #[test]
    fn requests_are_answered_while_a_management_change_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let token = rt.block_on(with_token(&store, 0));

        // The next management change stops inside its commit until told.
        let (go_on, held) = mpsc::channel();
        *store.inner.hold.lock().unwrap() = Some(held);
        let writer = {
            let store = store.clone();
            let handle = rt.handle().clone();
            std::thread::spawn(move || {
                handle.block_on(store.create_identity(&identity(Id::random())))
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.inner.hold.lock().unwrap().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the change never committed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }

        let (answered, answer) = mpsc::channel();
        {
            let store = store.clone();
            let handle = rt.handle().clone();
            std::thread::spawn(move || {
                let outcome = handle.block_on(store.authenticate(&ask(&token)));
                let _ = answered.send(outcome.map(|o| o.is_ok()));
            });
        }
        let outcome = answer.recv_timeout(Duration::from_secs(5));
        assert!(!writer.is_finished(), "the change was still committing");
        go_on.send(()).unwrap();
        assert_eq!(
            outcome.ok().map(|o| o.ok()),
            Some(Some(true)),
            "the request was not answered while the change committed"
        );
        writer.join().unwrap().unwrap();
    }

    /// A limited token's use whose commit fails is refused and not spent:
    /// the token still has its whole limit after (before the fix the failed
    /// attempt kept one use counted).
    #[test]
    fn a_use_whose_commit_fails_is_refused_and_not_spent() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let token = rt.block_on(with_token(&store, 2));
        let uses = || {
            rt.block_on(store.get_token(token.token_id))
                .unwrap()
                .unwrap()
                .num_uses
        };

        store
            .inner
            .fail_commits
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            rt.block_on(store.authenticate(&ask(&token))).is_err(),
            "refused: 503"
        );
        assert_eq!(uses(), 0, "the refused use is not spent");
        store
            .inner
            .fail_commits
            .store(false, std::sync::atomic::Ordering::Relaxed);
        for _ in 0..2 {
            assert!(rt
                .block_on(store.authenticate(&ask(&token)))
                .unwrap()
                .is_ok());
        }
        assert_eq!(
            rt.block_on(store.authenticate(&ask(&token))).unwrap(),
            Err(Deny::UsageLimitReached)
        );
        assert_eq!(uses(), 2);
    }
}
