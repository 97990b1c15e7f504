//! The Infisical-compatible management API, answered by the gateway itself:
//! routing, who may call, and dispatch to one module per resource. Transport
//! independent: the proxy glue turns a request into an [`ApiRequest`] and
//! writes back the [`ApiResponse`].
//!
//! Organizations are a boundary: an identity caller sees and manages only
//! identities, Token Auth configurations, tokens and memberships of its own
//! organization (lists are filtered in the store; anything else is a 403 that
//! names nothing of the other org), and creates identities only there. The
//! admin key is global. No caller moves an identity to another organization.
//!
//! Routes (all JSON; `admin` = the admin key or an identity with org role admin):
//! - `GET    /api/v1/identities`                                       admin: list identities of the caller's org (`offset`, `limit`)
//! - `POST   /api/v1/identities`                                       admin: create an identity (in the caller's org)
//! - `GET    /api/v1/identities/{identityId}`                          admin: one identity
//! - `PATCH  /api/v1/identities/{identityId}`                          admin: rename, change role or delete protection (never the org)
//! - `DELETE /api/v1/identities/{identityId}`                          admin: delete it and revoke its tokens
//! - `POST   /api/v1/auth/token-auth/identities/{identityId}`          admin: attach Token Auth
//! - `GET    /api/v1/auth/token-auth/identities/{identityId}`          admin: the Token Auth configuration
//! - `PATCH  /api/v1/auth/token-auth/identities/{identityId}`          admin: change it (new tokens only)
//! - `DELETE /api/v1/auth/token-auth/identities/{identityId}`          admin: remove it and revoke its tokens
//! - `POST   /api/v1/auth/token-auth/identities/{identityId}/tokens`   admin: issue a token (the secret is shown once)
//! - `GET    /api/v1/auth/token-auth/identities/{identityId}/tokens`   admin: list its tokens, newest first
//! - `GET    /api/v1/auth/token-auth/tokens/{tokenId}`                 admin: one token
//! - `PATCH  /api/v1/auth/token-auth/tokens/{tokenId}`                 admin: rename a token
//! - `POST   /api/v1/auth/token-auth/tokens/{tokenId}/revoke`          admin: revoke a token by id
//! - `POST   /api/v1/auth/token/renew`                                 anyone holding the token: renew it
//! - `POST   /api/v1/auth/token/revoke`                                anyone holding the token: revoke it
//! - `GET    /api/v1/projects/{projectId}/memberships/identities`                admin: list a project's memberships (of the caller's org)
//! - `POST   /api/v1/projects/{projectId}/memberships/identities/{identityId}`   admin: add a membership
//! - `GET    /api/v1/projects/{projectId}/memberships/identities/{identityId}`   admin: one membership
//! - `PATCH  /api/v1/projects/{projectId}/memberships/identities/{identityId}`   admin: replace its roles
//! - `DELETE /api/v1/projects/{projectId}/memberships/identities/{identityId}`   admin: remove it
//! - `GET    /api/v1/projects/{projectId}/organization`    admin key only: the owning org (tokengate extension)
//! - `PUT    /api/v1/projects/{projectId}/organization`    admin key only: claim or reassign the project
//!
//! A project belongs to one organization (claimed by its first membership or
//! set by the admin key); no caller adds an identity of another organization
//! to it.

mod caller;
mod identities;
mod input;
mod memberships;
mod origin;
mod projects;
mod renewal;
mod reply;
mod token_auth;
mod tokens;
mod views;

#[cfg(test)]
mod tests;

use crate::audit::{Actor, AuditLog, AuditRecord};
use crate::lockout::{Lockout, LockoutConfig};
use crate::model::Millis;
use crate::store::Store;
use caller::Caller;
pub use origin::{request_authority, unlisted_host, Header, Site};
use reply::ApiError;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The management API over one store.
pub struct Api {
    store: Arc<dyn Store>,
    /// SHA-256 of the admin key: comparing fixed-width digests in constant
    /// time hides the key's length as well as its content.
    admin_key_hash: Option<[u8; 32]>,
    lockout: Lockout,
    /// Counts each address locked out.
    lockouts: prometheus::IntCounter,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("admin_key", &self.admin_key_hash.map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

/// One management request, as the transport hands it over.
#[derive(Debug, Clone)]
pub struct ApiRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The raw `Authorization` header value.
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
    pub client_ip: IpAddr,
    pub now: Millis,
    pub req_id: &'a str,
    /// Where a browser says the call comes from (`origin.rs`); the default
    /// (nothing said) is a call from outside a browser.
    pub site: Site<'a>,
}

/// The answer: a status, a JSON body, and any headers beyond the usual
/// (`Retry-After` and the rate-limit headers of a 429).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// What a handler needs: the store, the request, who is calling, and
/// where to note what it changed.
pub(crate) struct Ctx<'r> {
    pub store: &'r dyn Store,
    pub req: &'r ApiRequest<'r>,
    pub caller: Caller,
    pub changes: &'r Changes,
}

