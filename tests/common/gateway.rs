//! The gateway under test: a YAML config builder mirroring config/tokengate.yaml, and the real tokengate binary run as a child process.

use super::admin::Admin;
use super::process::{read_lossy, run_bounded, tail, Proc};
use super::upstream::Upstream;
use super::{free_port, poll_until, ADMIN_KEY};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Header names the gateway injects, as in config/tokengate.yaml.
const DEFAULT_HEADERS: [(&str, &str); 6] = [
    ("identity_id", "x-tokengate-identity-id"),
    ("identity_name", "x-tokengate-identity-name"),
    ("org_role", "x-tokengate-org-role"),
    ("token_id", "x-tokengate-token-id"),
    ("project_id", "x-tokengate-project-id"),
    ("project_role", "x-tokengate-project-role"),
];

/// Project sources of config/tokengate.yaml, written out explicitly so tests
/// do not depend on the binary's built-in defaults.
const DEFAULT_PROJECT_SOURCES: [(&str, &str); 13] = [
    ("path", "/api/*/projects/{projectId}"),
    ("path", "/api/*/project/{projectId}"),
    ("path", "/api/*/workspace/{projectId}"),
    ("path", "/api/*/workspaces/{projectId}"),
    ("query", "workspaceId"),
    ("query", "projectId"),
    ("query", "projectSlug"),
    ("query", "workspaceSlug"),
    ("header", "x-project-id"),
    ("body", "workspaceId"),
    ("body", "projectId"),
    ("body", "projectSlug"),
    ("body", "workspaceSlug"),
];

#[derive(Debug, Clone)]
enum Store {
    Embedded(PathBuf),
    Redis {
        url: String,
        timeouts: Option<(u64, u64, u32)>,
    },
    RedisCluster {
        nodes: Vec<String>,
        timeouts: Option<(u64, u64, u32)>,
    },
}

/// Environment variable that sets the near cache of every Redis-backed
/// gateway the harness configures: `off` writes `cache: {enabled: false}`
/// under `store`; `on` or unset writes nothing, so the gateway's default
/// (on) applies. scripts/test.sh runs the Redis-backed tests once each way.
pub const REDIS_CACHE_ENV: &str = "TOKENGATE_TEST_REDIS_CACHE";

/// The `store.cache` value the harness writes for a Redis-backed gateway
/// given the value of [`REDIS_CACHE_ENV`]; panics on anything but
/// `on`, `off` or empty, so a typo cannot silently test the wrong mode.
pub fn redis_cache_override(env_value: Option<&str>) -> Option<String> {
    match env_value.map(str::trim) {
        None | Some("") | Some("on") => None,
        Some("off") => Some("{enabled: false}".to_string()),
        Some(other) => panic!("{REDIS_CACHE_ENV}={other:?}: expected on or off"),
    }
}

/// Whether a Redis-backed gateway configured by the harness (without an
/// explicit [`GatewayConfig::store_cache`]) runs with its near cache: false
/// only under `TOKENGATE_TEST_REDIS_CACHE=off`.
pub fn redis_cache_on() -> bool {
    redis_cache_override(std::env::var(REDIS_CACHE_ENV).ok().as_deref()).is_none()
}

/// Builds the YAML file a gateway starts with. Every section the builder
/// knows is written out; [`GatewayConfig::section`] replaces one wholesale
/// and [`GatewayConfig::extra`] appends raw text (for unknown-key tests).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    listen_port: u16,
    admin_port: u16,
    /// `server.tls` without its `listen` (the harness adds `tls_port`).
    server_tls: Option<String>,
    /// Raw lines appended to the generated `server` section.
    server_extra: String,
    admin_extra: String,
    tls_port: u16,
    /// `admin.tls`, and the CA the readiness probe trusts for it.
    admin_tls: Option<(String, PathBuf)>,
    threads: u32,
    grace_period_seconds: u32,
    upstream_url: String,
    upstream_tls_verify: Option<bool>,
    upstream_timeouts: Option<(u64, u64)>,
    store: Store,
    /// Raw YAML value of `store.cache` (a flow mapping), or nothing.
    store_cache: Option<String>,
    trusted_proxies: Vec<String>,
    public_routes: Vec<String>,
    project_sources: Vec<(String, String)>,
    max_body_bytes: Option<u64>,
    headers: Vec<(String, String)>,
    forward_authorization: bool,
    sections: Vec<(String, Option<String>)>,
    extra: String,
    env: Vec<(String, Option<String>)>,
}

