//! The request path as Pingora `ProxyHttp` glue, top to bottom: a request
//! the gateway fully understands (target, path, query, header text), then
//! management API or route policy, token, client IP, project, one atomic
//! store check, then header hygiene and forwarding. Business rules live in
//! `auth`, `routes` and the `proxy::*` modules.

pub mod body;
pub mod client_ip;
pub mod forward_auth;
pub mod headers;
pub mod multipart;
pub mod names;
pub mod path;
pub mod policy;
pub mod project;
pub mod target;

use crate::access_log::{self, AccessRecord};
use crate::api::{Api, ApiRequest, Site};
use crate::auth::{Deny, Grant};
use crate::config::{Describe, ForwardAuth};
use crate::error::error_json;
use crate::metrics::{Metrics, Outcome};
use crate::request_id;
use crate::routes::{Auth, BodyRule};
use crate::store::{AuthRequest, Store};
use crate::token::{AccessToken, Id};
use crate::upstreams::{Picked, Pool};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use policy::Policy;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Management requests are small JSON documents; anything bigger is refused.
pub(crate) const MAX_MANAGEMENT_BODY: usize = 1 << 20;

/// Body fields frameworks read as the request's method, matched as project
/// fields are (case, `_`, `-` and `.` ignored, so `method` is one of them).
static METHOD_OVERRIDES: std::sync::LazyLock<names::NameSet> = std::sync::LazyLock::new(|| {
    names::NameSet::new([
        "_method",
        "x_http_method_override",
        "x_http_method",
        "method_override",
        "http_method",
    ])
});

/// The most a request's target and header fields may take together, as
/// nginx's default (`large_client_header_buffers 4 8k`) allows about: more
/// is refused with 431, never forwarded (Pingora itself reads far more).
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// How long one write to a client may wait for it to read, as nginx's `send_timeout`.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// The proxy service.
pub struct Gateway {
    store: Arc<dyn Store>,
    /// Shared with the admin listener, which answers the same API (and
    /// shares its lockout).
    api: Arc<Api>,
    metrics: Arc<Metrics>,
    /// The configuration in force; a reload swaps it (`reload.rs`).
    live: Arc<ArcSwap<Policy>>,
}

/// What one request learned on its way through the filters.
pub struct Ctx {
    /// The configuration this request started with, kept to its end.
    policy: Arc<Policy>,
    /// Set when the request was authenticated; its headers are injected upstream.
    auth: Option<Authenticated>,
    outcome: Outcome,
    /// An absolute-form target's path and query, sent upstream in origin-form.
    origin_form: Option<String>,
    /// This request's id (`request_id.rs`), set first thing.
    req_id: String,
    /// When the request was sent upstream.
    upstream_sent: Option<std::time::Instant>,
    /// For the access log: when the request's header had arrived, the
    /// token's ids once parsed, why it was refused, and the upstream's answer.
    started: Option<Instant>,
    token_ids: Option<(Id, Id)>,
    reason: Option<String>,
    upstream_status: Option<u16>,
    upstream_took: Option<Duration>,
    /// In forward-auth mode, the original request that was decided about
    /// (for the access record).
    described: Option<forward_auth::Original>,
    /// The route's upstream pool, and the address picked from it.
    pool: Option<Arc<Pool>>,
    picked: Option<Picked>,
}

impl Ctx {
    fn new(policy: Arc<Policy>) -> Ctx {
        Ctx {
            policy,
            auth: None,
            outcome: Outcome::default(),
            origin_form: None,
            req_id: String::new(),
            upstream_sent: None,
            started: None,
            token_ids: None,
            reason: None,
            upstream_status: None,
            upstream_took: None,
            described: None,
            pool: None,
            picked: None,
        }
    }

    /// The request's id; a fresh one if the request failed before it had one.
    fn req_id(&mut self) -> &str {
        if self.req_id.is_empty() {
            self.req_id = request_id::fresh();
        }
        &self.req_id
    }
}

struct Authenticated {
    identity_id: Id,
    token_id: Id,
    grant: Grant,
    project: Option<String>,
    client_ip: IpAddr,
}

