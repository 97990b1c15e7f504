//! The near cache: each gateway's copy of the records its requests need
//! (identity, unlimited tokens, project memberships), kept coherent by Redis.
//!
//! Coherence comes from Redis itself (`tracking.rs`): every write to an
//! identity's keys sends an invalidation naming the key, and the identity's
//! whole entry is dropped. What makes that safe:
//! - **Fills cannot bring back what an invalidation removed.** A miss takes a
//!   ticket (`begin_fill`) before it asks Redis, naming the identity's slot by
//!   a generation number that is never reused. An invalidation removes the
//!   slot, so a reply that was read before the write but arrives after the
//!   invalidation finds no slot of its generation and is thrown away.
//! - **No channel, no cache.** Until the invalidation channel is up, and from
//!   the moment it is lost until it is back, every lookup misses and no fill
//!   is kept; losing it empties the cache, because invalidations may have
//!   been missed meanwhile.
//! - **A maximum age** as a backstop for anything the channel could not tell.
//! - Only unlimited tokens are held: a limited token's every use is a
//!   security decision and is spent in Redis, in the one atomic script.
//! - Rate limits are counted in Redis only, so the cache never decides a
//!   request one applies to. An identity with a rate limit of its own is
//!   never held: the check script returns no records for it (so every one of
//!   its requests is a miss), and attaching or changing a limit writes the
//!   identity's hash, whose invalidation drops what was held before. A
//!   request carrying a route's default limit skips `decide` (the store
//!   sends it to the script; its answer may still fill the cache for the
//!   identity's other requests).
//!
//! The uses of unlimited tokens decided here are counted in `pending` and
//! written to Redis in batches by the store (`RedisStore::write_uses`).

use crate::auth::{self, Deny, Facts, Grant, Project};
use crate::model::{Identity, Membership, Millis, TokenRecord};
use crate::token::Id;
use prometheus::{IntCounter, IntGauge};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `store.cache`, and where the cache reports how it is doing.
#[derive(Clone)]
pub struct CacheSettings {
    pub max_age: Duration,
    pub max_identities: usize,
    pub metrics: CacheMetrics,
}

#[derive(Clone)]
pub struct CacheMetrics {
    pub hits: IntCounter,
    pub misses: IntCounter,
    /// Identities dropped because Redis (or this gateway) changed them.
    pub invalidations: IntCounter,
    /// 1 while the invalidation channel is up (the cache is in use), else 0.
    pub coherent: IntGauge,
}

impl CacheMetrics {
    /// Handles that are counted but not exported (for stores made outside
    /// the gateway, such as in tests).
    pub fn unregistered() -> CacheMetrics {
        CacheMetrics {
            hits: IntCounter::new("hits", "-").expect("static metric name"),
            misses: IntCounter::new("misses", "-").expect("static metric name"),
            invalidations: IntCounter::new("invalidations", "-").expect("static metric name"),
            coherent: IntGauge::new("coherent", "-").expect("static metric name"),
        }
    }
}

/// What one allowed miss learned from Redis, to be kept.
pub struct Fill {
    pub identity: Identity,
    pub token: TokenRecord,
    /// The request's project and the identity's membership there.
    pub project: Option<(String, Membership)>,
}

/// Permission to keep what one miss reads (see the module notes).
#[derive(Debug)]
pub struct Ticket {
    identity: Id,
    generation: u64,
}

/// An unlimited token's uses not yet written to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingUses {
    pub identity: Id,
    pub uses: u64,
    pub last_used_at: Millis,
}

/// How long a slot whose fills kept nothing waits for more fills.
const EMPTY_SLOT_AGE: Duration = Duration::from_secs(2);

pub struct NearCache {
    settings: CacheSettings,
    state: Mutex<State>,
    pending: Mutex<HashMap<Id, PendingUses>>,
    /// Held for writing while counted uses travel to Redis (taken from
    /// `pending`, not yet written), and for reading by whoever adds
    /// `pending` to what Redis holds: otherwise a read in between would
    /// miss those uses, or count them twice.
    pub flush: tokio::sync::RwLock<()>,
}

#[derive(Default)]
struct State {
    /// The channel epoch whose connections are up, if any.
    coherent: Option<u64>,
    /// The newest channel epoch; connections of older ones are ignored.
    epoch: u64,
    next_generation: u64,
    slots: HashMap<Id, Slot>,
}

struct Slot {
    generation: u64,
    made: Instant,
    entry: Option<Entry>,
}

struct Entry {
    identity: Identity,
    tokens: HashMap<Id, TokenRecord>,
    memberships: HashMap<String, Membership>,
}

/// What a request asks the cache.
pub struct Question<'a> {
    pub identity: Id,
    pub token: Id,
    pub presented: &'a crate::token::SecretHash,
    pub client_ip: std::net::IpAddr,
    pub now: Millis,
    pub needs: auth::Needs<'a>,
    pub project: Option<&'a str>,
}

