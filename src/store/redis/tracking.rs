//! The near cache's invalidation channel: one RESP3 connection per Redis
//! master with `CLIENT TRACKING ON BCAST PREFIX tg:{`, so Redis pushes the
//! name of every identity key any client writes, and the identity is dropped
//! from the cache (`cache.rs`).
//!
//! **Every decision from the cache first applies what the channel already
//! received** (`Channel::drain`, one non-blocking read per master). Redis
//! writes an invalidation before it answers the write that caused it, so a
//! change another gateway has confirmed is in this gateway's socket before
//! any request that could have been sent after the confirmation: the next
//! request sees it, however busy the gateway's threads are. A reader task
//! also applies invalidations as they arrive, so idle entries go too.
//!
//! The channel is watched: a connection closed, killed, sending something
//! that is not RESP3, or not answering a PING within the response timeout,
//! empties the cache and turns it off (`NearCache::channel_lost`) until
//! every master's connection is open again with tracking on. For a cluster
//! the masters are read from `CLUSTER SLOTS`, again every few seconds: a
//! changed set of masters means keys may be written where nobody listens, so
//! the channel is opened anew.

use super::cache::NearCache;
use super::conn::{Conn as DataConn, RedisSettings};
use super::resp3::{self, Frame};
use crate::token::Id;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// The key prefix of everything the request path reads (`keys.rs`).
const TRACKED_PREFIX: &str = "tg:{";
/// How often each connection is asked to answer a PING. A link that stalls
/// without closing is noticed within this plus the response timeout.
const PING_EVERY: Duration = Duration::from_millis(200);
/// How often a cluster's masters are read again (and at once when a miss
/// was answered by a node this gateway does not listen to).
const TOPOLOGY_EVERY: Duration = Duration::from_secs(1);
/// The longest wait before opening the channel again after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The open connections of the current epoch, shared by the request path
/// (which drains them) and the tasks that keep them.
pub struct Channel {
    cache: Arc<NearCache>,
    /// How long a PING may stay unanswered.
    response_timeout: Duration,
    open: Mutex<Open>,
    lost: Notify,
    /// Asks the watcher to read the cluster's masters now.
    refresh: Notify,
}

#[derive(Default)]
struct Open {
    epoch: u64,
    conns: Vec<Listener>,
    /// Why the last epoch's connections were given up.
    failure: Option<String>,
}

/// One master's tracking connection.
struct Listener {
    stream: Arc<TcpStream>,
    /// The Redis process listened to (`INFO server`'s `run_id`).
    run_id: String,
    /// Bytes read but not yet a whole frame.
    pending: Vec<u8>,
    /// When the PING still unanswered was sent.
    ping_sent: Option<Instant>,
}

impl Channel {
    pub fn new(cache: Arc<NearCache>, response_timeout: Duration) -> Arc<Channel> {
        Arc::new(Channel {
            cache,
            response_timeout,
            open: Mutex::new(Open::default()),
            lost: Notify::new(),
            refresh: Notify::new(),
        })
    }

