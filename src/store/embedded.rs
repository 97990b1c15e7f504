//! The embedded store: one redb file, for a single gateway (the default).
//!
//! Every check-and-consume runs in one redb write transaction, so it is atomic.
//! A counted use of a limited token, and every management change, is committed
//! durably before the answer (it survives kill -9). Uses of unlimited tokens
//! (only statistics: `numUses`, `lastUsedAt`) are committed without fsync and
//! made durable by a background flush at most `FLUSH_EVERY` later: that is the
//! window a kill -9 can lose, and it loses no security decision.

use super::{AuthOutcome, AuthRequest, Page, PutMode, Store, StoreError};
use crate::auth;
use crate::model::{Identity, Membership, Millis, TokenAuthConfig, TokenRecord};
use crate::token::Id;
use async_trait::async_trait;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long a use of an unlimited token may stay in memory before it is on disk.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

// Values are JSON: small, readable with a debugger, and versionable.
const IDENTITIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("identities");
const CONFIGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("token_auth");
const TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tokens");
/// Key: project id, 0xff, identity id bytes.
const MEMBERSHIPS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("memberships");

struct Inner {
    db: Database,
    /// An unlimited token's use was committed without fsync and awaits the flush.
    dirty: AtomicBool,
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

type Txn = redb::WriteTransaction;

fn get<T: serde::de::DeserializeOwned>(
    txn: &Txn,
    table: TableDefinition<&[u8], &[u8]>,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    let t = txn.open_table(table).map_err(err)?;
    let v = t.get(key).map_err(err)?;
    v.map(|v| dec(v.value())).transpose()
}

fn put<T: serde::Serialize>(
    txn: &Txn,
    table: TableDefinition<&[u8], &[u8]>,
    key: &[u8],
    v: &T,
) -> Result<(), StoreError> {
    let mut t = txn.open_table(table).map_err(err)?;
    t.insert(key, enc(v)?.as_slice()).map_err(err)?;
    Ok(())
}

fn remove<T: serde::de::DeserializeOwned>(
    txn: &Txn,
    table: TableDefinition<&[u8], &[u8]>,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    let mut t = txn.open_table(table).map_err(err)?;
    let v = t.remove(key).map_err(err)?;
    v.map(|v| dec(v.value())).transpose()
}

/// Every value of a table, decoded, for which `keep` holds.
fn scan<T: serde::de::DeserializeOwned>(
    txn: &Txn,
    table: TableDefinition<&[u8], &[u8]>,
    keep: impl Fn(&[u8], &T) -> bool,
) -> Result<Vec<T>, StoreError> {
    let t = txn.open_table(table).map_err(err)?;
    let mut out = Vec::new();
    for row in t.iter().map_err(err)? {
        let (k, v) = row.map_err(err)?;
        let v: T = dec(v.value())?;
        if keep(k.value(), &v) {
            out.push(v);
        }
    }
    Ok(out)
}

fn page<T>(mut items: Vec<T>, offset: u64, limit: u64) -> Page<T> {
    let total = items.len() as u64;
    let start = (offset.min(total)) as usize;
    let end = (offset.saturating_add(limit).min(total)) as usize;
    items.truncate(end);
    Page {
        items: items.split_off(start),
        total,
    }
}

/// Marks every token of `identity` revoked inside `txn`.
fn revoke_all(txn: &Txn, identity: Id) -> Result<(), StoreError> {
    let tokens: Vec<TokenRecord> =
        scan(txn, TOKENS, |_, t: &TokenRecord| t.identity_id == identity)?;
    for mut t in tokens {
        t.revoked = true;
        put(txn, TOKENS, &t.id.0, &t)?;
    }
    Ok(())
}

impl EmbeddedStore {
    /// Opens (or creates) the database file and starts the background flush.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let db = Database::create(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        // Create the tables up front so read paths never meet a missing table.
        let txn = db.begin_write().map_err(err)?;
        for t in [IDENTITIES, CONFIGS, TOKENS, MEMBERSHIPS] {
            txn.open_table(t).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        let inner = Arc::new(Inner {
            db,
            dirty: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("tokengate-flush".into())
            .spawn(move || flush_loop(weak))
            .map_err(err)?;
        Ok(EmbeddedStore { inner })
    }

    /// Runs `f` in a transaction that is dropped, not committed (no fsync).
    /// A write transaction so the helpers serve both; redb serialises them.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Txn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let txn = inner.db.begin_write().map_err(err)?;
            let out = f(&txn);
            txn.abort().map_err(err)?;
            out
        })
        .await
        .map_err(err)?
    }

