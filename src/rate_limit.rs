//! Rate limits (pure): the policy a Token Auth configuration or a route
//! carries, the GCRA decision for one request, and the answer's headers.
//!
//! Why GCRA: its whole state is one number per bucket (the theoretical
//! arrival time, TAT), so a Redis script reads and writes one small key in
//! the same atomic step as the rest of the check, and it spreads a limit
//! evenly instead of letting a fixed window's edge pass twice the limit.
//! A policy of `requests` per `window_seconds` admits one request every
//! `interval` (the window divided by the requests, rounded up to the
//! microsecond, so rounding never admits more than the policy says), and up
//! to `burst` of them at once after a quiet spell.
//!
//! The Redis check script (`store/redis/check_and_consume.lua`) does the
//! same integer arithmetic in microseconds; every value it handles stays
//! below 2^53, where Lua's doubles are exact (see `MAX_REFILL_SECONDS`).

use crate::model::Millis;
use crate::token::Id;
use serde::{Deserialize, Serialize};

/// The largest `requests` and `burst`.
pub const MAX_REQUESTS: u32 = 1_000_000;
/// The longest window: a day.
pub const MAX_WINDOW_SECONDS: u32 = 86_400;
/// A full burst must come back within a day (`burst` intervals). This also
/// bounds how long a bucket's key lives in Redis, and keeps the arithmetic
/// exact in Lua.
pub const MAX_REFILL_SECONDS: u64 = 86_400;

/// Whether a limit is shared by every token of an identity or counted per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    Identity,
    Token,
}

impl Per {
    pub fn as_str(self) -> &'static str {
        match self {
            Per::Identity => "identity",
            Per::Token => "token",
        }
    }

    pub fn parse(s: &str) -> Option<Per> {
        match s {
            "identity" => Some(Per::Identity),
            "token" => Some(Per::Token),
            _ => None,
        }
    }
}

/// `requests` per `window_seconds`, with up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateLimit {
    pub requests: u32,
    pub window_seconds: u32,
    pub burst: u32,
    pub per: Per,
}

/// Which part of a rate limit is out of bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Requests,
    WindowSeconds,
    Burst,
}

impl RateLimit {
    /// Checks the bounds: `requests` and `burst` 1 to 1,000,000, the window
    /// 1 s to a day, and a full burst back within a day.
    pub fn validate(&self) -> Result<(), (Field, String)> {
        if !(1..=MAX_REQUESTS).contains(&self.requests) {
            return Err((Field::Requests, format!("must be 1 to {MAX_REQUESTS}")));
        }
        if !(1..=MAX_WINDOW_SECONDS).contains(&self.window_seconds) {
            return Err((
                Field::WindowSeconds,
                format!("must be 1 to {MAX_WINDOW_SECONDS} seconds"),
            ));
        }
        if !(1..=MAX_REQUESTS).contains(&self.burst) {
            return Err((Field::Burst, format!("must be 1 to {MAX_REQUESTS}")));
        }
        if self.tolerance_us() > MAX_REFILL_SECONDS * 1_000_000 {
            return Err((
                Field::Burst,
                format!(
                    "a full burst must refill within {MAX_REFILL_SECONDS} seconds (burst x windowSeconds / requests)"
                ),
            ));
        }
        Ok(())
    }

    /// The time one request costs, in microseconds, rounded up.
    pub fn interval_us(&self) -> u64 {
        (u64::from(self.window_seconds) * 1_000_000).div_ceil(u64::from(self.requests.max(1)))
    }

    /// How far ahead of now the TAT may run: `burst` intervals.
    pub fn tolerance_us(&self) -> u64 {
        u64::from(self.burst) * self.interval_us()
    }

    /// The form the Redis script reads: `requests,window,burst,i|t`.
    pub fn encode(&self) -> String {
        let per = match self.per {
            Per::Identity => 'i',
            Per::Token => 't',
        };
        format!(
            "{},{},{},{per}",
            self.requests, self.window_seconds, self.burst
        )
    }

    /// Reads `encode`'s form back.
    pub fn decode(s: &str) -> Option<RateLimit> {
        let mut parts = s.split(',');
        let requests = parts.next()?.parse().ok()?;
        let window_seconds = parts.next()?.parse().ok()?;
        let burst = parts.next()?.parse().ok()?;
        let per = match parts.next()? {
            "i" => Per::Identity,
            "t" => Per::Token,
            _ => return None,
        };
        parts.next().is_none().then_some(RateLimit {
            requests,
            window_seconds,
            burst,
            per,
        })
    }