/// YAML double-quoted scalar; JSON string escapes are valid YAML escapes.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string to JSON")
}

fn flow_list(items: &[String]) -> String {
    format!(
        "[{}]",
        items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
    )
}

/// Two different free ports: each probe is closed before the next, so the
/// system may hand out the same port twice, and a gateway whose admin
/// listener shared the proxy's port would proxy the harness's health checks.
fn two_free_ports() -> (u16, u16) {
    let first = free_port();
    loop {
        let second = free_port();
        if second != first {
            return (first, second);
        }
    }
}

/// A free port other than `a` and `b`.
fn third_free_port(a: u16, b: u16) -> u16 {
    loop {
        let p = free_port();
        if p != a && p != b {
            return p;
        }
    }
}

/// `body` indented by `n` spaces, one line at a time.
fn indent(body: &str, n: usize) -> String {
    body.lines().map(|l| format!("{:n$}{l}\n", "")).collect()
}

impl GatewayConfig {
    fn new(store: Store) -> GatewayConfig {
        let (listen_port, admin_port) = two_free_ports();
        GatewayConfig {
            listen_port,
            admin_port,
            server_tls: None,
            server_extra: String::new(),
            admin_extra: String::new(),
            tls_port: third_free_port(listen_port, admin_port),
            admin_tls: None,
            threads: 2,
            grace_period_seconds: 0,
            upstream_url: Upstream::unreachable_url(),
            upstream_tls_verify: None,
            upstream_timeouts: None,
            store,
            store_cache: None,
            trusted_proxies: Vec::new(),
            public_routes: Vec::new(),
            project_sources: DEFAULT_PROJECT_SOURCES
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            max_body_bytes: None,
            headers: DEFAULT_HEADERS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            forward_authorization: false,
            sections: Vec::new(),
            extra: String::new(),
            env: Vec::new(),
        }
    }

    /// Embedded store at `path`. A relative path lands in the gateway's own
    /// temp directory (its working directory and the config file's directory),
    /// which survives [`Gateway::restart`].
    pub fn embedded(path: impl AsRef<Path>) -> GatewayConfig {
        GatewayConfig::new(Store::Embedded(path.as_ref().to_path_buf()))
    }

    /// Embedded store in the gateway's own temp directory.
    pub fn embedded_temp() -> GatewayConfig {
        GatewayConfig::embedded("tokengate.redb")
    }

    /// Redis store at `url` (e.g. [`super::Redis::url`]), with the near
    /// cache as [`REDIS_CACHE_ENV`] says (default: no `cache` key, so on).
    pub fn redis(url: &str) -> GatewayConfig {
        let mut cfg = GatewayConfig::new(Store::Redis {
            url: url.to_string(),
            timeouts: None,
        });
        cfg.store_cache = redis_cache_override(std::env::var(REDIS_CACHE_ENV).ok().as_deref());
        cfg
    }

    /// Redis Cluster store (`kind: redis-cluster`) with these seed node URLs
    /// (e.g. [`super::RedisCluster::urls`]); near cache as for [`GatewayConfig::redis`].
    pub fn redis_cluster(nodes: &[String]) -> GatewayConfig {
        let mut cfg = GatewayConfig::new(Store::RedisCluster {
            nodes: nodes.to_vec(),
            timeouts: None,
        });
        cfg.store_cache = redis_cache_override(std::env::var(REDIS_CACHE_ENV).ok().as_deref());
        cfg
    }

