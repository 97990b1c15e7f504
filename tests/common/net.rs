//! Small additions for tests about addresses and store traffic: raw HTTP from a chosen loopback source address (e.g. 127.0.0.2), and what the gateway sends to Redis.
//!
//! API:
//! - [`raw_http_from`]`(local_ip, addr, raw_request) -> Resp`: like
//!   [`super::raw_http_resp`], but the client socket is bound to `local_ip`
//!   first, so the gateway sees that peer address. Linux routes all of
//!   127.0.0.0/8 to `lo`, so 127.0.0.2 can reach a server on 127.0.0.1.
//! - [`bearer`]`(token) -> String`: the `Authorization` value "Bearer TOKEN".
//! - [`Monitor`]: a `MONITOR` connection; [`Monitor::client_commands`]
//!   returns the commands clients sent since the previous call (upper-case
//!   names), leaving out commands that scripts ran inside `EVALSHA`.
//!   `INFO commandstats` cannot tell those apart: it counts a script's
//!   `redis.call`s as well, so "one EVALSHA and nothing else" is checked here.
//! - [`command_stats`]`(redis) -> Vec<(name, calls)>`: `INFO commandstats`
//!   since the last [`super::Redis::reset_stats`] (script-internal calls
//!   included), minus the harness's measuring commands; for messages.

use super::http::Resp;
use super::redis::Redis;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

/// "Bearer TOKEN".
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A blocking TCP connection to `remote` whose local address is `local`.
fn connect_from(local: IpAddr, remote: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    // std cannot bind before connecting; tokio's TcpSocket can, and the
    // stream is handed back as a plain blocking std socket.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    rt.block_on(async {
        let socket = if local.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(local, 0))?;
        let stream = tokio::time::timeout(TIMEOUT, socket.connect(remote))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    })
}

/// Sends `raw_request` (see [`super::raw_request`]; it should say
/// `Connection: close`) from a socket bound to `local_ip` to `addr`
/// ("127.0.0.1:P" or "http://127.0.0.1:P"), and returns the response.
#[track_caller]
pub fn raw_http_from(local_ip: &str, addr: &str, raw_request: &str) -> Resp {
    try_raw_http_from(local_ip, addr, raw_request)
        .unwrap_or_else(|e| panic!("raw request from {local_ip} to {addr}: {e}"))
}

pub fn try_raw_http_from(local_ip: &str, addr: &str, raw_request: &str) -> Result<Resp, String> {
    let local: IpAddr = local_ip
        .parse()
        .map_err(|e| format!("local address {local_ip:?}: {e}"))?;
    let host = addr.strip_prefix("http://").unwrap_or(addr);
    let host = host.split('/').next().unwrap_or(host);
    let remote: SocketAddr = host.parse().map_err(|e| format!("address {host:?}: {e}"))?;
    let stream = connect_from(local, remote).map_err(|e| format!("connect: {e}"))?;
    let bound = stream.local_addr().map_err(|e| e.to_string())?.ip();
    if bound != local {
        return Err(format!("socket bound to {bound}, not {local}"));
    }
    super::http::exchange(stream, raw_request)
}

/// Every command in `INFO commandstats` with its call count, except the
/// harness's measuring commands (`info`, `config|resetstat`). Commands a
/// script ran through `redis.call` are counted too.
pub fn command_stats(redis: &Redis) -> Vec<(String, u64)> {
    let info = redis.cmd(&["INFO", "commandstats"]);
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))?
                .parse::<u64>()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .filter(|(name, _)| name != "info" && name != "config|resetstat")
        .collect()
}

/// A `MONITOR` connection to a Redis server: sees every command any client
/// sends, and, tagged `lua`, every command a script runs.
pub struct Monitor {
    reader: BufReader<TcpStream>,
    markers: u64,
}

impl Monitor {
    /// Connects and sends `MONITOR`; later commands are streamed to it.
    #[track_caller]
    pub fn start(redis: &Redis) -> Monitor {
        let addr: SocketAddr = redis.addr().parse().expect("redis address");
        let mut stream =
            TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect the MONITOR client");
        stream
            .set_read_timeout(Some(TIMEOUT))
            .expect("MONITOR read timeout");
        stream
            .write_all(b"*1\r\n$7\r\nMONITOR\r\n")
            .expect("send MONITOR");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).expect("MONITOR answer");
        assert_eq!(line.trim_end(), "+OK", "MONITOR answer");
        Monitor { reader, markers: 0 }
    }

    /// Upper-case names of the commands clients sent since `start` or the
    /// previous call, in order; commands run inside scripts, the harness's
    /// own `INFO` and `CONFIG` calls, and whatever a gateway's near-cache
    /// invalidation connection sent (its PINGs; a client with tracking on)
    /// are left out. Sends a marker command and reads up to it, so
    /// everything that ran before this call is included.
    #[track_caller]
    pub fn client_commands(&mut self, redis: &Redis) -> Vec<String> {
        self.markers += 1;
        let marker = format!("tg-monitor-marker-{}-{}", std::process::id(), self.markers);
        redis.query(&["ECHO", &marker]);
        let tracking = tracking_addrs(redis);
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("reading MONITOR output: {e}"));
            assert!(n > 0, "the MONITOR connection closed");
            if line.contains(&marker) {
                return out;
            }
            // +1700000000.123456 [0 127.0.0.1:54321] "evalsha" "..." ...
            let Some((source, command)) = line
                .trim_end()
                .strip_prefix('+')
                .and_then(|l| l.split_once("] "))
            else {
                panic!("unexpected MONITOR line {line:?}");
            };
            if source.ends_with(" lua")
                || tracking.iter().any(|a| source.ends_with(&format!(" {a}")))
            {
                continue;
            }
            let name = command
                .split('"')
                .nth(1)
                .unwrap_or(command)
                .to_ascii_uppercase();
            if name != "INFO" && name != "CONFIG" {
                out.push(name);
            }
        }
    }
}

/// The addresses (`ip:port`) of the clients with tracking on (`t` among the
/// flags of `CLIENT LIST`).
fn tracking_addrs(redis: &Redis) -> Vec<String> {
    redis
        .cmd(&["CLIENT", "LIST"])
        .lines()
        .filter(|l| {
            l.split(' ')
                .any(|f| f.strip_prefix("flags=").is_some_and(|v| v.contains('t')))
        })
        .filter_map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("addr="))
                .map(str::to_string)
        })
        .collect()
}
