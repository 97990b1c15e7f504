//! The embedded store's decision for one request, taken under the state
//! lock: `auth::decide` on the records in memory, then the rate limit.
//!
//! One function, so the whole decision and the bucket it advances happen
//! under one lock and no concurrent request sees half of it.

use super::state::State;
use crate::auth::{self, Deny, Facts, Project};
use crate::model::Millis;
use crate::rate_limit::{self, Bucket, Verdict};
use crate::store::{AuthOutcome, AuthRequest};

/// The decision for `req` under the state lock: every check of
/// `auth::decide`, then the rate limit (the identity's own, else the
/// route's), whose bucket advances only when the request is allowed. The
/// caller counts the use under the same lock.
pub(super) fn admit(st: &mut State, req: &AuthRequest<'_>) -> AuthOutcome {
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
pub(super) const BUCKETS_BEFORE_SWEEP: usize = 4096;

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