    /// Sets `store.cache` to `yaml`, a flow mapping such as
    /// `{enabled: true, max_age_seconds: 60}`, whatever [`REDIS_CACHE_ENV`]
    /// says; `None` leaves the key out (the gateway's default). Written for
    /// any store kind, so a test can check that `kind: embedded` refuses it.
    pub fn store_cache(mut self, yaml: Option<&str>) -> Self {
        self.store_cache = yaml.map(str::to_string);
        self
    }

    /// Defaults to a port where nothing listens.
    pub fn upstream(mut self, url: &str) -> Self {
        self.upstream_url = url.to_string();
        self
    }

    pub fn upstream_tls_verify(mut self, verify: bool) -> Self {
        self.upstream_tls_verify = Some(verify);
        self
    }

    pub fn upstream_timeouts(mut self, connect_ms: u64, read_ms: u64) -> Self {
        self.upstream_timeouts = Some((connect_ms, read_ms));
        self
    }

    /// Redis `connect_timeout_ms`, `response_timeout_ms`, `retries`; ignored for embedded.
    pub fn redis_timeouts(mut self, connect_ms: u64, response_ms: u64, retries: u32) -> Self {
        if let Store::Redis { timeouts, .. } | Store::RedisCluster { timeouts, .. } =
            &mut self.store
        {
            *timeouts = Some((connect_ms, response_ms, retries));
        }
        self
    }

