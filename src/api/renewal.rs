//! `POST /api/v1/auth/token/renew` and `/revoke`: what the holder of a token
//! may do with it, authorised by the token in the body (no Authorization
//! header). Renewal keeps the token string and reports the seconds actually
//! left; revocation proves the secret before revoking.

use super::input::Body;
use super::reply::{message, ok, ApiError};
use super::tokens::REVOKED;
use super::views::Renewed;
use super::{ApiRequest, ApiResponse};
use crate::auth::{self, Deny};
use crate::model::TokenRecord;
use crate::store::Store;
use crate::token::AccessToken;
use subtle::ConstantTimeEq;

/// The token named in the body and its record. Malformed tokens are refused
/// before the store is asked; unknown ones look exactly like malformed ones.
async fn presented(
    store: &dyn Store,
    req: &ApiRequest<'_>,
) -> Result<(AccessToken, TokenRecord), ApiError> {
    let body = Body::parse(req.body)?;
    let raw = body.fields().required_str("accessToken")?;
    let token = AccessToken::parse(raw.trim()).map_err(|_| ApiError::from(Deny::UnknownToken))?;
    let record = store
        .get_token(token.token_id)
        .await?
        .filter(|r| r.identity_id == token.identity_id)
        .ok_or(Deny::UnknownToken)?;
    Ok((token, record))
}

/// Renewal sets `lastRenewedAt = now`; the expiry rules (TTL capped by MaxTTL,
/// or the period) live in `TokenRecord::expiry`. Per `auth::check_renewable`
/// the client IP and use limit do not apply: renewal grants no access itself.
pub(crate) async fn renew(
    store: &dyn Store,
    req: &ApiRequest<'_>,
) -> Result<ApiResponse, ApiError> {
    let (token, mut record) = presented(store, req).await?;
    auth::check_renewable(&record, &token.secret_hash(), req.now)?;
    if !store.set_renewed(record.id, req.now).await? {
        return Err(Deny::UnknownToken.into());
    }
    record.last_renewed_at = Some(req.now);
    log::info!("{}: access token {} renewed", req.req_id, record.id);
    ok(&Renewed {
        access_token: token.expose(),
        // 0 means "never expires", as for a token created without TTLs.
        expires_in: record.seconds_left(req.now).unwrap_or(0),
        max_ttl: record.max_ttl,
        token_type: "Bearer",
    })
}

/// Revocation by the holder. It works on an expired or already revoked
/// token too (the holder's goal, "this token is dead", then holds), but only
/// with the right secret: a wrong one is 401 like an unknown token.
pub(crate) async fn revoke_self(
    store: &dyn Store,
    req: &ApiRequest<'_>,
) -> Result<ApiResponse, ApiError> {
    let (token, record) = presented(store, req).await?;
    if !bool::from(record.secret_hash.ct_eq(&token.secret_hash())) {
        return Err(Deny::UnknownToken.into());
    }
    if !store.revoke_token(record.id).await? {
        return Err(Deny::UnknownToken.into());
    }
    log::info!(
        "{}: access token {} revoked by its holder",
        req.req_id,
        record.id
    );
    message(REVOKED)
}
