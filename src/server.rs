//! Assembles and runs the Pingora server (proxy listeners + admin listener) from a `Config`.

use crate::access_log::AccessLog;
use crate::admin::AdminApp;
use crate::api::Api;
use crate::audit::AuditLog;
use crate::config::{Config, RedisUrls, StoreConfig};
use crate::connection::{Guarded, Limits};
use crate::listener::ProxyListeners;
use crate::metrics::Metrics;
use crate::proxy::policy::Policy;
use crate::proxy::Gateway;
use crate::reload::Reloader;
use crate::shutdown::{Drain, Signals};
use crate::store::embedded::EmbeddedStore;
use crate::store::metered::MeteredStore;
use crate::store::redis::{CacheMetrics, CacheSettings, Clock, RedisSettings, RedisStore};
use crate::store::Store;
use crate::tls::{TlsEndpoint, TlsFront};
use anyhow::Context;
use arc_swap::ArcSwap;
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Opens the configured store. Redis connects lazily, on first use, but a
/// `url_env` / `nodes_env` variable is read here: unset or not a redis://
/// URL, the gateway does not start. `metrics` receives the near cache's
/// figures, when there is one.
pub fn open_store(cfg: &StoreConfig, metrics: Option<&Metrics>) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match cfg {
        StoreConfig::Embedded { path } => Arc::new(
            EmbeddedStore::open(path).with_context(|| format!("opening {}", path.display()))?,
        ),
        StoreConfig::Redis {
            urls,
            cluster,
            connect_timeout_ms,
            response_timeout_ms,
            retries,
            cache,
        } => Arc::new(RedisStore::new(RedisSettings {
            urls: urls.resolve(*cluster)?,
            cluster: *cluster,
            connect_timeout: Duration::from_millis(*connect_timeout_ms),
            response_timeout: Duration::from_millis(*response_timeout_ms),
            retries: *retries,
            cache: cache.as_ref().map(|c| CacheSettings {
                max_age: Duration::from_secs(c.max_age_seconds),
                max_identities: c.max_identities,
                metrics: metrics.map_or_else(CacheMetrics::unregistered, |m| m.cache.clone()),
            }),
            clock: Clock::Redis,
        })?),
    })
}

/// The store kind and cache mode, for the start-up line (no credentials:
/// a Redis URL may hold a password).
fn describe_store(store: &StoreConfig) -> String {
    match store {
        StoreConfig::Embedded { path } => format!("embedded ({})", path.display()),
        StoreConfig::Redis {
            urls,
            cluster,
            cache,
            ..
        } => format!(
            "{}{}, near cache {}",
            if *cluster { "redis-cluster" } else { "redis" },
            match urls {
                RedisUrls::Env(var) => format!(" (address from ${var})"),
                RedisUrls::Listed(_) => String::new(),
            },
            match cache {
                Some(c) => format!("on (max age {} s)", c.max_age_seconds),
                None => "off".into(),
            }
        ),
    }
}

/// Fails fast when a listen address is taken: Pingora would retry for half
/// a minute and then lose only that service, leaving a process that looks
/// healthy but serves nothing.
fn check_listen_addresses(cfg: &Config) -> anyhow::Result<()> {
    let all = cfg.listen.iter().chain(&cfg.tls_listen);
    for addr in all.chain(cfg.admin_listen.iter()) {
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    }
    Ok(())
}

