//! The embedded store's durability: the redb file (its tables and their
//! encoding), opening and loading it, durable commits in the order changes
//! were made, the group commit of limited-token uses, and the periodic flush
//! of statistics (and the last one on close).

use super::admit::BUCKETS_BEFORE_SWEEP;
use super::state::{Inner, Pending, State};
use super::EmbeddedStore;
use crate::model::{Identity, Membership, TokenAuthConfig, TokenRecord};
use crate::store::StoreError;
use crate::token::Id;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

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

pub(super) fn err<E: std::fmt::Display>(e: E) -> StoreError {
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
pub(super) enum Write<'a> {
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

    /// Commits `writes` without holding the state mutex (the caller holds the
    /// disk mutex, so no other change can come in between), then takes it
    /// again for the caller to apply the change in memory.
    pub(super) fn commit_unlocked<'s>(
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
    pub(super) fn lock_for_write(
        &self,
    ) -> Result<(MutexGuard<'_, ()>, MutexGuard<'_, State>), StoreError> {
        let disk = self.inner.disk.lock().unwrap_or_else(|p| p.into_inner());
        Ok((disk, self.lock()?))
    }
}

impl Inner {
    /// under both mutexes, the fsync happens under the disk mutex only.
    pub(super) fn flush(&self) -> Result<(), StoreError> {
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