impl Authenticated {
    /// The caller as the injected headers tell it.
    fn caller(&self) -> headers::Caller<'_> {
        headers::Caller {
            identity_id: self.identity_id,
            token_id: self.token_id,
            grant: &self.grant,
            project: self.project.as_deref(),
            client_ip: self.client_ip,
        }
    }
}

/// What a decision is about: the request itself, or the original request
/// an auth subrequest describes (`proxy::forward_auth`). Either way its
/// path and query are read through a `Span` of an accepted target.
enum Asked {
    Itself(target::Span),
    Described {
        original: forward_auth::Original,
        span: target::Span,
    },
}

impl Asked {
    /// The method, path and query asked about.
    fn parts<'a>(&'a self, session: &'a Session) -> (&'a str, &'a str, Option<&'a str>) {
        match self {
            Asked::Itself(span) => {
                let h = session.req_header();
                let raw = h.raw_path();
                (h.method.as_str(), span.path(raw), span.query(raw))
            }
            Asked::Described { original, span } => {
                let raw = original.target.as_bytes();
                (original.method.as_str(), span.path(raw), span.query(raw))
            }
        }
    }

    /// The host routes by host match: `Host`, or HTTP/2's `:authority`.
    fn host<'a>(&'a self, session: &'a Session) -> Option<&'a str> {
        match self {
            Asked::Itself(_) => crate::api::request_authority(session.req_header()),
            Asked::Described { original, .. } => original.host.as_deref(),
        }
    }
}

/// The outcome of `Gateway::decide`.
enum Decision {
    /// A public route: no token needed.
    Public,
    Allowed(Authenticated),
    /// Status, message and extra headers (a 429's) of the refusal.
    Refused(
        u16,
        std::borrow::Cow<'static, str>,
        Vec<(&'static str, String)>,
    ),
}

impl Decision {
    fn refused(status: u16, why: &'static str) -> Decision {
        Decision::Refused(status, why.into(), Vec::new())
    }
}

impl Gateway {
    pub fn new(
        store: Arc<dyn Store>,
        api: Arc<Api>,
        metrics: Arc<Metrics>,
        live: Arc<ArcSwap<Policy>>,
    ) -> Gateway {
        Gateway {
            store,
            api,
            metrics,
            live,
        }
    }

    /// Answers with Infisical's JSON error shape and ends the request.
    async fn reject(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
        message: &str,
    ) -> Result<bool> {
        self.reject_with(session, ctx, status, message, &[]).await
    }

