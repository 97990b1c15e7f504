//! Configuration: the YAML file model (serde, unknown keys refused) and its
//! validation into a `Config`, naming the key path of every problem. The only
//! module that parses YAML.

mod tls;
mod upstreams;

pub use tls::{check_name, CertificateFiles, TlsConfig};
pub use upstreams::{HealthCheck, Selection, UpstreamPool};

use crate::rate_limit::{Field as RateLimitField, Per, RateLimit};
use crate::routes::{Auth, BodyRule, ProjectRule, Requirements, Route, Routes};
use ipnet::IpNet;
use serde::Deserialize;
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

impl RedisUrls {
    /// The URLs to connect to. For `Env`, reads the variable now: one URL
    /// for kind redis, a comma-separated list of seed nodes for a cluster.
    pub fn resolve(&self, cluster: bool) -> Result<Vec<String>, RedisUrlsError> {
        self.resolve_with(cluster, |var| std::env::var(var).ok())
    }

    /// [`RedisUrls::resolve`] with `lookup` standing in for the environment.
    fn resolve_with(
        &self,
        cluster: bool,
        lookup: impl FnOnce(&str) -> Option<String>,
    ) -> Result<Vec<String>, RedisUrlsError> {
        let var = match self {
            RedisUrls::Listed(urls) => return Ok(urls.clone()),
            RedisUrls::Env(var) => var,
        };
        let key = if cluster {
            "store.nodes_env"
        } else {
            "store.url_env"
        };
        let value = lookup(var).unwrap_or_default();
        if value.trim().is_empty() {
            return Err(RedisUrlsError::Unset(format!(
                "{key}: the environment variable {var} is not set (or empty); it must hold {}",
                if cluster {
                    "the cluster's seed node URLs, comma-separated"
                } else {
                    "the Redis URL (redis://...)"
                }
            )));
        }
        let urls: Vec<String> = if cluster {
            value
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect()
        } else {
            vec![value.trim().to_string()]
        };
        if urls.is_empty() {
            return Err(RedisUrlsError::Invalid(format!(
                "{key}: the environment variable {var} holds no node URL"
            )));
        }
        for (i, url) in urls.iter().enumerate() {
            if let Some(problem) = redis_url_problem(url) {
                // The value itself stays out of the message: it may hold a password.
                let which = if cluster {
                    format!("{var} (node {})", i + 1)
                } else {
                    var.clone()
                };
                return Err(RedisUrlsError::Invalid(format!(
                    "{key}: the environment variable {which} {problem}"
                )));
            }
        }
        Ok(urls)
    }
}

/// What is wrong with a Redis URL, without repeating it; `None` when it is
/// a redis:// URL with a host.
fn redis_url_problem(url: &str) -> Option<&'static str> {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "redis" && u.host_str().is_some() => None,
        // Refused here rather than failing every request later: the Redis
        // client is built without TLS.
        Ok(u) if u.scheme() == "rediss" => {
            Some("is rediss:// (TLS to Redis), not supported yet; use redis://")
        }
        _ => Some("is not a redis:// URL"),
    }
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

// ---- the file model ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    server: ServerFile,
    #[serde(default)]
    admin: AdminFile,
    upstream: UpstreamFile,
    #[serde(default)]
    upstreams: std::collections::BTreeMap<String, upstreams::PoolFile>,
    #[serde(default)]
    store: StoreFile,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    public_routes: Vec<String>,
    routes: Option<Vec<RouteFile>>,
    #[serde(default)]
    project: ProjectFile,
    #[serde(default)]
    headers: HeadersFile,
    #[serde(default)]
    log: LogFile,
    #[serde(default)]
    access_log: RecordLogFile,
    #[serde(default)]
    audit: RecordLogFile,
    forward_auth: Option<ForwardAuthFile>,
}

/// `forward_auth`: the endpoint other gateways ask (README, "Using tokengate
/// as a plugin for your gateway").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardAuthFile {
    path: String,
    describe: Option<String>,
}

/// `access_log` and `audit` share a shape; `queue` is the access log's,
/// `required` the audit log's.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RecordLogFile {
    destination: Option<String>,
    path: Option<PathBuf>,
    queue: Option<i64>,
    required: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogFile {
    #[serde(default = "default_log_format")]
    format: String,
    #[serde(default = "default_log_level")]
    level: String,
}

impl Default for LogFile {
    fn default() -> Self {
        LogFile {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

fn default_log_format() -> String {
    "text".into()
}
fn default_log_level() -> String {
    "info".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    #[serde(default)]
    listen: Vec<String>,
    tls: Option<tls::TlsFile>,
    #[serde(default = "default_threads")]
    threads: i64,
    #[serde(default = "default_grace")]
    grace_period_seconds: i64,
    #[serde(default = "default_keepalive")]
    keepalive_timeout_seconds: i64,
    #[serde(default = "default_header_timeout")]
    header_timeout_seconds: i64,
    #[serde(default = "default_max_connections")]
    max_connections: i64,
    upgrade_socket: Option<PathBuf>,
}

/// nginx's `keepalive_timeout`: long enough for a client's next request,
/// short enough that a fleet of quiet agents does not hold sockets forever.
fn default_keepalive() -> i64 {
    75
}
/// nginx's `client_header_timeout`.
fn default_header_timeout() -> i64 {
    60
}
/// Far above what a gateway expects and below what the memory of a small
/// machine can hold; each idle connection costs a few KiB.
fn default_max_connections() -> i64 {
    50_000
}

fn default_threads() -> i64 {
    2
}
fn default_grace() -> i64 {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    listen: Option<String>,
    #[serde(default = "default_key_env")]
    api_key_env: Option<String>,
    api_key_file: Option<PathBuf>,
    tls: Option<tls::TlsFile>,
    #[serde(default)]
    lockout: LockoutFile,
    #[serde(default)]
    console: ConsoleFile,
    #[serde(default)]
    allowed_hosts: Vec<String>,
}

/// `admin.console`: the operator console on the admin listener.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleFile {
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default = "default_console_path")]
    path: String,
}

