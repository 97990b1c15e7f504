//! The admin listener, for operators and orchestrators:
//! - `GET /healthz` liveness: 200 while the process serves.
//! - `GET /readyz`  readiness: 200 when the store answers, else 503.
//! - `GET /metrics` Prometheus text exposition.
//! - `POST /reload` with the admin key: reloads the config file (`reload.rs`).
//! - `GET /openapi.json` the OpenAPI 3.1 document of the management API
//!   (`docs/openapi.json`, built in). Here rather than on the proxy
//!   listener, whose paths belong to the upstream.
//! - The management API itself, as on the proxy listener (one `Api`, one
//!   lockout), so that the console calls it on its own origin.
//! - The operator console under `admin.console.path` (`console.rs`).

use crate::access_log::{self, AccessRecord};
use crate::api::{Api, ApiRequest, ApiResponse, Site};
use crate::metrics::Metrics;
use crate::proxy::policy::Policy;
use crate::proxy::{client_ip_of, is_tls, read_body, BodyRead, MAX_MANAGEMENT_BODY};
use crate::reload::Reloader;
use crate::store::Store;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::Registry;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The document is compiled in, so the served copy is always the one of this build.
const OPENAPI: &[u8] = include_bytes!("../docs/openapi.json");

pub struct AdminApp {
    pub store: Arc<dyn Store>,
    pub registry: Registry,
    pub reloader: Arc<Reloader>,
    pub api: Arc<Api>,
    pub metrics: Arc<Metrics>,
    /// The configuration in force, for its audit log and timeouts.
    pub live: Arc<ArcSwap<Policy>>,
    /// `admin.console.path`, or None when the console is off.
    pub console: Option<String>,
}

impl AdminApp {
    /// `POST /reload`: the admin key's way to reload the config file,
    /// under the management API's lockout.
    fn reload(&self, session: &ServerSession) -> Response<Vec<u8>> {
        let h = session.req_header();
        if h.method != http::Method::POST {
            return reply(
                405,
                "application/json",
                br#"{"status":"method not allowed; use POST"}"#.to_vec(),
            );
        }
        let authorization = h
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let req_id = crate::request_id::of_request(&h.headers);
        // A page of another origin may post a form here without asking.
        let tls = is_tls(session);
        if let Some(why) = Site::of_request(h, tls).refusal() {
            return error_reply(403, &why, &req_id);
        }
        if let Err(refused) = self.api.admin_key_attempt(
            authorization,
            self.client_ip(session),
            self.store.now(),
            &req_id,
        ) {
            return json_reply(refused, &req_id);
        }
        match self.reloader.reload() {
            Ok(()) => reply(
                200,
                "application/json",
                br#"{"status":"reloaded"}"#.to_vec(),
            ),
            Err(problems) => reply(
                422,
                "application/json",
                serde_json::json!({"status": "refused", "errors": problems})
                    .to_string()
                    .into_bytes(),
            ),
        }
    }
}

impl AdminApp {
    /// The console, the management API and `/reload` answer only under an
    /// address, `localhost` or a name in `admin.allowed_hosts`, whoever
    /// calls: a page rebound to this listener (DNS rebinding) sends neither
    /// `Origin` nor `Sec-Fetch-Site` on a same-origin GET over http, so the
    /// Host is all that tells it from the operator. Health, readiness,
    /// metrics and the OpenAPI document, which need no credential and hold
    /// none, answer under any name (probes and scrapers use many).
    fn refused_host(&self, session: &ServerSession, path: &str) -> Option<Response<Vec<u8>>> {
        let guarded = path == "/reload"
            || Api::is_management_path(path)
            || self
                .console
                .as_deref()
                .is_some_and(|c| path.starts_with(c.trim_end_matches('/')));
        if !guarded {
            return None;
        }
        let h = session.req_header();
        let authority = crate::api::request_authority(h);
        let why = crate::api::unlisted_host(authority, &self.live.load().cfg.allowed_hosts)?;
        let req_id = crate::request_id::of_request(&h.headers);
        let mut resp = error_reply(403, &why, &req_id);
        resp.headers_mut().insert(
            "x-content-type-options",
            http::HeaderValue::from_static("nosniff"),
        );
        Some(resp)
    }

    fn client_ip(&self, session: &ServerSession) -> IpAddr {
        client_ip_of(session, &self.live.load().cfg.trusted_proxies)
    }

