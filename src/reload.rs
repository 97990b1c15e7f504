//! Live reload: on SIGHUP, or `POST /reload` on the admin listener with the
//! admin key, the config file is read and validated again and, unless it
//! changes something that needs a restart, swapped in as a new `Policy`,
//! with the listeners' TLS files read again (`crate::tls`).
//! Requests in flight finish on the policy they started with; a refused
//! reload leaves the old one serving, with a log line and a metric.

use crate::access_log::AccessLog;
use crate::audit::AuditLog;
use crate::config;
use crate::metrics::Metrics;
use crate::proxy::policy::Policy;
use crate::tls::TlsEndpoint;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub struct Reloader {
    path: PathBuf,
    live: Arc<ArcSwap<Policy>>,
    metrics: Arc<Metrics>,
    /// The TLS of `server.tls` and `admin.tls`, where configured.
    tls: [Option<Arc<TlsEndpoint>>; 2],
    /// One reload at a time: a signal and an admin call must not interleave.
    one: Mutex<()>,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        live: Arc<ArcSwap<Policy>>,
        metrics: Arc<Metrics>,
        tls: [Option<Arc<TlsEndpoint>>; 2],
    ) -> Reloader {
        Reloader {
            path,
            live,
            metrics,
            tls,
            one: Mutex::new(()),
        }
    }

    /// Reloads the config file; on refusal, why (each problem, naming its key).
    pub fn reload(&self) -> Result<(), Vec<String>> {
        let _one = self
            .one
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = self.swap_in();
        match &result {
            Ok(()) => {
                self.metrics.reloads_ok.inc();
                log::info!("configuration reloaded from {}", self.path.display());
            }
            Err(problems) => {
                self.metrics.reloads_failed.inc();
                log::error!(
                    "configuration reload refused, the running configuration stays: {}",
                    problems.join("; ")
                );
            }
        }
        result
    }

    fn swap_in(&self) -> Result<(), Vec<String>> {
        let new = config::load(&self.path).map_err(|e| e.0)?;
        let old = self.live.load_full();
        let fixed = config::fixed_keys_changed(&old.cfg, &new);
        if !fixed.is_empty() {
            return Err(fixed
                .iter()
                .map(|key| format!("{key} cannot change without a restart"))
                .collect());
        }
        // Every certificate is read and checked before anything changes, so
        // one bad file leaves every listener on its old certificates.
        let mut tls = Vec::new();
        let mut problems = Vec::new();
        for (endpoint, cfg) in self.tls.iter().zip([&new.tls, &new.admin_tls]) {
            // Whether a listener has TLS is fixed: both are set or neither.
            if let (Some(endpoint), Some(cfg)) = (endpoint, cfg) {
                match endpoint.prepare(cfg) {
                    Ok(acceptor) => tls.push((endpoint, acceptor)),
                    Err(e) => problems.extend(e),
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let access_log = if new.access_log == old.cfg.access_log {
            old.access_log.clone()
        } else {
            let log = AccessLog::start(&new.access_log, self.metrics.access_log.clone())
                .map_err(|e| vec![format!("access_log: {e}")])?;
            Arc::new(log)
        };
        let audit = if new.audit == old.cfg.audit {
            old.audit.clone()
        } else {
            let log = AuditLog::start(&new.audit, self.metrics.audit_log.clone())
                .map_err(|e| vec![format!("audit: {e}")])?;
            Arc::new(log)
        };
        let log = new.log.clone();
        let policy =
            Policy::new(Arc::new(new), access_log, audit, Some(&old)).map_err(|e| vec![e])?;
        crate::logging::reconfigure(&log);
        for (endpoint, acceptor) in tls {
            endpoint.install(acceptor);
        }
        self.live.store(Arc::new(policy));
        Ok(())
    }
}

/// Reloads on every SIGHUP, from a thread of its own.
pub fn on_sighup(reloader: Arc<Reloader>) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                let _ = reloader.reload();
            }
        })?;
    Ok(())
}