impl NearCache {
    pub fn new(settings: CacheSettings) -> NearCache {
        settings.metrics.coherent.set(0);
        NearCache {
            settings,
            state: Mutex::new(State::default()),
            pending: Mutex::new(HashMap::new()),
            flush: tokio::sync::RwLock::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the map half-changed in a way that
        // matters: every change below is one insert or removal.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The decision for `q` from the cache, or `None` when it must go to
    /// Redis. An allow is counted in `pending` before it is answered.
    pub fn decide(&self, q: &Question<'_>, at: Instant) -> Option<Result<Grant, Deny>> {
        let outcome = {
            let st = self.state();
            st.coherent?;
            let slot = st.slots.get(&q.identity)?;
            let entry = slot.entry.as_ref()?;
            if at.saturating_duration_since(slot.made) >= self.settings.max_age {
                return None;
            }
            let token = entry.tokens.get(&q.token)?;
            // A membership the entry does not hold is not known to be
            // absent: the store decides that one.
            let project = match q.project {
                None => Project::NotNamed,
                Some(p) => Project::Named(Some(entry.memberships.get(p)?)),
            };
            auth::decide(Facts {
                token: Some(token),
                identity: Some(&entry.identity),
                presented: q.presented,
                client_ip: q.client_ip,
                now: q.now,
                needs: q.needs,
                project,
            })
        };
        if outcome.is_ok() {
            self.count_use(q.token, q.identity, q.now);
        }
        let m = &self.settings.metrics;
        m.hits.inc();
        Some(outcome)
    }

    pub fn count_miss(&self) {
        self.settings.metrics.misses.inc();
    }

    /// Counts one use of an unlimited token, to be written with the next batch.
    pub fn count_use(&self, token: Id, identity: Id, now: Millis) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let e = p.entry(token).or_insert(PendingUses {
            identity,
            uses: 0,
            last_used_at: now,
        });
        e.uses += 1;
        e.last_used_at = e.last_used_at.max(now);
    }

    /// A ticket to keep what a miss for `identity` reads, or `None` when
    /// nothing may be kept (no channel, or the cache is full).
    pub fn begin_fill(&self, identity: Id, at: Instant) -> Option<Ticket> {
        let mut st = self.state();
        st.coherent?;
        if !st.slots.contains_key(&identity) && st.slots.len() >= self.settings.max_identities {
            return None;
        }
        let fresh = st.next_generation;
        let slot = st.slots.entry(identity).or_insert(Slot {
            generation: fresh,
            made: at,
            entry: None,
        });
        let generation = slot.generation;
        if generation == fresh {
            st.next_generation += 1;
        }
        Some(Ticket {
            identity,
            generation,
        })
    }

    /// Keeps `fill` if nothing invalidated the identity since `ticket` was
    /// taken. Limited tokens are not kept.
    pub fn finish_fill(&self, ticket: Ticket, fill: Fill) {
        if fill.token.num_uses_limit > 0 || fill.token.identity_id != ticket.identity {
            return;
        }
        let mut st = self.state();
        if st.coherent.is_none() {
            return;
        }
        let Some(slot) = st.slots.get_mut(&ticket.identity) else {
            return;
        };
        if slot.generation != ticket.generation {
            return;
        }
        let entry = slot.entry.get_or_insert_with(|| Entry {
            identity: fill.identity.clone(),
            tokens: HashMap::new(),
            memberships: HashMap::new(),
        });
        entry.identity = fill.identity;
        entry.tokens.insert(fill.token.id, fill.token);
        if let Some((project, m)) = fill.project {
            entry.memberships.insert(project, m);
        }
    }

    /// Drops everything held for `identity` (a write to its keys).
    pub fn invalidate(&self, identity: Id) {
        self.settings.metrics.invalidations.inc();
        self.state().slots.remove(&identity);
    }

    /// Drops everything (Redis flushed, or the channel cannot vouch for it).
    pub fn invalidate_all(&self) {
        self.settings.metrics.invalidations.inc();
        self.state().slots.clear();
    }

    /// A new set of invalidation connections is being opened: until it is
    /// up, nothing is served from the cache. Returns its epoch.
    pub fn begin_epoch(&self) -> u64 {
        let mut st = self.state();
        st.epoch += 1;
        st.coherent = None;
        st.slots.clear();
        self.settings.metrics.coherent.set(0);
        st.epoch
    }

    /// Every connection of `epoch` has tracking on: the cache may be used.
    pub fn channel_up(&self, epoch: u64) {
        let mut st = self.state();
        if st.epoch == epoch {
            st.slots.clear();
            st.coherent = Some(epoch);
            self.settings.metrics.coherent.set(1);
        }
    }

    /// A connection of `epoch` was lost: invalidations may be missed from
    /// now on, so nothing held can be trusted. Connections of older epochs
    /// no longer matter.
    pub fn channel_lost(&self, epoch: u64) {
        let mut st = self.state();
        if st.epoch == epoch {
            st.coherent = None;
            st.slots.clear();
            self.settings.metrics.coherent.set(0);
        }
    }

    pub fn is_coherent(&self) -> bool {
        self.state().coherent.is_some()
    }

    /// Drops entries past their maximum age and slots of fills that kept
    /// nothing, so memory follows the identities in use.
    pub fn sweep(&self, at: Instant) {
        let max_age = self.settings.max_age;
        self.state().slots.retain(|_, s| {
            // A slot that kept nothing only waits for fills still in flight.
            let limit = match s.entry {
                Some(_) => max_age,
                None => max_age.min(EMPTY_SLOT_AGE),
            };
            at.saturating_duration_since(s.made) < limit
        });
    }

    /// The uses counted since the last call, to be written to Redis.
    pub fn take_pending(&self) -> HashMap<Id, PendingUses> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The uses of `token` counted here and not yet written.
    pub fn pending_for(&self, token: Id) -> Option<PendingUses> {
        let p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.get(&token).copied()
    }

    /// Puts back uses that could not be written, to go with the next batch.
    pub fn restore_pending(&self, uses: HashMap<Id, PendingUses>) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (token, u) in uses {
            let e = p.entry(token).or_insert(PendingUses { uses: 0, ..u });
            e.uses += u.uses;
            e.last_used_at = e.last_used_at.max(u.last_used_at);
        }
    }
}