impl Ctx<'_> {
    /// Notes a change the caller made (after the store made it).
    pub fn changed(
        &self,
        event: &'static str,
        target: Value,
        before: Option<Value>,
        after: Option<Value>,
    ) {
        self.changes
            .note(self.req, self.caller.actor(), event, target, before, after);
    }
}

/// What one management request changed, for the audit log, and who it was
/// once known. Handlers note a change right after the store made it, so a
/// later failure of the same request still leaves its record.
#[derive(Default)]
pub(crate) struct Changes {
    caller: Mutex<Option<Actor>>,
    list: Mutex<Vec<Change>>,
    /// Whether anyone reads the records: handlers skip work done only for them.
    pub audited: bool,
}

pub(crate) struct Change {
    event: &'static str,
    actor: Actor,
    target: Value,
    before: Option<Value>,
    after: Option<Value>,
}

impl Changes {
    fn new(audited: bool) -> Changes {
        Changes {
            audited,
            ..Changes::default()
        }
    }

    /// Notes a change, and says it in the process log too.
    pub fn note(
        &self,
        req: &ApiRequest<'_>,
        actor: Actor,
        event: &'static str,
        target: Value,
        before: Option<Value>,
        after: Option<Value>,
    ) {
        log::info!("{}: {event} {target} by {}", req.req_id, actor.kind);
        lock(&self.list).push(Change {
            event,
            actor,
            target,
            before,
            after,
        });
    }

