//! Assembles and runs the Pingora server (proxy listeners + admin listener) from a `Config`.

use crate::admin::AdminApp;
use crate::api::Api;
use crate::config::{Config, StoreConfig};
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::{RedisSettings, RedisStore};
use crate::store::Store;
use anyhow::Context;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// Opens the configured store. Redis connects lazily, on first use.
pub fn open_store(cfg: &StoreConfig) -> anyhow::Result<Arc<dyn Store>> {
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
        } => Arc::new(RedisStore::new(RedisSettings {
            urls: urls.clone(),
            cluster: *cluster,
            connect_timeout: Duration::from_millis(*connect_timeout_ms),
            response_timeout: Duration::from_millis(*response_timeout_ms),
            retries: *retries,
        })?),
    })
}

/// Resolves the upstream host once, at start-up.
fn resolve_upstream(cfg: &Config) -> anyhow::Result<SocketAddr> {
    let u = &cfg.upstream;
    (u.host.as_str(), u.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve upstream host {}", u.host))?
        .next()
        .with_context(|| format!("upstream host {} has no address", u.host))
}

/// Fails fast when a listen address is taken: Pingora would retry for half
/// a minute and then lose only that service, leaving a process that looks
/// healthy but serves nothing.
fn check_listen_addresses(cfg: &Config) -> anyhow::Result<()> {
    for addr in cfg.listen.iter().chain(cfg.admin_listen.iter()) {
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    }
    Ok(())
}

/// Runs the gateway until it is told to stop (SIGTERM, SIGINT, SIGQUIT).
pub fn run(cfg: Config) -> anyhow::Result<()> {
    check_listen_addresses(&cfg)?;
    let admin_key = crate::config::read_admin_key(&cfg).map_err(anyhow::Error::msg)?;
    if let Some(key) = &admin_key {
        crate::logging::register_secret(key);
    }
    if admin_key.is_none() {
        log::warn!(
            "no admin key configured: only admin identities' tokens can use the management API"
        );
    }
    let upstream = resolve_upstream(&cfg)?;
    let store = open_store(&cfg.store)?;
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(Metrics::register(&registry)?);

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
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let cfg = Arc::new(cfg);
    let api = Api::new(store.clone(), admin_key);
    let gateway = Gateway::new(store.clone(), api, cfg.clone(), metrics, upstream);
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        gateway,
        "tokengate proxy",
    );
    for addr in &cfg.listen {
        proxy.add_tcp(&addr.to_string());
    }
    server.add_service(proxy);

    if let Some(addr) = cfg.admin_listen {
        let mut admin = Service::new(
            "tokengate admin".to_string(),
            AdminApp {
                store: store.clone(),
                registry,
            },
        );
        admin.add_tcp(&addr.to_string());
        server.add_service(admin);
    }
    log::info!(
        "tokengate listening on {:?}, upstream {}:{}",
        cfg.listen,
        cfg.upstream.host,
        cfg.upstream.port
    );
    // `run` returns once the services have drained, so what the store still
    // holds in memory is written before the process exits.
    server.run(RunArgs::default());
    store.flush().context("flushing the store on shutdown")?;
    log::info!("tokengate stopped");
    Ok(())
}
