//! Who may call the management API: the admin key, or an access token of an
//! identity with org role `admin`; and what an identity caller may not do:
//! reach outside its own organization (the admin key is global), or act on
//! identities (or grant roles) ranking above its own.

use super::reply::ApiError;
use super::ApiRequest;
use crate::audit::Actor;
use crate::auth::Deny;
use crate::model::{org_role_rank, Identity};
use crate::store::{AuthRequest, Store};
use crate::token::{self, AccessToken, Id};
use std::fmt;

/// The org role an identity needs to use the management API.
pub const MANAGER_ROLE: &str = "admin";

/// An authenticated management caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    AdminKey,
    /// `org_id` is read from the stored identity after the token is checked;
    /// it cannot go stale because an identity never changes organization.
    Identity {
        id: Id,
        /// The token it called with, for the audit log.
        token_id: Id,
        role: String,
        org_id: String,
    },
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::AdminKey => f.write_str("admin key"),
            Caller::Identity { id, .. } => write!(f, "identity {id}"),
        }
    }
}

impl Caller {
    /// The caller as the audit log names it.
    pub fn actor(&self) -> Actor {
        match self {
            Caller::AdminKey => Actor::admin_key(),
            Caller::Identity { id, token_id, .. } => {
                Actor::with_ids("identity", id.to_string(), token_id.to_string())
            }
        }
    }

    /// The admin key outranks every role.
    fn rank(&self) -> u16 {
        match self {
            Caller::AdminKey => u16::MAX,
            Caller::Identity { role, .. } => u16::from(org_role_rank(role)),
        }
    }

    /// The organization this caller is confined to; `None` for the admin key.
    pub fn org(&self) -> Option<&str> {
        match self {
            Caller::AdminKey => None,
            Caller::Identity { org_id, .. } => Some(org_id),
        }
    }

    /// May this caller see or manage `what` (named as the caller named it),
    /// which belongs to organization `org_id`? The refusal never names that
    /// organization: the caller learns nothing about it.
    pub fn may_enter(&self, org_id: &str, what: &str) -> Result<(), ApiError> {
        match self.org() {
            Some(own) if own != org_id => Err(ApiError::forbidden(format!(
                "{what} belongs to another organization; an identity's token manages only its own organization"
            ))),
            _ => Ok(()),
        }
    }

    /// May this caller see `identity` (and its Token Auth, tokens and memberships)?
    pub fn may_see(&self, identity: &Identity) -> Result<(), ApiError> {
        self.may_enter(&identity.org_id, &format!("identity {}", identity.id))
    }

    /// May this caller issue tokens for, change or delete an identity with `target_role`?
    pub fn may_act_on(&self, target_role: &str) -> Result<(), ApiError> {
        if u16::from(org_role_rank(target_role)) > self.rank() {
            return Err(ApiError::forbidden(
                "cannot manage an identity whose org role is more privileged than yours",
            ));
        }
        Ok(())
    }

    /// May this caller give an identity the org role `role`?
    pub fn may_grant(&self, role: &str) -> Result<(), ApiError> {
        if u16::from(org_role_rank(role)) > self.rank() {
            return Err(ApiError::forbidden(format!(
                "cannot give the org role '{role}': it is more privileged than yours"
            )));
        }
        Ok(())
    }
}

/// Who a refused caller said it was: the ids of a well-formed access token
/// in the Authorization header (unverified, as the kind says), else nobody
/// in particular. A wrong admin key is not told apart from any other text.
pub(crate) fn presented(req: &ApiRequest<'_>) -> Actor {
    match req
        .authorization
        .and_then(token::bearer)
        .and_then(|t| AccessToken::parse(t).ok())
    {
        Some(t) => Actor::with_ids(
            "unauthenticated",
            t.identity_id.to_string(),
            t.token_id.to_string(),
        ),
        None => Actor {
            kind: "unauthenticated",
            identity_id: None,
            token_id: None,
        },
    }
}