    fn set_caller(&self, actor: Actor) {
        *lock(&self.caller) = Some(actor);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A JSON snapshot of a view, for a record's `before` and `after`.
pub(crate) fn snapshot(view: impl serde::Serialize) -> Option<Value> {
    serde_json::to_value(view).ok()
}

/// Methods that may change something: their requests are audited.
fn may_change(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

/// Every (method, path template) the router answers, for the OpenAPI
/// document's test to hold the document to: `Route::parse` and
/// `Route::methods` are the truth, and a unit test proves this table says the
/// same, so a route added there and not here (or not documented) fails a test.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/identities"),
    ("POST", "/api/v1/identities"),
    ("GET", "/api/v1/identities/{identityId}"),
    ("PATCH", "/api/v1/identities/{identityId}"),
    ("DELETE", "/api/v1/identities/{identityId}"),
    ("POST", "/api/v1/auth/token-auth/identities/{identityId}"),
    ("GET", "/api/v1/auth/token-auth/identities/{identityId}"),
    ("PATCH", "/api/v1/auth/token-auth/identities/{identityId}"),
    ("DELETE", "/api/v1/auth/token-auth/identities/{identityId}"),
    (
        "POST",
        "/api/v1/auth/token-auth/identities/{identityId}/tokens",
    ),
    (
        "GET",
        "/api/v1/auth/token-auth/identities/{identityId}/tokens",
    ),
    ("GET", "/api/v1/auth/token-auth/tokens/{tokenId}"),
    ("PATCH", "/api/v1/auth/token-auth/tokens/{tokenId}"),
    ("POST", "/api/v1/auth/token-auth/tokens/{tokenId}/revoke"),
    ("POST", "/api/v1/auth/token/renew"),
    ("POST", "/api/v1/auth/token/revoke"),
    ("GET", "/api/v1/projects/{projectId}/memberships/identities"),
    (
        "POST",
        "/api/v1/projects/{projectId}/memberships/identities/{identityId}",
    ),
    (
        "GET",
        "/api/v1/projects/{projectId}/memberships/identities/{identityId}",
    ),
    (
        "PATCH",
        "/api/v1/projects/{projectId}/memberships/identities/{identityId}",
    ),
    (
        "DELETE",
        "/api/v1/projects/{projectId}/memberships/identities/{identityId}",
    ),
    ("GET", "/api/v1/projects/{projectId}/organization"),
    ("PUT", "/api/v1/projects/{projectId}/organization"),
];

/// A recognised route with its raw (not yet validated) path parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'p> {
    Identities,
    Identity(&'p str),
    TokenAuth(&'p str),
    IdentityTokens(&'p str),
    Token(&'p str),
    TokenRevoke(&'p str),
    Renew,
    RevokeSelf,
    Memberships(&'p str),
    Membership(&'p str, &'p str),
    ProjectOrganization(&'p str),
}

impl<'p> Route<'p> {
    /// The route's name for metrics (bounded: one per variant, no ids).
    fn name(&self) -> &'static str {
        match self {
            Route::Identities => "identities",
            Route::Identity(_) => "identity",
            Route::TokenAuth(_) => "token_auth",
            Route::IdentityTokens(_) => "identity_tokens",
            Route::Token(_) => "token",
            Route::TokenRevoke(_) => "token_revoke",
            Route::Renew => "renew",
            Route::RevokeSelf => "revoke_self",
            Route::Memberships(_) => "memberships",
            Route::Membership(..) => "membership",
            Route::ProjectOrganization(_) => "project_organization",
        }
    }

    fn parse(path: &'p str) -> Option<Route<'p>> {
        let rest = path.strip_prefix("/api/v1/")?;
        // No route has more than six segments; longer paths are not ours to split.
        let mut segs = [""; 7];
        let mut n = 0;
        for s in rest.split('/') {
            if n == segs.len() {
                return None;
            }
            segs[n] = s;
            n += 1;
        }
        Some(match &segs[..n] {
            ["identities"] => Route::Identities,
            ["identities", id] => Route::Identity(id),
            ["auth", "token-auth", "identities", id] => Route::TokenAuth(id),
            ["auth", "token-auth", "identities", id, "tokens"] => Route::IdentityTokens(id),
            ["auth", "token-auth", "tokens", id] => Route::Token(id),
            ["auth", "token-auth", "tokens", id, "revoke"] => Route::TokenRevoke(id),
            ["auth", "token", "renew"] => Route::Renew,
            ["auth", "token", "revoke"] => Route::RevokeSelf,
            ["projects", p, "memberships", "identities"] => Route::Memberships(p),
            ["projects", p, "memberships", "identities", id] => Route::Membership(p, id),
            ["projects", p, "organization"] => Route::ProjectOrganization(p),
            _ => return None,
        })
    }

    fn methods(self) -> &'static [&'static str] {
        match self {
            Route::Identities => &["GET", "POST"],
            Route::Identity(_) => &["GET", "PATCH", "DELETE"],
            Route::TokenAuth(_) | Route::Membership(..) => &["POST", "GET", "PATCH", "DELETE"],
            Route::IdentityTokens(_) => &["POST", "GET"],
            Route::Token(_) => &["GET", "PATCH"],
            Route::TokenRevoke(_) | Route::Renew | Route::RevokeSelf => &["POST"],
            Route::Memberships(_) => &["GET"],
            Route::ProjectOrganization(_) => &["GET", "PUT"],
        }
    }
}

/// The SHA-256 of an admin key; none for an empty key, which must never
/// match an empty bearer.
pub fn admin_key_hash(key: &str) -> Option<[u8; 32]> {
    (!key.is_empty()).then(|| Sha256::digest(key.as_bytes()).into())
}

/// Is `authorization` (a raw header value) `Bearer <the admin key>`?
/// Compares fixed-width digests in constant time.
pub fn is_admin_key(hash: Option<&[u8; 32]>, authorization: Option<&str>) -> bool {
    let (Some(hash), Some(cred)) = (hash, authorization.and_then(crate::token::bearer)) else {
        return false;
    };
    let presented: [u8; 32] = Sha256::digest(cred.as_bytes()).into();
    bool::from(subtle::ConstantTimeEq::ct_eq(&presented[..], &hash[..]))
}

/// Does this `Authorization` value present a credential at all?
fn presents_credential(authorization: Option<&str>) -> bool {
    authorization.is_some_and(|a| !a.trim().is_empty())
}

/// Renewal and self-revocation carry their token in the body.
fn credential_in_body(req: &ApiRequest<'_>) -> bool {
    matches!(
        Route::parse(req.path),
        Some(Route::Renew | Route::RevokeSelf)
    )
}

/// Is `path` in one of the management API's namespaces, exactly as spelled?
fn claims_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return false;
    };
    if under(rest, "identities") || under(rest, "auth/token-auth") {
        return true;
    }
    // With what follows them too (`renew/`, `revoke/x`): a lenient upstream
    // routes those to the same handlers, and they must not reach it as
    // ordinary authenticated requests.
    if under(rest, "auth/token/renew") || under(rest, "auth/token/revoke") {
        return true;
    }
    rest.strip_prefix("projects/")
        .and_then(|p| p.split_once('/'))
        .is_some_and(|(_, tail)| {
            under(tail, "memberships/identities") || under(tail, "organization")
        })
}

/// Could a loose spelling of `path` be in a management namespace
/// (`/api/v1/identities`, `/api/v1/auth`, `/api/v1/projects`)? Decided on the
/// first three segments without copying, so every other request (most of
/// them, on the request path) skips building `loose_path`; a segment with an
/// escape is left to the full check.
fn might_claim(path: &str) -> bool {
    let like = |seg: &str, word: &str| {
        seg.contains('%')
            || seg
                .split_once('.')
                .map_or(seg, |(stem, _)| stem)
                .trim()
                .eq_ignore_ascii_case(word)
    };
    let mut segs = path.split('/').skip(1);
    segs.next().is_some_and(|s| like(s, "api"))
        && segs.next().is_some_and(|s| like(s, "v1"))
        && segs.next().is_some_and(|s| {
            ["identities", "auth", "projects"]
                .iter()
                .any(|w| like(s, w))
        })
}

/// `path` with each segment percent-decoded, lowercased, trimmed and without
/// a file extension.
fn loose_path(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            let decoded = crate::proxy::names::percent_decode(seg.as_bytes());
            let seg = String::from_utf8_lossy(&decoded).to_lowercase();
            let stem = seg.split_once('.').map_or(seg.as_str(), |(stem, _)| stem);
            stem.trim().to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `rest` is `prefix` or lies below it (segment-wise, so `identitiesx` is not).
fn under(rest: &str, prefix: &str) -> bool {
    rest.strip_prefix(prefix)
        .is_some_and(|t| t.is_empty() || t.starts_with('/'))
}

impl Api {
    /// An empty admin key counts as none: it must never match an empty bearer.
    pub fn new(store: Arc<dyn Store>, admin_key: Option<String>) -> Api {
        Api::with_lockout(
            store,
            admin_key,
            LockoutConfig {
                threshold: 0,
                window_ms: 1,
                duration_ms: 1,
            },
            None,
        )
    }

    /// With failed authentications from one address locked out as `lockout`
    /// says, each lockout counted in `lockouts`.
    pub fn with_lockout(
        store: Arc<dyn Store>,
        admin_key: Option<String>,
        lockout: LockoutConfig,
        lockouts: Option<prometheus::IntCounter>,
    ) -> Api {
        let admin_key_hash = admin_key.as_deref().and_then(admin_key_hash);
        Api {
            store,
            admin_key_hash,
            lockout: Lockout::new(lockout),
            lockouts: lockouts.unwrap_or_else(|| {
                prometheus::IntCounter::new("unregistered", "-").expect("static name")
            }),
        }
    }

    /// True for paths the gateway answers itself instead of forwarding.
    /// Whole namespaces are claimed, so an unknown route below them is a 404
    /// from the gateway rather than a request leaking to the upstream; so are
    /// their spellings a lenient upstream would route the same way
    /// (`/API/v1/Identities`, `/api/v1/identities.json`, `identities%20`).
    pub fn is_management_path(path: &str) -> bool {
        claims_path(path) || (might_claim(path) && claims_path(&loose_path(path)))
    }

    /// The operation a management request asks for, as bounded metric
    /// labels: the route's name and the method (`identity`, `PATCH`), or
    /// `other` for a path or method no route answers. Never an id.
    pub fn operation(req: &ApiRequest<'_>) -> (&'static str, &'static str) {
        let Some(route) = Route::parse(req.path) else {
            return ("other", "other");
        };
        let name = route.name();
        match route.methods().iter().find(|m| **m == req.method) {
            Some(method) => (name, method),
            None => (name, "other"),
        }
    }

    /// The 429 for an address locked out after repeated failed
    /// authentication (`admin.lockout`), if `ip` is; checked before anything
    /// of the request is read.
    pub fn locked_out(&self, ip: IpAddr, now: Millis, req_id: &str) -> Option<ApiResponse> {
        let wait_ms = self.lockout.check(ip, now).err()?;
        let secs = wait_ms.div_ceil(1000);
        Some(
            ApiError::StatusWith(
                429,
                format!("too many failed authentications from this address; try again in {secs} s"),
                vec![("retry-after", secs.to_string())],
            )
            .into_response(req_id),
        )
    }

    /// The admin key presented outside the API (`POST /reload`), held to
    /// the same lockout: a locked-out address is refused whatever it sends,
    /// and a wrong key counts as a failed authentication, so neither door
    /// lets the key be guessed faster than the other.
    pub fn admin_key_attempt(
        &self,
        authorization: Option<&str>,
        ip: IpAddr,
        now: Millis,
        req_id: &str,
    ) -> Result<(), ApiResponse> {
        if let Some(refused) = self.locked_out(ip, now, req_id) {
            return Err(refused);
        }
        if is_admin_key(self.admin_key_hash.as_ref(), authorization) {
            self.lockout.succeeded(ip);
            return Ok(());
        }
        // No credential is no guess (a form posted by a page elsewhere
        // cannot send one): refused, not counted.
        if presents_credential(authorization) && self.lockout.failed(ip, now) {
            self.lockouts.inc();
            log::warn!("{req_id}: {ip} locked out after repeated failed authentication");
        }
        Err(ApiError::Status(
            401,
            "reloading needs 'Authorization: Bearer <admin key>'".into(),
        )
        .into_response(req_id))
    }

    /// Answers one management request and writes its audit records. Never
    /// panics and never answers 500.
    pub async fn handle(&self, req: &ApiRequest<'_>, audit: &AuditLog) -> ApiResponse {
        if let Some(refused) = self.locked_out(req.client_ip, req.now, req.req_id) {
            return refused;
        }
        let changes = Changes::new(audit.is_on());
        let (resp, refusal) = match self.dispatch(req, &changes, audit).await {
            Ok(r) => (r, None),
            Err(ApiError::Status(status @ (401 | 403), msg)) => (
                ApiError::Status(status, msg.clone()).into_response(req.req_id),
                Some((status, msg)),
            ),
            Err(e) => (e.into_response(req.req_id), None),
        };
        let mut recorded = true;
        for c in lock(&changes.list).iter() {
            recorded &= Self::audit(
                audit,
                req,
                &c.actor,
                c.event,
                &c.target,
                c.before.as_ref(),
                c.after.as_ref(),
            )
            .is_ok();
        }
        // Only failed authentication counts (a 403 is an authenticated
        // caller), and only when a credential was presented: no credential
        // is no guess, and a page elsewhere can make a browser send such
        // requests at will.
        if resp.status == 401 && (presents_credential(req.authorization) || credential_in_body(req))
        {
            if self.lockout.failed(req.client_ip, req.now) {
                self.lockouts.inc();
                log::warn!(
                    "{}: {} locked out of the management API after repeated failed authentication",
                    req.req_id,
                    req.client_ip
                );
            }
        } else if lock(&changes.caller).is_some() {
            self.lockout.succeeded(req.client_ip);
        }
        if let Some((status, msg)) = refusal {
            let actor = lock(&changes.caller)
                .clone()
                .unwrap_or_else(|| caller::presented(req));
            let record = AuditRecord {
                status: Some(status),
                reason: Some(&msg),
                ..Self::record(req, &actor, "management.refused", &Value::Null)
            };
            let _ = audit.write(&record);
        }
        if !recorded && audit.required() {
            return ApiError::Status(
                503,
                "audit log unavailable: the change was made but its record could not be written"
                    .into(),
            )
            .into_response(req.req_id);
        }
        resp
    }

    /// A record of `event` by `actor` in this request, without before and after.
    fn record<'a>(
        req: &'a ApiRequest<'_>,
        actor: &'a Actor,
        event: &'a str,
        target: &'a Value,
    ) -> AuditRecord<'a> {
        AuditRecord {
            time: crate::access_log::now_rfc3339(),
            log: "audit",
            event,
            req_id: req.req_id,
            client_ip: req.client_ip.to_string(),
            actor,
            target,
            before: None,
            after: None,
            status: None,
            reason: None,
        }
    }

    fn audit(
        log: &AuditLog,
        req: &ApiRequest<'_>,
        actor: &Actor,
        event: &str,
        target: &Value,
        before: Option<&Value>,
        after: Option<&Value>,
    ) -> std::io::Result<()> {
        log.write(&AuditRecord {
            before,
            after,
            ..Self::record(req, actor, event, target)
        })
    }

    /// With `audit.required`, a request that may change something is first
    /// recorded as asked for: if that record cannot be written, the request
    /// is refused before the store is touched.
    fn record_request(log: &AuditLog, req: &ApiRequest<'_>, actor: &Actor) -> Result<(), ApiError> {
        if !log.required() || !may_change(req.method) {
            return Ok(());
        }
        let target = serde_json::json!({"method": req.method, "path": req.path});
        Self::audit(log, req, actor, "management.requested", &target, None, None)
            .map_err(|_| ApiError::Status(503, "audit log unavailable: nothing was changed".into()))
    }

    async fn dispatch(
        &self,
        req: &ApiRequest<'_>,
        changes: &Changes,
        audit: &AuditLog,
    ) -> Result<ApiResponse, ApiError> {
        if let Some(why) = req.site.refusal() {
            return Err(ApiError::Status(403, why));
        }
        let route = Route::parse(req.path).ok_or_else(|| ApiError::not_found("route not found"))?;
        let method = req.method;
        let allowed = route.methods();
        if !allowed.contains(&method) {
            return Err(ApiError::method_not_allowed(allowed));
        }
        let store = self.store.as_ref();
        // Renewal and self-revocation are authorised by the token in the body.
        match route {
            Route::Renew | Route::RevokeSelf => {
                Self::record_request(audit, req, &caller::presented(req))?;
                return if route == Route::Renew {
                    renewal::renew(store, req, changes).await
                } else {
                    renewal::revoke_self(store, req, changes).await
                };
            }
            _ => {}
        }
        let caller = caller::authorize(store, self.admin_key_hash.as_ref(), req).await?;
        changes.set_caller(caller.actor());
        Self::record_request(audit, req, &caller.actor())?;
        let cx = Ctx {
            store,
            req,
            caller,
            changes,
        };
        match (route, method) {
            (Route::Identities, "GET") => identities::list(&cx).await,
            (Route::Identities, "POST") => identities::create(&cx).await,
            (Route::Identity(id), "GET") => identities::get(&cx, id).await,
            (Route::Identity(id), "PATCH") => identities::update(&cx, id).await,
            (Route::Identity(id), "DELETE") => identities::delete(&cx, id).await,
            (Route::TokenAuth(id), "POST") => token_auth::attach(&cx, id).await,
            (Route::TokenAuth(id), "GET") => token_auth::get(&cx, id).await,
            (Route::TokenAuth(id), "PATCH") => token_auth::update(&cx, id).await,
            (Route::TokenAuth(id), "DELETE") => token_auth::remove(&cx, id).await,
            (Route::IdentityTokens(id), "POST") => tokens::create(&cx, id).await,
            (Route::IdentityTokens(id), "GET") => tokens::list(&cx, id).await,
            (Route::Token(id), "GET") => tokens::get(&cx, id).await,
            (Route::Token(id), "PATCH") => tokens::rename(&cx, id).await,
            (Route::TokenRevoke(id), "POST") => tokens::revoke(&cx, id).await,
            (Route::Memberships(p), "GET") => memberships::list(&cx, p).await,
            (Route::Membership(p, id), "POST") => memberships::create(&cx, p, id).await,
            (Route::Membership(p, id), "GET") => memberships::get(&cx, p, id).await,
            (Route::Membership(p, id), "PATCH") => memberships::update(&cx, p, id).await,
            (Route::Membership(p, id), "DELETE") => memberships::delete(&cx, p, id).await,
            (Route::ProjectOrganization(p), "GET") => projects::get(&cx, p).await,
            (Route::ProjectOrganization(p), "PUT") => projects::set(&cx, p).await,
            _ => Err(ApiError::method_not_allowed(allowed)),
        }
    }
}
