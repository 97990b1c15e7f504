//! The file model: what the YAML may say, with serde's defaults and unknown
//! keys refused. Nothing here judges a value; the section modules do that.

use super::{tls, upstreams};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub(super) server: ServerFile,
    #[serde(default)]
    pub(super) admin: AdminFile,
    pub(super) upstream: UpstreamFile,
    #[serde(default)]
    pub(super) upstreams: std::collections::BTreeMap<String, upstreams::PoolFile>,
    #[serde(default)]
    pub(super) store: StoreFile,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<String>,
    #[serde(default)]
    pub(super) public_routes: Vec<String>,
    pub(super) routes: Option<Vec<RouteFile>>,
    #[serde(default)]
    pub(super) project: ProjectFile,
    #[serde(default)]
    pub(super) headers: HeadersFile,
    #[serde(default)]
    pub(super) log: LogFile,
    #[serde(default)]
    pub(super) access_log: RecordLogFile,
    #[serde(default)]
    pub(super) audit: RecordLogFile,
    pub(super) forward_auth: Option<ForwardAuthFile>,
}

/// `forward_auth`: the endpoint other gateways ask (README, "Using tokengate
/// as a plugin for your gateway").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ForwardAuthFile {
    pub(super) path: String,
    pub(super) describe: Option<String>,
}

/// `access_log` and `audit` share a shape; `queue` is the access log's,
/// `required` the audit log's.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordLogFile {
    pub(super) destination: Option<String>,
    pub(super) path: Option<PathBuf>,
    pub(super) queue: Option<i64>,
    pub(super) required: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogFile {
    #[serde(default = "default_log_format")]
    pub(super) format: String,
    #[serde(default = "default_log_level")]
    pub(super) level: String,
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
pub(super) struct ServerFile {
    #[serde(default)]
    pub(super) listen: Vec<String>,
    pub(super) tls: Option<tls::TlsFile>,
    #[serde(default = "default_threads")]
    pub(super) threads: i64,
    #[serde(default = "default_grace")]
    pub(super) grace_period_seconds: i64,
    #[serde(default = "default_keepalive")]
    pub(super) keepalive_timeout_seconds: i64,
    #[serde(default = "default_header_timeout")]
    pub(super) header_timeout_seconds: i64,
    #[serde(default = "default_max_connections")]
    pub(super) max_connections: i64,
    pub(super) upgrade_socket: Option<PathBuf>,
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
pub(super) struct AdminFile {
    pub(super) listen: Option<String>,
    #[serde(default = "default_key_env")]
    pub(super) api_key_env: Option<String>,
    pub(super) api_key_file: Option<PathBuf>,
    pub(super) tls: Option<tls::TlsFile>,
    #[serde(default)]
    pub(super) lockout: LockoutFile,
    #[serde(default)]
    pub(super) console: ConsoleFile,
    #[serde(default)]
    pub(super) allowed_hosts: Vec<String>,
}

/// `admin.console`: the operator console on the admin listener.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsoleFile {
    #[serde(default = "default_true")]
    pub(super) enabled: bool,
    #[serde(default = "default_console_path")]
    pub(super) path: String,
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
pub(super) struct LockoutFile {
    #[serde(default = "default_lockout_threshold")]
    pub(super) threshold: i64,
    #[serde(default = "default_lockout_seconds")]
    pub(super) window_seconds: i64,
    #[serde(default = "default_lockout_seconds")]
    pub(super) duration_seconds: i64,
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
pub(super) struct UpstreamFile {
    pub(super) url: String,
    #[serde(default = "yes")]
    pub(super) tls_verify: bool,
    pub(super) sni: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
    #[serde(default = "default_connect")]
    pub(super) connect_timeout_ms: i64,
    #[serde(default = "default_read")]
    pub(super) read_timeout_ms: i64,
}

pub(super) fn yes() -> bool {
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
pub(super) struct StoreFile {
    #[serde(default = "default_kind")]
    pub(super) kind: String,
    pub(super) path: Option<PathBuf>,
    pub(super) url: Option<String>,
    pub(super) url_env: Option<String>,
    pub(super) nodes: Option<Vec<String>>,
    pub(super) nodes_env: Option<String>,
    #[serde(default = "default_store_timeout")]
    pub(super) connect_timeout_ms: i64,
    #[serde(default = "default_store_timeout")]
    pub(super) response_timeout_ms: i64,
    #[serde(default = "default_retries")]
    pub(super) retries: i64,
    pub(super) cache: Option<CacheFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CacheFile {
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    #[serde(default = "default_cache_age")]
    pub(super) max_age_seconds: i64,
    #[serde(default = "default_cache_identities")]
    pub(super) max_identities: i64,
}

pub(super) fn default_cache_age() -> i64 {
    60
}
pub(super) fn default_cache_identities() -> i64 {
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
pub(super) struct ProjectFile {
    #[serde(default = "default_sources")]
    pub(super) sources: Vec<SourceFile>,
    #[serde(default = "default_body")]
    pub(super) max_body_bytes: i64,
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
pub(super) struct RouteFile {
    pub(super) path: String,
    pub(super) host: Option<String>,
    pub(super) upstream: Option<String>,
    pub(super) auth: Option<String>,
    pub(super) project: Option<String>,
    pub(super) body: Option<String>,
    pub(super) rate_limit: Option<RateLimitFile>,
    pub(super) require: Option<RequireFile>,
}

/// `routes[].require`: roles, each one name or a list (any one will do),
/// and per-method overrides.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequireFile {
    pub(super) org_role: Option<OneOrMany>,
    pub(super) project_role: Option<OneOrMany>,
    #[serde(default)]
    pub(super) methods: std::collections::BTreeMap<String, MethodRequireFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MethodRequireFile {
    pub(super) org_role: Option<OneOrMany>,
    pub(super) project_role: Option<OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `routes[].rate_limit`: `burst` defaults to `requests`, `per` to `identity`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RateLimitFile {
    pub(super) requests: i64,
    pub(super) window_seconds: i64,
    pub(super) burst: Option<i64>,
    pub(super) per: Option<String>,
}

/// Infisical's project-scoped APIs, where a request must name its project.
/// The default when `routes` is left out and project sources are on.
pub(super) fn default_routes() -> Vec<RouteFile> {
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
pub(super) struct SourceFile {
    pub(super) path: Option<String>,
    pub(super) query: Option<String>,
    pub(super) header: Option<String>,
    pub(super) body: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HeadersFile {
    #[serde(default = "h_identity_id")]
    pub(super) identity_id: String,
    #[serde(default = "h_identity_name")]
    pub(super) identity_name: String,
    #[serde(default = "h_org_role")]
    pub(super) org_role: String,
    #[serde(default = "h_token_id")]
    pub(super) token_id: String,
    #[serde(default = "h_project_id")]
    pub(super) project_id: String,
    #[serde(default = "h_project_role")]
    pub(super) project_role: String,
    #[serde(default = "h_client_ip")]
    pub(super) client_ip: String,
    #[serde(default)]
    pub(super) forward_authorization: bool,
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
