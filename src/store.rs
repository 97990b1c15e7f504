//! The `Store` trait: everything tokengate keeps (identities, Token Auth
//! configuration, tokens, memberships, which organization owns a project) and
//! the one atomic check-and-consume
//! of the request path. Implementations: `store/redis.rs`, `store/embedded.rs`
//! (`store/metered.rs` wraps either to time its calls);
//! `tests/store_contract.rs` runs one conformance suite against both.

pub mod embedded;
pub mod metered;
pub mod redis;

use crate::auth::{Deny, Grant, Needs};
use crate::model::{Identity, Membership, Millis, TokenAuthConfig, TokenRecord};
use crate::rate_limit::RateLimit;
use crate::token::{AccessToken, Id};
use async_trait::async_trait;
use std::net::IpAddr;

/// The store could not answer. The request path fails closed on it (503).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

/// One authentication attempt: what the request path knows before the store.
#[derive(Debug)]
pub struct AuthRequest<'a> {
    pub token: &'a AccessToken,
    pub client_ip: IpAddr,
    pub now: Millis,
    /// The project the request names, if any; its membership is checked in the same step.
    pub project: Option<&'a str>,
    /// The org and project roles the request needs (`auth::Needs`: the
    /// management API needs org role `admin`, a route may need more);
    /// checked in the same step, before the use is counted.
    pub needs: Needs<'a>,
    /// The route's default rate limit, which applies when the identity's
    /// Token Auth configuration has none. Checked last, after every other
    /// check passed; a refusal counts no use and leaves the limit's state
    /// as it was.
    pub route_rate_limit: Option<RateLimit>,
}

/// The outcome of a check: allowed (and counted) or refused (and not counted).
pub type AuthOutcome = Result<Grant, Deny>;

/// The outcome of `delete_identity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// Deleted; this is what it was.
    Deleted(Identity),
    NotFound,
    /// `hasDeleteProtection` is set: nothing was changed.
    Protected,
}

/// Whether `put_token_auth` attaches a new configuration or changes the existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    Create,
    Update,
}

/// The outcome of `put_membership`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipWrite {
    Written,
    /// The identity does not exist: nothing was written.
    NoIdentity,
    /// The project belongs to another organization than the identity's:
    /// nothing was written.
    OtherOrganization,
}

/// The outcome of `set_project_owner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerChange {
    /// The project now belongs to the organization; this was its owner before.
    Set { previous: Option<String> },
    /// Refused, nothing changed: the project has members of another
    /// organization, who would end up inside the new owner's project.
    MembersOfAnotherOrganization,
}

/// A page of results with the total count before paging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// The request path: atomically check the token (secret, revocation, expiry,
    /// trusted IPs, use limit), the project membership and then the rate limit
    /// (the identity's own, else the route's), and only if all pass count the
    /// use, advance the rate limit and stamp `lastUsedAt`. One round trip for Redis.
    async fn authenticate(&self, req: &AuthRequest<'_>) -> Result<AuthOutcome, StoreError>;

    async fn create_identity(&self, identity: &Identity) -> Result<(), StoreError>;
    async fn get_identity(&self, id: Id) -> Result<Option<Identity>, StoreError>;
    /// Replaces an existing identity; `false` when it does not exist. The
    /// organization is fixed at creation: the stored `org_id` is kept whatever
    /// `identity.org_id` says, because the org boundary of the management API
    /// and the per-org indexes rely on it never changing.
    async fn update_identity(&self, identity: &Identity) -> Result<bool, StoreError>;
    /// Deletes the identity, its Token Auth configuration and memberships, and
    /// revokes all its tokens in one step, unless it has delete protection
    /// (checked in the same step).
    async fn delete_identity(&self, id: Id) -> Result<Deletion, StoreError>;
    /// Identities, oldest first: those of organization `org` only when it is
    /// given (the total counts only those), every identity otherwise.
    async fn list_identities(
        &self,
        org: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Identity>, StoreError>;

    /// Create: `false` if one is already attached or the identity is gone.
    /// Update: `false` if none is attached.
    async fn put_token_auth(
        &self,
        cfg: &TokenAuthConfig,
        mode: PutMode,
    ) -> Result<bool, StoreError>;
    async fn get_token_auth(&self, identity: Id) -> Result<Option<TokenAuthConfig>, StoreError>;
    /// Removes the configuration and revokes every token of the identity at once.
    async fn remove_token_auth(&self, identity: Id) -> Result<Option<TokenAuthConfig>, StoreError>;

    /// Stores a new token; `false` if the identity has no Token Auth configuration.
    async fn create_token(&self, token: &TokenRecord) -> Result<bool, StoreError>;
    async fn get_token(&self, token_id: Id) -> Result<Option<TokenRecord>, StoreError>;
    /// The identity's tokens, newest first.
    async fn list_tokens(
        &self,
        identity: Id,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<TokenRecord>, StoreError>;
    async fn rename_token(
        &self,
        token_id: Id,
        name: &str,
    ) -> Result<Option<TokenRecord>, StoreError>;
    /// Marks the token revoked; `false` if it does not exist.
    async fn revoke_token(&self, token_id: Id) -> Result<bool, StoreError>;
    /// Sets `lastRenewedAt` of an existing token; `false` if it does not exist.
    async fn set_renewed(&self, token_id: Id, at: Millis) -> Result<bool, StoreError>;

    /// Creates or replaces the membership of `m.identity_id` in `m.project_id`,
    /// unless the identity does not exist or the project belongs to another
    /// organization than the identity's. A project nobody owns yet becomes
    /// the identity's organization's in the same step as the write, so of two
    /// organizations racing for a new project exactly one gets in.
    async fn put_membership(&self, m: &Membership) -> Result<MembershipWrite, StoreError>;
    async fn get_membership(
        &self,
        project: &str,
        identity: Id,
    ) -> Result<Option<Membership>, StoreError>;
    async fn delete_membership(
        &self,
        project: &str,
        identity: Id,
    ) -> Result<Option<Membership>, StoreError>;
    /// A project's memberships, oldest first: only those of identities of
    /// organization `org` when it is given (the total counts only those).
    async fn list_memberships(
        &self,
        project: &str,
        org: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Membership>, StoreError>;

    /// The organization that owns `project`, if any. Deleting memberships
    /// never clears it: a project, once claimed, stays claimed.
    async fn project_owner(&self, project: &str) -> Result<Option<String>, StoreError>;
    /// Makes `org` the owner of `project` (the admin key's explicit way to
    /// claim or reassign one), unless the project has members of any other
    /// organization.
    async fn set_project_owner(&self, project: &str, org: &str) -> Result<OwnerChange, StoreError>;

    /// The time the gateway stamps what it writes (created, renewed, updated
    /// at) and decides by: the wall clock, or for Redis its clock as last
    /// measured, so gateways whose clocks disagree still stamp alike.
    fn now(&self) -> Millis {
        crate::model::now_millis()
    }

    /// A cheap liveness probe for health endpoints.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Makes everything held in memory durable; called once when the gateway
    /// stops. Stores that write everything at once have nothing to do.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