    /// Whether the Redis process `run_id` is one this channel listens to:
    /// only what such a node answered may be kept, since a write on any
    /// other node would not be heard. Otherwise the cluster's masters are
    /// read again at once (a slot may have moved to a new master).
    pub fn listens_to(&self, run_id: &str) -> bool {
        let heard = self.open().conns.iter().any(|l| l.run_id == run_id);
        if !heard {
            self.refresh.notify_one();
        }
        heard
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies every invalidation already received. Called before each
    /// decision from the cache; on any failure the cache is turned off
    /// before this returns, so the decision goes to Redis.
    pub fn drain(&self) {
        let mut open = self.open();
        let mut failure = None;
        for l in open.conns.iter_mut() {
            if let Err(why) = l.drain(&self.cache) {
                failure = Some(why);
                break;
            }
            // A link that stopped moving (Redis hung, or the network) says
            // nothing by itself; a PING left unanswered does.
            if l.ping_sent
                .is_some_and(|at| at.elapsed() > self.response_timeout)
            {
                failure = Some("a PING was not answered in time".into());
                break;
            }
        }
        if let Some(why) = failure {
            let epoch = open.epoch;
            self.give_up(&mut open, epoch, why);
        }
    }

    /// Turns the cache off and drops the connections of `epoch`, if they are
    /// still the current ones.
    fn give_up(&self, open: &mut Open, epoch: u64, why: String) {
        if open.epoch != epoch || open.conns.is_empty() {
            return;
        }
        self.cache.channel_lost(epoch);
        open.conns.clear();
        open.failure = Some(why);
        self.lost.notify_one();
    }

    fn is_open(&self, epoch: u64) -> bool {
        let open = self.open();
        open.epoch == epoch && !open.conns.is_empty()
    }

    /// Sends a PING on every connection, or gives up on one whose last PING
    /// is older than `timeout` and still unanswered.
    fn ping(&self, epoch: u64) {
        let timeout = self.response_timeout;
        let mut open = self.open();
        if open.epoch != epoch {
            return;
        }
        let ping = resp3::command(&[b"PING"]);
        let mut failure = None;
        for l in open.conns.iter_mut() {
            match l.ping_sent {
                Some(at) if at.elapsed() > timeout => {
                    failure = Some("a PING was not answered in time".to_string());
                    break;
                }
                Some(_) => {}
                None => match l.stream.try_write(&ping) {
                    Ok(n) if n == ping.len() => l.ping_sent = Some(Instant::now()),
                    // A few bytes into an idle socket only fail to go when
                    // the other side has stopped reading.
                    _ => {
                        failure = Some("cannot send a PING".to_string());
                        break;
                    }
                },
            }
        }
        if let Some(why) = failure {
            self.give_up(&mut open, epoch, why);
        }
    }
}

impl Listener {
    fn drain(&mut self, cache: &NearCache) -> Result<(), String> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.try_read(&mut chunk) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
        let mut used = 0;
        while let Some((frame, n)) =
            resp3::parse(&self.pending[used..]).map_err(|_| "not RESP3".to_string())?
        {
            used += n;
            self.apply(frame, cache)?;
        }
        self.pending.drain(..used);
        Ok(())
    }

    fn apply(&mut self, frame: Frame, cache: &NearCache) -> Result<(), String> {
        match frame {
            Frame::Push(items) => {
                if matches!(items.first(), Some(Frame::Bulk(k)) if k == b"invalidate") {
                    match items.get(1) {
                        Some(Frame::Array(keys)) => {
                            for key in keys {
                                match key {
                                    Frame::Bulk(k) => {
                                        if let Some(identity) = identity_of_key(k) {
                                            cache.invalidate(identity);
                                        }
                                    }
                                    // Not a key name: no way to tell whose.
                                    _ => cache.invalidate_all(),
                                }
                            }
                        }
                        // FLUSHALL / FLUSHDB, or a shape not known here.
                        _ => cache.invalidate_all(),
                    }
                }
            }
            Frame::Simple(s) if s == "PONG" => self.ping_sent = None,
            Frame::Error(e) => return Err(format!("Redis answered an error: {e}")),
            _ => {}
        }
        Ok(())
    }
}

/// The identity of a key `tg:{IID}:...`; `None` for keys outside every
/// identity's slot (indexes the request path does not read).
pub fn identity_of_key(key: &[u8]) -> Option<Id> {
    let rest = key.strip_prefix(TRACKED_PREFIX.as_bytes())?;
    let end = rest.iter().position(|&b| b == b'}')?;
    Id::parse(std::str::from_utf8(&rest[..end]).ok()?)
}

