//! `Policy`: what the request path derives from one configuration (routes,
//! the upstream and its address, project rules, header names, trusted
//! proxies, the access and audit logs). A reload builds a new one and swaps
//! it in; a request keeps the one it started with to its end.

use super::headers::Injected;
use super::project::ProjectRules;
use crate::access_log::AccessLog;
use crate::audit::AuditLog;
use crate::config::Config;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct Policy {
    pub cfg: Arc<Config>,
    /// Resolved when the policy is built: Pingora's own resolution blocks
    /// and panics.
    pub upstream: SocketAddr,
    /// The Host header sent upstream: the upstream's own authority, as nginx
    /// does by default, so virtual hosts and TLS front ends route correctly.
    pub upstream_host: http::HeaderValue,
    pub injected: Injected,
    pub projects: ProjectRules,
    pub access_log: Arc<AccessLog>,
    pub audit: Arc<AuditLog>,
}

impl Policy {
    pub fn new(
        cfg: Arc<Config>,
        upstream: SocketAddr,
        access_log: Arc<AccessLog>,
        audit: Arc<AuditLog>,
    ) -> Policy {
        let u = &cfg.upstream;
        let default_port = if u.tls { 443 } else { 80 };
        let host = if u.host.contains(':') {
            format!("[{}]", u.host)
        } else {
            u.host.clone()
        };
        let authority = if u.port == default_port {
            host
        } else {
            format!("{host}:{}", u.port)
        };
        let upstream_host = http::HeaderValue::from_str(&authority)
            .unwrap_or_else(|_| http::HeaderValue::from_static("localhost"));
        Policy {
            injected: Injected::new(&cfg.headers),
            projects: ProjectRules::new(&cfg.project_sources),
            cfg,
            upstream,
            upstream_host,
            access_log,
            audit,
        }
    }
}
