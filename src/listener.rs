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
//! `TCP_NODELAY` (this loop had lost it), a pause
//! when the process is out of file descriptors, and on shutdown: stop
//! accepting, then let the app release connections waiting for a request.

use crate::connection::Guarded;
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
    sockets: Vec<(SocketAddr, TcpSocket, Option<Arc<TlsEndpoint>>)>,
    app: Option<Arc<Guarded<A>>>,
}

impl<A> ProxyListeners<A> {
    /// Binds every address now, so that a taken port stops the start-up with
    /// its address named instead of leaving a gateway that serves nothing.
    /// Listening starts with the service, inside its runtime.
    /// `tls` gives its addresses and the endpoint they terminate TLS with.
    pub fn bind(
        name: &str,
        addrs: &[SocketAddr],
        tls: Option<(&[SocketAddr], Arc<TlsEndpoint>)>,
        app: Guarded<A>,
    ) -> std::io::Result<Self> {
        let plain = addrs.iter().map(|a| (a, None));
        let secure = tls
            .iter()
            .flat_map(|(addrs, endpoint)| addrs.iter().map(|a| (a, Some(endpoint.clone()))));
        let mut sockets = Vec::new();
        for (addr, tls) in plain.chain(secure) {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.bind(*addr).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
            })?;
            sockets.push((*addr, socket, tls));
        }
        Ok(ProxyListeners {
            name: name.to_string(),
            sockets,
            app: Some(Arc::new(app)),
        })
    }
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
        _fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let Some(app) = self.app.take() else {
            return;
        };
        let mut loops = Vec::new();
        for (addr, socket, tls) in std::mem::take(&mut self.sockets) {
            match socket.listen(BACKLOG) {
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
