//! `POST /api/v1/auth/token/renew` and `/revoke`: what the holder of a token
//! may do with it, authorised by the token in the body (no Authorization
//! header). Renewal keeps the token string and reports the seconds actually
//! left; revocation proves the secret before revoking.

use super::input::Body;
use super::reply::{message, ok, ApiError};
use super::tokens::REVOKED;
use super::views::{Renewed, TokenView};
use super::{snapshot, ApiRequest, ApiResponse, Changes};
use crate::audit::Actor;
use crate::auth::{self, Deny};
use crate::model::TokenRecord;
use crate::store::Store;
use crate::token::AccessToken;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

/// The holder of `record`'s token, proven by its secret.
fn holder(record: &TokenRecord) -> Actor {
    Actor::with_ids(
        "token",
        record.identity_id.to_string(),
        record.id.to_string(),
    )
}

fn target(record: &TokenRecord, via: &str) -> Value {
    json!({"identityId": record.identity_id.to_string(), "tokenId": record.id.to_string(), "via": via})
}

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
/// the trusted IPs apply and the use limit does not: renewal grants no
/// access itself.
pub(crate) async fn renew(
    store: &dyn Store,
    req: &ApiRequest<'_>,
    changes: &Changes,
) -> Result<ApiResponse, ApiError> {
    let (token, mut record) = presented(store, req).await?;
    auth::check_renewable(&record, &token.secret_hash(), req.client_ip, req.now)?;
    if !store.set_renewed(record.id, req.now).await? {
        return Err(Deny::UnknownToken.into());
    }
    let before = snapshot(TokenView::new(&record));
    record.last_renewed_at = Some(req.now);
    changes.note(
        req,
        holder(&record),
        "token.renewed",
        target(&record, "self"),
        before,
        snapshot(TokenView::new(&record)),
    );
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
    changes: &Changes,
) -> Result<ApiResponse, ApiError> {
    let (token, record) = presented(store, req).await?;
    if !bool::from(record.secret_hash.ct_eq(&token.secret_hash())) {
        return Err(Deny::UnknownToken.into());
    }
    if !store.revoke_token(record.id).await? {
        return Err(Deny::UnknownToken.into());
    }
    let mut after = record.clone();
    after.revoked = true;
    changes.note(
        req,
        holder(&record),
        "token.revoked",
        target(&record, "self"),
        snapshot(TokenView::new(&record)),
        snapshot(TokenView::new(&after)),
    );
    message(REVOKED)
}
