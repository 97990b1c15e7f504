//! Lockout (pure, time as a parameter): a client address that keeps failing
//! to authenticate to the management API (a wrong admin key, an unknown or
//! dead token, a wrong token to renew or revoke) is refused for a while, so
//! neither the admin key nor tokens can be guessed at the rate the gateway
//! answers. Like Infisical's login lockout: a threshold of failures within a
//! window locks the address for a duration; a success clears its count.

use crate::model::Millis;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// `admin.lockout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutConfig {
    /// Failures within `window_ms` that lock an address; 0 turns lockout off.
    pub threshold: u32,
    pub window_ms: Millis,
    pub duration_ms: Millis,
}

/// Addresses tracked at most; past it, expired entries are swept and, if
/// still full, new addresses are not tracked (the table must not become the
/// attacker's way to exhaust memory).
const MAX_ADDRESSES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    window_start: Millis,
    locked_until: Millis,
}

/// The address a failure is counted against: an IPv4 address, or the /64
/// an IPv6 address is in (one host usually holds a whole /64, and could
/// otherwise try from a fresh address each time). v4-mapped is IPv4.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

pub struct Lockout {
    cfg: LockoutConfig,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl Lockout {
    pub fn new(cfg: LockoutConfig) -> Lockout {
        Lockout {
            cfg,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Err(ms)` while `ip` is locked out: how long until it may try again.
    pub fn check(&self, ip: IpAddr, now: Millis) -> Result<(), Millis> {
        if self.cfg.threshold == 0 {
            return Ok(());
        }
        match self.entries().get(&key(ip)) {
            Some(e) if e.locked_until > now => Err(e.locked_until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication from `ip`; true when it locks it.
    pub fn failed(&self, ip: IpAddr, now: Millis) -> bool {
        if self.cfg.threshold == 0 {
            return false;
        }
        let ip = key(ip);
        let mut entries = self.entries();
        if entries.len() >= MAX_ADDRESSES && !entries.contains_key(&ip) {
            let cfg = self.cfg;
            entries.retain(|_, e| e.locked_until > now || now - e.window_start < cfg.window_ms);
            if entries.len() >= MAX_ADDRESSES {
                return false;
            }
        }
        let e = entries.entry(ip).or_insert(Entry {
            failures: 0,
            window_start: now,
            locked_until: 0,
        });
        if now.saturating_sub(e.window_start) >= self.cfg.window_ms {
            e.failures = 0;
            e.window_start = now;
        }
        e.failures += 1;
        if e.failures >= self.cfg.threshold {
            e.locked_until = now + self.cfg.duration_ms;
            e.failures = 0;
            e.window_start = now;
            return true;
        }
        false
    }

    /// `ip` authenticated: its failures are forgiven.
    pub fn succeeded(&self, ip: IpAddr) {
        if self.cfg.threshold > 0 {
            self.entries().remove(&key(ip));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(threshold: u32) -> LockoutConfig {
        LockoutConfig {
            threshold,
            window_ms: 60_000,
            duration_ms: 300_000,
        }
    }

    #[test]
    fn the_threshold_within_the_window_locks_for_the_duration() {
        let l = Lockout::new(cfg(3));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(!l.failed(a, 0));
        assert!(!l.failed(a, 1_000));
        assert!(l.check(a, 1_000).is_ok());
        assert!(l.failed(a, 2_000), "the third failure locks");
        assert_eq!(l.check(a, 2_000), Err(300_000));
        assert_eq!(l.check(a, 302_000 - 1), Err(1));
        assert!(l.check(a, 302_000).is_ok());
        assert!(l.check(b, 2_000).is_ok(), "other addresses are not locked");
    }

    #[test]
    fn failures_outside_the_window_and_after_a_success_start_again() {
        let l = Lockout::new(cfg(3));
        let a: IpAddr = "::1".parse().unwrap();
        l.failed(a, 0);
        l.failed(a, 1);
        assert!(!l.failed(a, 60_000), "the window has passed: a fresh count");
        l.failed(a, 60_001);
        l.succeeded(a);
        assert!(!l.failed(a, 60_002));
        assert!(l.check(a, 60_002).is_ok());
        // One IPv6 /64 is one address; a mapped IPv4 is that IPv4.
        let v6 = Lockout::new(cfg(2));
        v6.failed("2001:db8::1".parse().unwrap(), 0);
        assert!(v6.failed("2001:db8::ffff:2".parse().unwrap(), 1));
        assert!(v6.check("2001:db8::3".parse().unwrap(), 2).is_err());
        assert!(v6.check("2001:db8:0:1::3".parse().unwrap(), 2).is_ok());
        let v4 = Lockout::new(cfg(2));
        v4.failed("10.0.0.9".parse().unwrap(), 0);
        assert!(v4.failed("::ffff:10.0.0.9".parse().unwrap(), 1));
        let off = Lockout::new(cfg(0));
        for t in 0..10 {
            assert!(!off.failed(a, t));
        }
        assert!(off.check(a, 10).is_ok());
    }
}
