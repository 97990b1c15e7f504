//! Integration-test harness: real processes (redis-server, the tokengate binary, an echo upstream) on loopback, driven by a small DSL.
//!
//! Every helper is bounded in time and every child process is owned by a
//! guard that kills it on drop, so a failing test never leaves a server
//! behind. Children stay in the test's own process group on purpose: nextest
//! signals that group when it times a test out, and that reaches them too.
//!
//! Each test binary compiles this module but uses only part of it, hence
//! the allowances for unused items.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod admin;
pub mod browser;
pub mod cluster;
pub mod front;
pub mod gateway;
pub mod http;
pub mod lenient;
pub mod net;
pub mod paths;
pub mod process;
pub mod redis;
pub mod relay;
pub mod tls;
pub mod upstream;

pub use admin::{Admin, CreatedToken};
pub use cluster::RedisCluster;
pub use gateway::{redis_cache_on, Gateway, GatewayConfig};
pub use http::{
    get, get_with_token, http, raw_http, raw_http_resp, raw_request, try_http, Resp, Session,
};
pub use redis::{Redis, Reply};
pub use upstream::{Recorded, Upstream};

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Admin key handed to every gateway through `TOKENGATE_ADMIN_KEY`.
pub const ADMIN_KEY: &str = "tg-test-admin-key-3f9c2a7e51d84b06";

/// `Authorization` with the admin key.
pub fn admin_auth() -> String {
    format!("Bearer {ADMIN_KEY}")
}

/// The operator's own management call on the admin listener, from this
/// address with the admin key: 200 unless something locked the address out.
#[track_caller]
pub fn assert_operator_not_locked_out(gw: &Gateway, after: &str) {
    let own = http::http(
        "GET",
        &format!("{}/api/v1/identities", gw.admin_url()),
        &[("Authorization", &admin_auth())],
        None,
    );
    assert_eq!(
        own.status, 200,
        "{after} locked the operator's address out: {}",
        own.body
    );
}

/// The port of a base URL such as `http://127.0.0.1:P`.
pub fn port_of(url: &str) -> String {
    url.rsplit(':').next().unwrap_or_default().to_string()
}

/// Organization id used when the harness creates identities.
pub const ORG_ID: &str = "org-test";

/// A port that was free a moment ago on 127.0.0.1.
///
/// The listener is dropped before returning, so another process may take the
/// port in between; the process starters retry on "address in use" for that.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr of probe").port()
}

/// A name no other call in this process (or a concurrently running test
/// process) returns, so tests sharing a store never collide on names.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Polls `cond` until it returns true or `timeout` passes; returns whether it did.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

/// Polls `cond` until it holds; panics at the caller's line after `timeout`.
///
/// Tests use this instead of sleeping a guessed amount.
#[track_caller]
pub fn eventually(timeout: Duration, cond: impl FnMut() -> bool) {
    if !poll_until(timeout, cond) {
        panic!("condition not met within {timeout:?}");
    }
}

/// Runs `f(0..n)` on `n` threads released together by a barrier and returns
/// the results in index order. Used to race requests against one token.
pub fn concurrently<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let barrier = &barrier;
                let f = &f;
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("concurrent worker panicked"))
            .collect()
    })
}

/// Defines one test per store running `$case(cfg)`: `$redis` against a fresh
/// redis-server, `$embedded` against a fresh embedded store file.
macro_rules! on_both_stores {
    ($case:ident, $redis:ident, $embedded:ident) => {
        #[test]
        fn $redis() {
            let redis = Redis::start();
            $case(GatewayConfig::redis(&redis.url()));
        }

        #[test]
        fn $embedded() {
            $case(GatewayConfig::embedded_temp());
        }
    };
}
pub(crate) use on_both_stores;

/// The lines of a JSON-lines file (an access or audit log), each parsed;
/// none when the file does not exist yet. A line that is not JSON fails the
/// test with the line.
#[track_caller]
pub fn json_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}
