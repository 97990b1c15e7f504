//! Project memberships and project owners in Redis. A membership lives in
//! its identity's slot, the owner and the project's indexes outside it, so
//! the order of writes (explained at `write_membership` and
//! `write_project_owner`) is what keeps them consistent on a Cluster.

use super::keys::*;
use super::record::*;
use super::scripts::{CLAIM_PROJECT, PUT_MEMBERSHIP, RESTORE_OWNER};
use super::RedisStore;
use crate::model::Membership;
// The bodies call the trait's own methods (`get_membership`,
// `delete_membership`, `project_owner`) as they did before the split.
use crate::store::{MembershipWrite, OwnerChange, Page, Store, StoreError};
use crate::token::Id;

impl RedisStore {
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
    pub(super) async fn write_membership(
        &self,
        m: &Membership,
    ) -> Result<MembershipWrite, StoreError> {
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

    pub(super) async fn read_membership(
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

    pub(super) async fn remove_membership(
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

    pub(super) async fn read_memberships(
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
        let (total, ids) = self.index_page(&index, offset, limit).await?;
        let mut items = Vec::with_capacity(ids.len());
        for iid in ids {
            if let Some(m) = self.get_membership(project, iid).await? {
                items.push(m);
            }
        }
        Ok(Page { items, total })
    }

    pub(super) async fn read_project_owner(
        &self,
        project: &str,
    ) -> Result<Option<String>, StoreError> {
        self.query(redis::cmd("GET").arg(project_owner_key(project)))
            .await
    }

    // The mirror of `put_membership`'s step 3: write the owner first, then
    // read who the members are, and put the previous owner back if any of
    // them is of another organization. A member being added concurrently has
    // either reached the indexes before the read here (and this change backs
    // out) or will read the new owner after its write (and backs out itself).
    pub(super) async fn write_project_owner(
        &self,
        project: &str,
        org: &str,
    ) -> Result<OwnerChange, StoreError> {
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

    /// Claims `project` for `org` if nobody owns it; answers its owner.
    async fn claim_project(&self, project: &str, org: &str) -> Result<String, StoreError> {
        let mut inv = CLAIM_PROJECT.prepare_invoke();
        inv.key(project_owner_key(project)).arg(org);
        self.script(&inv).await
    }
}
