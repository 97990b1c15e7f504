//! The Redis clock offset: how far Redis's clock is from this machine's,
//! measured at connection and every `CLOCK_EVERY` after, so `Store::now`
//! agrees with the clock the check script decides by (`Clock::Redis`).

use super::conn::Conn;
use crate::model::now_millis;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// How often the gateway measures Redis's clock against its own.
const CLOCK_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Measures Redis's clock against this machine's (`TIME`, the midpoint of
/// the round trip), for `Store::now`; keeps the last offset on failure.
pub(super) async fn measure_clock(c: &mut Conn, offset: &AtomicI64) {
    let before = now_millis();
    let Ok((secs, micros)) = redis::cmd("TIME").query_async::<(u64, u64)>(c).await else {
        return;
    };
    let after = now_millis();
    let redis_ms = secs * 1000 + micros / 1000;
    let local_ms = before + (after.saturating_sub(before)) / 2;
    offset.store(redis_ms as i64 - local_ms as i64, Ordering::Relaxed);
}

/// Keeps `offset` current for as long as the process runs.
pub(super) async fn follow_clock(mut c: Conn, offset: Arc<AtomicI64>) {
    loop {
        tokio::time::sleep(CLOCK_EVERY).await;
        measure_clock(&mut c, &offset).await;
    }
}