    /// `reject` with extra response headers (a 429's `Retry-After` and
    /// rate-limit headers).
    async fn reject_with(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
        message: &str,
        headers: &[(&'static str, String)],
    ) -> Result<bool> {
        let req_id = ctx.req_id().to_string();
        let body = error_json(status, message, &req_id, None);
        if ctx.outcome == Outcome::Other {
            ctx.outcome = Outcome::Denied;
        }
        // Kept for the access record only: no copy when nobody reads it.
        if ctx.reason.is_none() && ctx.policy.access_log.is_on() {
            ctx.reason = Some(message.to_string());
        }
        // The target as received, not Pingora's placeholder path for forms it
        // cannot represent (`xyz:/...`), so the log shows what was refused;
        // the query stays out (its values may be secrets), and the logger
        // redacts token-shaped text.
        let raw = session.req_header().raw_path();
        let target = raw.split(|&b| b == b'?').next().unwrap_or(raw);
        let target = String::from_utf8_lossy(&target[..target.len().min(256)]);
        log::info!(
            "{req_id} {} {target} -> {status}: {message}",
            session.req_header().method
        );
        write_json(session, status, body, &req_id, headers).await?;
        Ok(true)
    }

    /// The request's path and query when the gateway fully understands the
    /// request (see `proxy::target` and `proxy::path`), or why not.
    /// At the forward-auth endpoint itself (`forward_auth`), the headers that
    /// describe the original request are expected, not refused: there the
    /// calling gateway sets them (`proxy::forward_auth`).
    fn understood<'s>(
        session: &'s Session,
        forward_auth: Option<&ForwardAuth>,
    ) -> std::result::Result<target::Target<'s>, &'static str> {
        let h = session.req_header();
        let host = h.headers.get(http::header::HOST).map(|v| v.as_bytes());
        let local = session.server_addr().and_then(|a| a.as_inet());
        let t = target::split(h.raw_path(), host, local)?;
        path::check(t.path)?;
        if let Some(q) = t.query {
            target::check_query(q)?;
        }
        let describing =
            forward_auth.is_some_and(|fa| fa.describe == Describe::Headers && fa.path == t.path);
        target::check_headers(
            h.headers
                .iter()
                .filter(|(n, _)| !(describing && forward_auth::describes(n.as_str())))
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        )?;
        Ok(t)
    }

    /// The time a request body has to arrive in full once its header has:
    /// the same bound as the header's.
    fn body_deadline(p: &Policy) -> Duration {
        Duration::from_secs(p.cfg.header_timeout_seconds)
    }

    fn client_ip(p: &Policy, session: &Session) -> IpAddr {
        client_ip_of(session, &p.cfg.trusted_proxies)
    }

    /// Reads the whole request body (`read_body`), keeping it for
    /// forwarding: retry buffering keeps what was read so Pingora still
    /// forwards it, byte for byte.
    async fn read_body(session: &mut Session, limit: usize, deadline: Duration) -> BodyRead {
        let downstream = session.as_downstream_mut();
        downstream.enable_retry_buffering();
        read_body(downstream, limit, deadline).await
    }

    /// The project claims of the request body: none when no source could be
    /// in a body, the route declares its bodies carry none, or there is no
    /// body; otherwise the body is read (and kept for forwarding) and parsed.
    /// With `no_override`, the body is also read for a method override
    /// field, which refuses the request.
    async fn body_claims(
        p: &Policy,
        session: &mut Session,
        rule: BodyRule,
        no_override: bool,
    ) -> std::result::Result<Vec<String>, (u16, &'static str)> {
        let mut claims = Vec::new();
        let for_project = p.projects.reads_body() && rule != BodyRule::NoProject;
        if !(for_project || no_override) || session.as_downstream_mut().is_body_empty() {
            return Ok(claims);
        }
        let body =
            match Self::read_body(session, p.cfg.max_body_bytes, Self::body_deadline(p)).await {
                BodyRead::Complete(body) => body,
                BodyRead::Refused(413, _) => {
                    return Err((413, "request body too large to find its project"))
                }
                BodyRead::Refused(status, why) => return Err((status, why)),
            };
        let h = session.req_header();
        let values = |name| -> Vec<&[u8]> {
            h.headers
                .get_all(name)
                .iter()
                .map(|v| v.as_bytes())
                .collect()
        };
        let content_type = values(http::header::CONTENT_TYPE);
        let content_encoding = values(http::header::CONTENT_ENCODING);
        let heads = body::BodyHeaders {
            content_type: &content_type,
            content_encoding: &content_encoding,
        };
        if no_override {
            let mut found = Vec::new();
            body::claims(heads, &body, &METHOD_OVERRIDES, &mut found).map_err(|why| (415, why))?;
            if !found.is_empty() {
                return Err((
                    400,
                    "method override fields (_method) are not accepted on this route",
                ));
            }
        }
        if for_project {
            body::claims(heads, &body, p.projects.names(), &mut claims)
                .map_err(|why| (415, why))?;
        }
        Ok(claims)
    }

    /// Steps 2 to 5 for what is asked: the route's policy, the token, who is
    /// asking, the project, and one atomic check-and-consume. The same for a
    /// request to forward and for an auth subrequest's original request.
    async fn decide(&self, session: &mut Session, ctx: &mut Ctx, asked: &Asked) -> Decision {
        let p = Arc::clone(&ctx.policy);
        // HTTP/2 names the host in `:authority`, often without a Host header.
        let route = {
            let (_, path, _) = asked.parts(session);
            let host = match asked.host(session) {
                Some(h) if p.cfg.routes.by_host() => match crate::routes::request_host(h) {
                    Some(h) => Some(h),
                    None => {
                        ctx.outcome = Outcome::BadRequest;
                        return Decision::refused(400, "the Host is not a plain host name");
                    }
                },
                _ => None,
            };
            p.cfg.routes.select(host.as_deref(), path)
        };
        ctx.pool = p.pool(route.upstream.as_deref()).cloned();
        if route.auth == Auth::Public {
            ctx.outcome = Outcome::Public;
            return Decision::Public;
        }

        // Where the needs differ by method, the method must be one every
        // server reads alike: an exact uppercase token (some servers
        // upper-case `delete`), and never replaced by a body field
        // (`_method`, read by Rails, Laravel and Spring).
        let by_method = route.require.by_method();
        if by_method
            && !asked
                .parts(session)
                .0
                .bytes()
                .all(|b| b.is_ascii_uppercase())
        {
            ctx.outcome = Outcome::BadRequest;
            return Decision::refused(400, "method must be an uppercase name on this route");
        }

        // 2. The token, checked for shape before anything else.
        let token = match bearer_token(session.req_header()) {
            Ok(t) => t,
            Err(msg) => {
                // Counted with the store's refusals, so the reasons add up to every denial.
                let reason = if msg == MISSING_AUTHORIZATION {
                    "missing_token"
                } else {
                    "malformed_token"
                };
                self.metrics.denied.with_label_values(&[reason]).inc();
                return Decision::refused(401, msg);
            }
        };
        ctx.token_ids = Some((token.identity_id, token.token_id));

        // 3. Who is asking, seen through trusted proxies only.
        let client_ip = Self::client_ip(&p, session);

        // 5 (resolved early so the store sees it in the same atomic step as 4).
        //   Every claim is read: the request head, and the body unless the
        //   route declares its bodies carry no project. An auth subrequest
        //   never shows the original's body, so where that body could name
        //   the project or the method, it is refused rather than decided
        //   without it.
        let body_claims = match asked {
            Asked::Itself(_) => Self::body_claims(&p, session, route.body, by_method).await,
            Asked::Described { .. } => {
                Self::unseen_body(&p, route.body, by_method).map(|()| Vec::new())
            }
        };
        let body_claims = match body_claims {
            Ok(claims) => claims,
            Err((status, why)) => {
                ctx.outcome = Outcome::BadRequest;
                return Decision::refused(status, why);
            }
        };
        let (method, path, query) = asked.parts(session);
        let resolution =
            p.projects
                .resolve(path, query, &session.req_header().headers, &body_claims);
        let project = match project::decide(resolution, route.project) {
            Ok(p) => p,
            Err(why) => {
                ctx.outcome = Outcome::BadRequest;
                return Decision::refused(400, why);
            }
        };

        // 4. One atomic check-and-consume, project membership included.
        let started = Instant::now();
        let outcome = self
            .store
            .authenticate(&AuthRequest {
                token: &token,
                client_ip,
                now: self.store.now(),
                project: project.as_deref(),
                needs: route.needs(method),
                route_rate_limit: route.rate_limit,
            })
            .await;
        self.metrics
            .auth_seconds
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(Ok(grant)) => Decision::Allowed(Authenticated {
                identity_id: token.identity_id,
                token_id: token.token_id,
                grant,
                project,
                client_ip,
            }),
            Ok(Err(deny)) => {
                self.metrics.denied.with_label_values(&[deny.code()]).inc();
                if ctx.policy.access_log.is_on() {
                    ctx.reason = Some(deny.code().to_string());
                }
                let headers = match &deny {
                    Deny::RateLimited(r) => r.headers().to_vec(),
                    _ => Vec::new(),
                };
                Decision::Refused(deny.status(), deny.message().into(), headers)
            }
            Err(e) => {
                // Fail closed: without the store nobody is let through.
                self.metrics.store_errors.inc();
                log::error!("token store error for {}: {e}", token.token_id);
                ctx.outcome = Outcome::StoreError;
                Decision::refused(503, "token store unavailable")
            }
        }
    }

