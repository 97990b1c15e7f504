//! The proxy listeners' accept loop: one small task per client connection.
//!
//! Why not Pingora's listening service: it spawns each connection as one task
//! whose future holds, inline, the state of its TLS handshake next to the
//! connection's whole life, about 9 KiB (heaptrack: tokio task cells from
//! `listening.rs`), for as long as the connection is open, TLS or not. This
//! loop spawns only what [`Guarded`] needs: for a plain listener the HTTP
//! loop alone; for a TLS listener a task of its own kind, whose handshake
//! state is boxed and freed once the handshake is done (so plain
//! connections never carry TLS state). What Pingora's loop also did is kept: the
//! peer address in the socket digest (the client IP comes from it),
//! `TCP_NODELAY` (this loop had lost it), a pause when the process is out of
//! file descriptors, the listening sockets in Pingora's table of descriptors
//! (a graceful upgrade hands them to the new process, which takes them from
//! there instead of binding), and on shutdown (`shutdown::Drain`): stop
//! accepting, then let the app release connections waiting for a request.

use crate::connection::Guarded;
use crate::shutdown::Drain;
use crate::tls::TlsEndpoint;
use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora::server::{ListenFds, ShutdownWatch};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};

/// Pingora's listen backlog; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 65535;

/// A Pingora service that accepts on `addrs` and hands connections to `app`.
pub struct ProxyListeners<A> {
    name: String,
    addrs: Vec<(SocketAddr, Option<Arc<TlsEndpoint>>)>,
    app: Option<Arc<Guarded<A>>>,
    drain: Arc<Drain>,
}

impl<A> ProxyListeners<A> {
    /// Listens on `addrs`, and on `tls`'s addresses with the endpoint they
    /// terminate TLS with, once the service starts (inside its runtime); a
    /// taken port is found before that, by `server::check_listen_addresses`.
    pub fn new(
        name: &str,
        addrs: &[SocketAddr],
        tls: Option<(&[SocketAddr], Arc<TlsEndpoint>)>,
        app: Guarded<A>,
        drain: Arc<Drain>,
    ) -> Self {
        let plain = addrs.iter().map(|a| (*a, None));
        let secure = tls
            .iter()
            .flat_map(|(addrs, endpoint)| addrs.iter().map(|a| (*a, Some(endpoint.clone()))));
        ProxyListeners {
            name: name.to_string(),
            addrs: plain.chain(secure).collect(),
            app: Some(Arc::new(app)),
            drain,
        }
    }
}

/// The listening socket for `addr`: the one a previous process handed over
/// (in `fds`, by address) if any, else a new one, entered in `fds` so that a
/// later upgrade hands it on.
fn listen(addr: SocketAddr, fds: Option<&ListenFds>) -> std::io::Result<TcpListener> {
    let key = addr.to_string();
    let inherited = fds.and_then(|t| t.lock().get(&key).copied());
    if let Some(fd) = inherited {
        log::info!("listening on {addr} with the socket the previous process handed over");
        return TcpListener::from_std(inherit_fd::tcp_listener(fd)?);
    }
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(BACKLOG)?;
    if let Some(t) = fds {
        t.lock().add(key, listener.as_raw_fd());
    }
    Ok(listener)
}

async fn accept_loop<A>(
    listener: TcpListener,
    tls: Option<Arc<TlsEndpoint>>,
    app: Arc<Guarded<A>>,
    mut shutdown: ShutdownWatch,
) where
    A: HttpServerApp + Send + Sync + 'static,
{
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
                continue;
            }
        };
        match accepted {
            Ok((tcp, peer)) => {
                // As Pingora's listener and nginx (`tcp_nodelay on`) do: the
                // tail of an answer that leaves in several writes goes at
                // once instead of waiting for the client's delayed ACK.
                if let Err(e) = tcp.set_nodelay(true) {
                    log::debug!("cannot set TCP_NODELAY on a client connection: {e}");
                }
                let mut stream = L4Stream::from(tcp);
                let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
                let _ = digest.peer_addr.set(Some(peer.into()));
                stream.set_socket_digest(digest);
                let app = app.clone();
                let shutdown = shutdown.clone();
                // Two spawns, not one task with a branch: a task is as large
                // as its largest state, and plain ones must stay small.
                match &tls {
                    None => {
                        tokio::spawn(async move {
                            let stream: Stream = Box::new(stream);
                            app.process_new(stream, &shutdown).await;
                        });
                    }
                    Some(tls) => {
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            app.serve_tls(stream, &tls, &shutdown).await;
                        });
                    }
                }
            }
            Err(e) => {
                log::error!("accept failed: {e}");
                // Out of descriptors: accept would fail again at once, so
                // give connections a moment to close, as Pingora does.
                if e.raw_os_error() == Some(24) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

#[async_trait]
impl<A> pingora::services::Service for ProxyListeners<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        mut pingora_shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let Some(app) = self.app.take() else {
            return;
        };
        // Pingora's own shutdown (after a graceful upgrade's handover, or
        // a stop signal it handled) drains these listeners too.
        let drain = self.drain.clone();
        tokio::spawn(async move {
            while !*pingora_shutdown.borrow() {
                if pingora_shutdown.changed().await.is_err() {
                    return;
                }
            }
            drain.start();
        });
        let shutdown = self.drain.watch();
        let mut loops = Vec::new();
        for (addr, tls) in std::mem::take(&mut self.addrs) {
            match listen(addr, fds.as_ref()) {
                Ok(listener) => {
                    loops.push(tokio::spawn(accept_loop(
                        listener,
                        tls,
                        app.clone(),
                        shutdown.clone(),
                    )));
                }
                Err(e) => log::error!("cannot listen on {addr}: {e}"),
            }
        }
        for done in loops {
            let _ = done.await;
        }
        app.cleanup().await;
    }

    fn name(&self) -> &str {
        &self.name
    }
}
