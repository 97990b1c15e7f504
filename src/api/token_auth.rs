//! `/api/v1/auth/token-auth/identities/{identityId}`: attach, read, change and
//! remove an identity's Token Auth configuration, with the contract's
//! defaults and bounds. A change applies to tokens issued afterwards only,
//! except the rate limit (`accessTokenRateLimit`, a tokengate extension),
//! which is read at every check and so applies at once to every token;
//! removal revokes every token the configuration issued.

use super::identities;
use super::input::{Body, Fields};
use super::reply::{ok, ApiError, Keyed};
use super::views::TokenAuthView;
use super::{snapshot, ApiResponse, Ctx};
use crate::model::{
    default_trusted_ips, parse_trusted_ip, FieldError, TokenAuthConfig, DEFAULT_TTL_SECONDS,
    RATE_LIMIT_FIELD,
};
use crate::rate_limit::{Per, RateLimit};
use crate::store::PutMode;
use crate::token::Id;
use serde_json::{json, Value};

const TRUSTED_IPS: &str = "accessTokenTrustedIps";

fn answer(cfg: &TokenAuthConfig) -> Result<ApiResponse, ApiError> {
    ok(&Keyed("identityTokenAuth", TokenAuthView::new(cfg)))
}

fn not_configured(identity: Id) -> ApiError {
    ApiError::not_found(format!(
        "identity {identity} has no Token Auth configuration"
    ))
}

/// Infisical's `[{ipAddress: "10.0.0.0/8"}, ...]`; each entry must parse.
fn trusted_ips(entries: &[Value]) -> Result<Vec<ipnet::IpNet>, FieldError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let addr = e.get("ipAddress").and_then(Value::as_str).ok_or_else(|| {
                FieldError::new(
                    TRUSTED_IPS,
                    format!("entry {i} must be an object with a string ipAddress"),
                )
            })?;
            parse_trusted_ip(addr)
        })
        .collect()
}

/// `accessTokenRateLimit`: `null` clears it; an object replaces it whole
/// (`requests` and `windowSeconds` required, `burst` defaults to
/// `requests`, `per` to `"identity"`). Bounds are checked with the rest of
/// the configuration.
fn rate_limit(v: &Value) -> Result<Option<RateLimit>, FieldError> {
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(obj) => obj,
        _ => {
            return Err(FieldError::new(
                RATE_LIMIT_FIELD,
                "must be null or an object {requests, windowSeconds, burst, per}",
            ))
        }
    };
    let f = Fields {
        obj,
        at: format!("{RATE_LIMIT_FIELD}."),
    };
    for key in obj.keys() {
        if !["requests", "windowSeconds", "burst", "per"].contains(&key.as_str()) {
            return Err(FieldError::new(&f.path(key), "is not a rate limit field"));
        }
    }
    // Out of u32's range reads as 0, which the bounds refuse by name.
    let number = |key: &str| -> Result<Option<u32>, FieldError> {
        Ok(f.u64(key)?.map(|n| u32::try_from(n).unwrap_or(0)))
    };
    let required =
        |key: &str| number(key)?.ok_or_else(|| FieldError::new(&f.path(key), "is required"));
    let requests = required("requests")?;
    let per = match f.str("per")? {
        None => Per::Identity,
        Some(s) => Per::parse(s)
            .ok_or_else(|| FieldError::new(&f.path("per"), "must be \"identity\" or \"token\""))?,
    };
    Ok(Some(RateLimit {
        requests,
        window_seconds: required("windowSeconds")?,
        burst: number("burst")?.unwrap_or(requests),
        per,
    }))
}

