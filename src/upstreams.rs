//! Upstream pools at run time, one per `upstreams` entry plus `default` (the
//! `upstream` section): Pingora's load balancer over every address the
//! pool's names resolve to, round robin or least connections, active health
//! checks, addresses left out for a while after refusing a connection
//! (passive ejection), and names resolved again on an interval. The checks
//! and re-resolution run on a small runtime of their own, for as long as the
//! pool is in use.

use crate::config::{HealthCheck, Selection, Upstream, UpstreamPool};
use async_trait::async_trait;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::health_check::{HealthCheck as Check, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::prelude::HttpPeer;
use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// The default upstream's pool name.
pub const DEFAULT: &str = "default";

/// How often the default upstream's name is resolved again.
const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(30);

/// What one address of a pool is: the target it came from.
#[derive(Debug, Clone)]
struct Target {
    /// Index into `Pool::targets`.
    index: usize,
}

/// The address a request goes to, and how to reach it.
#[derive(Debug, Clone)]
pub struct Picked {
    pub addr: SocketAddr,
    index: usize,
}

pub struct Pool {
    pub name: String,
    lb: LoadBalancer<RoundRobin>,
    targets: Vec<Upstream>,
    /// Per target, the Host header sent upstream: its own authority, as
    /// nginx does by default, so virtual hosts and TLS front ends route right.
    host_headers: Vec<http::HeaderValue>,
    selection: Selection,
    eject_for: Duration,
    ejected: Mutex<HashMap<SocketAddr, Instant>>,
    /// Whether `ejected` may hold anything: the request path takes its
    /// lock only then.
    any_ejected: AtomicBool,
    /// Requests in flight per address, for least connections.
    in_flight: Mutex<HashMap<SocketAddr, usize>>,
    /// The configuration it was built from: a reload that keeps it keeps the pool.
    pub config: UpstreamPool,
}

/// The runtime the checks and re-resolution run on: one thread, apart from
/// the request path's.
fn maintenance() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("upstreams")
            .enable_all()
            .build()
            .expect("a one-thread runtime for upstream checks")
    })
}

/// Resolves every target's name; the first result is given at once (it was
/// resolved when the pool was built), later ones by a lookup.
struct Resolve {
    targets: Vec<(String, u16)>,
    first: Mutex<Option<BTreeSet<Backend>>>,
}

fn backend(addr: std::net::SocketAddr, index: usize) -> Backend {
    let mut b = Backend {
        addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
        weight: 1,
        ext: Default::default(),
    };
    b.ext.insert(Target { index });
    b
}

/// Every address of every target, resolved now (blocking): at build time a
/// pool must know where to send before its first request.
fn resolve_now(targets: &[(String, u16)]) -> Result<BTreeSet<Backend>, String> {
    let mut set = BTreeSet::new();
    for (index, (host, port)) in targets.iter().enumerate() {
        let addrs = (host.as_str(), *port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        set.extend(addrs.map(|a| backend(a, index)));
    }
    Ok(set)
}

#[async_trait]
impl ServiceDiscovery for Resolve {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let first = self
            .first
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(set) = first {
            return Ok((set, HashMap::new()));
        }
        let mut set = BTreeSet::new();
        for (index, (host, port)) in self.targets.iter().enumerate() {
            match tokio::net::lookup_host((host.as_str(), *port)).await {
                Ok(addrs) => set.extend(addrs.map(|a| backend(a, index))),
                Err(e) => log::warn!("upstream {host}: cannot resolve: {e}"),
            }
        }
        if set.is_empty() {
            // Keep the addresses known so far rather than none.
            return pingora::Error::e_explain(
                pingora::ErrorType::InternalError,
                "no upstream name resolved",
            );
        }
        Ok((set, HashMap::new()))
    }
}

fn health_check(pool: &UpstreamPool, h: &HealthCheck) -> Box<dyn Check + Send + Sync> {
    let first = &pool.targets[0];
    let timeout = Duration::from_millis(h.timeout_ms);
    match &h.path {
        Some(path) => {
            let mut check = HttpHealthCheck::new(&first.host, first.tls);
            check.consecutive_success = h.healthy_after;
            check.consecutive_failure = h.unhealthy_after;
            check.peer_template.options.connection_timeout = Some(timeout);
            check.peer_template.options.read_timeout = Some(timeout);
            check.peer_template.options.verify_cert = first.tls_verify;
            check.peer_template.options.verify_hostname = first.tls_verify;
            check.peer_template.sni = first.sni.clone();
            if let Ok(uri) = http::Uri::try_from(path.as_str()) {
                check.req.set_uri(uri);
            }
            // Any 2xx is healthy (Pingora's default takes only 200).
            check.validator = Some(Box::new(|resp| {
                if resp.status.is_success() {
                    Ok(())
                } else {
                    pingora::Error::e_explain(
                        pingora::ErrorType::InternalError,
                        "health check answered non-2xx",
                    )
                }
            }));
            Box::new(check)
        }
        None => {
            let mut check = if first.tls {
                TcpHealthCheck::new_tls(&first.sni)
            } else {
                TcpHealthCheck::new()
            };
            check.consecutive_success = h.healthy_after;
            check.consecutive_failure = h.unhealthy_after;
            check.peer_template.options.connection_timeout = Some(timeout);
            check
        }
    }
}

