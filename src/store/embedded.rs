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
//!
//! Submodules: `state` (what is held in memory, behind which mutex),
//! `durability` (the file: opening it, commits, the group commit and the
//! flush) and `admit` (the decision taken under the state lock). This file
//! holds the operations of the `Store` trait.

mod admit;
mod durability;
mod state;
#[cfg(test)]
mod tests;

pub use durability::FLUSH_EVERY;

use super::{
    AuthOutcome, AuthRequest, Deletion, MembershipWrite, OwnerChange, Page, PutMode, Store,
    StoreError,
};
use crate::model::{Identity, Membership, Millis, TokenAuthConfig, TokenRecord};
use crate::token::Id;
use admit::admit;
use async_trait::async_trait;
use durability::{err, Write};
use state::Inner;
use std::sync::Arc;
use tokio::sync::oneshot;

pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

fn page<T>(items: impl Iterator<Item = T>, total: u64, offset: u64, limit: u64) -> Page<T> {
    let skip = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    Page {
        items: items.skip(skip).take(take).collect(),
        total,
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