    pub fn trusted_proxies(mut self, cidrs: &[&str]) -> Self {
        self.trusted_proxies = cidrs.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn public_routes(mut self, prefixes: &[&str]) -> Self {
        self.public_routes = prefixes.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Replaces the project sources, e.g. `&[("path", "/p/{projectId}"), ("query", "workspaceId")]`;
    /// kinds are `path`, `query`, `header`, `body`.
    pub fn project_sources(mut self, sources: &[(&str, &str)]) -> Self {
        self.project_sources = sources
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }

    pub fn max_body_bytes(mut self, n: u64) -> Self {
        self.max_body_bytes = Some(n);
        self
    }

    /// Renames one injected header, e.g. `header_name("identity_id", "x-identity-id")`.
    pub fn header_name(mut self, field: &str, name: &str) -> Self {
        match self.headers.iter_mut().find(|(f, _)| f == field) {
            Some(entry) => entry.1 = name.to_string(),
            None => self.headers.push((field.to_string(), name.to_string())),
        }
        self
    }

    pub fn forward_authorization(mut self, forward: bool) -> Self {
        self.forward_authorization = forward;
        self
    }

    pub fn threads(mut self, n: u32) -> Self {
        self.threads = n;
        self
    }

    pub fn grace_period_seconds(mut self, s: u32) -> Self {
        self.grace_period_seconds = s;
        self
    }

    /// Replaces a whole top-level section (`server`, `admin`, `upstream`,
    /// `store`, `trusted_proxies`, `public_routes`, `project`, `headers`, or a
    /// new one) with `yaml`, the section's value as block YAML; the builder
    /// indents it. Listen ports then come from `yaml`, not from the builder.
    pub fn section(mut self, key: &str, yaml: &str) -> Self {
        self.sections.retain(|(k, _)| k != key);
        self.sections
            .push((key.to_string(), Some(yaml.to_string())));
        self
    }

    /// Leaves a top-level section out of the file.
    pub fn omit(mut self, key: &str) -> Self {
        self.sections.retain(|(k, _)| k != key);
        self.sections.push((key.to_string(), None));
        self
    }

    /// Raw YAML appended at the end. Must not repeat a key the builder writes
    /// (use [`GatewayConfig::section`] for that).
    pub fn extra(mut self, yaml: &str) -> Self {
        self.extra.push_str(yaml);
        if !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self
    }

    /// Sets an environment variable for the gateway process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), Some(value.to_string())));
        self
    }

    /// Starts the gateway without `TOKENGATE_ADMIN_KEY` in its environment.
    pub fn no_admin_key(mut self) -> Self {
        self.env.push(("TOKENGATE_ADMIN_KEY".to_string(), None));
        self
    }

    /// New listen and admin ports, e.g. for a second gateway from a clone.
    pub fn fresh_ports(mut self) -> Self {
        (self.listen_port, self.admin_port) = two_free_ports();
        self.tls_port = third_free_port(self.listen_port, self.admin_port);
        self
    }

    /// Adds a TLS proxy listener on its own port: `yaml` is `server.tls`
    /// without `listen` (certificates, client_ca, h2).
    pub fn server_tls(mut self, yaml: &str) -> Self {
        self.server_tls = Some(yaml.to_string());
        self
    }

    /// TLS on the admin listener (`admin.tls`); the harness's probes trust
    /// `ca` and ask for the name `localhost`.
    pub fn admin_tls(mut self, yaml: &str, ca: &Path) -> Self {
        self.admin_tls = Some((yaml.to_string(), ca.to_path_buf()));
        self
    }

    /// Lines added to the generated `server` section
    /// (`header_timeout_seconds: 1\n`), which keeps its listeners.
    /// Lines added to the generated `admin` section (`lockout: {threshold: 0}\n`).
    pub fn admin_extra(mut self, yaml: &str) -> Self {
        self.admin_extra.push_str(yaml);
        self
    }

    pub fn server_extra(mut self, yaml: &str) -> Self {
        self.server_extra.push_str(yaml);
        self
    }

    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    fn generated_section(&self, key: &str) -> Option<String> {
        let list = |v: &[String]| flow_list(v);
        Some(match key {
            "server" => {
                let mut s = format!(
                    "listen: [{}]\nthreads: {}\ngrace_period_seconds: {}\n",
                    q(&format!("127.0.0.1:{}", self.listen_port)),
                    self.threads,
                    self.grace_period_seconds
                );
                s.push_str(&self.server_extra);
                if let Some(tls) = &self.server_tls {
                    s.push_str(&format!(
                        "tls:\n  listen: [{}]\n{}",
                        q(&format!("127.0.0.1:{}", self.tls_port)),
                        indent(tls, 2)
                    ));
                }
                s
            }
            "admin" => {
                let mut s = format!(
                    "listen: {}\napi_key_env: TOKENGATE_ADMIN_KEY\n",
                    q(&format!("127.0.0.1:{}", self.admin_port))
                );
                if let Some((tls, _)) = &self.admin_tls {
                    s.push_str(&format!("tls:\n{}", indent(tls, 2)));
                }
                s.push_str(&self.admin_extra);
                s
            }
            "upstream" => {
                let mut s = format!("url: {}\n", q(&self.upstream_url));
                if let Some(verify) = self.upstream_tls_verify {
                    s.push_str(&format!("tls_verify: {verify}\n"));
                }
                if let Some((connect, read)) = self.upstream_timeouts {
                    s.push_str(&format!(
                        "connect_timeout_ms: {connect}\nread_timeout_ms: {read}\n"
                    ));
                }
                s
            }
            "store" => {
                let (mut s, timeouts) = match &self.store {
                    Store::Embedded(path) => (
                        format!("kind: embedded\npath: {}\n", q(&path.to_string_lossy())),
                        &None,
                    ),
                    Store::Redis { url, timeouts } => {
                        (format!("kind: redis\nurl: {}\n", q(url)), timeouts)
                    }
                    Store::RedisCluster { nodes, timeouts } => (
                        format!("kind: redis-cluster\nnodes: {}\n", flow_list(nodes)),
                        timeouts,
                    ),
                };
                if let Some((connect, response, retries)) = timeouts {
                    s.push_str(&format!(
                        "connect_timeout_ms: {connect}\nresponse_timeout_ms: {response}\nretries: {retries}\n"
                    ));
                }
                if let Some(cache) = &self.store_cache {
                    s.push_str(&format!("cache: {cache}\n"));
                }
                s
            }
            "trusted_proxies" => list(&self.trusted_proxies),
            "public_routes" => list(&self.public_routes),
            "project" => {
                let mut s = String::from("sources:\n");
                for (kind, value) in &self.project_sources {
                    s.push_str(&format!("  - {kind}: {}\n", q(value)));
                }
                if let Some(n) = self.max_body_bytes {
                    s.push_str(&format!("max_body_bytes: {n}\n"));
                }
                s
            }
            "headers" => {
                let mut s = String::new();
                for (field, name) in &self.headers {
                    s.push_str(&format!("{field}: {}\n", q(name)));
                }
                s.push_str(&format!(
                    "forward_authorization: {}\n",
                    self.forward_authorization
                ));
                s
            }
            _ => return None,
        })
    }

    /// The config file's text.
    pub fn to_yaml(&self) -> String {
        let mut keys: Vec<String> = [
            "server",
            "admin",
            "upstream",
            "store",
            "trusted_proxies",
            "public_routes",
            "project",
            "headers",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (key, _) in &self.sections {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        let mut out = String::from("# written by the tokengate integration-test harness\n");
        for key in keys {
            let body = match self.sections.iter().find(|(k, _)| *k == key) {
                Some((_, Some(raw))) => raw.clone(),
                Some((_, None)) => continue,
                None => match self.generated_section(&key) {
                    Some(body) => body,
                    None => continue,
                },
            };
            let body = body.trim_end();
            if body.starts_with('[') || (!body.contains('\n') && !body.contains(": ")) {
                out.push_str(&format!("{key}: {body}\n"));
            } else {
                out.push_str(&format!("{key}:\n"));
                for line in body.lines() {
                    out.push_str(&format!("  {line}\n"));
                }
            }
        }
        out.push_str(&self.extra);
        out
    }
}

/// A running tokengate process with its own temp directory (config file,
/// logs, and the embedded store when its path is relative). Killed on drop.
pub struct Gateway {
    cfg: GatewayConfig,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    proc: Option<Proc>,
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tokengate")
}

fn addr_in_use(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    log.contains("address already in use") || log.contains("addrinuse")
}

impl Gateway {
    /// Starts `tokengate serve` and waits until `/healthz` on the admin
    /// listener answers 200 and the proxy port accepts connections; panics
    /// with the log if it exits or is not ready within 30 s.
    #[track_caller]
    pub fn start(cfg: GatewayConfig) -> Gateway {
        Gateway::try_start(cfg).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Gateway::start`], returning the failure (with the log) instead
    /// of panicking, for tests that expect a refusal to start.
    pub fn try_start(cfg: GatewayConfig) -> Result<Gateway, String> {
        let dir = tempfile::Builder::new()
            .prefix("tg-gateway-")
            .tempdir()
            .expect("tempdir for gateway");
        let config_path = dir.path().join("tokengate.yaml");
        let mut gw = Gateway {
            cfg,
            dir,
            config_path,
            proc: None,
        };
        // Ports came from free_port and may have been taken since; only the
        // harness-chosen ports can be re-picked, so only then is this retried.
        let custom_listeners = gw
            .cfg
            .sections
            .iter()
            .any(|(k, _)| k == "server" || k == "admin");
        let mut attempts = 0;
        loop {
            attempts += 1;
            // A port taken by a live listener would let that listener answer
            // the readiness probes for us; catch it before spawning.
            if !custom_listeners && attempts < 4 && !gw.ports_free() {
                gw.cfg = gw.cfg.clone().fresh_ports();
                continue;
            }
            std::fs::write(&gw.config_path, gw.cfg.to_yaml()).expect("write gateway config");
            match gw.spawn_and_wait() {
                Ok(()) => return Ok(gw),
                Err((_, true)) if !custom_listeners && attempts < 4 => {
                    gw.cfg = gw.cfg.clone().fresh_ports();
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    fn stdout_path(&self) -> PathBuf {
        self.dir.path().join("stdout.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    fn ports_free(&self) -> bool {
        [self.cfg.listen_port, self.cfg.admin_port, self.cfg.tls_port]
            .iter()
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
    }

    /// Spawns and waits for readiness; on failure returns the message and
    /// whether this attempt's log says a port was taken.
    fn spawn_and_wait(&mut self) -> Result<(), (String, bool)> {
        let log_before = self.log().len();
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .env("TOKENGATE_ADMIN_KEY", ADMIN_KEY)
            .env("RUST_LOG", "info")
            .env("RUST_BACKTRACE", "1");
        for (key, value) in &self.cfg.env {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        let mut proc = Proc::spawn(
            "tokengate",
            &mut cmd,
            &self.stdout_path(),
            &self.stderr_path(),
        );
        let health = format!("{}/healthz", self.admin_url());
        let proxy: SocketAddr = self.addr().parse().expect("proxy socket address");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = proc.exited() {
                let log = self.log();
                let new_log = log.get(log_before..).unwrap_or(&log);
                return Err((
                    format!(
                        "tokengate exited with {status} before becoming ready\nconfig:\n{}\nlog:\n{}",
                        self.cfg.to_yaml(),
                        tail(new_log, 80)
                    ),
                    addr_in_use(new_log),
                ));
            }
            let healthy = match &self.cfg.admin_tls {
                None => probe_agent()
                    .get(&health)
                    .call()
                    .is_ok_and(|r| r.status() == 200),
                Some((_, ca)) => super::tls::Client::trusting(ca)
                    .request(
                        &format!("127.0.0.1:{}", self.cfg.admin_port),
                        "localhost",
                        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n",
                    )
                    .is_ok_and(|r| r.status == 200),
            };
            if healthy && TcpStream::connect_timeout(&proxy, Duration::from_secs(1)).is_ok() {
                self.proc = Some(proc);
                return Ok(());
            }
            if Instant::now() >= deadline {
                proc.kill9();
                return Err((
                    format!(
                        "tokengate was not ready within {READY_TIMEOUT:?} ({health} never answered 200)\nlog:\n{}",
                        tail(&self.log(), 80)
                    ),
                    false,
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Proxy base URL, "http://127.0.0.1:P".
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The TLS proxy listener's address, "127.0.0.1:T".
    pub fn tls_addr(&self) -> String {
        format!("127.0.0.1:{}", self.cfg.tls_port)
    }

    /// Proxy address "127.0.0.1:P", for [`super::raw_http`].
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.cfg.listen_port)
    }

    /// Admin base URL (metrics, health), "http://127.0.0.1:A".
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.cfg.admin_port)
    }

    pub fn port(&self) -> u16 {
        self.cfg.listen_port
    }

    pub fn admin_port(&self) -> u16 {
        self.cfg.admin_port
    }

    /// Management API client authenticated with [`ADMIN_KEY`].
    pub fn admin(&self) -> Admin {
        Admin::new(&self.url())
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.cfg
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The gateway's temp directory (config, logs, relative store path).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Proc::is_running)
    }

    /// Everything the gateway wrote to stdout then stderr, across restarts.
    /// Tests grep this to prove no token secret was logged.
    pub fn log(&self) -> String {
        read_lossy(&self.stdout_path()) + &read_lossy(&self.stderr_path())
    }

    /// Sends a signal by name ("HUP", "TERM", ...).
    pub fn signal(&mut self, sig: &str) {
        if let Some(proc) = self.proc.as_mut() {
            proc.signal(sig);
        }
    }

    /// SIGKILL and reap: a crash with no chance to flush.
    pub fn kill9(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill9();
        }
    }

    /// SIGTERM and wait up to 20 s; panics with the log if it does not exit.
    #[track_caller]
    pub fn stop(&mut self) -> ExitStatus {
        let Some(mut proc) = self.proc.take() else {
            panic!("stop: the gateway is not running");
        };
        proc.signal("TERM");
        match proc.wait_timeout(STOP_TIMEOUT) {
            Some(status) => status,
            None => {
                proc.kill9();
                panic!(
                    "tokengate did not exit within {STOP_TIMEOUT:?} of SIGTERM\nlog:\n{}",
                    tail(&self.log(), 80)
                );
            }
        }
    }

    /// Starts again with the same config file, ports and directory (killing
    /// the running process first, if any); panics with the log on failure.
    #[track_caller]
    pub fn restart(&mut self) {
        self.kill9();
        let deadline = Instant::now() + READY_TIMEOUT;
        if !poll_until(READY_TIMEOUT, || self.ports_free()) {
            panic!(
                "restart: ports {} and {} stayed busy after the old process died",
                self.cfg.listen_port, self.cfg.admin_port
            );
        }
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                // The dead process's sockets can take a moment to be released.
                Err((_, true)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err((e, _)) => panic!("restart: {e}"),
            }
        }
    }

    /// Runs `tokengate check-config FILE`; returns the exit code (-1 when
    /// killed by a signal) and stdout followed by stderr.
    pub fn check_config(path: impl AsRef<Path>) -> (i32, String) {
        let mut cmd = Command::new(binary());
        cmd.arg("check-config").arg(path.as_ref());
        run_bounded("tokengate check-config", &mut cmd, CHECK_TIMEOUT)
    }

    /// [`Gateway::check_config`] on a file holding `yaml`.
    pub fn check_config_yaml(yaml: &str) -> (i32, String) {
        let dir = tempfile::tempdir().expect("tempdir for config");
        let path = dir.path().join("tokengate.yaml");
        std::fs::write(&path, yaml).expect("write config");
        Gateway::check_config(&path)
    }

    /// The admin listener's `/metrics` text (Prometheus exposition format).
    #[track_caller]
    pub fn metrics_text(&self) -> String {
        let url = format!("{}/metrics", self.admin_url());
        let resp = super::http::http("GET", &url, &[], None);
        assert_eq!(resp.status, 200, "GET {url}: {}", resp.body);
        resp.body
    }

    /// Every sample of metric `name` on `/metrics` (any labels), in order.
    #[track_caller]
    pub fn metric_samples(&self, name: &str) -> Vec<f64> {
        metric_samples(&self.metrics_text(), name)
    }

    /// The sum of every sample of metric `name` (a counter's total over its
    /// labels); None when `/metrics` does not have it.
    #[track_caller]
    pub fn metric(&self, name: &str) -> Option<f64> {
        let samples = self.metric_samples(name);
        (!samples.is_empty()).then(|| samples.iter().sum())
    }

    /// Waits until the admin `/healthz` answers 200, e.g. after a store outage.
    pub fn wait_healthy(&self, timeout: Duration) -> bool {
        let health = format!("{}/healthz", self.admin_url());
        poll_until(timeout, || {
            probe_agent()
                .get(&health)
                .call()
                .is_ok_and(|r| r.status() == 200)
        })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- tokengate {} log (tail) ---\n{}",
                self.url(),
                tail(&self.log(), 60)
            );
        }
        self.kill9();
    }
}

/// Short timeouts: a probe that hangs would eat the whole readiness budget.
fn probe_agent() -> &'static ureq::Agent {
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(1))
            .max_idle_connections(0)
            .build()
    })
}

/// The values of every sample of metric `name` in Prometheus text `text`:
/// lines `name value` or `name{labels} value`, comments skipped.
pub fn metric_samples(text: &str, name: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let rest = if let Some(labelled) = rest.strip_prefix('{') {
                labelled.split_once('}')?.1
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None;
            };
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .collect()
}
