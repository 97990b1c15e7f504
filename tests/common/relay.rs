//! A TCP relay between the gateway and Redis that can lose Redis's replies:
//! the network failures after which nobody knows whether a command ran.
//!
//! Requests always reach Redis; only what comes back is at the relay's
//! mercy. Threads, not async: each connection is two blocking copies, and
//! every socket is shut down when the relay is dropped, so no thread
//! outlives the test by more than a blocked read.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// What happens to the bytes Redis sends back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replies {
    /// Delivered.
    Pass = 0,
    /// The next reply is dropped and its connection cut, as when a link
    /// fails right after Redis ran the command; then `Pass` again.
    LoseNextAndCut = 1,
    /// Replies are held back until the mode is `Pass` again, as with a
    /// Redis that ran the command and then froze for a while.
    Hold = 2,
}

pub struct Relay {
    addr: String,
    mode: Arc<AtomicU8>,
    lost: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    /// Relays connections to `target` (host:port) from a free loopback port.
    pub fn start(target: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("relay address").to_string();
        let relay = Relay {
            addr,
            mode: Arc::new(AtomicU8::new(Replies::Pass as u8)),
            lost: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            sockets: Arc::new(Mutex::new(Vec::new())),
        };
        let (mode, lost, stop, sockets) = (
            relay.mode.clone(),
            relay.lost.clone(),
            relay.stop.clone(),
            relay.sockets.clone(),
        );
        let target = target.to_string();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                if let (Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone()) {
                    sockets.lock().expect("relay sockets").extend([c3, s3]);
                }
                std::thread::spawn(move || copy(client, server));
                let (mode, lost) = (mode.clone(), lost.clone());
                std::thread::spawn(move || replies(s2, c2, &mode, &lost));
            }
        });
        relay
    }

    /// `host:port` to give the gateway instead of Redis's.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn set(&self, replies: Replies) {
        self.mode.store(replies as u8, Ordering::SeqCst);
    }

    /// How many reads of Redis's replies were dropped or held so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::SeqCst)
    }
}

/// Requests: always delivered.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Replies: as the mode says. Reads wake every 20 ms so held replies go out
/// soon after the mode turns back to `Pass`.
fn replies(mut from: TcpStream, mut to: TcpStream, mode: &AtomicU8, lost: &AtomicU64) {
    let _ = from.set_read_timeout(Some(std::time::Duration::from_millis(20)));
    let mut held = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => 0,
            Err(_) => break,
        };
        let now = mode.load(Ordering::SeqCst);
        if now == Replies::Hold as u8 {
            if n > 0 {
                lost.fetch_add(1, Ordering::SeqCst);
                held.extend_from_slice(&buf[..n]);
            }
            continue;
        }
        if n > 0
            && now == Replies::LoseNextAndCut as u8
            && mode
                .compare_exchange(now, Replies::Pass as u8, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            lost.fetch_add(1, Ordering::SeqCst);
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
        held.extend_from_slice(&buf[..n]);
        if !held.is_empty() && to.write_all(&std::mem::take(&mut held)).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(&self.addr);
        for s in self.sockets.lock().expect("relay sockets").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
