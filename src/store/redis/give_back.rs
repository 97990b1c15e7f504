//! The give-back queue: checks whose replies never came back (the client
//! was refused, 503) are undone by one task, so a refused request does not
//! spend a use of its token.

use super::conn::Conn;
use super::scripts::CANCEL_CHECK;
use crate::token::Id;
use std::time::Instant;
use tokio::sync::mpsc;

/// How many lost checks may wait to be given back; past it, a use stays
/// counted (and is logged).
pub(super) const GIVE_BACK_QUEUE: usize = 4096;

/// A check whose answer never came back.
pub(super) struct GiveBack {
    pub(super) check: String,
    pub(super) tokens: String,
    pub(super) token: Id,
    pub(super) remember_ms: u64,
    /// Until when its answer is remembered: after that it cannot be undone.
    pub(super) until: Instant,
}

/// Undoes checks whose answers never came back (see `cancel_check.lua`),
/// one at a time for as long as the process runs: each is tried until it
/// lands or its answer is forgotten (then a use the script counted stays
/// counted, the one window where a refused request spends a use). One at a
/// time, because they come in bursts exactly when Redis is failing: many
/// concurrent retries against a node that is gone would only add to the
/// client's trouble while the cluster recovers.
pub(super) async fn give_back(mut c: Conn, mut queue: mpsc::Receiver<GiveBack>) {
    while let Some(g) = queue.recv().await {
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            let mut inv = CANCEL_CHECK.prepare_invoke();
            inv.key(&g.check)
                .key(&g.tokens)
                .arg(&g.token.0[..])
                .arg(g.remember_ms);
            match inv.invoke_async::<i64>(&mut c).await {
                Ok(n) => {
                    log::warn!(
                        "store: the answer to a check of token {} was lost; the client was refused (503){}",
                        g.token.hex(),
                        if n == 1 { " and its use given back" } else { "" }
                    );
                    break;
                }
                Err(e) if Instant::now() + pause >= g.until => {
                    log::error!(
                        "store: the answer to a check of token {} was lost and Redis could not be reached to give its use back ({e}); the use stays counted",
                        g.token.hex()
                    );
                    break;
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(1));
                }
            }
        }
    }
}