fn authority(u: &Upstream) -> http::HeaderValue {
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
    http::HeaderValue::from_str(&authority)
        .unwrap_or_else(|_| http::HeaderValue::from_static("localhost"))
}

impl Pool {
    /// The pool settings of the `upstream` section.
    pub fn default_config(u: &Upstream) -> UpstreamPool {
        UpstreamPool {
            name: DEFAULT.into(),
            targets: vec![u.clone()],
            selection: Selection::RoundRobin,
            health_check: None,
            eject_seconds: 0,
            dns_refresh_seconds: DEFAULT_DNS_REFRESH.as_secs(),
        }
    }

    /// Resolves the pool's names now and starts its checks.
    pub fn start(cfg: &UpstreamPool) -> Result<Arc<Pool>, String> {
        let names: Vec<(String, u16)> = cfg
            .targets
            .iter()
            .map(|t| (t.host.clone(), t.port))
            .collect();
        let first = resolve_now(&names).map_err(|e| format!("upstream {}: {e}", cfg.name))?;
        let discovery = Resolve {
            targets: names,
            first: Mutex::new(Some(first)),
        };
        let mut backends = Backends::new(Box::new(discovery));
        if let Some(h) = &cfg.health_check {
            backends.set_health_check(health_check(cfg, h));
        }
        let lb = LoadBalancer::<RoundRobin>::from_backends(backends);
        // The first discovery answers at once: this never waits.
        match futures_now(lb.update()) {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(format!("upstreams.{}: {e}", cfg.name)),
            None => return Err(format!("upstreams.{}: discovery did not answer", cfg.name)),
        }
        let pool = Arc::new(Pool {
            name: cfg.name.clone(),
            lb,
            host_headers: cfg.targets.iter().map(authority).collect(),
            targets: cfg.targets.clone(),
            selection: cfg.selection,
            eject_for: Duration::from_secs(cfg.eject_seconds),
            ejected: Mutex::new(HashMap::new()),
            any_ejected: AtomicBool::new(false),
            in_flight: Mutex::new(HashMap::new()),
            config: cfg.clone(),
        });
        let checks = cfg
            .health_check
            .as_ref()
            .map(|h| Duration::from_secs(h.interval_seconds));
        maintenance().spawn(maintain(
            Arc::downgrade(&pool),
            Duration::from_secs(cfg.dns_refresh_seconds),
            checks,
        ));
        Ok(pool)
    }

    fn is_ejected(&self, addr: &SocketAddr) -> bool {
        if !self.any_ejected.load(Ordering::Relaxed) {
            return false;
        }
        let ejected = lock(&self.ejected);
        ejected
            .get(addr)
            .is_some_and(|until| Instant::now() < *until)
    }

    /// The address for the next request: healthy and not ejected; when
    /// every address is out, any healthy one, then any at all, since
    /// refusing outright helps no one.
    pub fn pick(&self) -> Option<Picked> {
        let chosen = match self.selection {
            Selection::RoundRobin => self
                .lb
                .select_with(b"", 256, |b, healthy| {
                    healthy && !self.is_ejected(&to_std(&b.addr))
                })
                .or_else(|| self.lb.select(b"", 256)),
            Selection::LeastConnections => self.least_connections(),
        }
        .or_else(|| self.lb.backends().get_backend().iter().next().cloned())?;
        let index = if self.targets.len() == 1 {
            0
        } else {
            chosen.ext.get::<Target>().map_or(0, |t| t.index)
        };
        let addr = to_std(&chosen.addr);
        if self.selection == Selection::LeastConnections {
            *lock(&self.in_flight).entry(addr).or_insert(0) += 1;
        }
        Some(Picked { addr, index })
    }

    fn least_connections(&self) -> Option<Backend> {
        let all = self.lb.backends().get_backend();
        let in_flight = lock(&self.in_flight);
        let load = |b: &Backend| in_flight.get(&to_std(&b.addr)).copied().unwrap_or(0);
        let usable =
            |b: &&Backend| self.lb.backends().ready(b) && !self.is_ejected(&to_std(&b.addr));
        all.iter()
            .filter(usable)
            .min_by_key(|b| load(b))
            .or_else(|| {
                all.iter()
                    .filter(|b| self.lb.backends().ready(b))
                    .min_by_key(|b| load(b))
            })
            .cloned()
    }

