//! Stopping and handing over: SIGTERM stops accepting, lets requests in
//! flight finish (idle keep-alive connections close at once) and exits as
//! soon as no client connection is left, or when the grace period ends;
//! SIGQUIT is Pingora's graceful upgrade (the listening sockets go to a new
//! process started with `serve --upgrade`, then this one drains); SIGINT
//! exits at once.
//!
//! Why not Pingora's own SIGTERM handling: it sleeps the whole grace period
//! whatever is in flight, so every stop took `grace_period_seconds`.

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use prometheus::IntGauge;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// Tells the proxy listeners and their connections to stop: they watch
/// it instead of Pingora's own shutdown, which a SIGTERM never reaches
/// before they are drained.
pub struct Drain {
    tx: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            tx: watch::channel(false).0,
        }
    }
}

impl Drain {
    pub fn watch(&self) -> ShutdownWatch {
        self.tx.subscribe()
    }

    /// From now on: no new connection, no new request on a kept-alive one.
    pub fn start(&self) {
        self.tx.send_replace(true);
    }
}

/// The signal watch handed to Pingora's `run`.
pub struct Signals {
    pub drain: std::sync::Arc<Drain>,
    /// Client connections open on the proxy listeners.
    pub open: IntGauge,
    pub grace: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut quit), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::quit()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot watch SIGTERM, SIGQUIT and SIGINT; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = quit.recv() => {
                log::info!("SIGQUIT: handing the listening sockets over to the new process");
                return ShutdownSignal::GracefulUpgrade;
            }
            _ = int.recv() => {
                log::info!("SIGINT: stopping now");
                return ShutdownSignal::FastShutdown;
            }
        }
        let started = Instant::now();
        log::info!(
            "SIGTERM: draining {} client connection(s), at most {:?}",
            self.open.get(),
            self.grace
        );
        self.drain.start();
        while self.open.get() > 0 && started.elapsed() < self.grace {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.open.get() > 0 {
            log::warn!(
                "grace period over with {} client connection(s) open; stopping",
                self.open.get()
            );
        } else {
            log::info!("drained in {:?}; stopping", started.elapsed());
        }
        // Nothing is left to wait for: Pingora's graceful path would sleep
        // the whole grace period again.
        ShutdownSignal::FastShutdown
    }
}