    /// "10 requests per 1 second per identity".
    pub fn describe(&self) -> String {
        let plural =
            |n: u32, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "{} per {} per {}",
            plural(self.requests, "request", "requests"),
            plural(self.window_seconds, "second", "seconds"),
            self.per.as_str()
        )
    }
}

/// Where a request's limit is counted: one bucket per identity or token and
/// per source. An identity's own limit has one bucket (per identity, or per
/// token), kept across changes of the limit; a route's default has one per
/// distinct policy, so two routes with different defaults do not share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bucket {
    pub identity: Id,
    /// Set when the limit is counted per token.
    pub token: Option<Id>,
    /// The route default's policy; `None` for the identity's own limit.
    pub route: Option<RateLimit>,
}

impl Bucket {
    /// The bucket `limit` draws from for this token of this identity.
    pub fn of(limit: &RateLimit, identity: Id, token: Id, from_route: bool) -> Bucket {
        Bucket {
            identity,
            token: (limit.per == Per::Token).then_some(token),
            route: from_route.then_some(*limit),
        }
    }
}

/// A request refused by its rate limit: the policy, and how long until a
/// request would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub limit: RateLimit,
    pub retry_after_ms: u64,
}

impl Refusal {
    /// `Retry-After` in whole seconds: rounded up, at least 1.
    pub fn retry_after_seconds(&self) -> u64 {
        self.retry_after_ms.div_ceil(1000).max(1)
    }

    /// The answer's headers: `Retry-After`, and the IETF draft's
    /// (draft-ietf-httpapi-ratelimit-headers-10) `RateLimit-Policy` (the
    /// quota `q` per window `w` seconds) and `RateLimit` (remaining `r`,
    /// always 0 on a refusal, and `t`, seconds until a request is allowed).
    /// The policy is named after what it counts: `"identity"` or `"token"`.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        let name = self.limit.per.as_str();
        let wait = self.retry_after_seconds();
        [
            ("retry-after", wait.to_string()),
            (
                "ratelimit-policy",
                format!(
                    "\"{name}\";q={};w={}",
                    self.limit.requests, self.limit.window_seconds
                ),
            ),
            ("ratelimit", format!("\"{name}\";r=0;t={wait}")),
        ]
    }

    /// The client's message, naming the limit.
    pub fn message(&self) -> String {
        format!(
            "rate limit of {} exceeded; retry in {} s",
            self.limit.describe(),
            self.retry_after_seconds()
        )
    }
}

/// The outcome of one GCRA step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed: store `tat_us` for the bucket; it matters for `ttl_ms` more
    /// (after that it lies in the past and reads as a fresh bucket).
    Allowed { tat_us: u64, ttl_ms: u64 },
    /// Refused: the bucket is left as it was.
    Refused(Refusal),
}

