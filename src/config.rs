//! Configuration: the YAML file model (serde, unknown keys refused) and its
//! validation into a `Config`, naming the key path of every problem. The only
//! module that parses YAML.
//!
//! `config/file.rs` is the file model; each section's validation has a
//! module of its own (`server`, `admin`, `tls`, `upstreams`, `store`,
//! `project`, `routes`, `headers`, `forward_auth`, `logs`), and `fixed` names
//! what a reload may not change. This module holds the validated types, the
//! entry points and the collector of problems.

mod admin;
mod file;
mod fixed;
mod forward_auth;
mod headers;
mod logs;
mod project;
mod routes;
mod server;
mod store;
mod tls;
mod upstreams;

pub use fixed::fixed_keys_changed;
pub use tls::{check_name, CertificateFiles, TlsConfig};
pub use upstreams::{HealthCheck, Selection, UpstreamPool};

use crate::routes::Routes;
use file::File;
use ipnet::IpNet;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The validated configuration the gateway runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// Plain HTTP proxy listeners.
    pub listen: Vec<SocketAddr>,
    /// TLS proxy listeners (`server.tls.listen`), all with `tls`.
    pub tls_listen: Vec<SocketAddr>,
    /// `server.tls`; set exactly when `tls_listen` is not empty.
    pub tls: Option<TlsConfig>,
    pub threads: usize,
    pub grace_period_seconds: u64,
    /// How long an idle keep-alive client connection stays open.
    pub keepalive_timeout_seconds: u64,
    /// How long a client has to send a whole request header.
    pub header_timeout_seconds: u64,
    /// Client connections open at once on the proxy listeners.
    pub max_connections: usize,
    /// Where a new process started with `serve --upgrade` receives the
    /// listening sockets of the running one.
    pub upgrade_socket: PathBuf,
    pub admin_listen: Option<SocketAddr>,
    /// `admin.tls`: the admin listener speaks TLS only.
    pub admin_tls: Option<TlsConfig>,
    pub admin_key_env: Option<String>,
    /// `admin.lockout`: addresses that keep failing management authentication.
    pub lockout: crate::lockout::LockoutConfig,
    pub admin_key_file: Option<PathBuf>,
    /// `admin.console`: the path the operator console is served under on the
    /// admin listener (`console.rs`), or `None` when it is off.
    pub console: Option<String>,
    /// `admin.allowed_hosts`: host names (lowercase) a browser may call the
    /// management API by, besides IP addresses and `localhost`.
    pub allowed_hosts: Vec<String>,
    /// The default upstream: routes that name none send here.
    pub upstream: Upstream,
    /// Named upstreams (`upstreams`), for routes that name one.
    pub upstreams: Vec<UpstreamPool>,
    pub store: StoreConfig,
    pub trusted_proxies: Vec<IpNet>,
    /// Per-path policy: public or token, project required, bodies read.
    pub routes: Routes,
    pub project_sources: Vec<ProjectSource>,
    pub max_body_bytes: usize,
    pub headers: HeaderNames,
    pub forward_authorization: bool,
    /// `forward_auth`: where other gateways ask whether a request may pass,
    /// and how they describe it (`proxy::forward_auth`); `None` turns
    /// forward-auth mode off.
    pub forward_auth: Option<ForwardAuth>,
    /// Process logs (`log`).
    pub log: LogConfig,
    /// One JSON line per proxied request (`access_log`).
    pub access_log: AccessLogConfig,
    /// One JSON line per management change (`audit`).
    pub audit: AuditConfig,
}

/// `forward_auth`: the endpoint, and the one way the calling gateway
/// describes the original request there. Fixed, never guessed per request:
/// a client must not be able to pick the way its request is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuth {
    pub path: String,
    pub describe: Describe,
}

/// How a calling gateway describes the original request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Describe {
    /// The original path and query after the endpoint, with the original
    /// method and Host as the subrequest's own (nginx, Envoy).
    Path,
    /// At the endpoint itself, in X-Forwarded-Method, -Uri and -Host (or
    /// X-Original-*) that the calling gateway sets (Traefik, Caddy).
    Headers,
}

/// `access_log`: where request records go, and how many may wait for the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub destination: Destination,
    /// Records waiting for the writer; past it new ones are dropped and counted.
    pub queue: usize,
}

