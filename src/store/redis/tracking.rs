//! The near cache's invalidation channel: one RESP3 connection per Redis
//! master with `CLIENT TRACKING ON BCAST PREFIX tg:{`, so Redis pushes the
//! name of every identity key any client writes, and the identity is dropped
//! from the cache as the push arrives.
//!
//! The channel is watched: a lost connection (closed, killed, or not
//! answering a PING within the response timeout) empties the cache and turns
//! it off (`NearCache::channel_lost`) until every master's connection is
//! open again with tracking on. For a cluster the masters are read from
//! `CLUSTER SLOTS`, and read again every few seconds: a changed set of
//! masters means keys may be written where nobody listens, so the channel
//! is opened anew.

use super::cache::NearCache;
use super::conn::{Conn, RedisSettings};
use crate::token::Id;
use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, PushInfo, PushKind, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The key prefix of everything the request path reads (`keys.rs`).
const TRACKED_PREFIX: &str = "tg:{";
/// How often each connection is asked to answer a PING.
const PING_EVERY: Duration = Duration::from_secs(1);
/// How often a cluster's masters are read again.
const TOPOLOGY_EVERY: Duration = Duration::from_secs(5);
/// The longest wait before opening the channel again after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Keeps the channel open for as long as the store lives; runs forever.
pub async fn run(cache: Arc<NearCache>, settings: RedisSettings, data: Conn) {
    let mut backoff = Duration::from_millis(50);
    let mut failures = 0u32;
    loop {
        let epoch = cache.begin_epoch();
        let lost = Arc::new(Notify::new());
        match open(&cache, &settings, &data, epoch, &lost).await {
            Ok((masters, conns)) => {
                cache.channel_up(epoch);
                if failures > 0 {
                    log::info!("near cache: invalidation channel is back");
                }
                failures = 0;
                backoff = Duration::from_millis(50);
                let why = watch(&settings, &data, &masters, conns, &lost).await;
                cache.channel_lost(epoch);
                log::warn!("near cache: invalidation channel lost ({why}); checking every request in Redis until it is back");
            }
            Err(e) => {
                cache.channel_lost(epoch);
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

/// Opens a tracking connection to every master; answers the masters and
/// the connections.
async fn open(
    cache: &Arc<NearCache>,
    settings: &RedisSettings,
    data: &Conn,
    epoch: u64,
    lost: &Arc<Notify>,
) -> Result<(Vec<ConnectionInfo>, Vec<MultiplexedConnection>), String> {
    let masters = masters(settings, data).await?;
    let mut conns = Vec::with_capacity(masters.len());
    for info in &masters {
        conns.push(open_one(cache, settings, info.clone(), epoch, lost).await?);
    }
    Ok((masters, conns))
}

async fn open_one(
    cache: &Arc<NearCache>,
    settings: &RedisSettings,
    mut info: ConnectionInfo,
    epoch: u64,
    lost: &Arc<Notify>,
) -> Result<MultiplexedConnection, String> {
    info.redis.protocol = redis::ProtocolVersion::RESP3;
    let client = redis::Client::open(info).map_err(|e| e.to_string())?;
    let (cache, lost) = (cache.clone(), lost.clone());
    let on_push = move |push: PushInfo| -> Result<(), ()> {
        match push.kind {
            PushKind::Invalidate => invalidate(&cache, &push.data),
            PushKind::Disconnection => {
                cache.channel_lost(epoch);
                lost.notify_one();
            }
            _ => {}
        }
        Ok(())
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(settings.connect_timeout)
        .set_response_timeout(settings.response_timeout)
        .set_push_sender(on_push);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| e.to_string())?;
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(TRACKED_PREFIX)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

/// Applies one invalidation push: key names, or nothing for "everything"
/// (FLUSHALL, FLUSHDB).
fn invalidate(cache: &NearCache, data: &[Value]) {
    for v in data {
        match v {
            Value::Nil => cache.invalidate_all(),
            Value::Array(keys) | Value::Set(keys) => {
                for k in keys {
                    invalidate_key(cache, k);
                }
            }
            other => invalidate_key(cache, other),
        }
    }
}

fn invalidate_key(cache: &NearCache, key: &Value) {
    match key {
        Value::BulkString(k) => {
            if let Some(identity) = identity_of_key(k) {
                cache.invalidate(identity);
            }
        }
        Value::SimpleString(k) => {
            if let Some(identity) = identity_of_key(k.as_bytes()) {
                cache.invalidate(identity);
            }
        }
        // Not a key name: nothing says which identity, so none is trusted.
        _ => cache.invalidate_all(),
    }
}

/// The identity of a key `tg:{IID}:...`; `None` for keys outside every
/// identity's slot (indexes the request path does not read).
pub fn identity_of_key(key: &[u8]) -> Option<Id> {
    let rest = key.strip_prefix(TRACKED_PREFIX.as_bytes())?;
    let end = rest.iter().position(|&b| b == b'}')?;
    Id::parse(std::str::from_utf8(&rest[..end]).ok()?)
}

/// Waits until a connection is lost, stops answering, or (for a cluster)
/// the set of masters changes; says which.
async fn watch(
    settings: &RedisSettings,
    data: &Conn,
    masters: &[ConnectionInfo],
    mut conns: Vec<MultiplexedConnection>,
    lost: &Notify,
) -> String {
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut topology = tokio::time::interval(TOPOLOGY_EVERY);
    ping.tick().await;
    topology.tick().await;
    loop {
        tokio::select! {
            _ = lost.notified() => return "connection closed".into(),
            _ = ping.tick() => {
                for c in conns.iter_mut() {
                    let answer = tokio::time::timeout(
                        settings.response_timeout,
                        redis::cmd("PING").query_async::<()>(c),
                    )
                    .await;
                    match answer {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return format!("ping failed: {e}"),
                        Err(_) => return "ping not answered in time".into(),
                    }
                }
            }
            _ = topology.tick(), if settings.cluster => {
                match self::masters(settings, data).await {
                    Ok(now) if same_nodes(&now, masters) => {}
                    Ok(_) => return "the cluster's masters changed".into(),
                    Err(e) => return format!("cannot read the cluster's masters: {e}"),
                }
            }
        }
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
/// credentials and database.
async fn masters(settings: &RedisSettings, data: &Conn) -> Result<Vec<ConnectionInfo>, String> {
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
    let mut out: Vec<ConnectionInfo> = Vec::new();
    for range in &slots {
        // [start, end, [host, port, id, ...], replicas...]
        let Value::Array(parts) = range else {
            return Err("unexpected CLUSTER SLOTS answer".into());
        };
        let Some(Value::Array(master)) = parts.get(2) else {
            return Err("unexpected CLUSTER SLOTS answer".into());
        };
        let host = match master.first() {
            Some(Value::BulkString(h)) if !h.is_empty() => String::from_utf8_lossy(h).into_owned(),
            _ => match &seed.addr {
                ConnectionAddr::Tcp(h, _) => h.clone(),
                _ => return Err("unexpected CLUSTER SLOTS answer".into()),
            },
        };
        let Some(Value::Int(port)) = master.get(1) else {
            return Err("unexpected CLUSTER SLOTS answer".into());
        };
        let port = u16::try_from(*port).map_err(|_| "bad port in CLUSTER SLOTS".to_string())?;
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
        let key = format!("tg:{{{}}}:t:{}", id.hex(), Id([1; 16]).hex());
        assert_eq!(identity_of_key(key.as_bytes()), Some(id));
        assert_eq!(identity_of_key(b"tg:tokens"), None);
        assert_eq!(identity_of_key(b"tg:{nothex}:i"), None);
        assert_eq!(identity_of_key(b"tg:{"), None);
    }
}