    /// Runs `f` in one durable write transaction on a blocking thread.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Txn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let txn = inner.db.begin_write().map_err(err)?;
            let out = f(&txn)?;
            txn.commit().map_err(err)?;
            Ok(out)
        })
        .await
        .map_err(err)?
    }
}

/// Makes fsync-less commits durable; ends when the store is dropped.
fn flush_loop(inner: Weak<Inner>) {
    loop {
        std::thread::sleep(FLUSH_EVERY);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.dirty.swap(false, Ordering::AcqRel) {
            let done = inner
                .db
                .begin_write()
                .map_err(err)
                .and_then(|t| t.commit().map_err(err));
            if let Err(e) = done {
                inner.dirty.store(true, Ordering::Release);
                log::error!("embedded store flush failed: {e}");
            }
        }
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        if self.inner.dirty.swap(false, Ordering::AcqRel) {
            if let Ok(t) = self.inner.db.begin_write() {
                let _ = t.commit();
            }
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn authenticate(&self, req: &AuthRequest<'_>) -> Result<AuthOutcome, StoreError> {
        let (tid, iid) = (req.token.token_id, req.token.identity_id);
        let hash = req.token.secret_hash();
        let (ip, now) = (req.client_ip, req.now);
        let project = req.project.map(str::to_owned);
        let required_role = req.required_role.map(str::to_owned);
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut txn = inner.db.begin_write().map_err(err)?;
            let token: Option<TokenRecord> =
                get::<TokenRecord>(&txn, TOKENS, &tid.0)?.filter(|t| t.identity_id == iid);
            let identity: Option<Identity> = get(&txn, IDENTITIES, &iid.0)?;
            let membership: Option<Membership> = match &project {
                Some(p) => get(&txn, MEMBERSHIPS, &membership_key(p, iid))?,
                None => None,
            };
            let project_check = project.as_ref().map(|_| membership.as_ref());
            let decision = auth::decide(
                token.as_ref(),
                identity.as_ref(),
                &hash,
                ip,
                now,
                required_role.as_deref(),
                project_check,
            );
            match (&decision, token) {
                (Ok(_), Some(mut t)) => {
                    t.num_uses += 1;
                    t.last_used_at = Some(now);
                    put(&txn, TOKENS, &tid.0, &t)?;
                    let limited = t.num_uses_limit > 0;
                    if !limited {
                        txn.set_durability(Durability::None);
                    }
                    txn.commit().map_err(err)?;
                    if !limited {
                        inner.dirty.store(true, Ordering::Release);
                    }
                }
                _ => txn.abort().map_err(err)?,
            }
            Ok(decision)
        })
        .await
        .map_err(err)?
    }

    async fn create_identity(&self, identity: &Identity) -> Result<(), StoreError> {
        let i = identity.clone();
        self.write(move |txn| put(txn, IDENTITIES, &i.id.0, &i))
            .await
    }

    async fn get_identity(&self, id: Id) -> Result<Option<Identity>, StoreError> {
        self.read(move |txn| get(txn, IDENTITIES, &id.0)).await
    }

    async fn update_identity(&self, identity: &Identity) -> Result<bool, StoreError> {
        let i = identity.clone();
        self.write(move |txn| {
            if get::<Identity>(txn, IDENTITIES, &i.id.0)?.is_none() {
                return Ok(false);
            }
            put(txn, IDENTITIES, &i.id.0, &i)?;
            Ok(true)
        })
        .await
    }

    async fn delete_identity(&self, id: Id) -> Result<Option<Identity>, StoreError> {
        self.write(move |txn| {
            let Some(identity) = remove::<Identity>(txn, IDENTITIES, &id.0)? else {
                return Ok(None);
            };
            remove::<TokenAuthConfig>(txn, CONFIGS, &id.0)?;
            let tokens: Vec<TokenRecord> =
                scan(txn, TOKENS, |_, t: &TokenRecord| t.identity_id == id)?;
            for t in tokens {
                remove::<TokenRecord>(txn, TOKENS, &t.id.0)?;
            }
            let ms: Vec<Membership> =
                scan(txn, MEMBERSHIPS, |_, m: &Membership| m.identity_id == id)?;
            for m in ms {
                remove::<Membership>(txn, MEMBERSHIPS, &membership_key(&m.project_id, id))?;
            }
            Ok(Some(identity))
        })
        .await
    }

    async fn list_identities(&self, offset: u64, limit: u64) -> Result<Page<Identity>, StoreError> {
        self.read(move |txn| {
            let mut all: Vec<Identity> = scan(txn, IDENTITIES, |_, _: &Identity| true)?;
            all.sort_by_key(|i| (i.created_at, i.id));
            Ok(page(all, offset, limit))
        })
        .await
    }

    async fn put_token_auth(
        &self,
        cfg: &TokenAuthConfig,
        mode: PutMode,
    ) -> Result<bool, StoreError> {
        let c = cfg.clone();
        self.write(move |txn| {
            let key = c.identity_id.0;
            let exists = get::<TokenAuthConfig>(txn, CONFIGS, &key)?.is_some();
            let ok = match mode {
                PutMode::Create => !exists && get::<Identity>(txn, IDENTITIES, &key)?.is_some(),
                PutMode::Update => exists,
            };
            if ok {
                put(txn, CONFIGS, &key, &c)?;
            }
            Ok(ok)
        })
        .await
    }

    async fn get_token_auth(&self, identity: Id) -> Result<Option<TokenAuthConfig>, StoreError> {
        self.read(move |txn| get(txn, CONFIGS, &identity.0)).await
    }

    async fn remove_token_auth(&self, identity: Id) -> Result<Option<TokenAuthConfig>, StoreError> {
        self.write(move |txn| {
            let removed = remove::<TokenAuthConfig>(txn, CONFIGS, &identity.0)?;
            if removed.is_some() {
                revoke_all(txn, identity)?;
            }
            Ok(removed)
        })
        .await
    }

    async fn create_token(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        let t = token.clone();
        self.write(move |txn| {
            if get::<TokenAuthConfig>(txn, CONFIGS, &t.identity_id.0)?.is_none() {
                return Ok(false);
            }
            put(txn, TOKENS, &t.id.0, &t)?;
            Ok(true)
        })
        .await
    }

    async fn get_token(&self, token_id: Id) -> Result<Option<TokenRecord>, StoreError> {
        self.read(move |txn| get(txn, TOKENS, &token_id.0)).await
    }

    async fn list_tokens(
        &self,
        identity: Id,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(move |txn| {
            let mut all: Vec<TokenRecord> =
                scan(txn, TOKENS, |_, t: &TokenRecord| t.identity_id == identity)?;
            all.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
            Ok(page(all, offset, limit).items)
        })
        .await
    }

    async fn rename_token(
        &self,
        token_id: Id,
        name: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let name = name.to_string();
        self.update_token(token_id, move |t| t.name = name).await
    }

    async fn revoke_token(&self, token_id: Id) -> Result<bool, StoreError> {
        Ok(self
            .update_token(token_id, |t| t.revoked = true)
            .await?
            .is_some())
    }

    async fn set_renewed(&self, token_id: Id, at: Millis) -> Result<bool, StoreError> {
        Ok(self
            .update_token(token_id, move |t| t.last_renewed_at = Some(at))
            .await?
            .is_some())
    }

    async fn put_membership(&self, m: &Membership) -> Result<(), StoreError> {
        let m = m.clone();
        self.write(move |txn| {
            put(
                txn,
                MEMBERSHIPS,
                &membership_key(&m.project_id, m.identity_id),
                &m,
            )
        })
        .await
    }

    async fn get_membership(
        &self,
        project: &str,
        identity: Id,
    ) -> Result<Option<Membership>, StoreError> {
        let key = membership_key(project, identity);
        self.read(move |txn| get(txn, MEMBERSHIPS, &key)).await
    }

    async fn delete_membership(
        &self,
        project: &str,
        identity: Id,
    ) -> Result<Option<Membership>, StoreError> {
        let key = membership_key(project, identity);
        self.write(move |txn| remove(txn, MEMBERSHIPS, &key)).await
    }

    async fn list_memberships(
        &self,
        project: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Membership>, StoreError> {
        let project = project.to_string();
        self.read(move |txn| {
            let mut all: Vec<Membership> = scan(txn, MEMBERSHIPS, |_, m: &Membership| {
                m.project_id == project
            })?;
            all.sort_by_key(|m| (m.created_at, m.identity_id));
            Ok(page(all, offset, limit))
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.db.begin_read().map(|_| ()).map_err(err))
            .await
            .map_err(err)?
    }
}

impl EmbeddedStore {
    async fn update_token(
        &self,
        token_id: Id,
        change: impl FnOnce(&mut TokenRecord) + Send + 'static,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.write(move |txn| {
            let Some(mut t) = get::<TokenRecord>(txn, TOKENS, &token_id.0)? else {
                return Ok(None);
            };
            change(&mut t);
            put(txn, TOKENS, &token_id.0, &t)?;
            Ok(Some(t))
        })
        .await
    }
}