/// `audit`: where management change records go, and whether a change that
/// cannot be recorded is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    pub destination: Destination,
    /// Refuse a change (503) whose record cannot be written, as Vault does.
    pub required: bool,
}

/// Where a record log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Off,
    Stdout,
    /// Appended to; reopened on SIGHUP or SIGUSR1 (after logrotate moved it).
    File(PathBuf),
}

/// `log`: how the process log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// One JSON object per line instead of text.
    pub json: bool,
    /// env_logger directives (`info`, `warn,tokengate=debug`); `RUST_LOG`
    /// wins when it is set.
    pub level: String,
}

/// Where requests are forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub sni: String,
    pub tls_verify: bool,
    /// PEM file of the CAs that sign the upstream's certificate; the system's
    /// roots when unset.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout_ms: u64,
    pub read_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    Embedded {
        path: PathBuf,
    },
    Redis {
        /// One URL, or the seed nodes of a cluster, or the environment
        /// variable that holds them.
        urls: RedisUrls,
        cluster: bool,
        connect_timeout_ms: u64,
        response_timeout_ms: u64,
        retries: usize,
        /// The near cache (`store.cache`); `None` when it is off.
        cache: Option<NearCacheConfig>,
    },
}

/// Where a Redis store's URLs come from. A URL may carry a password, so it
/// can be left out of the file and read from the environment instead, when
/// the store is opened: the validated `Config` then holds only the
/// variable's name, and nothing that logs or compares configurations sees
/// the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisUrls {
    /// `store.url` or `store.nodes`, checked already.
    Listed(Vec<String>),
    /// `store.url_env` or `store.nodes_env`: the variable's name.
    Env(String),
}

/// Why the URLs of a `url_env` or `nodes_env` store cannot be had. The
/// message names the key and the variable, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisUrlsError {
    /// The variable is missing or empty here.
    #[error("{0}")]
    Unset(String),
    /// The variable is set but does not hold what the store kind needs.
    #[error("{0}")]
    Invalid(String),
}

/// `store.cache`: each gateway's copy of the records requests need, kept
/// coherent by Redis (see `store/redis/cache.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearCacheConfig {
    /// The oldest an entry may be before it is read from Redis again, even
    /// with no invalidation: a backstop, not the coherence mechanism.
    pub max_age_seconds: u64,
    /// The most identities held; past it, new entries are not cached.
    pub max_identities: usize,
}

/// One way of finding the project a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectSource {
    /// A path template: `/api/*/projects/{projectId}`.
    Path(Vec<TemplateSegment>),
    Query(String),
    Header(String),
    Body(String),
}

/// One segment of a project path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSegment {
    Literal(String),
    /// `*`: any one segment (an API version, say).
    Any,
    /// `{projectId}`.
    Project,
}

/// Names of the injected headers (lowercase).
#[derive(Debug, Clone)]
pub struct HeaderNames {
    pub identity_id: String,
    pub identity_name: String,
    pub org_role: String,
    pub token_id: String,
    pub project_id: String,
    pub project_role: String,
    /// The client address tokengate resolved (peer or trusted X-Forwarded-For).
    pub client_ip: String,
}

impl HeaderNames {
    pub fn all(&self) -> [&str; 7] {
        [
            &self.identity_id,
            &self.identity_name,
            &self.org_role,
            &self.token_id,
            &self.project_id,
            &self.project_role,
            &self.client_ip,
        ]
    }
}

// ---- validation ----

/// Every problem found in a configuration, one line each, naming the key path.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

/// Parses and validates YAML text. Does no I/O.
pub fn parse(yaml: &str) -> Result<Config, ConfigError> {
    let file: File = serde_yaml::from_str(yaml).map_err(|e| ConfigError(vec![e.to_string()]))?;
    validate(file)
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(vec![format!("cannot read {}: {e}", path.display())]))?;
    parse(&text)
}

pub(crate) struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: &str, msg: impl std::fmt::Display) {
        self.0.push(format!("{key}: {msg}"));
    }

    fn range(&mut self, key: &str, v: i64, lo: i64, hi: i64) -> u64 {
        if v < lo || v > hi {
            self.add(key, format!("{v} is out of range ({lo} to {hi})"));
            return lo.max(0) as u64;
        }
        v as u64
    }

    fn addr(&mut self, key: &str, s: &str) -> Option<SocketAddr> {
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.add(key, format!("'{s}' is not an ip:port address"));
                None
            }
        }
    }

    fn header(&mut self, key: &str, s: &str) -> String {
        let lower = s.to_ascii_lowercase();
        if lower.is_empty() || http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            self.add(key, format!("'{s}' is not a valid header name"));
        }
        lower
    }
}