    /// An auth subrequest on a route whose bodies are read: for a project
    /// (unless the route declares its bodies carry none) or for a method
    /// override (where the needs differ by method). The body is not there to
    /// read, so the request is refused.
    fn unseen_body(
        p: &Policy,
        rule: BodyRule,
        by_method: bool,
    ) -> std::result::Result<(), (u16, &'static str)> {
        if p.projects.reads_body() && rule != BodyRule::NoProject {
            return Err((
                400,
                "this route's request bodies may name a project, which an auth subrequest does not show: declare `body: no-project` on the route, or send these requests through tokengate as the proxy",
            ));
        }
        if by_method {
            return Err((
                400,
                "this route's needs differ by method, and a request body could override the method, which an auth subrequest does not show",
            ));
        }
        Ok(())
    }

    /// Forward-auth mode: decides about the original request an auth
    /// subrequest describes and answers 200 with the identity's headers for
    /// the calling gateway to copy upstream, or refuses as the proxy would.
    /// Nothing is forwarded.
    async fn serve_forward_auth(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        span: &target::Span,
    ) -> Result<bool> {
        let p = Arc::clone(&ctx.policy);
        let Some(fa) = p.cfg.forward_auth.as_ref() else {
            return self.reject(session, ctx, 404, "not found").await;
        };
        // A fragment in the subrequest's target (the client's, relayed by
        // the calling gateway) never reaches the parsed target, yet the API
        // may read it as part of the path: refused, from the raw request
        // line (HTTP/1; HTTP/2 carries no fragment).
        let raw_head = session.as_downstream().to_h1_raw();
        let line = raw_head.split(|&b| b == b'\n').next().unwrap_or_default();
        if line.contains(&b'#') {
            ctx.outcome = Outcome::BadRequest;
            return self
                .reject(session, ctx, 400, "the original URI must not contain '#'")
                .await;
        }
        let h = session.req_header();
        let raw = h.raw_path();
        let described = forward_auth::describe(
            fa,
            h.method.as_str(),
            span.path(raw),
            span.query(raw),
            &h.headers,
        );
        // The original's target passes the same checks as any request's.
        let asked = described.and_then(|original| {
            let local = session.server_addr().and_then(|a| a.as_inet());
            let host = original.host.as_deref().map(str::as_bytes);
            let t = target::split(original.target.as_bytes(), host, local)?;
            path::check(t.path)?;
            if let Some(q) = t.query {
                target::check_query(q)?;
            }
            if t.absolute {
                return Err("the original URI must be a path (and query)");
            }
            let span = t.span(original.target.as_bytes());
            Ok(Asked::Described { original, span })
        });
        let asked = match asked {
            Ok(a) => a,
            Err(why) => {
                ctx.outcome = Outcome::BadRequest;
                return self.reject(session, ctx, 400, why).await;
            }
        };
        let decision = self.decide(session, ctx, &asked).await;
        if let (true, Asked::Described { original, .. }) = (p.access_log.is_on(), asked) {
            ctx.described = Some(original);
        }
        match decision {
            Decision::Public => {
                write_empty(session, 200, ctx.req_id(), None, &p.injected).await?;
                Ok(true)
            }
            Decision::Allowed(auth) => {
                ctx.outcome = Outcome::Allowed;
                write_empty(session, 200, ctx.req_id(), Some(&auth), &p.injected).await?;
                // Nothing is forwarded: kept for the access record only.
                ctx.auth = Some(auth);
                Ok(true)
            }
            Decision::Refused(status, why, headers) => {
                self.reject_with(session, ctx, status, &why, &headers).await
            }
        }
    }