/// Raises the soft open-file limit to the hard one (each client connection
/// is a file descriptor, and the common default of 1,024 stops accepting long
/// before memory runs out) and returns how many client connections the proxy
/// listeners may hold: the configured limit, lowered to three quarters of the
/// file limit so that upstream connections, the store and the accept that
/// sends a refusal still find descriptors.
fn connection_limit(cfg: &Config) -> usize {
    let files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            log::warn!("cannot raise the open-file limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    let room = usize::try_from(files / 4 * 3).unwrap_or(usize::MAX).max(1);
    if room < cfg.max_connections {
        log::warn!(
            "open-file limit {files} allows {room} client connections, below server.max_connections {}",
            cfg.max_connections
        );
    }
    cfg.max_connections.min(room)
}

/// The TLS of the proxy listeners (`server.tls`) and of the admin listener.
type ListenerTls = (Option<Arc<TlsEndpoint>>, Option<Arc<TlsEndpoint>>);

/// The TLS endpoints of `server.tls` and `admin.tls`, their files loaded and
/// checked (start-up stops on any problem, each named).
pub fn load_tls(cfg: &Config) -> Result<ListenerTls, Vec<String>> {
    let load = |key, tls: &Option<crate::config::TlsConfig>| {
        tls.as_ref()
            .map(|t| TlsEndpoint::load(key, t).map(Arc::new))
            .transpose()
    };
    match (
        load("server.tls", &cfg.tls),
        load("admin.tls", &cfg.admin_tls),
    ) {
        (Ok(proxy), Ok(admin)) => Ok((proxy, admin)),
        (proxy, admin) => Err([proxy.err(), admin.err()]
            .into_iter()
            .flatten()
            .flatten()
            .collect()),
    }
}

/// Whoever binds `server.upgrade_socket` first receives the listening
/// sockets at the next upgrade (SIGQUIT): a directory other users can write
/// to (such as /tmp) lets one of them take the gateway's traffic.
fn warn_if_others_can_bind(socket: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let dir = match socket.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Ok(meta) = std::fs::metadata(&dir) {
        if meta.permissions().mode() & 0o022 != 0 {
            log::warn!(
                "server.upgrade_socket is in {}, which other users can write to: one of them \
                 could receive the listening sockets at the next upgrade; use a private directory",
                dir.display()
            );
        }
    }
}

/// Runs the gateway until it is told to stop (`shutdown.rs`: SIGTERM,
/// SIGINT, SIGQUIT). With `upgrade`, the listening sockets come from the
/// running gateway (Pingora's graceful upgrade) instead of being bound.
pub fn run(cfg: Config, path: &Path, upgrade: bool) -> anyhow::Result<()> {
    // The old process holds the ports until it hands them over.
    if !upgrade {
        check_listen_addresses(&cfg)?;
    } else if matches!(cfg.store, StoreConfig::Embedded { .. }) {
        anyhow::bail!(
            "serve --upgrade needs the Redis store: the embedded store's file stays locked \
             by the running gateway until it has drained and exited"
        );
    }
    let (proxy_tls, admin_tls) =
        load_tls(&cfg).map_err(|e| anyhow::anyhow!("TLS: {}", e.join("; ")))?;
    let admin_key = crate::config::read_admin_key(&cfg).map_err(anyhow::Error::msg)?;
    if let Some(key) = &admin_key {
        crate::logging::register_secret(key);
    }
    if admin_key.is_none() {
        log::warn!(
            "no admin key configured: only admin identities' tokens can use the management API"
        );
    }
    crate::log_sink::watch_reopen_signals()
        .context("installing the SIGHUP and SIGUSR1 handlers")?;
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(Metrics::register(&registry)?);
    let store: Arc<dyn Store> = Arc::new(MeteredStore::new(
        open_store(&cfg.store, Some(&metrics))?,
        metrics.store.clone(),
    ));

    if let Some(ca) = &cfg.upstream.ca_file {
        std::fs::metadata(ca)
            .with_context(|| format!("upstream.ca_file: cannot read {}", ca.display()))?;
    }
    let conf = ServerConf {
        threads: cfg.threads,
        // Pingora's connector trusts exactly these CAs for upstream TLS.
        ca_file: cfg
            .upstream
            .ca_file
            .as_ref()
            .map(|p| p.display().to_string()),
        grace_period_seconds: Some(cfg.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(cfg.grace_period_seconds.max(1)),
        upgrade_sock: cfg.upgrade_socket.display().to_string(),
        ..ServerConf::default()
    };
    warn_if_others_can_bind(&cfg.upgrade_socket);
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();

    let cfg = Arc::new(cfg);
    let audit = Arc::new(
        AuditLog::start(&cfg.audit, metrics.audit_log.clone()).context("audit: cannot start")?,
    );
    let admin_key_hash = admin_key.as_deref().and_then(crate::api::admin_key_hash);
    let api = Arc::new(Api::with_lockout(
        store.clone(),
        admin_key,
        cfg.lockout,
        Some(metrics.lockouts.clone()),
    ));
    let access_log = Arc::new(
        AccessLog::start(&cfg.access_log, metrics.access_log.clone())
            .context("access_log: cannot start")?,
    );
    let policy = Policy::new(cfg.clone(), access_log, audit, None).map_err(anyhow::Error::msg)?;
    let live = Arc::new(ArcSwap::from_pointee(policy));
    let reloader = Arc::new(Reloader::new(
        path.to_path_buf(),
        live.clone(),
        metrics.clone(),
        [proxy_tls.clone(), admin_tls.clone()],
    ));
    crate::reload::on_sighup(reloader.clone()).context("installing the SIGHUP handler")?;
    let gateway = Gateway::new(store.clone(), api.clone(), metrics.clone(), live.clone());
    let limits = Limits {
        max_connections: connection_limit(&cfg),
        header_timeout: Duration::from_secs(cfg.header_timeout_seconds),
        keepalive_timeout: Duration::from_secs(cfg.keepalive_timeout_seconds),
    };
    let mut proxy = pingora::proxy::http_proxy(&server.configuration, gateway);
    // HTTP/2 (TLS listeners, by ALPN): a connection with no stream open
    // is closed after the keep-alive timeout, as an idle HTTP/1 one is.
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(limits.keepalive_timeout);
    proxy.server_options = Some(options);
    let app = Guarded::new(
        proxy,
        limits,
        metrics.open_connections.clone(),
        metrics.connections_refused.clone(),
    );
    // Our own accept loop: no L4 read buffer (Pingora's is 64 KiB per
    // connection, kept for the connection's life: two thirds of what an idle
    // keep-alive client cost) and no per-connection handshake state. Pingora
    // parses headers in its own buffer and reads bodies in large chunks, so
    // the read buffer saved little.
    let drain = Arc::new(Drain::default());
    server.add_service(ProxyListeners::new(
        "tokengate proxy",
        &cfg.listen,
        proxy_tls.map(|t| (cfg.tls_listen.as_slice(), t)),
        app,
        drain.clone(),
    ));

    if let Some(addr) = cfg.admin_listen {
        let app = AdminApp {
            store: store.clone(),
            registry,
            reloader,
            admin_key_hash,
            api,
            metrics: metrics.clone(),
            live: live.clone(),
            console: cfg.console.clone(),
        };
        let name = "tokengate admin".to_string();
        match admin_tls {
            None => {
                let mut admin = Service::new(name, app);
                admin.add_tcp(&addr.to_string());
                server.add_service(admin);
            }
            Some(tls) => {
                let front = TlsFront {
                    inner: Arc::new(app),
                    tls,
                    timeout: limits.header_timeout,
                };
                let mut admin = Service::new(name, front);
                admin.add_tcp(&addr.to_string());
                server.add_service(admin);
            }
        }
    }
    if let (Some(addr), Some(path)) = (cfg.admin_listen, &cfg.console) {
        let scheme = if cfg.admin_tls.is_some() {
            "https"
        } else {
            "http"
        };
        log::info!("operator console on {scheme}://{addr}{path}");
    }
    log::info!(
        "tokengate {} listening on {:?} and with TLS on {:?}, upstream {}:{}, store {}",
        env!("CARGO_PKG_VERSION"),
        cfg.listen,
        cfg.tls_listen,
        cfg.upstream.host,
        cfg.upstream.port,
        describe_store(&cfg.store)
    );
    // `run` returns once the services have drained, so what the store still
    // holds in memory is written before the process exits.
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals {
            drain,
            open: metrics.open_connections.clone(),
            grace: Duration::from_secs(cfg.grace_period_seconds),
        }),
    });
    live.load().access_log.finish(Duration::from_secs(2));
    store.flush().context("flushing the store on shutdown")?;
    log::info!("tokengate stopped");
    Ok(())
}
