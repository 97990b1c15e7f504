//! Access tokens by the admin: issue one for an identity (the configuration is
//! copied onto it and the secret shown once), list an identity's tokens, read,
//! rename and revoke a token by its public id. A token by id is held to the
//! organization of the identity it belongs to.

use super::identities;
use super::input::{self, paging, path_id, Body};
use super::reply::{message, ok, ApiError, Keyed};
use super::views::{TokenCreated, TokenList, TokenView};
use super::{snapshot, ApiResponse, Ctx};
use crate::model::{Identity, TokenRecord};
use crate::token::AccessToken;
use serde_json::json;

pub const REVOKED: &str = "Successfully revoked access token";

/// The token with `raw` id and the identity it belongs to (for the org and
/// rank checks): 404 when either is gone, 403 when the identity is outside
/// the caller's organization.
async fn load(cx: &Ctx<'_>, raw: &str) -> Result<(TokenRecord, Identity), ApiError> {
    let id = path_id(raw, "access token")?;
    let not_found = || ApiError::not_found(format!("access token {id} not found"));
    let token = cx.store.get_token(id).await?.ok_or_else(not_found)?;
    let owner = cx
        .store
        .get_identity(token.identity_id)
        .await?
        .ok_or_else(not_found)?;
    cx.caller
        .may_enter(&owner.org_id, &format!("access token {id}"))?;
    Ok((token, owner))
}

pub(crate) async fn create(cx: &Ctx<'_>, raw: &str) -> Result<ApiResponse, ApiError> {
    let identity = identities::load(cx, raw).await?;
    cx.caller.may_act_on(&identity.role)?;
    let body = Body::parse(cx.req.body)?;
    let name = match body.fields().str("name")? {
        Some(n) => input::name("name", n, true)?,
        None => String::new(),
    };
    let no_token_auth = || {
        ApiError::bad_request(format!(
            "identity {} has no Token Auth configuration; attach it first",
            identity.id
        ))
    };
    let cfg = cx
        .store
        .get_token_auth(identity.id)
        .await?
        .ok_or_else(no_token_auth)?;
    let token = AccessToken::generate(identity.id);
    let now = cx.req.now;
    let record = TokenRecord {
        id: token.token_id,
        identity_id: identity.id,
        name,
        secret_hash: token.secret_hash(),
        created_at: now,
        last_renewed_at: None,
        last_used_at: None,
        num_uses: 0,
        num_uses_limit: cfg.num_uses_limit,
        ttl: cfg.ttl,
        max_ttl: cfg.max_ttl,
        period: cfg.period,
        trusted_ips: cfg.trusted_ips,
        revoked: false,
    };
    // The store refuses if the configuration was removed since we read it.
    if !cx.store.create_token(&record).await? {
        return Err(no_token_auth());
    }
    cx.changed(
        "token.created",
        json!({"identityId": identity.id.to_string(), "tokenId": record.id.to_string()}),
        None,
        snapshot(TokenView::new(&record)),
    );
    ok(&TokenCreated {
        access_token: token.expose(),
        expires_in: record.seconds_left(now).unwrap_or(0),
        max_ttl: record.max_ttl,
        token_type: "Bearer",
        token_data: TokenView::new(&record),
    })
}

pub(crate) async fn list(cx: &Ctx<'_>, raw: &str) -> Result<ApiResponse, ApiError> {
    let identity = identities::load(cx, raw).await?;
    let (offset, limit) = paging(cx.req.query)?;
    let tokens = cx.store.list_tokens(identity.id, offset, limit).await?;
    ok(&TokenList {
        tokens: tokens.iter().map(TokenView::new).collect(),
    })
}

pub(crate) async fn get(cx: &Ctx<'_>, raw: &str) -> Result<ApiResponse, ApiError> {
    let (token, _) = load(cx, raw).await?;
    ok(&Keyed("token", TokenView::new(&token)))
}

pub(crate) async fn rename(cx: &Ctx<'_>, raw: &str) -> Result<ApiResponse, ApiError> {
    let (token, owner) = load(cx, raw).await?;
    cx.caller.may_act_on(&owner.role)?;
    let body = Body::parse(cx.req.body)?;
    let name = input::name("name", body.fields().required_str("name")?, true)?;
    let renamed = cx
        .store
        .rename_token(token.id, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("access token {} not found", token.id)))?;
    cx.changed(
        "token.renamed",
        json!({"identityId": owner.id.to_string(), "tokenId": token.id.to_string()}),
        snapshot(TokenView::new(&token)),
        snapshot(TokenView::new(&renamed)),
    );
    ok(&Keyed("token", TokenView::new(&renamed)))
}

/// Revoking an already revoked token succeeds: the caller's goal holds.
pub(crate) async fn revoke(cx: &Ctx<'_>, raw: &str) -> Result<ApiResponse, ApiError> {
    let (token, owner) = load(cx, raw).await?;
    cx.caller.may_act_on(&owner.role)?;
    if !cx.store.revoke_token(token.id).await? {
        return Err(ApiError::not_found(format!(
            "access token {} not found",
            token.id
        )));
    }
    let mut after = token.clone();
    after.revoked = true;
    cx.changed(
        "token.revoked",
        json!({"identityId": owner.id.to_string(), "tokenId": token.id.to_string(), "via": "id"}),
        snapshot(TokenView::new(&token)),
        snapshot(TokenView::new(&after)),
    );
    message(REVOKED)
}