    async fn serve_management(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        span: &target::Span,
    ) -> Result<bool> {
        ctx.outcome = Outcome::Management;
        let p = Arc::clone(&ctx.policy);
        let client_ip = Self::client_ip(&p, session);
        let req_id = ctx.req_id().to_string();
        // A locked-out address is refused before its body is waited for.
        if let Some(resp) = self.api.locked_out(client_ip, self.store.now(), &req_id) {
            write_json(session, resp.status, resp.body, &req_id, &resp.headers).await?;
            return Ok(true);
        }
        let body = match Self::read_body(session, MAX_MANAGEMENT_BODY, Self::body_deadline(&p))
            .await
        {
            BodyRead::Complete(body) => body,
            BodyRead::Refused(status, why) => return self.reject(session, ctx, status, why).await,
        };
        let tls = is_tls(session);
        let h = session.req_header();
        let req = ApiRequest {
            method: h.method.as_str(),
            path: span.path(h.raw_path()),
            query: span.query(h.raw_path()),
            authorization: h
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            body: &body,
            client_ip,
            now: self.store.now(),
            req_id: &req_id,
            site: Site::of_request(h, tls).with_names(&p.cfg.allowed_hosts),
        };
        let resp = self.api.handle(&req, &p.audit).await;
        let (route, method) = Api::operation(&req);
        self.metrics.count_management(route, method, resp.status);
        log::info!("{req_id} {} {} -> {}", req.method, req.path, resp.status);
        write_json(session, resp.status, resp.body, &req_id, &resp.headers).await?;
        Ok(true)
    }
}

impl Gateway {
    /// The request's access record, handed to the access log's writer.
    fn log_access(session: &Session, ctx: &mut Ctx) {
        let p = Arc::clone(&ctx.policy);
        let req_id = ctx.req_id().to_string();
        let auth = ctx.auth.as_ref();
        let h = session.req_header();
        let ids = auth.map(|a| (a.identity_id, a.token_id)).or(ctx.token_ids);
        let record = AccessRecord {
            time: access_log::now_rfc3339(),
            log: "access",
            req_id: &req_id,
            // In forward-auth mode, the request decided about, not the
            // subrequest that described it.
            method: ctx
                .described
                .as_ref()
                .map_or(h.method.as_str(), |o| o.method.as_str()),
            path: access_log::redact_target(
                ctx.described
                    .as_ref()
                    .map_or(h.raw_path(), |o| o.target.as_bytes()),
            ),
            client_ip: auth
                .map_or_else(|| Self::client_ip(&p, session), |a| a.client_ip)
                .to_string(),
            identity_id: ids.map(|(identity, _)| identity.to_string()),
            identity_name: auth.map(|a| a.grant.identity_name.as_str()),
            token_id: ids.map(|(_, token)| token.to_string()),
            project: auth.and_then(|a| a.project.as_deref()),
            outcome: ctx.outcome.label(),
            reason: ctx.reason.as_deref(),
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            upstream_status: ctx.upstream_status,
            request_bytes: session.body_bytes_read(),
            response_bytes: session.body_bytes_sent(),
            duration_ms: ctx.started.map_or(0.0, |t| access_log::millis(t.elapsed())),
            upstream_ms: ctx.upstream_took.map(access_log::millis),
        };
        p.access_log.write(&record);
    }
}

/// The client's address: the TCP peer, or what a trusted proxy says it
/// forwarded for (`client_ip.rs`). The same on both listeners, so the
/// lockout and the audit see one address per client.
pub(crate) fn client_ip_of(session: &ServerSession, trusted: &[ipnet::IpNet]) -> IpAddr {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let xff = session
        .req_header()
        .headers
        .get_all("x-forwarded-for")
        .iter()
        // A value that is not text is garbage, which stops the walk (never skipped).
        .map(|v| v.to_str().unwrap_or("?"));
    client_ip::client_ip(peer, xff, trusted)
}

/// Whether the connection is TLS (the browser-origin check needs the scheme).
pub(crate) fn is_tls(session: &ServerSession) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// Reads the whole request body, at most `limit` bytes, within `deadline`:
/// Pingora times each read alone, so a client trickling one byte a minute
/// would otherwise hold the connection (and a slot under
/// `server.max_connections`) for ever. Failures are the client's (a bad
/// chunk, a stalled upload), never the upstream's.
pub(crate) async fn read_body(
    session: &mut ServerSession,
    limit: usize,
    deadline: Duration,
) -> BodyRead {
    match tokio::time::timeout(deadline, read_body_unbounded(session, limit)).await {
        Ok(read) => read,
        Err(_) => BodyRead::Refused(408, "request body timed out"),
    }
}

async fn read_body_unbounded(session: &mut ServerSession, limit: usize) -> BodyRead {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return BodyRead::Refused(413, "request body too large");
    }
    // Grown as bytes arrive: a declared length reserves nothing, so a
    // client that announces a large body and sends none costs nothing.
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(limit).min(16 * 1024));
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return BodyRead::Refused(413, "request body too large");
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return BodyRead::Complete(body),
            Err(e) if matches!(e.etype(), ErrorType::ReadTimedout) => {
                return BodyRead::Refused(408, "request body timed out")
            }
            Err(_) => return BodyRead::Refused(400, "malformed request body"),
        }
    }
}