/// One request against `limit` at `now`, with the bucket's stored TAT in
/// microseconds (0 for a bucket never used or expired).
pub fn check(limit: &RateLimit, stored_tat_us: u64, now: Millis) -> Verdict {
    let now_us = now.saturating_mul(1000);
    let tat = stored_tat_us.max(now_us);
    let next = tat.saturating_add(limit.interval_us());
    let ahead = next - now_us;
    let tolerance = limit.tolerance_us();
    if ahead > tolerance {
        return Verdict::Refused(Refusal {
            limit: *limit,
            retry_after_ms: (ahead - tolerance).div_ceil(1000),
        });
    }
    Verdict::Allowed {
        tat_us: next,
        ttl_ms: ahead.div_ceil(1000).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_800_000_000_000;

    fn limit(requests: u32, window_seconds: u32, burst: u32) -> RateLimit {
        RateLimit {
            requests,
            window_seconds,
            burst,
            per: Per::Identity,
        }
    }

    /// Runs requests at the given instants from an empty bucket; returns
    /// how many were allowed and the final state.
    fn run(l: &RateLimit, at: impl IntoIterator<Item = Millis>) -> (usize, u64) {
        let mut tat = 0;
        let mut allowed = 0;
        for now in at {
            if let Verdict::Allowed { tat_us, .. } = check(l, tat, now) {
                tat = tat_us;
                allowed += 1;
            }
        }
        (allowed, tat)
    }

    #[test]
    fn a_full_burst_at_once_then_one_per_interval() {
        let l = limit(10, 1, 10);
        assert_eq!(l.interval_us(), 100_000);
        let (allowed, tat) = run(&l, std::iter::repeat_n(NOW, 15));
        assert_eq!(allowed, 10);
        let Verdict::Refused(r) = check(&l, tat, NOW) else {
            panic!("the 11th request at once must be refused");
        };
        assert_eq!(r.retry_after_ms, 100);
        assert_eq!(r.retry_after_seconds(), 1);
        // One interval later exactly one more fits.
        assert!(matches!(check(&l, tat, NOW + 100), Verdict::Allowed { .. }));
        assert!(matches!(check(&l, tat, NOW + 99), Verdict::Refused(_)));
    }

    #[test]
    fn a_refusal_leaves_nothing_to_store() {
        let l = limit(1, 60, 1);
        let Verdict::Allowed { tat_us, ttl_ms } = check(&l, 0, NOW) else {
            panic!("first request");
        };
        assert_eq!((tat_us, ttl_ms), ((NOW + 60_000) * 1000, 60_000));
        let Verdict::Refused(r) = check(&l, tat_us, NOW + 1_000) else {
            panic!("second request within the minute");
        };
        assert_eq!(r.retry_after_ms, 59_000);
        assert_eq!(r.retry_after_seconds(), 59);
        assert!(matches!(
            check(&l, tat_us, NOW + 60_000),
            Verdict::Allowed { .. }
        ));
    }

    #[test]
    fn sustained_rate_never_exceeds_burst_plus_elapsed_over_interval() {
        // Every millisecond for 5 s: at most burst + 5000 / 100 = 60.
        let l = limit(10, 1, 10);
        let (allowed, _) = run(&l, (0..5_000).map(|ms| NOW + ms));
        assert_eq!(
            allowed,
            10 + 49,
            "the 5000th ms is not yet the 50th interval"
        );
        // A smaller burst smooths the start.
        let (allowed, _) = run(&limit(10, 1, 1), (0..1_000).map(|ms| NOW + ms));
        assert_eq!(allowed, 10);
    }

    #[test]
    fn uneven_division_rounds_the_interval_up() {
        let l = limit(3, 1, 3);
        assert_eq!(l.interval_us(), 333_334);
        let (allowed, _) = run(&l, (0..=10_000).map(|ms| NOW + ms));
        assert!(allowed <= 3 + 30, "{allowed}");
    }

    #[test]
    fn an_old_tat_reads_as_a_fresh_bucket() {
        let l = limit(10, 1, 2);
        assert_eq!(
            check(&l, (NOW - 10_000) * 1000, NOW),
            check(&l, 0, NOW),
            "a TAT in the past is an empty bucket"
        );
    }

    #[test]
    fn bounds() {
        assert!(limit(10, 1, 10).validate().is_ok());
        assert_eq!(limit(0, 1, 1).validate().unwrap_err().0, Field::Requests);
        assert_eq!(
            limit(1, 0, 1).validate().unwrap_err().0,
            Field::WindowSeconds
        );
        assert_eq!(
            limit(1, 86_401, 1).validate().unwrap_err().0,
            Field::WindowSeconds
        );
        assert_eq!(limit(1, 1, 0).validate().unwrap_err().0, Field::Burst);
        // 2 per day with a burst of 3 would take a day and a half to refill.
        assert_eq!(limit(2, 86_400, 3).validate().unwrap_err().0, Field::Burst);
        assert!(limit(2, 86_400, 2).validate().is_ok());
        assert!(limit(MAX_REQUESTS, 1, MAX_REQUESTS).validate().is_ok());
        // The largest values stay exact as Lua doubles.
        let big = limit(1, 86_400, 1);
        assert!(big.tolerance_us() + NOW * 1000 * 3 < (1 << 53));
    }

    #[test]
    fn encoding_round_trips() {
        let l = RateLimit {
            requests: 7,
            window_seconds: 60,
            burst: 3,
            per: Per::Token,
        };
        assert_eq!(l.encode(), "7,60,3,t");
        assert_eq!(RateLimit::decode(&l.encode()), Some(l));
        for bad in ["", "1,2,3", "1,2,3,x", "1,2,3,i,5", "a,2,3,i"] {
            assert_eq!(RateLimit::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn headers_and_message() {
        let r = Refusal {
            limit: limit(10, 1, 10),
            retry_after_ms: 1,
        };
        assert_eq!(
            r.headers(),
            [
                ("retry-after", "1".to_string()),
                ("ratelimit-policy", "\"identity\";q=10;w=1".to_string()),
                ("ratelimit", "\"identity\";r=0;t=1".to_string()),
            ]
        );
        assert_eq!(
            r.message(),
            "rate limit of 10 requests per 1 second per identity exceeded; retry in 1 s"
        );
        let r = Refusal {
            retry_after_ms: 2_001,
            ..r
        };
        assert_eq!(r.retry_after_seconds(), 3);
    }
}
