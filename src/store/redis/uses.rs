//! The uses of unlimited tokens the near cache counted in memory, written
//! to Redis: every second by a task, and once more on a clean stop.

use super::cache::{NearCache, PendingUses};
use super::conn::{unavailable, Client, Conn, RedisSettings};
use super::keys::tokens_key;
use super::scripts::ADD_USES;
use crate::store::StoreError;
use crate::token::Id;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often counted uses are written (and the cache swept).
const EVERY: Duration = Duration::from_secs(1);

/// Runs for as long as the process: writes what was counted, keeps what
/// could not be written for the next round, and sweeps the cache.
pub async fn write_every_second(cache: Arc<NearCache>, conn: Conn) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        cache.sweep(Instant::now());
        // No reader adds `pending` to Redis's count while uses are between
        // the two (see `NearCache::flush`).
        let _flushing = cache.flush.write().await;
        let uses = cache.take_pending();
        if uses.is_empty() {
            continue;
        }
        let mut c = conn.clone();
        if let Err((e, unwritten)) = write(&mut c, uses).await {
            cache.restore_pending(unwritten);
            log::warn!(
                "cannot write token uses counted by the near cache (kept for the next try): {e}"
            );
        }
    }
}

/// Writes `uses` when the gateway stops. The runtime that served requests
/// is gone by then, and its connection with it, so this opens its own on a
/// thread of its own.
pub fn write_on_stop(
    client: &Client,
    settings: &RedisSettings,
    uses: HashMap<Id, PendingUses>,
) -> Result<(), StoreError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                rt.block_on(async {
                    let mut c = client.connect(settings).await?;
                    write(&mut c, uses).await.map_err(|(e, _)| e)
                })
            })
            .join()
            .unwrap_or_else(|_| Err(StoreError::Unavailable("writing uses panicked".into())))
    })
}

/// Adds counted uses to their tokens: one script call per identity (its
/// tokens are one key; identities live in different slots). On failure,
/// answers the error and the uses not written.
async fn write(
    c: &mut Conn,
    uses: HashMap<Id, PendingUses>,
) -> Result<(), (StoreError, HashMap<Id, PendingUses>)> {
    let mut by_identity: HashMap<Id, Vec<(Id, PendingUses)>> = HashMap::new();
    for (tid, u) in &uses {
        by_identity.entry(u.identity).or_default().push((*tid, *u));
    }
    let mut left = uses;
    for (iid, tokens) in by_identity {
        let mut inv = ADD_USES.prepare_invoke();
        inv.key(tokens_key(iid));
        for (tid, u) in &tokens {
            inv.arg(&tid.0[..]).arg(u.uses).arg(u.last_used_at);
        }
        if let Err(e) = inv.invoke_async::<i64>(c).await {
            return Err((unavailable(e), left));
        }
        for (tid, _) in &tokens {
            left.remove(tid);
        }
    }
    Ok(())
}