/// Whether `name` can name an environment variable; records a problem if not.
fn env_name(p: &mut Problems, key: &str, name: &str) -> bool {
    let ok = !name.is_empty() && !name.contains('=') && !name.contains('\0');
    if !ok {
        p.add(key, format!("'{name}' is not an environment variable name"));
    }
    ok
}

fn validate(f: File) -> Result<Config, ConfigError> {
    let mut p = Problems(Vec::new());

    // Each section records its problems in the order of the file's keys,
    // as they have always been listed.
    let server = server::validate(&mut p, &f.server);
    let (admin_listen, admin_tls) =
        admin::validate_listener(&mut p, &f.admin, &server.listen, &server.tls_listen);

    let upstream = upstreams::validate_upstream(&mut p, &f.upstream);
    let upstreams = upstreams::validate_upstreams(&mut p, &f.upstreams);
    let store = store::validate_store(&mut p, &f.store);

    let trusted_proxies = f
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match crate::model::parse_trusted_ip(s) {
            Ok(n) => Some(n),
            Err(_) => {
                p.add(
                    &format!("trusted_proxies[{i}]"),
                    format!("'{s}' is not an IP address or CIDR block"),
                );
                None
            }
        })
        .collect();

    let (project_sources, max_body_bytes) = project::validate(&mut p, &f.project);
    let routes = routes::validate_routes(&mut p, &f, !project_sources.is_empty());
    let headers = headers::validate(&mut p, &f.headers);

    let forward_auth = f
        .forward_auth
        .as_ref()
        .and_then(|fa| forward_auth::validate_forward_auth(&mut p, fa));
    let log = logs::validate_log(&mut p, &f.log);
    let access_log = logs::validate_access_log(&mut p, &f.access_log);
    let audit = logs::validate_audit(&mut p, &f.audit);
    let console = admin::validate_console(&mut p, &f.admin.console, admin_listen.is_some());
    let allowed_hosts = admin::validate_allowed_hosts(&mut p, &f.admin.allowed_hosts);
    let lockout = admin::lockout(&mut p, &f.admin.lockout);

    // A missing upstream or store always comes with a recorded problem.
    let (Some(upstream), Some(store), true) = (upstream, store, p.0.is_empty()) else {
        return Err(ConfigError(p.0));
    };
    Ok(Config {
        listen: server.listen,
        tls_listen: server.tls_listen,
        tls: server.tls,
        threads: server.threads,
        grace_period_seconds: server.grace_period_seconds,
        keepalive_timeout_seconds: server.keepalive_timeout_seconds,
        header_timeout_seconds: server.header_timeout_seconds,
        max_connections: server.max_connections,
        upgrade_socket: server.upgrade_socket,
        admin_listen,
        admin_tls,
        admin_key_env: f.admin.api_key_env.clone(),
        lockout,
        admin_key_file: f.admin.api_key_file.clone(),
        console,
        allowed_hosts,
        upstream,
        upstreams,
        store,
        trusted_proxies,
        routes,
        project_sources,
        max_body_bytes,
        headers,
        forward_authorization: f.headers.forward_authorization,
        forward_auth,
        log,
        access_log,
        audit,
    })
}

/// Reads the management API admin key from the configured environment
/// variable or file (never from the YAML). Empty values count as unset.
pub fn read_admin_key(cfg: &Config) -> Result<Option<String>, String> {
    if let Some(path) = &cfg.admin_key_file {
        let key = std::fs::read_to_string(path)
            .map_err(|e| format!("admin.api_key_file: cannot read {}: {e}", path.display()))?;
        let key = key.trim().to_string();
        if key.len() < 16 {
            return Err("admin.api_key_file: the key must be at least 16 characters".into());
        }
        return Ok(Some(key));
    }
    if let Some(var) = &cfg.admin_key_env {
        if let Ok(key) = std::env::var(var) {
            let key = key.trim().to_string();
            if key.is_empty() {
                return Ok(None);
            }
            if key.len() < 16 {
                return Err(format!(
                    "admin key from ${var} must be at least 16 characters"
                ));
            }
            return Ok(Some(key));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
