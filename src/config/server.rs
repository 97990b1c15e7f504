//! `server`: the proxy listeners (plain and TLS), their threads and
//! connection limits, and the upgrade socket; all bound once at start.

use super::file::ServerFile;
use super::{tls, Problems, TlsConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The validated `server` section, spread over `Config` by `validate`.
pub(super) struct Server {
    pub listen: Vec<SocketAddr>,
    pub tls_listen: Vec<SocketAddr>,
    pub tls: Option<TlsConfig>,
    pub threads: usize,
    pub grace_period_seconds: u64,
    pub keepalive_timeout_seconds: u64,
    pub header_timeout_seconds: u64,
    pub max_connections: usize,
    pub upgrade_socket: PathBuf,
}

pub(super) fn validate(p: &mut Problems, s: &ServerFile) -> Server {
    if s.listen.is_empty() && s.tls.is_none() {
        p.add(
            "server.listen",
            "at least one address is required (here or in server.tls.listen)",
        );
    }
    let listen: Vec<SocketAddr> = s
        .listen
        .iter()
        .enumerate()
        .filter_map(|(i, a)| p.addr(&format!("server.listen[{i}]"), a))
        .collect();
    let (tls_listen, tls) = tls::validate_server(p, s.tls.as_ref());
    for (i, a) in tls_listen.iter().enumerate() {
        if listen.contains(a) || tls_listen[..i].contains(a) {
            p.add(
                &format!("server.tls.listen[{i}]"),
                format!("{a} is listed twice; a listener speaks TLS or plain HTTP"),
            );
        }
    }
    let threads = p.range("server.threads", s.threads, 1, 256) as usize;
    let grace_period_seconds = p.range(
        "server.grace_period_seconds",
        s.grace_period_seconds,
        0,
        3600,
    );
    let keepalive_timeout_seconds = p.range(
        "server.keepalive_timeout_seconds",
        s.keepalive_timeout_seconds,
        1,
        3600,
    );
    let header_timeout_seconds = p.range(
        "server.header_timeout_seconds",
        s.header_timeout_seconds,
        1,
        3600,
    );
    let max_connections =
        p.range("server.max_connections", s.max_connections, 1, 1_000_000) as usize;
    Server {
        listen,
        tls_listen,
        tls,
        threads,
        grace_period_seconds,
        keepalive_timeout_seconds,
        header_timeout_seconds,
        max_connections,
        upgrade_socket: s
            .upgrade_socket
            .clone()
            // In the working directory (the gateway's state directory), not
            // /tmp: whoever binds this path first receives the listening
            // sockets at the next upgrade, so it must be where only the
            // gateway's user can write.
            .unwrap_or_else(|| PathBuf::from("tokengate-upgrade.sock")),
    }
}