/// The request body, or why it could not be read.
pub(crate) enum BodyRead {
    Complete(Vec<u8>),
    Refused(u16, &'static str),
}

async fn write_json(
    session: &mut Session,
    status: u16,
    body: Vec<u8>,
    req_id: &str,
    headers: &[(&'static str, String)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4 + headers.len()))?;
    resp.insert_header("content-type", "application/json")?;
    for (name, value) in headers {
        resp.insert_header(*name, value)?;
    }
    resp.insert_header(request_id::HEADER, req_id)?;
    resp.insert_header("content-length", body.len().to_string())?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await
}

/// A bodiless answer to an auth subrequest: the request id, and for an
/// allowed request the identity's headers, under the names they are
/// injected with upstream (the calling gateway copies them there). Every
/// name is answered, empty when it does not apply (no project, a public
/// route), because the calling gateways copy only what is answered: an
/// empty value replaces a client's own copy, a missing one would leave it.
async fn write_empty(
    session: &mut Session,
    status: u16,
    req_id: &str,
    auth: Option<&Authenticated>,
    names: &headers::Injected,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(10))?;
    resp.insert_header(request_id::HEADER, req_id)?;
    for name in names.all() {
        resp.insert_header(name.clone(), HeaderValue::from_static(""))?;
    }
    if let Some(a) = auth {
        headers::inject(names, &a.caller(), |n, v| resp.insert_header(n, v))?;
    }
    resp.insert_header("content-length", "0")?;
    session.write_response_header(Box::new(resp), true).await
}

const MISSING_AUTHORIZATION: &str = "missing Authorization header";

/// The token of `Authorization: Bearer <token>`, or why there is none. Parsing
/// checks prefix, length and checksum: a malformed token never reaches the store.
fn bearer_token(req: &RequestHeader) -> std::result::Result<AccessToken, &'static str> {
    let Some(value) = req.headers.get(http::header::AUTHORIZATION) else {
        return Err(MISSING_AUTHORIZATION);
    };
    let value = value
        .to_str()
        .map_err(|_| "malformed Authorization header")?;
    let token = crate::token::bearer(value).ok_or("Authorization must be 'Bearer <token>'")?;
    AccessToken::parse(token).map_err(|_| "malformed access token")
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new(self.live.load_full())
    }