    /// The request sent to `picked` is over (least-connections bookkeeping).
    pub fn release(&self, picked: &Picked) {
        if self.selection == Selection::LeastConnections {
            if let Some(n) = lock(&self.in_flight).get_mut(&picked.addr) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// `picked` refused a connection: leave it out for `eject_seconds`.
    /// Whether another address may take the request instead.
    pub fn eject(&self, picked: &Picked) -> bool {
        if self.eject_for.is_zero() {
            return false;
        }
        lock(&self.ejected).insert(picked.addr, Instant::now() + self.eject_for);
        self.any_ejected.store(true, Ordering::Relaxed);
        log::warn!(
            "upstream {}: {} refused a connection; left out for {:?}",
            self.name,
            picked.addr,
            self.eject_for
        );
        self.lb
            .backends()
            .get_backend()
            .iter()
            .any(|b| !self.is_ejected(&to_std(&b.addr)))
    }

    /// Pingora's peer for `picked`, with its target's TLS and timeouts.
    pub fn peer(&self, picked: &Picked) -> HttpPeer {
        let t = &self.targets[picked.index.min(self.targets.len() - 1)];
        let mut peer = HttpPeer::new(picked.addr, t.tls, t.sni.clone());
        peer.options.connection_timeout = Some(Duration::from_millis(t.connect_timeout_ms));
        peer.options.read_timeout = Some(Duration::from_millis(t.read_timeout_ms));
        peer.options.verify_cert = t.tls_verify;
        peer.options.verify_hostname = t.tls_verify;
        peer
    }

    /// The Host header for a request to `picked`.
    pub fn host_header(&self, picked: &Picked) -> http::HeaderValue {
        self.host_headers[picked.index.min(self.host_headers.len() - 1)].clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn to_std(addr: &pingora::protocols::l4::socket::SocketAddr) -> SocketAddr {
    addr.as_inet()
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Polls a future once: the first discovery is ready at once.
fn futures_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// Resolves names again and runs health checks on their intervals, until
/// the pool is dropped (a reload replaced it).
async fn maintain(pool: Weak<Pool>, dns: Duration, checks: Option<Duration>) {
    let mut next_dns = Instant::now() + dns;
    let mut next_check = Instant::now();
    loop {
        let now = Instant::now();
        let next = checks.map_or(next_dns, |_| next_dns.min(next_check));
        tokio::time::sleep(next.saturating_duration_since(now)).await;
        let Some(pool) = pool.upgrade() else { return };
        let now = Instant::now();
        if now >= next_dns {
            if let Err(e) = pool.lb.update().await {
                log::warn!("upstream {}: keeping its addresses: {e}", pool.name);
            }
            next_dns = now + dns;
        }
        if let Some(every) = checks {
            if now >= next_check {
                pool.lb.backends().run_health_check(true).await;
                next_check = Instant::now() + every;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(selection: Selection, eject_seconds: u64) -> Arc<Pool> {
        let target = |port: u16| Upstream {
            tls: false,
            host: "127.0.0.1".into(),
            port,
            sni: "127.0.0.1".into(),
            tls_verify: true,
            ca_file: None,
            connect_timeout_ms: 100,
            read_timeout_ms: 100,
        };
        Pool::start(&UpstreamPool {
            name: "t".into(),
            targets: vec![target(1), target(2)],
            selection,
            health_check: None,
            eject_seconds,
            dns_refresh_seconds: 3600,
        })
        .unwrap()
    }

    #[test]
    fn least_connections_picks_the_least_busy_address() {
        let p = pool(Selection::LeastConnections, 0);
        let a = p.pick().unwrap();
        let b = p.pick().unwrap();
        assert_ne!(a.addr, b.addr, "the busy one is avoided");
        let c = p.pick().unwrap();
        p.release(&c);
        p.release(&a);
        assert_eq!(p.pick().unwrap().addr, a.addr, "a is idle again, b is not");
    }

    #[test]
    fn round_robin_alternates_and_ejection_leaves_an_address_out() {
        let p = pool(Selection::RoundRobin, 60);
        let first = p.pick().unwrap().addr;
        let second = p.pick().unwrap().addr;
        assert_ne!(first, second);
        let refused = Picked {
            addr: first,
            index: 0,
        };
        assert!(p.eject(&refused), "another address can take the request");
        for _ in 0..5 {
            assert_eq!(p.pick().unwrap().addr, second);
        }
        // With every address out, one is still tried rather than none.
        assert!(!p.eject(&Picked {
            addr: second,
            index: 1,
        }));
        assert!(p.pick().is_some());
        // Without ejection configured, nothing is left out.
        let keep = pool(Selection::RoundRobin, 0);
        let a = keep.pick().unwrap();
        assert!(!keep.eject(&a));
        let picks: BTreeSet<SocketAddr> = (0..4).map(|_| keep.pick().unwrap().addr).collect();
        assert_eq!(picks.len(), 2);
    }
}