/// Overwrites the fields present in the body, then checks the whole result
/// (so a PATCH of MaxTTL alone is still held against the stored TTL).
fn apply(f: &Fields<'_>, cfg: &mut TokenAuthConfig) -> Result<(), FieldError> {
    if let Some(v) = f.u64("accessTokenTTL")? {
        cfg.ttl = v;
    }
    if let Some(v) = f.u64("accessTokenMaxTTL")? {
        cfg.max_ttl = v;
    }
    if let Some(v) = f.u64("accessTokenNumUsesLimit")? {
        cfg.num_uses_limit = v;
    }
    if let Some(v) = f.u64("accessTokenPeriod")? {
        cfg.period = v;
    }
    if let Some(entries) = f.array(TRUSTED_IPS)? {
        cfg.trusted_ips = trusted_ips(entries)?;
    }
    // Read raw: unlike the other fields, `null` means something here.
    if let Some(v) = f.obj.get(RATE_LIMIT_FIELD) {
        cfg.rate_limit = rate_limit(v)?;
    }
    cfg.validate()
}

pub(crate) async fn attach(cx: &Ctx<'_>, raw: &str) -> Result<ApiResponse, ApiError> {
    let identity = identities::load(cx, raw).await?;
    cx.caller.may_act_on(&identity.role)?;
    let body = Body::parse(cx.req.body)?;
    let now = cx.req.now;
    let mut cfg = TokenAuthConfig {
        id: Id::random(),
        identity_id: identity.id,
        ttl: DEFAULT_TTL_SECONDS,
        max_ttl: DEFAULT_TTL_SECONDS,
        num_uses_limit: 0,
        trusted_ips: default_trusted_ips(),
        period: 0,
        rate_limit: None,
        created_at: now,
        updated_at: now,
    };
    apply(&body.fields(), &mut cfg)?;
    if !cx.store.put_token_auth(&cfg, PutMode::Create).await? {
        return Err(ApiError::bad_request(format!(
            "Token Auth is already attached to identity {}",
            identity.id
        )));
    }
    cx.changed(
        "token_auth.attached",
        json!({"identityId": identity.id.to_string()}),
        None,
        snapshot(TokenAuthView::new(&cfg)),
    );
    answer(&cfg)
}

pub(crate) async fn get(cx: &Ctx<'_>, raw: &str) -> Result<ApiResponse, ApiError> {
    let identity = identities::load(cx, raw).await?;
    let cfg = cx
        .store
        .get_token_auth(identity.id)
        .await?
        .ok_or_else(|| not_configured(identity.id))?;
    answer(&cfg)
}

pub(crate) async fn update(cx: &Ctx<'_>, raw: &str) -> Result<ApiResponse, ApiError> {
    let identity = identities::load(cx, raw).await?;
    cx.caller.may_act_on(&identity.role)?;
    let body = Body::parse(cx.req.body)?;
    let mut cfg = cx
        .store
        .get_token_auth(identity.id)
        .await?
        .ok_or_else(|| not_configured(identity.id))?;
    let before = snapshot(TokenAuthView::new(&cfg));
    apply(&body.fields(), &mut cfg)?;
    cfg.updated_at = cx.req.now;
    if !cx.store.put_token_auth(&cfg, PutMode::Update).await? {
        return Err(not_configured(identity.id));
    }
    cx.changed(
        "token_auth.updated",
        json!({"identityId": identity.id.to_string()}),
        before,
        snapshot(TokenAuthView::new(&cfg)),
    );
    answer(&cfg)
}

pub(crate) async fn remove(cx: &Ctx<'_>, raw: &str) -> Result<ApiResponse, ApiError> {
    let identity = identities::load(cx, raw).await?;
    cx.caller.may_act_on(&identity.role)?;
    let tokens = identities::live_tokens(cx, identity.id).await?;
    let cfg = cx
        .store
        .remove_token_auth(identity.id)
        .await?
        .ok_or_else(|| not_configured(identity.id))?;
    cx.changed(
        "token_auth.removed",
        json!({"identityId": identity.id.to_string()}),
        snapshot(TokenAuthView::new(&cfg)),
        None,
    );
    identities::revoked_with(cx, &tokens, "token_auth_removed");
    answer(&cfg)
}