impl Default for ConsoleFile {
    fn default() -> Self {
        ConsoleFile {
            enabled: true,
            path: default_console_path(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_console_path() -> String {
    "/ui/".into()
}

/// `admin.lockout`: failed management authentications from one address.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockoutFile {
    #[serde(default = "default_lockout_threshold")]
    threshold: i64,
    #[serde(default = "default_lockout_seconds")]
    window_seconds: i64,
    #[serde(default = "default_lockout_seconds")]
    duration_seconds: i64,
}

impl Default for LockoutFile {
    fn default() -> Self {
        LockoutFile {
            threshold: default_lockout_threshold(),
            window_seconds: default_lockout_seconds(),
            duration_seconds: default_lockout_seconds(),
        }
    }
}

/// Ten failures within five minutes lock an address for five minutes.
fn default_lockout_threshold() -> i64 {
    10
}
fn default_lockout_seconds() -> i64 {
    300
}

impl Default for AdminFile {
    fn default() -> Self {
        AdminFile {
            listen: None,
            api_key_env: default_key_env(),
            api_key_file: None,
            tls: None,
            lockout: LockoutFile::default(),
            console: ConsoleFile::default(),
            allowed_hosts: Vec::new(),
        }
    }
}

fn default_key_env() -> Option<String> {
    Some("TOKENGATE_ADMIN_KEY".into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamFile {
    url: String,
    #[serde(default = "yes")]
    tls_verify: bool,
    sni: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default = "default_connect")]
    connect_timeout_ms: i64,
    #[serde(default = "default_read")]
    read_timeout_ms: i64,
}

fn yes() -> bool {
    true
}
fn default_connect() -> i64 {
    2000
}
fn default_read() -> i64 {
    30000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    #[serde(default = "default_kind")]
    kind: String,
    path: Option<PathBuf>,
    url: Option<String>,
    url_env: Option<String>,
    nodes: Option<Vec<String>>,
    nodes_env: Option<String>,
    #[serde(default = "default_store_timeout")]
    connect_timeout_ms: i64,
    #[serde(default = "default_store_timeout")]
    response_timeout_ms: i64,
    #[serde(default = "default_retries")]
    retries: i64,
    cache: Option<CacheFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheFile {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default = "default_cache_age")]
    max_age_seconds: i64,
    #[serde(default = "default_cache_identities")]
    max_identities: i64,
}

fn default_cache_age() -> i64 {
    60
}
fn default_cache_identities() -> i64 {
    100_000
}

impl Default for StoreFile {
    fn default() -> Self {
        StoreFile {
            kind: default_kind(),
            path: None,
            url: None,
            url_env: None,
            nodes: None,
            nodes_env: None,
            connect_timeout_ms: default_store_timeout(),
            response_timeout_ms: default_store_timeout(),
            retries: default_retries(),
            cache: None,
        }
    }
}

fn default_kind() -> String {
    "embedded".into()
}
fn default_store_timeout() -> i64 {
    1000
}
fn default_retries() -> i64 {
    2
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectFile {
    #[serde(default = "default_sources")]
    sources: Vec<SourceFile>,
    #[serde(default = "default_body")]
    max_body_bytes: i64,
}

impl Default for ProjectFile {
    fn default() -> Self {
        ProjectFile {
            sources: default_sources(),
            max_body_bytes: default_body(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    path: String,
    host: Option<String>,
    upstream: Option<String>,
    auth: Option<String>,
    project: Option<String>,
    body: Option<String>,
    rate_limit: Option<RateLimitFile>,
    require: Option<RequireFile>,
}

/// `routes[].require`: roles, each one name or a list (any one will do),
/// and per-method overrides.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequireFile {
    org_role: Option<OneOrMany>,
    project_role: Option<OneOrMany>,
    #[serde(default)]
    methods: std::collections::BTreeMap<String, MethodRequireFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MethodRequireFile {
    org_role: Option<OneOrMany>,
    project_role: Option<OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Role names as `auth::Needs` takes them: comma-joined, each a slug.
fn roles(p: &mut Problems, key: &str, v: &Option<OneOrMany>) -> Option<String> {
    let list = match v.as_ref()? {
        OneOrMany::One(r) => vec![r.clone()],
        OneOrMany::Many(rs) => rs.clone(),
    };
    let slug = |r: &String| {
        !r.is_empty()
            && r.len() <= 64
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    if list.is_empty() || !list.iter().all(slug) {
        p.add(
            key,
            "is a role name or a list of them (lowercase letters, digits, '-', '_')",
        );
        return None;
    }
    Some(list.join(","))
}

fn validate_require(p: &mut Problems, key: &str, r: &RequireFile) -> Requirements {
    let mut methods = Vec::new();
    for (method, m) in &r.methods {
        let mk = format!("{key}.methods.{method}");
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            p.add(
                &mk,
                "a method is an uppercase HTTP method name (GET, DELETE, ...)",
            );
            continue;
        }
        methods.push((
            method.clone(),
            roles(p, &format!("{mk}.org_role"), &m.org_role),
            roles(p, &format!("{mk}.project_role"), &m.project_role),
        ));
    }
    Requirements {
        org_role: roles(p, &format!("{key}.org_role"), &r.org_role),
        project_role: roles(p, &format!("{key}.project_role"), &r.project_role),
        methods,
    }
}

/// `routes[].rate_limit`: `burst` defaults to `requests`, `per` to `identity`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFile {
    requests: i64,
    window_seconds: i64,
    burst: Option<i64>,
    per: Option<String>,
}

/// Infisical's project-scoped APIs, where a request must name its project.
/// The default when `routes` is left out and project sources are on.
fn default_routes() -> Vec<RouteFile> {
    [
        "/api/*/secrets",
        "/api/*/folders",
        "/api/*/secret-imports",
        "/api/*/dynamic-secrets",
        "/api/*/projects/*",
        "/api/*/workspace/*",
        "/api/*/workspaces/*",
    ]
    .iter()
    .map(|p| RouteFile {
        path: p.to_string(),
        host: None,
        upstream: None,
        auth: None,
        project: Some("required".into()),
        body: None,
        rate_limit: None,
        require: None,
    })
    .collect()
}

/// Where Infisical's APIs carry the project (by id, or by slug for the APIs
/// that take one). The default, so that leaving `project` out of a config
/// never silently turns membership checks off; `sources: []` does that
/// explicitly.
fn default_sources() -> Vec<SourceFile> {
    let src = |kind: &str, v: &str| SourceFile {
        path: (kind == "path").then(|| v.to_string()),
        query: (kind == "query").then(|| v.to_string()),
        header: (kind == "header").then(|| v.to_string()),
        body: (kind == "body").then(|| v.to_string()),
    };
    vec![
        src("path", "/api/*/projects/{projectId}"),
        src("path", "/api/*/project/{projectId}"),
        src("path", "/api/*/workspace/{projectId}"),
        src("path", "/api/*/workspaces/{projectId}"),
        src("query", "workspaceId"),
        src("query", "projectId"),
        src("query", "projectSlug"),
        src("query", "workspaceSlug"),
        src("header", "x-project-id"),
        src("body", "workspaceId"),
        src("body", "projectId"),
        src("body", "projectSlug"),
        src("body", "workspaceSlug"),
    ]
}

fn default_body() -> i64 {
    65536
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    path: Option<String>,
    query: Option<String>,
    header: Option<String>,
    body: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadersFile {
    #[serde(default = "h_identity_id")]
    identity_id: String,
    #[serde(default = "h_identity_name")]
    identity_name: String,
    #[serde(default = "h_org_role")]
    org_role: String,
    #[serde(default = "h_token_id")]
    token_id: String,
    #[serde(default = "h_project_id")]
    project_id: String,
    #[serde(default = "h_project_role")]
    project_role: String,
    #[serde(default = "h_client_ip")]
    client_ip: String,
    #[serde(default)]
    forward_authorization: bool,
}

impl Default for HeadersFile {
    fn default() -> Self {
        HeadersFile {
            identity_id: h_identity_id(),
            identity_name: h_identity_name(),
            org_role: h_org_role(),
            token_id: h_token_id(),
            project_id: h_project_id(),
            project_role: h_project_role(),
            client_ip: h_client_ip(),
            forward_authorization: false,
        }
    }
}

fn h_identity_id() -> String {
    "x-tokengate-identity-id".into()
}
fn h_identity_name() -> String {
    "x-tokengate-identity-name".into()
}
fn h_org_role() -> String {
    "x-tokengate-org-role".into()
}
fn h_token_id() -> String {
    "x-tokengate-token-id".into()
}
fn h_project_id() -> String {
    "x-tokengate-project-id".into()
}
fn h_client_ip() -> String {
    "x-tokengate-client-ip".into()
}
fn h_project_role() -> String {
    "x-tokengate-project-role".into()
}

// ---- validation ----

/// Every problem found in a configuration, one line each, naming the key path.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

/// The keys that differ between `old` and `new` but cannot change while
/// the gateway runs (a reload that changes them is refused): the listeners
/// and their limits are bound at start (and so is whether a listener speaks
/// TLS; its certificates, client CA and ALPN are reloaded), the store is
/// opened once, the admin key read once, and the CAs trusted for the
/// upstream are loaded into Pingora's connector at start.
pub fn fixed_keys_changed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |key, same: bool| {
        if !same {
            changed.push(key);
        }
    };
    check("server.listen", old.listen == new.listen);
    check("server.tls.listen", old.tls_listen == new.tls_listen);
    check("server.threads", old.threads == new.threads);
    check(
        "server.grace_period_seconds",
        old.grace_period_seconds == new.grace_period_seconds,
    );
    check(
        "server.header_timeout_seconds",
        old.header_timeout_seconds == new.header_timeout_seconds,
    );
    check(
        "server.max_connections",
        old.max_connections == new.max_connections,
    );
    check(
        "server.upgrade_socket",
        old.upgrade_socket == new.upgrade_socket,
    );
    check("admin.listen", old.admin_listen == new.admin_listen);
    check("admin.lockout", old.lockout == new.lockout);
    // A listener added or removed already says so.
    check(
        "admin.console",
        old.admin_listen != new.admin_listen || old.console == new.console,
    );
    check(
        "admin.tls (on or off)",
        old.admin_tls.is_some() == new.admin_tls.is_some(),
    );
    check(
        "admin.key_env / admin.key_file",
        old.admin_key_env == new.admin_key_env && old.admin_key_file == new.admin_key_file,
    );
    check("store", old.store == new.store);
    check(
        "upstream.ca_file",
        old.upstream.ca_file == new.upstream.ca_file,
    );
    changed
}

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

/// The forward-auth endpoint: a path of its own, which every server reads
/// alike, away from the management API (whose requests it would shadow).
fn validate_forward_auth(p: &mut Problems, f: &ForwardAuthFile) -> Option<ForwardAuth> {
    let describe = match f.describe.as_deref() {
        Some("path") => Describe::Path,
        Some("headers") => Describe::Headers,
        Some(other) => {
            p.add(
                "forward_auth.describe",
                format!("'{other}' is not path or headers"),
            );
            return None;
        }
        None => {
            p.add(
                "forward_auth.describe",
                "is required: path (nginx, Envoy: the original path after the endpoint) or headers (Traefik, Caddy: X-Forwarded-Method/-Uri/-Host)",
            );
            return None;
        }
    };
    let path = f.path.as_str();
    let key = "forward_auth.path";
    if !path.starts_with('/') || path.len() < 2 || path.ends_with('/') {
        p.add(
            key,
            "must be a path such as /_tokengate/auth (not / and no trailing /)",
        );
        return None;
    }
    if path.contains(['*', '?', '#', '{', '}']) {
        p.add(key, "must be a plain path: no *, ?, # or braces");
        return None;
    }
    if let Err(why) = crate::proxy::path::check(path) {
        p.add(key, why);
        return None;
    }
    if crate::api::Api::is_management_path(path) || path.starts_with("/api/") {
        p.add(
            key,
            "must not be under /api/, where the management API and the upstream's API live",
        );
        return None;
    }
    Some(ForwardAuth {
        path: path.to_string(),
        describe,
    })
}

fn validate(f: File) -> Result<Config, ConfigError> {
    let mut p = Problems(Vec::new());

    if f.server.listen.is_empty() && f.server.tls.is_none() {
        p.add(
            "server.listen",
            "at least one address is required (here or in server.tls.listen)",
        );
    }
    let listen: Vec<SocketAddr> = f
        .server
        .listen
        .iter()
        .enumerate()
        .filter_map(|(i, s)| p.addr(&format!("server.listen[{i}]"), s))
        .collect();
    let (tls_listen, tls) = tls::validate_server(&mut p, f.server.tls.as_ref());
    for (i, a) in tls_listen.iter().enumerate() {
        if listen.contains(a) || tls_listen[..i].contains(a) {
            p.add(
                &format!("server.tls.listen[{i}]"),
                format!("{a} is listed twice; a listener speaks TLS or plain HTTP"),
            );
        }
    }
    let threads = p.range("server.threads", f.server.threads, 1, 256) as usize;
    let grace = p.range(
        "server.grace_period_seconds",
        f.server.grace_period_seconds,
        0,
        3600,
    );
    let keepalive_timeout_seconds = p.range(
        "server.keepalive_timeout_seconds",
        f.server.keepalive_timeout_seconds,
        1,
        3600,
    );
    let header_timeout_seconds = p.range(
        "server.header_timeout_seconds",
        f.server.header_timeout_seconds,
        1,
        3600,
    );
    let max_connections = p.range(
        "server.max_connections",
        f.server.max_connections,
        1,
        1_000_000,
    ) as usize;
    let admin_listen = f
        .admin
        .listen
        .as_deref()
        .and_then(|s| p.addr("admin.listen", s));
    if let Some(a) = admin_listen.filter(|a| listen.contains(a) || tls_listen.contains(a)) {
        p.add(
            "admin.listen",
            format!("{a} is also a proxy listener; the admin listener needs its own address"),
        );
    }
    let admin_tls = tls::validate_admin(&mut p, f.admin.tls.as_ref(), admin_listen.is_some());
    if let Some(env) = &f.admin.api_key_env {
        env_name(&mut p, "admin.api_key_env", env);
    }

    let upstream = validate_upstream(&mut p, &f.upstream);
    let upstreams = upstreams::validate_upstreams(&mut p, &f.upstreams);
    let store = validate_store(&mut p, &f.store);

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

    let mut project_sources = Vec::new();
    for (i, s) in f.project.sources.iter().enumerate() {
        let key = format!("project.sources[{i}]");
        let set = [&s.path, &s.query, &s.header, &s.body]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if set != 1 {
            p.add(&key, "set exactly one of path, query, header, body");
            continue;
        }
        if let Some(t) = &s.path {
            match parse_path_template(t) {
                Ok(segs) => project_sources.push(ProjectSource::Path(segs)),
                Err(e) => p.add(&format!("{key}.path"), e),
            }
        } else if let Some(q) = &s.query {
            if q.is_empty() {
                p.add(&format!("{key}.query"), "must not be empty");
            }
            project_sources.push(ProjectSource::Query(q.clone()));
        } else if let Some(h) = &s.header {
            let h = p.header(&format!("{key}.header"), h);
            project_sources.push(ProjectSource::Header(h));
        } else if let Some(b) = &s.body {
            if b.is_empty() {
                p.add(&format!("{key}.body"), "must not be empty");
            }
            project_sources.push(ProjectSource::Body(b.clone()));
        }
    }
    let max_body_bytes =
        p.range("project.max_body_bytes", f.project.max_body_bytes, 1, 65536) as usize;
    let routes = validate_routes(&mut p, &f, !project_sources.is_empty());

    let h = &f.headers;
    let headers = HeaderNames {
        identity_id: p.header("headers.identity_id", &h.identity_id),
        identity_name: p.header("headers.identity_name", &h.identity_name),
        org_role: p.header("headers.org_role", &h.org_role),
        token_id: p.header("headers.token_id", &h.token_id),
        project_id: p.header("headers.project_id", &h.project_id),
        project_role: p.header("headers.project_role", &h.project_role),
        client_ip: p.header("headers.client_ip", &h.client_ip),
    };
    let names = headers.all();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            p.add("headers", format!("'{n}' is used for two headers"));
        }
        if matches!(
            *n,
            "authorization" | "host" | "content-length" | "transfer-encoding" | "connection"
        ) {
            p.add("headers", format!("'{n}' cannot be an injected header"));
        }
    }

    let forward_auth = f
        .forward_auth
        .as_ref()
        .and_then(|fa| validate_forward_auth(&mut p, fa));
    let log = validate_log(&mut p, &f.log);
    let access_log = validate_access_log(&mut p, &f.access_log);
    let audit = validate_audit(&mut p, &f.audit);
    let console = validate_console(&mut p, &f.admin.console, admin_listen.is_some());
    let allowed_hosts = validate_allowed_hosts(&mut p, &f.admin.allowed_hosts);

    // A missing upstream or store always comes with a recorded problem.
    let (Some(upstream), Some(store), true) = (upstream, store, p.0.is_empty()) else {
        return Err(ConfigError(p.0));
    };
    Ok(Config {
        listen,
        tls_listen,
        tls,
        threads,
        grace_period_seconds: grace,
        keepalive_timeout_seconds,
        header_timeout_seconds,
        max_connections,
        upgrade_socket: f
            .server
            .upgrade_socket
            .clone()
            // In the working directory (the gateway's state directory), not
            // /tmp: whoever binds this path first receives the listening
            // sockets at the next upgrade, so it must be where only the
            // gateway's user can write.
            .unwrap_or_else(|| PathBuf::from("tokengate-upgrade.sock")),
        admin_listen,
        admin_tls,
        admin_key_env: f.admin.api_key_env.clone(),
        lockout: crate::lockout::LockoutConfig {
            threshold: p.range(
                "admin.lockout.threshold",
                f.admin.lockout.threshold,
                0,
                1_000_000,
            ) as u32,
            window_ms: 1000
                * p.range(
                    "admin.lockout.window_seconds",
                    f.admin.lockout.window_seconds,
                    1,
                    86_400,
                ),
            duration_ms: 1000
                * p.range(
                    "admin.lockout.duration_seconds",
                    f.admin.lockout.duration_seconds,
                    1,
                    86_400,
                ),
        },
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
        forward_authorization: h.forward_authorization,
        forward_auth,
        log,
        access_log,
        audit,
    })
}

/// `destination` is off, stdout or file; `path` goes with file and only with it.
fn validate_destination(
    p: &mut Problems,
    key: &str,
    f: &RecordLogFile,
    default: &str,
) -> Destination {
    let d = match f.destination.as_deref().unwrap_or(default) {
        "off" => Destination::Off,
        "stdout" => Destination::Stdout,
        "file" => match &f.path {
            Some(path) if !path.as_os_str().is_empty() => Destination::File(path.clone()),
            _ => {
                p.add(&format!("{key}.path"), "is required with destination file");
                Destination::Off
            }
        },
        other => {
            p.add(
                &format!("{key}.destination"),
                format!("'{other}' is not off, stdout or file"),
            );
            Destination::Off
        }
    };
    if f.path.is_some() && !matches!(d, Destination::File(_)) {
        p.add(&format!("{key}.path"), "is only used with destination file");
    }
    d
}

/// Off unless configured: a busy gateway writes one line per request.
fn validate_access_log(p: &mut Problems, f: &RecordLogFile) -> AccessLogConfig {
    let destination = validate_destination(p, "access_log", f, "off");
    if f.required.is_some() {
        p.add("access_log.required", "is an audit setting");
    }
    let queue = p.range("access_log.queue", f.queue.unwrap_or(65_536), 1, 1 << 20) as usize;
    AccessLogConfig { destination, queue }
}

/// On (stdout) unless configured: changes are rare and each one matters.
fn validate_audit(p: &mut Problems, f: &RecordLogFile) -> AuditConfig {
    let destination = validate_destination(p, "audit", f, "stdout");
    if f.queue.is_some() {
        p.add(
            "audit.queue",
            "audit records are written before the change is answered",
        );
    }
    let required = f.required.unwrap_or(false);
    if required && destination == Destination::Off {
        p.add("audit.required", "needs a destination other than off");
    }
    AuditConfig {
        destination,
        required,
    }
}

/// `log.format` is text or json; `log.level` is env_logger directives, each
/// a level or `module=level`.
fn validate_log(p: &mut Problems, l: &LogFile) -> LogConfig {
    let json = match l.format.as_str() {
        "text" => false,
        "json" => true,
        other => {
            p.add("log.format", format!("'{other}' is not text or json"));
            false
        }
    };
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let valid = !l.level.is_empty()
        && l.level.split(',').all(|d| {
            let level = d.rsplit('=').next().unwrap_or("");
            let module_ok = d.split_once('=').is_none_or(|(m, _)| {
                !m.is_empty()
                    && m.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            });
            module_ok && LEVELS.contains(&level.to_ascii_lowercase().as_str())
        });
    if !valid {
        p.add(
            "log.level",
            format!(
                "'{}' is not a level (off, error, warn, info, debug, trace) or module=level list",
                l.level
            ),
        );
    }
    LogConfig {
        json,
        level: l.level.clone(),
    }
}

pub(crate) fn validate_upstream(p: &mut Problems, u: &UpstreamFile) -> Option<Upstream> {
    let connect = p.range(
        "upstream.connect_timeout_ms",
        u.connect_timeout_ms,
        1,
        600_000,
    );
    let read = p.range("upstream.read_timeout_ms", u.read_timeout_ms, 1, 3_600_000);
    let url = match url::Url::parse(&u.url) {
        Ok(url) => url,
        Err(e) => {
            // What comes before an `@` (user info) is not shown: it may be a password.
            let shown = match u.url.rsplit_once('@') {
                Some((_, host)) => format!("[REDACTED]@{host}"),
                None => u.url.clone(),
            };
            p.add("upstream.url", format!("'{shown}' is not a URL: {e}"));
            return None;
        }
    };
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        s => {
            p.add("upstream.url", format!("scheme '{s}' is not http or https"));
            return None;
        }
    };
    let Some(host) = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
    else {
        p.add("upstream.url", "has no host");
        return None;
    };
    if url.path() != "/" || url.query().is_some() {
        p.add(
            "upstream.url",
            "must not have a path or query (requests keep their own path)",
        );
    }
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    if u.ca_file.is_some() && !tls {
        p.add("upstream.ca_file", "only applies to an https:// upstream");
    }
    let sni = u.sni.clone().unwrap_or_else(|| host.clone());
    Some(Upstream {
        tls,
        host,
        port,
        sni,
        tls_verify: u.tls_verify,
        ca_file: u.ca_file.clone(),
        connect_timeout_ms: connect,
        read_timeout_ms: read,
    })
}

fn validate_store(p: &mut Problems, s: &StoreFile) -> Option<StoreConfig> {
    let connect = p.range("store.connect_timeout_ms", s.connect_timeout_ms, 1, 60_000);
    let response = p.range(
        "store.response_timeout_ms",
        s.response_timeout_ms,
        1,
        60_000,
    );
    let retries = p.range("store.retries", s.retries, 0, 10) as usize;
    match s.kind.as_str() {
        "embedded" => {
            for (key, given) in [
                ("store.url", s.url.is_some()),
                ("store.url_env", s.url_env.is_some()),
                ("store.nodes", s.nodes.is_some()),
                ("store.nodes_env", s.nodes_env.is_some()),
            ] {
                if given {
                    p.add(key, "only applies to kind: redis or redis-cluster");
                }
            }
            let path = s
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from("tokengate.redb"));
            if path.as_os_str().is_empty() {
                p.add("store.path", "must not be empty");
            }
            if s.cache.is_some() {
                p.add(
                    "store.cache",
                    "only applies to kind: redis or redis-cluster (the embedded store is in memory already)",
                );
            }
            Some(StoreConfig::Embedded { path })
        }
        "redis" | "redis-cluster" => {
            let cluster = s.kind == "redis-cluster";
            if s.path.is_some() {
                p.add("store.path", "only applies to kind: embedded");
            }
            let urls = validate_redis_urls(p, s, cluster);
            let cache = validate_cache(p, s.cache.as_ref());
            Some(StoreConfig::Redis {
                urls: urls?,
                cluster,
                connect_timeout_ms: connect,
                response_timeout_ms: response,
                retries,
                cache,
            })
        }
        k => {
            p.add(
                "store.kind",
                format!("'{k}' is not embedded, redis or redis-cluster"),
            );
            None
        }
    }
}

/// Where a Redis store's URLs come from: written in the file (`url` for
/// kind redis, `nodes` for a cluster) or named by an environment variable
/// (`url_env`, `nodes_env`), exactly one of the two.
fn validate_redis_urls(p: &mut Problems, s: &StoreFile, cluster: bool) -> Option<RedisUrls> {
    let (listed, env, list_key, env_key) = if cluster {
        if s.url.is_some() || s.url_env.is_some() {
            let key = if s.url.is_some() {
                "store.url"
            } else {
                "store.url_env"
            };
            p.add(key, "kind: redis-cluster takes nodes: [urls] or nodes_env");
            return None;
        }
        (
            s.nodes.clone(),
            &s.nodes_env,
            "store.nodes",
            "store.nodes_env",
        )
    } else {
        if s.nodes.is_some() || s.nodes_env.is_some() {
            let key = if s.nodes.is_some() {
                "store.nodes"
            } else {
                "store.nodes_env"
            };
            p.add(
                key,
                "only applies to kind: redis-cluster (use url or url_env)",
            );
            return None;
        }
        (
            s.url.clone().map(|u| vec![u]),
            &s.url_env,
            "store.url",
            "store.url_env",
        )
    };
    match (listed, env) {
        (Some(_), Some(_)) => {
            p.add(env_key, format!("give {list_key} or {env_key}, not both"));
            None
        }
        (None, None) if cluster => {
            p.add(
                list_key,
                "at least one node URL is required for kind: redis-cluster (or nodes_env)",
            );
            None
        }
        (None, None) => {
            p.add(list_key, "is required for kind: redis (or url_env)");
            None
        }
        (None, Some(var)) => env_name(p, env_key, var).then(|| RedisUrls::Env(var.clone())),
        (Some(urls), None) if urls.is_empty() => {
            p.add(
                list_key,
                "at least one node URL is required for kind: redis-cluster",
            );
            None
        }
        (Some(urls), None) => {
            let mut ok = true;
            for (i, url) in urls.iter().enumerate() {
                if let Some(problem) = redis_url_problem(url) {
                    let key = if cluster {
                        format!("{list_key}[{i}]")
                    } else {
                        list_key.to_string()
                    };
                    // The value stays out of the message, as for `url_env`:
                    // it may carry a password, and a refused reload logs it.
                    p.add(&key, format!("the URL {problem}"));
                    ok = false;
                }
            }
            ok.then_some(RedisUrls::Listed(urls))
        }
    }
}

/// `admin.console`: its path when it is served. The path is a directory
/// (`/` at both ends) of plain segments, and claims none of the admin
/// listener's own paths, which would otherwise stop answering.
fn validate_console(p: &mut Problems, f: &ConsoleFile, admin_listener: bool) -> Option<String> {
    if !f.enabled || !admin_listener {
        return None;
    }
    let path = f.path.as_str();
    let plain = path.len() > 2
        && path.starts_with('/')
        && path.ends_with('/')
        && path[1..path.len() - 1].split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if !plain {
        p.add(
            "admin.console.path",
            format!("'{path}' is not a directory path like /ui/ (letters, digits, '-', '_', '.')"),
        );
        return None;
    }
    let taken = [
        "/api/",
        "/healthz/",
        "/readyz/",
        "/metrics/",
        "/reload/",
        "/openapi.json/",
    ];
    if let Some(t) = taken
        .iter()
        .find(|t| path.to_ascii_lowercase().starts_with(**t))
    {
        p.add(
            "admin.console.path",
            format!(
                "'{path}' is under {}, which the admin listener answers itself",
                t.trim_end_matches('/')
            ),
        );
        return None;
    }
    Some(path.to_string())
}

/// `admin.allowed_hosts`: plain DNS names (an address needs no entry).
fn validate_allowed_hosts(p: &mut Problems, names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let n = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let plain = !n.is_empty()
            && n.len() <= 253
            && n.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if plain {
            out.push(n);
        } else {
            p.add(
                &format!("admin.allowed_hosts[{i}]"),
                format!("'{name}' is not a host name (no port, scheme or path)"),
            );
        }
    }
    out
}

/// Whether `name` can name an environment variable; records a problem if not.
fn env_name(p: &mut Problems, key: &str, name: &str) -> bool {
    let ok = !name.is_empty() && !name.contains('=') && !name.contains('\0');
    if !ok {
        p.add(key, format!("'{name}' is not an environment variable name"));
    }
    ok
}

/// `store.cache` of a Redis store: on unless `enabled: false`.
fn validate_cache(p: &mut Problems, c: Option<&CacheFile>) -> Option<NearCacheConfig> {
    let (enabled, age, identities) = match c {
        None => (true, default_cache_age(), default_cache_identities()),
        Some(c) => (c.enabled, c.max_age_seconds, c.max_identities),
    };
    let max_age_seconds = p.range("store.cache.max_age_seconds", age, 1, 3600);
    let max_identities = p.range("store.cache.max_identities", identities, 1, 10_000_000) as usize;
    enabled.then_some(NearCacheConfig {
        max_age_seconds,
        max_identities,
    })
}

/// The routes: `routes` (Infisical's project-scoped APIs when left out and
/// projects are checked), then `public_routes` as public routes.
fn validate_routes(p: &mut Problems, f: &File, projects_on: bool) -> Routes {
    let (key, files) = match &f.routes {
        Some(r) => ("routes", r.iter().collect::<Vec<_>>()),
        None => ("routes (default)", Vec::new()),
    };
    let defaults = if f.routes.is_none() && projects_on {
        default_routes()
    } else {
        Vec::new()
    };
    let mut routes = Vec::new();
    for (i, r) in files.into_iter().chain(defaults.iter()).enumerate() {
        let key = format!("{key}[{i}]");
        let mut route = match Route::new(&r.path) {
            Ok(route) => route,
            Err(e) => {
                p.add(&format!("{key}.path"), e);
                continue;
            }
        };
        match r.auth.as_deref() {
            None | Some("token") => {}
            Some("public") => route.auth = Auth::Public,
            Some(o) => p.add(
                &format!("{key}.auth"),
                format!("'{o}' is not token or public"),
            ),
        }
        match r.project.as_deref() {
            None | Some("optional") => {}
            Some("required") => route.project = ProjectRule::Required,
            Some(o) => p.add(
                &format!("{key}.project"),
                format!("'{o}' is not required or optional"),
            ),
        }
        match r.body.as_deref() {
            None | Some("parse") => {}
            Some("no-project") => route.body = BodyRule::NoProject,
            Some(o) => p.add(
                &format!("{key}.body"),
                format!("'{o}' is not parse or no-project"),
            ),
        }
        if let Some(host) = &r.host {
            match crate::routes::host_pattern(host) {
                Ok(h) => route.host = Some(h),
                Err(e) => p.add(&format!("{key}.host"), e),
            }
        }
        if let Some(name) = &r.upstream {
            if name != "default" && !f.upstreams.contains_key(name) {
                p.add(
                    &format!("{key}.upstream"),
                    format!("'{name}' is not in upstreams"),
                );
            }
            route.upstream = Some(name.clone());
        }
        if let Some(req) = &r.require {
            route.require = validate_require(p, &format!("{key}.require"), req);
            if route.auth == Auth::Public {
                p.add(
                    &format!("{key}.require"),
                    "a public route has no identity to check",
                );
            }
            if route.require.needs_project_role() && route.project != ProjectRule::Required {
                p.add(
                    &format!("{key}.require.project_role"),
                    "needs project: required on the route (a request must name the project whose role is checked)",
                );
            }
        }
        if let Some(rl) = &r.rate_limit {
            route.rate_limit = route_rate_limit(p, &format!("{key}.rate_limit"), rl);
            if route.auth == Auth::Public {
                p.add(
                    &format!("{key}.rate_limit"),
                    "a public route has no identity to limit",
                );
            }
        }
        if route.auth == Auth::Public && route.project == ProjectRule::Required {
            p.add(&key, "a public route cannot require a project");
        }
        if route.project == ProjectRule::Required && !projects_on {
            p.add(
                &format!("{key}.project"),
                "a project cannot be required while project.sources is empty",
            );
        }
        routes.push(route);
    }
    for (i, r) in f.public_routes.iter().enumerate() {
        match Route::new(r) {
            Ok(route) => routes.push(Route {
                auth: Auth::Public,
                ..route
            }),
            Err(e) => p.add(&format!("public_routes[{i}]"), e),
        }
    }
    Routes::new(routes)
}

/// A route's default rate limit, with the bounds of `RateLimit::validate`.
fn route_rate_limit(p: &mut Problems, key: &str, f: &RateLimitFile) -> Option<RateLimit> {
    let number = |v: i64| u32::try_from(v).unwrap_or(0);
    let per = match f.per.as_deref() {
        None => Per::Identity,
        Some(s) => match Per::parse(s) {
            Some(per) => per,
            None => {
                p.add(
                    &format!("{key}.per"),
                    format!("'{s}' is not identity or token"),
                );
                return None;
            }
        },
    };
    let limit = RateLimit {
        requests: number(f.requests),
        window_seconds: number(f.window_seconds),
        burst: number(f.burst.unwrap_or(f.requests)),
        per,
    };
    match limit.validate() {
        Ok(()) => Some(limit),
        Err((field, message)) => {
            let name = match field {
                RateLimitField::Requests => "requests",
                RateLimitField::WindowSeconds => "window_seconds",
                RateLimitField::Burst => "burst",
            };
            p.add(&format!("{key}.{name}"), message);
            None
        }
    }
}

/// Splits "/api/*/projects/{projectId}/x" into segments with one placeholder.
fn parse_path_template(t: &str) -> Result<Vec<TemplateSegment>, String> {
    if !t.starts_with('/') {
        return Err(format!("'{t}' must start with '/'"));
    }
    let segs: Vec<TemplateSegment> = t
        .trim_matches('/')
        .split('/')
        .map(|s| match s {
            "{projectId}" => TemplateSegment::Project,
            "*" => TemplateSegment::Any,
            s => TemplateSegment::Literal(s.to_string()),
        })
        .collect();
    if segs
        .iter()
        .any(|s| matches!(s, TemplateSegment::Literal(l) if l.is_empty()))
    {
        return Err(format!("'{t}' has an empty segment"));
    }
    match segs
        .iter()
        .filter(|s| **s == TemplateSegment::Project)
        .count()
    {
        1 => Ok(segs),
        _ => Err(format!("'{t}' must contain {{projectId}} exactly once")),
    }
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
mod tests {
    use super::*;

    const MINIMAL: &str =
        "server: {listen: ['127.0.0.1:8080']}\nupstream: {url: 'http://127.0.0.1:3000'}\n";

    fn errors(yaml: &str) -> String {
        parse(yaml).unwrap_err().to_string()
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.threads, 2);
        assert!(matches!(c.store, StoreConfig::Embedded { .. }));
        assert_eq!(c.headers.identity_id, "x-tokengate-identity-id");
        assert!(!c.forward_authorization);
        assert_eq!(c.upstream.port, 3000);
        // Membership checks are on unless turned off explicitly, and
        // Infisical's project-scoped APIs require a project.
        assert_eq!(c.project_sources.len(), 13);
        assert_eq!(
            c.routes.select(None, "/api/v3/secrets/raw").project,
            ProjectRule::Required
        );
        assert_eq!(
            c.routes.select(None, "/api/v1/workspace/p1/tags").project,
            ProjectRule::Required
        );
        assert_eq!(
            c.routes.select(None, "/api/v1/workspace").project,
            ProjectRule::Optional
        );
        let off = parse(&format!("{MINIMAL}project: {{sources: []}}\n")).unwrap();
        assert!(off.project_sources.is_empty());
        assert!(off.routes.all().is_empty());
    }

    #[test]
    fn routes() {
        let c = parse(&format!(
            "{MINIMAL}routes:\n  - {{path: /api/*/secrets, project: required}}\n  - {{path: /up, body: no-project}}\n  - {{path: /status, auth: public}}\npublic_routes: [/health]\n"
        ))
        .unwrap();
        assert_eq!(c.routes.all().len(), 4);
        assert_eq!(c.routes.select(None, "/up/x").body, BodyRule::NoProject);
        assert_eq!(c.routes.select(None, "/status").auth, Auth::Public);
        assert_eq!(c.routes.select(None, "/health/x").auth, Auth::Public);
        // Given routes replace the defaults.
        assert_eq!(
            c.routes.select(None, "/api/v1/folders").project,
            ProjectRule::Optional
        );
        for (bad, key) in [
            ("routes: [{path: x}]", "routes[0].path"),
            ("routes: [{path: /a, auth: maybe}]", "routes[0].auth"),
            (
                "routes: [{path: /a, project: sometimes}]",
                "routes[0].project",
            ),
            ("routes: [{path: /a, body: skip}]", "routes[0].body"),
            (
                "routes: [{path: /a, auth: public, project: required}]",
                "routes[0]",
            ),
            ("routes: [{path: /a, wat: 1}]", "wat"),
            (
                "routes: [{path: /%C3%A9, project: required}]",
                "routes[0].path",
            ),
            ("public_routes: [/a, b]", "public_routes[1]"),
            (
                "routes: [{path: /a, project: required}]\nproject: {sources: []}",
                "routes[0].project",
            ),
            (
                "forward_auth: {path: /_tokengate/auth}",
                "forward_auth.describe",
            ),
            (
                "forward_auth: {path: /_tokengate/auth, describe: guess}",
                "forward_auth.describe",
            ),
            (
                "forward_auth: {path: /, describe: path}",
                "forward_auth.path",
            ),
            (
                "forward_auth: {path: /a/, describe: path}",
                "forward_auth.path",
            ),
            (
                "forward_auth: {path: /api/auth, describe: path}",
                "forward_auth.path",
            ),
            (
                "forward_auth: {path: /a/../b, describe: path}",
                "forward_auth.path",
            ),
            (
                "forward_auth: {path: /a*, describe: path}",
                "forward_auth.path",
            ),
        ] {
            let e = errors(&format!("{MINIMAL}{bad}\n"));
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn route_rate_limits() {
        let c = parse(&format!(
            "{MINIMAL}routes:\n  - {{path: /api, rate_limit: {{requests: 10, window_seconds: 1}}}}\n  - {{path: /bulk, rate_limit: {{requests: 5, window_seconds: 60, burst: 1, per: token}}}}\n  - {{path: /free}}\n"
        ))
        .unwrap();
        let api = c.routes.select(None, "/api/x").rate_limit.unwrap();
        assert_eq!(
            (api.requests, api.window_seconds, api.burst, api.per),
            (10, 1, 10, Per::Identity),
            "burst defaults to requests, per to identity"
        );
        let bulk = c.routes.select(None, "/bulk").rate_limit.unwrap();
        assert_eq!((bulk.burst, bulk.per), (1, Per::Token));
        assert_eq!(c.routes.select(None, "/free").rate_limit, None);
        for (bad, key) in [
            (
                "{path: /a, rate_limit: {requests: 0, window_seconds: 1}}",
                "routes[0].rate_limit.requests",
            ),
            (
                "{path: /a, rate_limit: {requests: 1, window_seconds: 90000}}",
                "routes[0].rate_limit.window_seconds",
            ),
            (
                "{path: /a, rate_limit: {requests: 2, window_seconds: 86400, burst: 3}}",
                "routes[0].rate_limit.burst",
            ),
            (
                "{path: /a, rate_limit: {requests: 1, window_seconds: 1, per: org}}",
                "routes[0].rate_limit.per",
            ),
            (
                "{path: /a, auth: public, rate_limit: {requests: 1, window_seconds: 1}}",
                "routes[0].rate_limit",
            ),
            ("{path: /a, rate_limit: {requests: 1, window: 1}}", "window"),
        ] {
            let e = errors(&format!("{MINIMAL}routes: [{bad}]\n"));
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn connection_limits_have_defaults_and_ranges() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.keepalive_timeout_seconds, 75);
        assert_eq!(c.header_timeout_seconds, 60);
        assert_eq!(c.max_connections, 50_000);
        let c = parse(
            "server: {listen: ['127.0.0.1:8080'], keepalive_timeout_seconds: 2, header_timeout_seconds: 1, max_connections: 3}\nupstream: {url: 'http://a'}\n",
        )
        .unwrap();
        assert_eq!(
            (
                c.keepalive_timeout_seconds,
                c.header_timeout_seconds,
                c.max_connections
            ),
            (2, 1, 3)
        );
        let e = errors(
            "server: {listen: ['127.0.0.1:8080'], keepalive_timeout_seconds: 0, header_timeout_seconds: 3601, max_connections: -1}\nupstream: {url: 'http://a'}\n",
        );
        for key in [
            "server.keepalive_timeout_seconds: 0 is out of range (1 to 3600)",
            "server.header_timeout_seconds: 3601 is out of range (1 to 3600)",
            "server.max_connections: -1 is out of range (1 to 1000000)",
        ] {
            assert!(e.contains(key), "{key}: {e}");
        }
        let e = errors(
            "server: {listen: ['127.0.0.1:8080'], keepalive_timeout: 5}\nupstream: {url: 'http://a'}\n",
        );
        assert!(e.contains("keepalive_timeout"), "{e}");
    }

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../config/tokengate.yaml");
        let c = parse(text).unwrap();
        assert_eq!(c.project_sources.len(), 13);
        assert_eq!(c.routes.all().len(), 7);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = errors(&format!("{MINIMAL}server2: 1\n"));
        assert!(e.contains("server2"), "{e}");
        let e =
            errors("server: {listen: ['127.0.0.1:1'], lisen: 1}\nupstream: {url: 'http://a'}\n");
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn admin_listener_needs_its_own_address() {
        let e = errors(
            "server: {listen: ['127.0.0.1:8080']}\nadmin: {listen: '127.0.0.1:8080'}\nupstream: {url: 'http://127.0.0.1:3000'}\n",
        );
        assert!(e.contains("admin.listen"), "{e}");
    }

    #[test]
    fn bad_values_name_their_keys() {
        let e = errors(
            "server: {listen: ['nope'], threads: 0}\nupstream: {url: 'ftp://x'}\ntrusted_proxies: ['10.0.0.0/33']\nstore: {kind: redis}\n",
        );
        for key in [
            "server.listen[0]",
            "server.threads",
            "upstream.url",
            "trusted_proxies[0]",
            "store.url",
        ] {
            assert!(e.contains(key), "{key} missing in {e}");
        }
    }

    #[test]
    fn redis_and_cluster_stores() {
        let c = parse(&format!(
            "{MINIMAL}store: {{kind: redis-cluster, nodes: ['redis://a:1', 'redis://b:2']}}\n"
        ))
        .unwrap();
        assert!(
            matches!(c.store, StoreConfig::Redis { cluster: true, urls: RedisUrls::Listed(ref urls), .. } if urls.len() == 2)
        );
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: redis-cluster, nodes: ['http://a:1']}}\n"
        ));
        assert!(e.contains("store.nodes[0]"), "{e}");
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: redis, nodes: ['redis://a:1']}}\n"
        ));
        assert!(e.contains("store.nodes"), "{e}");
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: embedded, url: 'redis://a:1'}}\n"
        ));
        assert!(e.contains("store.url"), "{e}");
    }

    /// The `store` of a configuration with `store` set to `yaml`.
    fn store_of(yaml: &str) -> StoreConfig {
        parse(&format!("{MINIMAL}store: {yaml}\n")).unwrap().store
    }

    #[test]
    fn redis_address_from_the_environment() {
        assert!(matches!(
            store_of("{kind: redis, url_env: REDIS_URL}"),
            StoreConfig::Redis { urls: RedisUrls::Env(ref v), cluster: false, .. } if v == "REDIS_URL"
        ));
        assert!(matches!(
            store_of("{kind: redis-cluster, nodes_env: REDIS_NODES}"),
            StoreConfig::Redis { urls: RedisUrls::Env(ref v), cluster: true, .. } if v == "REDIS_NODES"
        ));
        // Exactly one source per kind, and none of them on the embedded store.
        for (yaml, key) in [
            (
                "{kind: redis, url: 'redis://a:1', url_env: R}",
                "store.url_env",
            ),
            ("{kind: redis, nodes_env: R}", "store.nodes_env"),
            ("{kind: redis-cluster, url_env: R}", "store.url_env"),
            (
                "{kind: redis-cluster, nodes: ['redis://a:1'], nodes_env: R}",
                "store.nodes_env",
            ),
            ("{kind: redis-cluster}", "nodes_env"),
            ("{kind: redis}", "url_env"),
            ("{kind: embedded, url_env: R}", "store.url_env"),
            ("{kind: embedded, nodes_env: R}", "store.nodes_env"),
            ("{kind: redis, url_env: ''}", "store.url_env"),
            ("{kind: redis, url_env: 'A=B'}", "store.url_env"),
        ] {
            let e = errors(&format!("{MINIMAL}store: {yaml}\n"));
            assert!(e.contains(key), "{yaml}: {e}");
        }
    }

    #[test]
    fn redis_address_variable_is_read_when_resolved() {
        let single = RedisUrls::Env("REDIS_URL".into());
        let secret = "redis://:hunter2-password@redis:6379/0";
        assert_eq!(
            single.resolve_with(false, |v| (v == "REDIS_URL")
                .then(|| format!(" {secret}\n"))),
            Ok(vec![secret.to_string()])
        );
        for unset in [None, Some(String::new()), Some("  ".into())] {
            let e = single.resolve_with(false, |_| unset.clone()).unwrap_err();
            assert!(matches!(e, RedisUrlsError::Unset(_)), "{e:?}");
            assert!(
                e.to_string().contains("store.url_env") && e.to_string().contains("REDIS_URL"),
                "{e}"
            );
        }
        // A wrong URL written in the file is not repeated either.
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: redis, url: 'rediss://:hunter2-password@redis:6379'}}\n"
        ));
        assert!(e.contains("store.url") && !e.contains("hunter2"), "{e}");
        // A wrong value is named by its variable, and not repeated: it may
        // carry a password.
        for bad in [
            "http://:hunter2-password@redis:6379",
            "rediss://:hunter2-password@redis:6379",
            "hunter2-password",
        ] {
            let e = single
                .resolve_with(false, |_| Some(bad.into()))
                .unwrap_err();
            assert!(matches!(e, RedisUrlsError::Invalid(_)), "{bad}: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains("REDIS_URL"), "{msg}");
            assert!(!msg.contains("hunter2"), "{msg}");
        }

        let nodes = RedisUrls::Env("REDIS_NODES".into());
        assert_eq!(
            nodes.resolve_with(true, |_| Some("redis://a:1, redis://b:2,".into())),
            Ok(vec!["redis://a:1".to_string(), "redis://b:2".to_string()])
        );
        let e = nodes
            .resolve_with(true, |_| Some("redis://a:1,http://b:2".into()))
            .unwrap_err();
        assert!(
            e.to_string().contains("store.nodes_env") && e.to_string().contains("(node 2)"),
            "{e}"
        );
        let e = nodes.resolve_with(true, |_| Some(",".into())).unwrap_err();
        assert!(matches!(e, RedisUrlsError::Invalid(_)), "{e:?}");

        // URLs written in the file need no environment.
        let listed = RedisUrls::Listed(vec!["redis://a:1".into()]);
        assert_eq!(
            listed.resolve_with(false, |_| unreachable!()),
            Ok(vec!["redis://a:1".to_string()])
        );
    }

    #[test]
    fn redis_address_variable_is_fixed_like_the_store() {
        let on_url = parse(&format!(
            "{MINIMAL}store: {{kind: redis, url: 'redis://a:1'}}\n"
        ))
        .unwrap();
        let on_env = parse(&format!(
            "{MINIMAL}store: {{kind: redis, url_env: REDIS_URL}}\n"
        ))
        .unwrap();
        let other_env = parse(&format!(
            "{MINIMAL}store: {{kind: redis, url_env: OTHER_REDIS_URL}}\n"
        ))
        .unwrap();
        assert!(fixed_keys_changed(&on_env, &on_env.clone()).is_empty());
        assert_eq!(fixed_keys_changed(&on_url, &on_env), ["store"]);
        assert_eq!(fixed_keys_changed(&on_env, &other_env), ["store"]);
    }

    #[test]
    fn near_cache_is_on_for_redis_and_refused_for_embedded() {
        let c = parse(&format!(
            "{MINIMAL}store: {{kind: redis, url: 'redis://a:1'}}\n"
        ))
        .unwrap();
        assert!(matches!(
            c.store,
            StoreConfig::Redis {
                cache: Some(NearCacheConfig {
                    max_age_seconds: 60,
                    ..
                }),
                ..
            }
        ));
        let c = parse(&format!(
            "{MINIMAL}store: {{kind: redis, url: 'redis://a:1', cache: {{enabled: false}}}}\n"
        ))
        .unwrap();
        assert!(matches!(c.store, StoreConfig::Redis { cache: None, .. }));
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: redis, url: 'redis://a:1', cache: {{max_age_seconds: 0}}}}\n"
        ));
        assert!(e.contains("store.cache.max_age_seconds"), "{e}");
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: embedded, cache: {{}}}}\n"
        ));
        assert!(e.contains("store.cache"), "{e}");
    }

    #[test]
    fn log_format_and_level() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            c.log,
            LogConfig {
                json: false,
                level: "info".into()
            }
        );
        let c = parse(&format!(
            "{MINIMAL}log: {{format: json, level: 'warn,tokengate=debug'}}\n"
        ))
        .unwrap();
        assert!(c.log.json);
        assert_eq!(c.log.level, "warn,tokengate=debug");
        let e = errors(&format!("{MINIMAL}log: {{format: xml}}\n"));
        assert!(e.contains("log.format"), "{e}");
        for bad in ["loud", "", "tokengate=", "=info", "a b=info"] {
            let e = errors(&format!("{MINIMAL}log: {{level: '{bad}'}}\n"));
            assert!(e.contains("log.level"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn only_live_keys_may_change_on_reload() {
        let old = parse(MINIMAL).unwrap();
        let live = parse(&format!(
            "{MINIMAL}trusted_proxies: ['10.0.0.0/8']\npublic_routes: ['/open']\n\
             log: {{level: debug}}\naccess_log: {{destination: stdout}}\n"
        ))
        .unwrap();
        assert!(fixed_keys_changed(&old, &live).is_empty());
        let fixed = parse(
            "server: {listen: ['127.0.0.1:8081'], threads: 3}\n\
             upstream: {url: 'https://127.0.0.1:443', ca_file: /x.pem}\n\
             admin: {listen: '127.0.0.1:9999'}\nstore: {kind: embedded, path: other.redb}\n",
        )
        .unwrap();
        assert_eq!(
            fixed_keys_changed(&old, &fixed),
            [
                "server.listen",
                "server.threads",
                "admin.listen",
                "store",
                "upstream.ca_file"
            ]
        );
        let with_admin = parse(&format!("{MINIMAL}admin: {{listen: '127.0.0.1:9999'}}\n")).unwrap();
        let moved = parse(&format!(
            "{MINIMAL}admin: {{listen: '127.0.0.1:9999', console: {{path: /ops/}}}}\n"
        ))
        .unwrap();
        assert_eq!(fixed_keys_changed(&with_admin, &moved), ["admin.console"]);
    }

    #[test]
    fn tls_listeners_and_their_files() {
        let tls = "server:\n  listen: ['127.0.0.1:8080']\n  tls:\n    listen: ['127.0.0.1:8443']\n    \
                   certificates:\n      - {cert: a.pem, key: a.key}\n      - {cert: b.pem, key: b.key, names: [B.Example.com., '*.b.test']}\n    \
                   client_ca: ca.pem\nadmin: {listen: '127.0.0.1:9090', tls: {certificates: [{cert: a.pem, key: a.key}], h2: false}}\n\
                   upstream: {url: 'http://127.0.0.1:3000'}\n";
        let c = parse(tls).unwrap();
        assert_eq!(c.listen.len(), 1);
        assert_eq!(c.tls_listen, ["127.0.0.1:8443".parse().unwrap()]);
        let t = c.tls.as_ref().unwrap();
        assert!(t.h2, "h2 is on by default");
        assert_eq!(t.certificates[1].names, ["b.example.com", "*.b.test"]);
        assert_eq!(t.client_ca.as_deref(), Some(std::path::Path::new("ca.pem")));
        assert!(!c.admin_tls.as_ref().unwrap().h2);
        // TLS listeners alone are enough.
        let only = "server: {tls: {listen: ['127.0.0.1:8443'], certificates: [{cert: a, key: b}]}}\nupstream: {url: 'http://a'}\n";
        assert!(parse(only).unwrap().listen.is_empty());

        for (bad, key) in [
            ("server: {}", "server.listen: at least one address"),
            ("server: {tls: {certificates: [{cert: a, key: b}]}}", "server.tls.listen"),
            ("server: {tls: {listen: ['127.0.0.1:1']}}", "server.tls.certificates: at least one"),
            (
                "server: {listen: ['127.0.0.1:1'], tls: {listen: ['127.0.0.1:1'], certificates: [{cert: a, key: b}]}}",
                "server.tls.listen[0]: 127.0.0.1:1 is listed twice",
            ),
            (
                "server: {tls: {listen: ['127.0.0.1:1'], certificates: [{cert: a, key: ''}]}}",
                "server.tls.certificates[0].key: must not be empty",
            ),
            (
                "server: {tls: {listen: ['127.0.0.1:1'], certificates: [{cert: a, key: b, names: ['*.com']}]}}",
                "server.tls.certificates[0].names[0]: '*.com' is a wildcard",
            ),
            (
                "server: {tls: {listen: ['127.0.0.1:1'], certificates: [{cert: a, key: b, names: [127.0.0.1]}]}}",
                "names[0]: '127.0.0.1' is an IP address",
            ),
            (
                "server: {tls: {listen: ['127.0.0.1:1'], certificates: [{cert: a, key: b, names: [a.test]}, {cert: c, key: d, names: [A.test]}]}}",
                "server.tls.certificates[1].names[0]: 'a.test' is also a name of server.tls.certificates[0]",
            ),
            (
                "server: {tls: {listen: ['127.0.0.1:1'], certificates: [{cert: a, key: b, nmes: [x]}]}}",
                "nmes",
            ),
            (
                "server: {listen: ['127.0.0.1:1']}\nadmin: {tls: {certificates: [{cert: a, key: b}]}}",
                "admin.tls: needs admin.listen",
            ),
            (
                "server: {listen: ['127.0.0.1:1']}\nadmin: {listen: '127.0.0.1:2', tls: {listen: ['127.0.0.1:3'], certificates: [{cert: a, key: b}]}}",
                "admin.tls.listen: the admin listener's address is admin.listen",
            ),
        ] {
            let e = errors(&format!("{bad}\nupstream: {{url: 'http://a'}}\n"));
            assert!(e.contains(key), "{bad}: {e}");
        }

        // Certificates, client CA and h2 are reloaded; listeners and
        // whether they speak TLS are not.
        let mut changed = c.clone();
        changed.tls = Some(TlsConfig {
            h2: false,
            client_ca: None,
            ..t.clone()
        });
        assert!(fixed_keys_changed(&c, &changed).is_empty());
        let plain = parse(MINIMAL).unwrap();
        assert_eq!(
            fixed_keys_changed(&c, &plain),
            ["server.tls.listen", "admin.listen", "admin.tls (on or off)"]
        );
    }

    #[test]
    fn access_and_audit_logs() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.access_log.destination, Destination::Off);
        assert_eq!(c.access_log.queue, 65_536);
        assert_eq!(c.audit.destination, Destination::Stdout);
        assert!(!c.audit.required);
        let c = parse(&format!(
            "{MINIMAL}access_log: {{destination: file, path: /var/log/a.log, queue: 10}}\n\
             audit: {{destination: file, path: /var/log/b.log, required: true}}\n"
        ))
        .unwrap();
        assert_eq!(
            c.access_log,
            AccessLogConfig {
                destination: Destination::File("/var/log/a.log".into()),
                queue: 10
            }
        );
        assert_eq!(
            c.audit,
            AuditConfig {
                destination: Destination::File("/var/log/b.log".into()),
                required: true
            }
        );
        for (yaml, key) in [
            ("access_log: {destination: file}", "access_log.path"),
            (
                "access_log: {destination: syslog}",
                "access_log.destination",
            ),
            (
                "access_log: {destination: stdout, path: /x}",
                "access_log.path",
            ),
            ("access_log: {queue: 0}", "access_log.queue"),
            ("access_log: {required: true}", "access_log.required"),
            (
                "audit: {destination: off, required: true}",
                "audit.required",
            ),
            ("audit: {queue: 5}", "audit.queue"),
            ("audit: {destination: file, path: ''}", "audit.path"),
        ] {
            let e = errors(&format!("{MINIMAL}{yaml}\n"));
            assert!(e.contains(key), "{yaml}: {e}");
        }
    }

    #[test]
    fn redis_over_tls_is_refused_until_it_is_supported() {
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: redis, url: 'rediss://a:1'}}\n"
        ));
        assert!(
            e.contains("store.url") && e.contains("not supported yet"),
            "{e}"
        );
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: redis-cluster, nodes: ['redis://a:1', 'rediss://b:2']}}\n"
        ));
        assert!(e.contains("store.nodes[1]"), "{e}");
    }

    #[test]
    fn ca_file_needs_https() {
        let e = errors(
            "server: {listen: ['127.0.0.1:1']}\nupstream: {url: 'http://a', ca_file: /x.pem}\n",
        );
        assert!(e.contains("upstream.ca_file"), "{e}");
        let c = parse(
            "server: {listen: ['127.0.0.1:1']}\nupstream: {url: 'https://a', ca_file: /x.pem}\n",
        )
        .unwrap();
        assert_eq!(
            c.upstream.ca_file.as_deref(),
            Some(std::path::Path::new("/x.pem"))
        );
    }

    #[test]
    fn path_templates() {
        assert_eq!(
            parse_path_template("/api/v1/projects/{projectId}").unwrap(),
            vec![
                TemplateSegment::Literal("api".into()),
                TemplateSegment::Literal("v1".into()),
                TemplateSegment::Literal("projects".into()),
                TemplateSegment::Project
            ]
        );
        assert_eq!(
            parse_path_template("/api/*/x/{projectId}").unwrap()[1],
            TemplateSegment::Any
        );
        assert!(parse_path_template("/api/{projectId}/{projectId}").is_err());
        assert!(parse_path_template("/api").is_err());
    }

    #[test]
    fn duplicate_header_names_are_refused() {
        let e = errors(&format!(
            "{MINIMAL}headers: {{org_role: X-Tokengate-Identity-Id}}\n"
        ));
        assert!(e.contains("headers"), "{e}");
    }
}
