//! A throwaway redis-server per test, and a tiny RESP client that does not depend on the crate under test.

use super::free_port;
use super::process::{read_lossy, tail, Proc};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A redis-server bound to 127.0.0.1 on its own port and directory, with
/// persistence off: a restart comes back empty, like a lost cache node.
pub struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    proc: Option<Proc>,
}

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// Text rendering close to `redis-cli`: nil is "(nil)", an error is its
    /// message ("ERR ..."), array elements are joined by newlines.
    pub fn text(&self) -> String {
        match self {
            Reply::Simple(s) | Reply::Error(s) => s.clone(),
            Reply::Int(n) => n.to_string(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Bulk(None) | Reply::Array(None) => "(nil)".to_string(),
            Reply::Array(Some(items)) => {
                items.iter().map(Reply::text).collect::<Vec<_>>().join("\n")
            }
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

fn redis_binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string())
}

impl Redis {
    /// Starts a fresh server; panics with its log if it is not answering PING within 10 s.
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// Like [`Redis::start`] with extra `redis-server` arguments, kept for restarts.
    pub fn start_with(extra: &[&str]) -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("tg-redis-")
            .tempdir()
            .expect("tempdir for redis");
        let mut redis = Redis {
            port: 0,
            dir,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            proc: None,
        };
        // free_port releases the port before redis binds it; another test may
        // win that race, so a bind failure is retried on a new port.
        let mut last_err = String::new();
        for _ in 0..5 {
            redis.port = free_port();
            match redis.spawn_and_wait() {
                Ok(()) => return redis,
                Err(e) if e.contains("Address already in use") => last_err = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("redis-server could not find a free port: {last_err}");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_before = self.log().len();
        let mut cmd = Command::new(redis_binary());
        cmd.args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
            .current_dir(self.dir.path());
        let log = self.log_path();
        let mut proc = Proc::spawn("redis-server", &mut cmd, &log, &log);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = proc.exited() {
                let new_log = self.log().get(log_before..).unwrap_or_default().to_string();
                return Err(format!(
                    "redis-server on port {} exited with {status} before answering PING:\n{}",
                    self.port,
                    tail(&new_log, 40)
                ));
            }
            if let Ok(Reply::Simple(pong)) = self.try_query(&["PING"]) {
                if pong == "PONG" {
                    self.proc = Some(proc);
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                proc.kill9();
                return Err(format!(
                    "redis-server on port {} did not answer PING within {READY_TIMEOUT:?}:\n{}",
                    self.port,
                    tail(&self.log(), 40)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// "redis://127.0.0.1:N/0"
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:N"
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Proc::is_running)
    }

    /// SIGKILL and reap: the store vanishes mid-flight, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill9();
        }
    }

    /// Starts again on the same port and directory (empty, since nothing is
    /// persisted). Kills the running server first if there is one.
    pub fn restart(&mut self) {
        self.kill();
        // The old socket may linger briefly after the kill; retry the bind for a while.
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) if e.contains("Address already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("restart: {e}"),
            }
        }
    }

    /// Everything redis-server has logged, across restarts.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// One command over a fresh connection.
    pub fn try_query(&self, args: &[&str]) -> Result<Reply, String> {
        resp_query(&self.addr(), args).map_err(|e| format!("redis {} {:?}: {e}", self.addr(), args))
    }

    /// One command; panics if the server cannot be reached.
    pub fn query(&self, args: &[&str]) -> Reply {
        self.try_query(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// One command, rendered as text by [`Reply::text`].
    pub fn cmd(&self, args: &[&str]) -> String {
        self.query(args).text()
    }

    /// How many times `name` ran since start or the last [`Redis::reset_stats`],
    /// from `INFO commandstats` (0 when it never ran). Subcommands use Redis 7
    /// spelling, e.g. "script|load".
    pub fn command_calls(&self, name: &str) -> u64 {
        command_calls_at(&self.addr(), name)
    }

    /// CONFIG RESETSTAT, so a test counts only the commands of the step it measures.
    pub fn reset_stats(&self) {
        let reply = self.query(&["CONFIG", "RESETSTAT"]);
        assert_eq!(reply, Reply::Simple("OK".into()), "CONFIG RESETSTAT");
    }

    /// Keys matching `pattern` (KEYS: fine on a test-sized database).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        match self.query(&["KEYS", pattern]) {
            Reply::Array(Some(items)) => items.iter().map(Reply::text).collect(),
            other => panic!("KEYS {pattern}: unexpected reply {other:?}"),
        }
    }

    pub fn dbsize(&self) -> u64 {
        match self.query(&["DBSIZE"]) {
            Reply::Int(n) => u64::try_from(n).expect("DBSIZE is non-negative"),
            other => panic!("DBSIZE: unexpected reply {other:?}"),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- redis-server {} log (tail) ---\n{}",
                self.addr(),
                tail(&self.log(), 20)
            );
        }
        self.kill();
    }
}