    fn init_downstream_modules(&self, _modules: &mut HttpModules) {
        // None. Pingora's default adds its response-compression module at
        // level 0, which never compresses but is still built and called on
        // every request (a boxed context and two boxed filter futures).
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        ctx.req_id = request_id::of_request(&session.req_header().headers);
        if ctx.policy.access_log.is_on() {
            ctx.started = Some(Instant::now());
        }
        // Pingora keeps an HTTP/1.1 client's connection open with no idle
        // limit unless told otherwise; the keep-alive timeout travels with
        // the connection to the wait for its next request. A connection
        // Pingora already decided to close (HTTP/1.0 without keep-alive,
        // `Connection: close`) stays closed.
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(ctx.policy.cfg.keepalive_timeout_seconds));
        }
        // A client that stops reading its answer must not hold the
        // connection either (as nginx's `send_timeout`).
        session.set_write_timeout(Some(SEND_TIMEOUT));
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let h = session.req_header();
        let header_bytes = h.raw_path().len()
            + h.headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 4)
                .sum::<usize>();
        if header_bytes > MAX_HEADER_BYTES {
            ctx.outcome = Outcome::BadRequest;
            return self
                .reject(session, ctx, 431, "request header fields too large")
                .await;
        }

        // 1. Only a request the gateway fully understands goes on: a target
        //    it can read, a path and query every server reads the same way,
        //    header text without control characters. This holds on every route.
        let p = Arc::clone(&ctx.policy);
        let span = match Self::understood(session, p.cfg.forward_auth.as_ref()) {
            Ok(t) => {
                if t.absolute {
                    let mut origin = t.path.to_string();
                    if let Some(q) = t.query {
                        origin.push('?');
                        origin.push_str(q);
                    }
                    ctx.origin_form = Some(origin);
                }
                t.span(session.req_header().raw_path())
            }
            Err(why) => {
                ctx.outcome = Outcome::BadRequest;
                return self.reject(session, ctx, 400, why).await;
            }
        };
        let path = span.path(session.req_header().raw_path());
        if let Some(fa) = &p.cfg.forward_auth {
            if forward_auth::is_endpoint(&fa.path, path) {
                return self.serve_forward_auth(session, ctx, &span).await;
            }
        }
        if Api::is_management_path(path) {
            return self.serve_management(session, ctx, &span).await;
        }
        match self.decide(session, ctx, &Asked::Itself(span)).await {
            Decision::Public => Ok(false),
            Decision::Allowed(auth) => {
                ctx.outcome = Outcome::Forwarded;
                ctx.auth = Some(auth);
                Ok(false)
            }
            Decision::Refused(status, why, headers) => {
                self.reject_with(session, ctx, status, &why, &headers).await
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let no_address = || Error::explain(ErrorType::ConnectNoRoute, "upstream has no address");
        let pool = ctx.pool.clone().ok_or_else(no_address)?;
        // A retry after a refused connection picks again.
        if let Some(before) = ctx.picked.take() {
            pool.release(&before);
        }
        let picked = pool.pick().ok_or_else(no_address)?;
        let peer = pool.peer(&picked);
        ctx.picked = Some(picked);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing was sent: another address may take the request.
        if let (Some(pool), Some(picked)) = (&ctx.pool, &ctx.picked) {
            if pool.eject(picked) {
                e.set_retry(true);
            }
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // 6. Whatever the client sent under our header names is dropped, on every route.
        let p = Arc::clone(&ctx.policy);
        headers::strip(req, &p.cfg.headers, p.cfg.forward_authorization);
        if let Some(origin) = ctx.origin_form.take() {
            // Pingora would forward an absolute-form target as received.
            let uri = http::Uri::try_from(origin)
                .map_err(|e| Error::because(ErrorType::InternalError, "origin-form target", e))?;
            req.set_uri(uri);
        }
        if let (Some(pool), Some(picked)) = (&ctx.pool, &ctx.picked) {
            req.insert_header(http::header::HOST, pool.host_header(picked))?;
        }
        // Replaces whatever the client sent under that name.
        req.insert_header(request_id::HEADER, ctx.req_id())?;
        if let Some(a) = &ctx.auth {
            headers::inject(&p.injected, &a.caller(), |n, v| req.insert_header(n, v))?;
        }
        ctx.upstream_sent = Some(std::time::Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(sent) = ctx.upstream_sent.take() {
            let took = sent.elapsed();
            self.metrics.count_upstream(resp.status.as_u16(), took);
            ctx.upstream_status = Some(resp.status.as_u16());
            ctx.upstream_took = Some(took);
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        // The client's side first: its mistakes and stalls are not upstream failures.
        let code = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(code)) => *code,
            (ErrorSource::Downstream, ErrorType::ReadTimedout) => 408,
            (
                ErrorSource::Downstream,
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
            ) => 0,
            (ErrorSource::Downstream, _) => 400,
            (
                _,
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
            ) => 504,
            _ => 502,
        };
        if code >= 500 {
            self.metrics.upstream_errors.inc();
            ctx.outcome = Outcome::UpstreamError;
        }
        if code > 0 {
            let message = match code {
                504 => "upstream timed out",
                502 => "upstream unreachable or failed",
                408 => "request timed out",
                _ => "bad request",
            };
            let req_id = ctx.req_id().to_string();
            log::warn!("{req_id} proxy error {code}: {e}");
            let body = error_json(code, message, &req_id, None);
            let _ = write_json(session, code, body, &req_id, &[]).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        resp.insert_header(request_id::HEADER, ctx.req_id())?;
        Ok(())
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        self.metrics.count_request(ctx.outcome);
        if let (Some(pool), Some(picked)) = (&ctx.pool, &ctx.picked) {
            pool.release(picked);
        }
        if ctx.policy.access_log.is_on() {
            Self::log_access(session, ctx);
        }
    }
}