    /// A management API call, answered as the proxy listener answers it.
    async fn management(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let started = std::time::Instant::now();
        let resp = self.management_answer(session).await;
        let h = session.req_header();
        let req_id = resp
            .headers()
            .get(crate::request_id::HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // One access record per request, as on the proxy listener.
        self.live.load().access_log.write(&AccessRecord {
            time: access_log::now_rfc3339(),
            log: "access",
            req_id,
            method: h.method.as_str(),
            path: access_log::redact_target(h.raw_path()),
            client_ip: self.client_ip(session).to_string(),
            identity_id: None,
            identity_name: None,
            token_id: None,
            project: None,
            outcome: crate::metrics::Outcome::Management.label(),
            reason: None,
            status: resp.status().as_u16(),
            upstream_status: None,
            request_bytes: session.body_bytes_read(),
            response_bytes: resp.body().len(),
            duration_ms: access_log::millis(started.elapsed()),
            upstream_ms: None,
        });
        resp
    }

    async fn management_answer(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req_id = crate::request_id::of_request(&session.req_header().headers);
        let client_ip = self.client_ip(session);
        // A locked-out address is refused before its body is waited for.
        if let Some(resp) = self.api.locked_out(client_ip, self.store.now(), &req_id) {
            return json_reply(resp, &req_id);
        }
        let p = self.live.load_full();
        let deadline = Duration::from_secs(p.cfg.header_timeout_seconds);
        let body = match read_body(session, MAX_MANAGEMENT_BODY, deadline).await {
            BodyRead::Complete(body) => body,
            BodyRead::Refused(status, why) => return error_reply(status, why, &req_id),
        };
        let tls = is_tls(session);
        let h = session.req_header();
        let req = ApiRequest {
            method: h.method.as_str(),
            path: h.uri.path(),
            query: h.uri.query(),
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
        self.metrics
            .count_request(crate::metrics::Outcome::Management);
        log::info!(
            "{req_id} {} {} -> {} (admin listener)",
            req.method,
            req.path,
            resp.status
        );
        json_reply(resp, &req_id)
    }
}

/// Whether the client asked for its connection to close after this answer.
fn wants_close(h: &pingora::http::RequestHeader) -> bool {
    let says = |word: &str| {
        h.headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(word))
    };
    says("close") || (h.version <= http::Version::HTTP_10 && !says("keep-alive"))
}

/// A refusal in Infisical's error shape, with the request id.
fn error_reply(status: u16, why: &str, req_id: &str) -> Response<Vec<u8>> {
    let body = crate::error::error_json(status, why, req_id, None);
    let mut resp = reply(status, "application/json", body);
    insert_request_id(&mut resp, req_id);
    resp
}

fn json_reply(resp: ApiResponse, req_id: &str) -> Response<Vec<u8>> {
    let mut out = reply(resp.status, "application/json", resp.body);
    for (name, value) in resp.headers {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            out.headers_mut().insert(name, v);
        }
    }
    insert_request_id(&mut out, req_id);
    out
}

fn insert_request_id(resp: &mut Response<Vec<u8>>, req_id: &str) {
    if let Ok(v) = http::HeaderValue::from_str(req_id) {
        resp.headers_mut().insert(crate::request_id::HEADER, v);
    }
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // Pingora's HTTP app keeps every connection alive; HTTP/1.0 without
        // keep-alive, or `Connection: close`, asks for the opposite.
        if wants_close(session.req_header()) {
            session.set_keepalive(None);
        }
        let path = session.req_header().uri.path().to_string();
        if let Some(refused) = self.refused_host(session, &path) {
            return refused;
        }
        if let Some(prefix) = &self.console {
            let method = &session.req_header().method;
            if let Some(resp) = crate::console::serve(prefix, method, &path) {
                return resp;
            }
        }
        if Api::is_management_path(&path) {
            return self.management(session).await;
        }
        match path.as_str() {
            "/healthz" => reply(200, "application/json", br#"{"status":"ok"}"#.to_vec()),
            "/readyz" => match self.store.ping().await {
                Ok(()) => reply(200, "application/json", br#"{"status":"ready"}"#.to_vec()),
                Err(e) => {
                    log::warn!("readiness: {e}");
                    reply(
                        503,
                        "application/json",
                        br#"{"status":"store unavailable"}"#.to_vec(),
                    )
                }
            },
            "/reload" => self.reload(session),
            "/metrics" => reply(
                200,
                "text/plain; version=0.0.4",
                crate::metrics::render(&self.registry).into_bytes(),
            ),
            "/openapi.json" => reply(200, "application/json", OPENAPI.to_vec()),
            _ => reply(
                404,
                "application/json",
                br#"{"status":"not found"}"#.to_vec(),
            ),
        }
    }
}
