//! The request path on Redis: the near cache's decision when it has one,
//! else the scripted check-and-consume, sent with a nonce of its own so a
//! check whose reply was lost can be sent again without counting twice, and
//! handed to `give_back` when no reply comes at all.

use super::cache::{Fill, Question};
use super::conn::unavailable;
use super::give_back::GiveBack;
use super::keys::*;
use super::record::*;
use super::scripts::{self, Detail, CHECK_AND_CONSUME};
use super::{Clock, RedisStore};
use crate::auth::Grant;
use crate::model::Identity;
use crate::rate_limit::{Bucket, RateLimit, Refusal};
use crate::store::{AuthOutcome, AuthRequest, StoreError};
use crate::token::Id;
use redis::Value;
use std::time::Instant;

impl RedisStore {
    /// The request path: decided by the near cache when it can, else by
    /// one run of `check_and_consume.lua`, whose answer may fill the cache.
    pub(super) async fn check_and_consume(
        &self,
        req: &AuthRequest<'_>,
    ) -> Result<AuthOutcome, StoreError> {
        let (iid, tid) = (req.token.identity_id, req.token.token_id);
        let presented = req.token.secret_hash();
        let mut ticket = None;
        if let (Some(cache), Some(channel)) = (&self.cache, &self.channel) {
            // Whatever another gateway changed and Redis already told us
            // about counts before this decision (see tracking.rs).
            channel.drain();
            let at = Instant::now();
            // A route's rate limit is counted in Redis, so the cache never
            // decides such a request (an identity's own limit keeps the
            // identity out of the cache altogether: see cache.rs).
            if req.route_rate_limit.is_none() {
                let q = Question {
                    identity: iid,
                    token: tid,
                    presented: &presented,
                    client_ip: req.client_ip,
                    now: req.now,
                    needs: req.needs,
                    project: req.project,
                };
                if let Some(outcome) = cache.decide(&q, at) {
                    return Ok(outcome);
                }
                cache.count_miss();
            }
            ticket = cache.begin_fill(iid, at);
        }
        let project = req.project.unwrap_or("");
        // The script picks the bucket: only it knows the identity's own limit.
        let own = |token| {
            rate_key(&Bucket {
                identity: iid,
                token,
                route: None,
            })
        };
        let route_bucket = match &req.route_rate_limit {
            Some(l) => rate_key(&Bucket::of(l, iid, tid, true)),
            None => own(None),
        };
        let nonce = new_nonce();
        let mut inv = CHECK_AND_CONSUME.prepare_invoke();
        inv.key(tokens_key(iid))
            .key(identity_key(iid))
            .key(membership_key(iid, project))
            .key(own(None))
            .key(own(Some(tid)))
            .key(route_bucket)
            .key(check_key(iid, &nonce))
            .arg(&presented[..])
            .arg(&pack_ip(req.client_ip)[..])
            .arg(match self.settings.clock {
                Clock::Redis => String::new(),
                Clock::Caller => req.now.to_string(),
            })
            .arg(if req.project.is_some() { "1" } else { "0" })
            .arg(needed(req.needs.org_role))
            .arg(if ticket.is_some() { "1" } else { "0" })
            .arg(&tid.0[..])
            .arg(req.route_rate_limit.map(|l| l.encode()).unwrap_or_default())
            .arg(needed(req.needs.project_role))
            .arg(self.remember_ms());
        let answer = self.check(&inv, iid, tid, &nonce).await?;
        let code = match answer.first() {
            Some(Value::Int(c)) => *c,
            _ => return Err(corrupt("unexpected script answer")),
        };
        if code != 0 {
            let detail = Detail {
                ip: req.client_ip,
                rate: rate_refusal(&answer),
            };
            let deny = scripts::deny_from_code(code, &detail)
                .ok_or_else(|| corrupt("unexpected script answer"))?;
            return Ok(Err(deny));
        }
        let grant = Grant {
            identity_name: value_string(answer.get(1))?,
            org_role: value_string(answer.get(2))?,
            project_roles: req
                .project
                .map(|_| value_string(answer.get(3)))
                .transpose()?,
        };
        // With a ticket, an unlimited token's answer carries its records
        // (a limited one's does not: it is never kept).
        if let (Some(cache), Some(ticket), Some(record)) = (&self.cache, ticket, answer.get(4)) {
            let token = decode_token(iid, tid, value_bytes(Some(record))?)?;
            if token.num_uses_limit != 0 {
                return Err(corrupt("unexpected script answer"));
            }
            // The script left this use to be counted here.
            cache.count_use(tid, iid, req.now);
            let fill = Fill {
                identity: Identity {
                    id: iid,
                    name: grant.identity_name.clone(),
                    role: grant.org_role.clone(),
                    // Only the name and the role are read on the request path.
                    org_id: String::new(),
                    has_delete_protection: false,
                    created_at: 0,
                    updated_at: 0,
                },
                token,
                project: match req.project {
                    None => None,
                    Some(p) => Some((
                        p.to_string(),
                        membership_from_grants(iid, p, &value_string(answer.get(5))?)?,
                    )),
                },
            };
            let node = value_string(answer.get(6))?;
            if self.channel.as_ref().is_some_and(|c| c.listens_to(&node)) {
                cache.finish_fill(ticket, fill);
            }
        }
        Ok(Ok(grant))
    }