/// [`Redis::command_calls`] on the server at `addr` ("127.0.0.1:N").
pub fn command_calls_at(addr: &str, name: &str) -> u64 {
    let info = resp_query(addr, &["INFO", "commandstats"])
        .unwrap_or_else(|e| panic!("redis {addr} INFO commandstats: {e}"))
        .text();
    let key = format!("cmdstat_{}:", name.to_ascii_lowercase());
    info.lines()
        .find_map(|line| line.trim().strip_prefix(&key))
        .and_then(|fields| {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))
                .map(|n| n.parse::<u64>().expect("calls= is a number"))
        })
        .unwrap_or(0)
}

/// One line of `CLIENT LIST`.
#[derive(Debug, Clone)]
pub struct ClientEntry {
    pub id: u64,
    /// The client's end, "127.0.0.1:P".
    pub addr: String,
    /// Single-letter flags: `t` tracking on, `B` broadcast mode, `P` pub/sub...
    pub flags: String,
    /// Where this client's invalidations go (`redir=`): -1 for itself or none.
    pub redir: i64,
    /// Every `key=value` field of the line.
    pub line: String,
}

impl ClientEntry {
    /// The client's own port (its end of the connection).
    pub fn port(&self) -> Option<u16> {
        self.addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
    }

    pub fn tracking(&self) -> bool {
        self.flags.contains('t')
    }
}

/// `CLIENT LIST` of the server at `addr`, parsed.
pub fn client_list(addr: &str) -> Vec<ClientEntry> {
    let text = resp_query(addr, &["CLIENT", "LIST"])
        .unwrap_or_else(|e| panic!("redis {addr} CLIENT LIST: {e}"))
        .text();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .unwrap_or_default()
                    .to_string()
            };
            ClientEntry {
                id: field("id")
                    .parse()
                    .unwrap_or_else(|_| panic!("CLIENT LIST line without id: {line}")),
                addr: field("addr"),
                flags: field("flags"),
                redir: field("redir").parse().unwrap_or(-1),
                line: line.to_string(),
            }
        })
        .collect()
}

/// The connections of process `pid` to the server at `addr` that carry its
/// client-side-caching invalidations: those with tracking on (`t` in
/// `flags`), and any connection such a client redirects its invalidations
/// to (RESP2 `REDIRECT`). A connection is the process's when the process
/// holds a socket from the client's port to the server's port (read from
/// `/proc`), so another gateway's connections to the same server are left out.
pub fn tracking_clients_of(addr: &str, pid: u32) -> Vec<ClientEntry> {
    let server_port: u16 = addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"));
    let own: std::collections::HashSet<u16> = super::process::tcp_connections(pid)
        .into_iter()
        .filter(|(_, remote)| *remote == server_port)
        .map(|(local, _)| local)
        .collect();
    let clients: Vec<ClientEntry> = client_list(addr)
        .into_iter()
        .filter(|c| c.port().is_some_and(|p| own.contains(&p)))
        .collect();
    let redirect_targets: Vec<u64> = clients
        .iter()
        .filter(|c| c.tracking() && c.redir > 0)
        .filter_map(|c| u64::try_from(c.redir).ok())
        .collect();
    clients
        .into_iter()
        .filter(|c| c.tracking() || redirect_targets.contains(&c.id))
        .collect()
}

/// `CLIENT KILL ID id` on the server at `addr`; whether a client was killed.
pub fn kill_client(addr: &str, id: u64) -> bool {
    let reply = resp_query(addr, &["CLIENT", "KILL", "ID", &id.to_string()])
        .unwrap_or_else(|e| panic!("redis {addr} CLIENT KILL ID {id}: {e}"));
    reply == Reply::Int(1)
}

/// Sends one command as a RESP array of bulk strings and reads one reply.
pub fn resp_query(addr: &str, args: &[&str]) -> std::io::Result<Reply> {
    let sock: SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut stream = TcpStream::connect_timeout(&sock, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    stream.write_all(&req)?;
    read_reply(&mut BufReader::new(stream))
}

fn bad(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        return Err(bad(format!(
            "truncated RESP line {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.chars().next().map_or(0, char::len_utf8));
    let int = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| bad(format!("bad RESP integer {s:?}")))
    };
    match kind {
        "+" => Ok(Reply::Simple(rest.to_string())),
        "-" => Ok(Reply::Error(rest.to_string())),
        ":" => Ok(Reply::Int(int(rest)?)),
        "$" => {
            let len = int(rest)?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut buf = vec![0; usize::try_from(len).expect("len >= 0") + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(buf.len() - 2);
            Ok(Reply::Bulk(Some(buf)))
        }
        "*" => {
            let len = int(rest)?;
            if len < 0 {
                return Ok(Reply::Array(None));
            }
            let items = (0..len)
                .map(|_| read_reply(r))
                .collect::<std::io::Result<Vec<_>>>()?;
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(bad(format!("unexpected RESP line {line:?}"))),
    }
}
