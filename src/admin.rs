//! The admin listener, for operators and orchestrators:
//! - `GET /healthz` liveness: 200 while the process serves.
//! - `GET /readyz`  readiness: 200 when the store answers, else 503.
//! - `GET /metrics` Prometheus text exposition.
//! - `POST /reload` with the admin key: reloads the config file (`reload.rs`).
//! - `GET /openapi.json` the OpenAPI 3.1 document of the management API
//!   (`docs/openapi.json`, built in). Here rather than on the proxy
//!   listener, whose paths belong to the upstream.

use crate::reload::Reloader;
use crate::store::Store;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::Registry;
use std::sync::Arc;

/// The document is compiled in, so the served copy is always the one of this build.
const OPENAPI: &[u8] = include_bytes!("../docs/openapi.json");

pub struct AdminApp {
    pub store: Arc<dyn Store>,
    pub registry: Registry,
    pub reloader: Arc<Reloader>,
    /// `POST /reload` needs the admin key; none configured, no reload by call.
    pub admin_key_hash: Option<[u8; 32]>,
}

impl AdminApp {
    /// `POST /reload`: the admin key's way to reload the config file.
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
        if !crate::api::is_admin_key(self.admin_key_hash.as_ref(), authorization) {
            return reply(
                401,
                "application/json",
                br#"{"status":"reloading needs 'Authorization: Bearer <admin key>'"}"#.to_vec(),
            );
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
        let path = session.req_header().uri.path().to_string();
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
