//! `/api/v1/identities[/{identityId}]`: create, read, change, delete and list
//! machine identities; deletion honours `hasDeleteProtection` and revokes
//! every token of the identity (the store does it in one step). An identity
//! caller works inside its own organization only, and no caller moves an
//! identity to another organization (its tokens and memberships would
//! cross the boundary with it).

use super::caller::Caller;
use super::input::{self, paging, path_id, Body};
use super::reply::{ok, ApiError, Keyed};
use super::views::{IdentityList, IdentityView, TokenView};
use super::{snapshot, ApiResponse, Ctx};
use crate::model::{FieldError, Identity, TokenRecord};
use crate::store::{Deletion, Store};
use crate::token::Id;
use serde_json::json;

/// Org role of an identity created without one: no access until granted.
pub const DEFAULT_ROLE: &str = "no-access";

/// The identity with `raw` id: 404 when there is none, 403 when it is outside
/// the caller's organization. Every route naming an identity goes through
/// here, so none can forget the org boundary.
pub(crate) async fn load(cx: &Ctx<'_>, raw: &str) -> Result<Identity, ApiError> {
    let id = path_id(raw, "identity")?;
    let identity = cx
        .store
        .get_identity(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("identity {id} not found")))?;
    cx.caller.may_see(&identity)?;
    Ok(identity)
}

/// The identity's unrevoked tokens, when the audit log will name them as
/// revoked by a change about to be made.
pub(crate) async fn live_tokens(cx: &Ctx<'_>, id: Id) -> Result<Vec<TokenRecord>, ApiError> {
    if !cx.changes.audited {
        return Ok(Vec::new());
    }
    let mut tokens = cx.store.list_tokens(id, 0, u64::MAX).await?;
    tokens.retain(|t| !t.revoked);
    Ok(tokens)
}

/// Notes each of `tokens` revoked by the change just made (`via`).
pub(crate) fn revoked_with(cx: &Ctx<'_>, tokens: &[TokenRecord], via: &str) {
    for t in tokens {
        cx.changed(
            "token.revoked",
            json!({"identityId": t.identity_id.to_string(), "tokenId": t.id.to_string(), "via": via}),
            snapshot(TokenView::new(t)),
            None,
        );
    }
}

pub(crate) async fn has_token_auth(store: &dyn Store, id: Id) -> Result<bool, ApiError> {
    Ok(store.get_token_auth(id).await?.is_some())
}

fn answer(identity: &Identity, has_token_auth: bool) -> Result<ApiResponse, ApiError> {
    ok(&Keyed(
        "identity",
        IdentityView::new(identity, has_token_auth),
    ))
}

pub(crate) async fn create(cx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let body = Body::parse(cx.req.body)?;
    let f = body.fields();
    let name = input::name("name", f.required_str("name")?, false)?;
    let org_id = input::scope_id("organizationId", f.required_str("organizationId")?.trim())?;
    let role = match f.str("role")? {
        Some(r) => input::role_slug("role", r)?,
        None => DEFAULT_ROLE.to_string(),
    };
    let has_delete_protection = f.bool("hasDeleteProtection")?.unwrap_or(false);
    if cx.caller.org().is_some_and(|own| own != org_id) {
        return Err(ApiError::forbidden(
            "cannot create an identity in another organization; organizationId must be your own",
        ));
    }
    cx.caller.may_grant(&role)?;
    let now = cx.req.now;
    let identity = Identity {
        id: Id::random(),
        name,
        org_id,
        role,
        has_delete_protection,
        created_at: now,
        updated_at: now,
    };
    cx.store.create_identity(&identity).await?;
    cx.changed(
        "identity.created",
        json!({"identityId": identity.id.to_string()}),
        None,
        snapshot(IdentityView::new(&identity, false)),
    );
    answer(&identity, false)
}

pub(crate) async fn get(cx: &Ctx<'_>, raw: &str) -> Result<ApiResponse, ApiError> {
    let identity = load(cx, raw).await?;
    answer(&identity, has_token_auth(cx.store, identity.id).await?)
}

pub(crate) async fn update(cx: &Ctx<'_>, raw: &str) -> Result<ApiResponse, ApiError> {
    let mut identity = load(cx, raw).await?;
    let before = identity.clone();
    cx.caller.may_act_on(&identity.role)?;
    let body = Body::parse(cx.req.body)?;
    let f = body.fields();
    if let Some(org) = f.str("organizationId")? {
        let org = input::scope_id("organizationId", org.trim())?;
        if org != identity.org_id {
            return Err(match cx.caller {
                Caller::AdminKey => FieldError::new(
                    "organizationId",
                    "cannot be changed: an identity stays in the organization it was created in; create a new identity there instead",
                )
                .into(),
                Caller::Identity { .. } => ApiError::forbidden(
                    "cannot move an identity to another organization",
                ),
            });
        }
    }
    if let Some(name) = f.str("name")? {
        identity.name = input::name("name", name, false)?;
    }
    if let Some(role) = f.str("role")? {
        let role = input::role_slug("role", role)?;
        cx.caller.may_grant(&role)?;
        identity.role = role;
    }
    if let Some(protect) = f.bool("hasDeleteProtection")? {
        identity.has_delete_protection = protect;
    }
    identity.updated_at = cx.req.now;
    if !cx.store.update_identity(&identity).await? {
        return Err(ApiError::not_found(format!(
            "identity {} not found",
            identity.id
        )));
    }
    let has = has_token_auth(cx.store, identity.id).await?;
    cx.changed(
        "identity.updated",
        json!({"identityId": identity.id.to_string()}),
        snapshot(IdentityView::new(&before, has)),
        snapshot(IdentityView::new(&identity, has)),
    );
    answer(&identity, has)
}

pub(crate) async fn delete(cx: &Ctx<'_>, raw: &str) -> Result<ApiResponse, ApiError> {
    let identity = load(cx, raw).await?;
    cx.caller.may_act_on(&identity.role)?;
    // Reported as it was just before deletion.
    let had_token_auth = has_token_auth(cx.store, identity.id).await?;
    let tokens = live_tokens(cx, identity.id).await?;
    // The store checks the protection in the same step as the deletion, so a
    // protection turned on concurrently is never bypassed.
    let deleted = match cx.store.delete_identity(identity.id).await? {
        Deletion::Deleted(identity) => identity,
        Deletion::Protected => {
            return Err(ApiError::bad_request(format!(
                "identity {} has delete protection; turn hasDeleteProtection off first",
                identity.id
            )))
        }
        Deletion::NotFound => {
            return Err(ApiError::not_found(format!(
                "identity {} not found",
                identity.id
            )))
        }
    };
    cx.changed(
        "identity.deleted",
        json!({"identityId": deleted.id.to_string()}),
        snapshot(IdentityView::new(&deleted, had_token_auth)),
        None,
    );
    revoked_with(cx, &tokens, "identity_deleted");
    answer(&deleted, had_token_auth)
}

pub(crate) async fn list(cx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let (offset, limit) = paging(cx.req.query)?;
    let page = cx
        .store
        .list_identities(cx.caller.org(), offset, limit)
        .await?;
    let mut flags = Vec::with_capacity(page.items.len());
    for i in &page.items {
        flags.push(has_token_auth(cx.store, i.id).await?);
    }
    let identities = page
        .items
        .iter()
        .zip(flags)
        .map(|(i, t)| IdentityView::new(i, t))
        .collect();
    ok(&IdentityList {
        identities,
        total_count: page.total,
    })
}
