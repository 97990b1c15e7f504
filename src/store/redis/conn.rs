//! Connections to a single Redis or a Redis Cluster: settings, the lazily
//! made multiplexed connection, and how a Redis error becomes a store error.

use crate::store::StoreError;
use redis::aio::ConnectionManager;
use redis::{Cmd, Value};
use std::time::Duration;

/// Connection settings for the Redis store.
#[derive(Clone)]
pub struct RedisSettings {
    /// One URL for a single Redis; the seed nodes of a Redis Cluster otherwise.
    pub urls: Vec<String>,
    pub cluster: bool,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub retries: usize,
    /// The near cache; `None` turns it off.
    pub cache: Option<super::cache::CacheSettings>,
    /// Whose clock the check script decides expiry, membership windows and
    /// rate limits by.
    pub clock: Clock,
}

/// Whose clock decides time in the check script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Redis's own (`TIME`, on the node that holds the identity), so every
    /// gateway in front of one Redis decides alike whatever its own clock
    /// says. What the gateway runs on.
    Redis,
    /// The `now` of each request, as given: for tests that decide at
    /// chosen instants.
    Caller,
}

pub enum Client {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// A live connection to a single Redis or to a cluster; both are cheap to
/// clone (shared, multiplexed) and reconnect by themselves.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Client {
    /// Checks the URLs; nothing is connected yet.
    pub fn new(settings: &RedisSettings) -> Result<Client, StoreError> {
        let bad = |e: redis::RedisError| StoreError::Unavailable(format!("bad redis url: {e}"));
        Ok(if settings.cluster {
            Client::Cluster(
                redis::cluster::ClusterClient::builder(settings.urls.clone())
                    .connection_timeout(settings.connect_timeout)
                    .response_timeout(settings.response_timeout)
                    .retries(settings.retries as u32)
                    .build()
                    .map_err(bad)?,
            )
        } else {
            let url = settings.urls.first().map(String::as_str).unwrap_or("");
            Client::Single(redis::Client::open(url).map_err(bad)?)
        })
    }

    /// Connects (a multiplexed connection that reconnects by itself).
    pub async fn connect(&self, settings: &RedisSettings) -> Result<Conn, StoreError> {
        match self {
            Client::Single(client) => {
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(settings.connect_timeout)
                    .set_response_timeout(settings.response_timeout)
                    .set_number_of_retries(settings.retries)
                    .set_factor(10)
                    .set_max_delay(200);
                ConnectionManager::new_with_config(client.clone(), cfg)
                    .await
                    .map(Conn::Single)
            }
            Client::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        }
        .map_err(unavailable)
    }
}

pub fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}