/// Keeps the channel open for as long as the store lives; runs forever.
pub async fn run(channel: Arc<Channel>, settings: RedisSettings, data: DataConn) {
    let mut backoff = Duration::from_millis(50);
    let mut failures = 0u32;
    loop {
        let epoch = channel.cache.begin_epoch();
        match connect_all(&settings, &data).await {
            Ok((masters, conns)) => {
                let streams: Vec<Arc<TcpStream>> = conns.iter().map(|l| l.stream.clone()).collect();
                {
                    let mut open = channel.open();
                    *open = Open {
                        epoch,
                        conns,
                        failure: None,
                    };
                }
                channel.cache.channel_up(epoch);
                for stream in streams {
                    tokio::spawn(read_loop(channel.clone(), stream, epoch));
                }
                if failures > 0 {
                    log::info!("near cache: invalidation channel is back");
                }
                failures = 0;
                backoff = Duration::from_millis(50);
                let why = watch(&channel, epoch, &settings, &data, &masters).await;
                log::warn!("near cache: invalidation channel lost ({why}); checking every request in Redis until it is back");
            }
            Err(e) => {
                failures += 1;
                // Said once, then every 30th attempt: an outage is also
                // reported by every request that fails.
                if failures == 1 || failures % 30 == 0 {
                    log::warn!("near cache: cannot open the invalidation channel: {e}");
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Applies invalidations as they arrive, until `epoch` is over.
async fn read_loop(channel: Arc<Channel>, stream: Arc<TcpStream>, epoch: u64) {
    while channel.is_open(epoch) {
        // Woken at least every PING_EVERY, so a reader of a given-up epoch
        // ends (and closes its socket) soon even if Redis sends nothing.
        match tokio::time::timeout(PING_EVERY, stream.readable()).await {
            Err(_) => continue,
            Ok(Err(e)) => {
                let mut open = channel.open();
                channel.give_up(&mut open, epoch, format!("read failed: {e}"));
                return;
            }
            Ok(Ok(())) => channel.drain(),
        }
    }
}

/// Waits until the epoch's connections are given up (by a reader, the
/// request path or a PING), or a cluster's masters change; says why.
async fn watch(
    channel: &Channel,
    epoch: u64,
    settings: &RedisSettings,
    data: &DataConn,
    masters: &[ConnectionInfo],
) -> String {
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut topology = tokio::time::interval(TOPOLOGY_EVERY);
    topology.tick().await;
    loop {
        tokio::select! {
            _ = channel.lost.notified() => {}
            _ = ping.tick() => channel.ping(epoch),
            _ = async { tokio::select! { _ = topology.tick() => {}, _ = channel.refresh.notified() => {} } }, if settings.cluster => {
                let why = match self::masters(settings, data).await {
                    Ok(now) if same_nodes(&now, masters) => None,
                    Ok(_) => Some("the cluster's masters changed".to_string()),
                    Err(e) => Some(format!("cannot read the cluster's masters: {e}")),
                };
                if let Some(why) = why {
                    let mut open = channel.open();
                    channel.give_up(&mut open, epoch, why);
                }
            }
        }
        if !channel.is_open(epoch) {
            let open = channel.open();
            return open
                .failure
                .clone()
                .unwrap_or_else(|| "connection closed".into());
        }
    }
}

/// Opens a tracking connection to every master.
async fn connect_all(
    settings: &RedisSettings,
    data: &DataConn,
) -> Result<(Vec<ConnectionInfo>, Vec<Listener>), String> {
    let masters = masters(settings, data).await?;
    let mut conns = Vec::with_capacity(masters.len());
    for info in &masters {
        let l = tokio::time::timeout(
            settings.connect_timeout + settings.response_timeout * 2,
            connect(info),
        )
        .await
        .map_err(|_| format!("{} did not answer in time", info.addr))??;
        conns.push(l);
    }
    Ok((masters, conns))
}

/// One connection: RESP3 (with the URL's credentials), then tracking on.
async fn connect(info: &ConnectionInfo) -> Result<Listener, String> {
    let ConnectionAddr::Tcp(host, port) = &info.addr else {
        return Err("the near cache needs a plain TCP Redis address".into());
    };
    let mut stream = TcpStream::connect((host.as_str(), *port))
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", info.addr))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut hello: Vec<&[u8]> = vec![b"HELLO", b"3"];
    let user = info.redis.username.as_deref().unwrap_or("default");
    if let Some(password) = &info.redis.password {
        hello.extend_from_slice(&[b"AUTH", user.as_bytes(), password.as_bytes()]);
    }
    let mut pending = Vec::new();
    ask(&mut stream, &mut pending, &hello).await?;
    let info = ask(&mut stream, &mut pending, &[b"INFO", b"server"]).await?;
    let run_id = match &info {
        Frame::Bulk(text) => run_id_of(text),
        _ => None,
    }
    .ok_or("INFO server names no run_id")?;
    warn_if_swapdb(&mut stream, &mut pending).await;
    let on = ask(
        &mut stream,
        &mut pending,
        &[
            b"CLIENT",
            b"TRACKING",
            b"ON",
            b"BCAST",
            b"PREFIX",
            TRACKED_PREFIX.as_bytes(),
        ],
    )
    .await?;
    if on != Frame::Simple("OK".into()) {
        return Err(format!("CLIENT TRACKING answered {on:?}"));
    }
    Ok(Listener {
        stream: Arc::new(stream),
        run_id,
        pending,
        ping_sent: None,
    })
}

/// `run_id` from `INFO server`'s text.
pub fn run_id_of(info: &[u8]) -> Option<String> {
    String::from_utf8_lossy(info)
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
}

/// SWAPDB replaces a database without naming a key, so no invalidation
/// reaches the cache and entries live until their maximum age. Said once per
/// process when the command is available (not renamed away).
async fn warn_if_swapdb(stream: &mut TcpStream, pending: &mut Vec<u8>) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let answer = ask(stream, pending, &[b"COMMAND", b"INFO", b"SWAPDB"]).await;
    let available = match answer {
        Ok(Frame::Array(items)) => items.first().is_some_and(|i| *i != Frame::Null),
        _ => false,
    };
    if available && !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        log::warn!("near cache: this Redis accepts SWAPDB, which changes data without telling the cache; a gateway may then decide from its copy for up to store.cache.max_age_seconds. Rename SWAPDB away (rename-command) or turn the cache off");
    }
}

/// Sends one command and reads its answer (an error answer is an error).
async fn ask(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    args: &[&[u8]],
) -> Result<Frame, String> {
    stream
        .write_all(&resp3::command(args))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        if let Some((frame, used)) = resp3::parse(pending).map_err(|_| "not RESP3".to_string())? {
            pending.drain(..used);
            // Invalidations can come before the answer once tracking is
            // on; the cache is off until the handshake is over, so they
            // change nothing.
            if matches!(frame, Frame::Push(_)) {
                continue;
            }
            return match frame {
                Frame::Error(e) => Err(format!(
                    "{} refused: {e}",
                    String::from_utf8_lossy(args.first().copied().unwrap_or_default())
                )),
                f => Ok(f),
            };
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed during the handshake".into());
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

fn same_nodes(a: &[ConnectionInfo], b: &[ConnectionInfo]) -> bool {
    let key = |v: &[ConnectionInfo]| {
        let mut k: Vec<String> = v.iter().map(|i| i.addr.to_string()).collect();
        k.sort();
        k
    };
    key(a) == key(b)
}

/// Where to listen: the one Redis, or every master of the cluster (from
/// `CLUSTER SLOTS`, asked through the data connection), with the seed URL's
/// credentials.
async fn masters(settings: &RedisSettings, data: &DataConn) -> Result<Vec<ConnectionInfo>, String> {
    let seed = settings
        .urls
        .first()
        .ok_or("no redis url")?
        .as_str()
        .into_connection_info()
        .map_err(|e| e.to_string())?;
    if !settings.cluster {
        return Ok(vec![seed]);
    }
    let mut data = data.clone();
    let slots: Vec<Value> = tokio::time::timeout(
        settings.response_timeout,
        redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut data),
    )
    .await
    .map_err(|_| "CLUSTER SLOTS not answered in time".to_string())?
    .map_err(|e| e.to_string())?;
    let bad = || "unexpected CLUSTER SLOTS answer".to_string();
    let mut out: Vec<ConnectionInfo> = Vec::new();
    for range in &slots {
        // [start, end, [host, port, id, ...], replicas...]
        let Value::Array(parts) = range else {
            return Err(bad());
        };
        let Some(Value::Array(master)) = parts.get(2) else {
            return Err(bad());
        };
        let host = match master.first() {
            Some(Value::BulkString(h)) if !h.is_empty() => String::from_utf8_lossy(h).into_owned(),
            _ => match &seed.addr {
                ConnectionAddr::Tcp(h, _) => h.clone(),
                _ => return Err(bad()),
            },
        };
        let Some(Value::Int(port)) = master.get(1) else {
            return Err(bad());
        };
        let port = u16::try_from(*port).map_err(|_| bad())?;
        let mut info = seed.clone();
        info.addr = ConnectionAddr::Tcp(host, port);
        if !out
            .iter()
            .any(|i| i.addr.to_string() == info.addr.to_string())
        {
            out.push(info);
        }
    }
    if out.is_empty() {
        return Err("the cluster lists no masters".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_identity() {
        let id = Id([0xab; 16]);
        let key = format!("tg:{{{}}}:t", id.hex());
        assert_eq!(identity_of_key(key.as_bytes()), Some(id));
        assert_eq!(identity_of_key(b"tg:tokens"), None);
        assert_eq!(identity_of_key(b"tg:{nothex}:i"), None);
        assert_eq!(identity_of_key(b"tg:{"), None);
    }

    #[test]
    fn run_id_is_read_from_info() {
        let info = b"# Server\r\nredis_version:7.0.15\r\nrun_id:4c96aa\r\ntcp_port:6379\r\n";
        assert_eq!(run_id_of(info).as_deref(), Some("4c96aa"));
        assert_eq!(run_id_of(b"# Server\r\nrun_id:\r\n"), None);
    }
}
