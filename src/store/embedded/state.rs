//! The embedded store's memory: the whole data set behind the state mutex,
//! and the handle shared with the background threads (the file, the disk
//! mutex, the queue of uses waiting for the group commit).
//!
//! Kept apart from `durability.rs` so the shape of what is held can be read
//! without the code that writes it to the file.

use super::EmbeddedStore;
use crate::model::{Identity, Membership, TokenAuthConfig, TokenRecord};
use crate::rate_limit::Bucket;
use crate::store::StoreError;
use crate::token::Id;
use redb::Database;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Everything the store holds, as it is on disk (plus unflushed statistics).
#[derive(Default)]
pub(super) struct State {
    pub(super) identities: HashMap<Id, Identity>,
    pub(super) configs: HashMap<Id, TokenAuthConfig>,
    pub(super) tokens: HashMap<Id, TokenRecord>,
    /// Ordered by project, then identity, so a project's memberships are one range.
    pub(super) memberships: BTreeMap<(String, Id), Membership>,
    /// Project id -> the organization that owns it.
    pub(super) owners: HashMap<String, String>,
    /// Tokens whose statistics changed in memory only, awaiting the flush.
    pub(super) dirty: HashSet<Id>,
    /// Rate-limit state: each bucket's TAT in microseconds. Never written to
    /// the file: a restart forgets it, which at worst admits one more burst.
    pub(super) buckets: HashMap<Bucket, u64>,
    /// `buckets` is swept when it reaches this size.
    pub(super) buckets_sweep_at: usize,
}

pub(super) struct Inner {
    pub(super) db: Database,
    pub(super) state: Mutex<State>,
    /// Held across every commit, and taken before `state`: commits then reach
    /// the file in the order their snapshots were taken, so an older copy of a
    /// record never overwrites a newer one, while the flush can write without
    /// holding `state` (the request path never waits for its fsync).
    pub(super) disk: Mutex<()>,
    /// Limited-token uses counted in memory and waiting for the group commit.
    pub(super) pending: Mutex<Pending>,
    /// Wakes the group-commit thread.
    pub(super) wake: Condvar,
    /// Tests hold a management commit here until told to go on.
    #[cfg(test)]
    pub(super) hold: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// Tests make the group commit fail while this is set.
    #[cfg(test)]
    pub(super) fail_commits: std::sync::atomic::AtomicBool,
}

/// Uses waiting to be made durable (how many per token), and the requests
/// waiting on them.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) tokens: HashMap<Id, u64>,
    pub(super) waiters: Vec<oneshot::Sender<Result<(), StoreError>>>,
}

impl Inner {
    pub(super) fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        // A panic while holding the lock cannot leave memory ahead of disk
        // (changes are applied only after their commit), so the data is usable.
        Ok(self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl EmbeddedStore {
    pub(super) fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        self.inner.lock()
    }
}