/// Decides who is calling. A token must pass the same checks (expiry,
/// trusted IPs, use limit) as on the request path, plus the admin role and
/// its identity's own rate limit (the same bucket its proxied requests
/// draw from), and counts as one use only when all of them pass.
pub(crate) async fn authorize(
    store: &dyn Store,
    admin_key_hash: Option<&[u8; 32]>,
    req: &ApiRequest<'_>,
) -> Result<Caller, ApiError> {
    let cred = req.authorization.and_then(token::bearer).ok_or_else(|| {
        ApiError::unauthorized(
            "missing or malformed Authorization header; expected 'Bearer <token>'",
        )
    })?;
    if super::is_admin_key(admin_key_hash, req.authorization) {
        return Ok(Caller::AdminKey);
    }
    // Same message as an unknown token: a wrong admin key must not be
    // distinguishable from a mistyped access token.
    let token =
        AccessToken::parse(cred).map_err(|_| ApiError::unauthorized("invalid access token"))?;
    // The role is checked inside the atomic step, so a refused caller keeps its uses.
    let outcome = store
        .authenticate(&AuthRequest {
            token: &token,
            client_ip: req.client_ip,
            now: req.now,
            project: None,
            needs: crate::auth::Needs {
                org_role: Some(MANAGER_ROLE),
                project_role: None,
            },
            // The management API is no route: only the identity's own limit applies.
            route_rate_limit: None,
        })
        .await?;
    let grant = match outcome {
        Ok(grant) => grant,
        Err(Deny::OrgRoleNotAllowed) => {
            return Err(ApiError::forbidden(
                "the management API needs the admin key or an identity with org role 'admin'",
            ))
        }
        Err(deny) => return Err(deny.into()),
    };
    // Gone since the check (deleted concurrently): its token is as good as unknown.
    let identity = store
        .get_identity(token.identity_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid access token"))?;
    Ok(Caller::Identity {
        id: token.identity_id,
        token_id: token.token_id,
        role: grant.org_role,
        org_id: identity.org_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(role: &str) -> Caller {
        Caller::Identity {
            id: Id([1; 16]),
            token_id: Id([2; 16]),
            role: role.into(),
            org_id: "org-a".into(),
        }
    }

    #[test]
    fn identities_stay_in_their_org_and_the_admin_key_is_global() {
        let caller = identity("admin");
        assert_eq!(caller.org(), Some("org-a"));
        assert!(caller.may_enter("org-a", "x").is_ok());
        let Err(ApiError::Status(403, msg)) = caller.may_enter("org-b", "identity 7") else {
            panic!("another org must be refused with 403");
        };
        assert!(msg.starts_with("identity 7 "), "{msg}");
        assert!(!msg.contains("org-b"), "the other org is not named: {msg}");
        // Prefixes and case are different orgs, not the same one.
        assert!(caller.may_enter("org-a2", "x").is_err());
        assert!(caller.may_enter("ORG-A", "x").is_err());
        assert_eq!(Caller::AdminKey.org(), None);
        assert!(Caller::AdminKey.may_enter("org-b", "x").is_ok());
    }

    // The admin-only gate means every identity caller today ranks at the top,
    // so the rank rules are checked here directly as well as through the API.
    #[test]
    fn rank_rules() {
        let member = identity("member");
        assert!(member.may_act_on("member").is_ok());
        assert!(member.may_act_on("my-custom-role").is_ok());
        assert!(member.may_act_on("no-access").is_ok());
        assert!(matches!(
            member.may_act_on("admin"),
            Err(ApiError::Status(403, _))
        ));
        assert!(matches!(
            member.may_grant("admin"),
            Err(ApiError::Status(403, _))
        ));
        let admin = identity("admin");
        assert!(admin.may_act_on("admin").is_ok());
        assert!(admin.may_grant("admin").is_ok());
        assert!(Caller::AdminKey.may_act_on("admin").is_ok());
        assert!(Caller::AdminKey.may_grant("admin").is_ok());
    }
}