    /// Runs the check script. When its reply is lost (a dropped connection,
    /// a timeout: the script may have run), the same check goes again with
    /// the same nonce, which the script answers from memory rather than
    /// counting a second use; the cluster client does so by itself
    /// (`retries`). When no reply comes at all, the client is refused (503)
    /// and `give_back` undoes whatever the script counted.
    async fn check(
        &self,
        inv: &redis::ScriptInvocation<'_>,
        iid: Id,
        tid: Id,
        nonce: &str,
    ) -> Result<Vec<Value>, StoreError> {
        let mut c = self.conn().await?;
        let tries = if self.settings.cluster {
            1
        } else {
            1 + self.settings.retries
        };
        let mut lost = None;
        for _ in 0..tries {
            match inv.invoke_async(&mut c).await {
                Ok(answer) => return Ok(answer),
                // Redis answered with an error: the script did not count.
                Err(e) if !e.is_io_error() => return Err(unavailable(e)),
                Err(e) => lost = Some(e),
            }
        }
        let back = GiveBack {
            check: check_key(iid, nonce),
            tokens: tokens_key(iid),
            token: tid,
            remember_ms: self.remember_ms(),
            until: Instant::now() + std::time::Duration::from_millis(self.remember_ms()),
        };
        if self
            .give_backs
            .get()
            .is_none_or(|q| q.try_send(back).is_err())
        {
            log::error!(
                "store: the answer to a check of token {} was lost and too many others wait to be given back; its use stays counted",
                tid.hex()
            );
        }
        Err(lost.map_or_else(|| corrupt("no attempt made"), unavailable))
    }

    /// How long an allowed check's answer is remembered (`check_key`):
    /// longer than every attempt at it can take, so a check sent again finds
    /// it, and short enough that remembering every counted request of a busy
    /// gateway stays small.
    fn remember_ms(&self) -> u64 {
        let s = &self.settings;
        let attempt = s.connect_timeout + s.response_timeout;
        let budget = attempt.as_millis() as u64 * (1 + s.retries as u64);
        (2 * budget).max(10_000)
    }
}

/// A check's own key: 16 random bytes, hex (one allocation: this runs on
/// every scripted check).
fn new_nonce() -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut b = [0u8; 16];
    crate::token::fill_random(&mut b);
    let mut out = String::with_capacity(32);
    for x in b {
        out.push(char::from(DIGITS[usize::from(x >> 4)]));
        out.push(char::from(DIGITS[usize::from(x & 0xf)]));
    }
    out
}

/// The roles a request needs as the check script reads them: "" is "any
/// role", so a list naming no role at all (`Some("")`, which `auth::decide`
/// refuses) goes as "," (a list whose every member is empty: no role matches).
fn needed(roles: Option<&str>) -> &str {
    match roles {
        None => "",
        Some("") => ",",
        Some(r) => r,
    }
}

/// The rate-limit refusal in a check script's answer (`{code, "", ms to
/// wait, limit}`), if it is one.
fn rate_refusal(answer: &[Value]) -> Option<Refusal> {
    let retry_after_ms = match answer.get(2)? {
        Value::Int(ms) => u64::try_from(*ms).ok()?,
        _ => return None,
    };
    let limit = RateLimit::decode(&value_string(answer.get(3)).ok()?)?;
    Some(Refusal {
        limit,
        retry_after_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::new_nonce;

    #[test]
    fn a_nonce_is_32_lowercase_hex_digits_and_fresh_each_time() {
        let a = new_nonce();
        assert_eq!(a.len(), 32, "{a}");
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{a}"
        );
        assert_ne!(a, new_nonce());
    }
}
