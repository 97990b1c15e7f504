//! Redis key names. Everything one request needs lives under its identity's
//! hash tag, so in one Redis Cluster slot:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `tg:{IID}:i` | hash | the identity (`record::identity_fields`), and in field `l` its Token Auth rate limit (`RateLimit::encode`) |
//! | `tg:{IID}:a` | string | its Token Auth configuration (JSON) |
//! | `tg:{IID}:t` | hash | its tokens: token id (16 bytes) -> `record::encode_token` |
//! | `tg:{IID}:m:PROJECT` | hash | a membership: `j` JSON, `g` grants |
//! | `tg:{IID}:ps` | set | the projects it is a member of |
//!
//! Rate-limit buckets (string: the GCRA TAT in microseconds, with a PX
//! expiry) are `tg:rl{IID}:i` (the identity's own limit, per identity),
//! `tg:rl{IID}:t:TID` (per token), and for a route's default
//! `tg:rl{IID}:r:REQUESTS:WINDOW:BURST:i` or `...:t:TID`. Same hash tag, so the
//! same slot as the rest of the identity; but not under `tg:{`, the prefix
//! the near cache's invalidation channel listens to, because a bucket
//! changes on every request and would otherwise drop the identity from
//! every gateway's cache each time.
//!
//! A check's answer is remembered for a few seconds under
//! `tg:rq{IID}:NONCE` (string), NONCE being the request's own random key,
//! so a check sent again after its reply was lost is answered, not counted
//! twice (`check_and_consume.lua`, `cancel_check.lua`). Outside `tg:{` too:
//! one is written by every counted request.
//!
//! Global indexes, touched only by the management API: `tg:identities`
//! (sorted set of identity ids), `tg:p:PROJECT` (set of member identity ids),
//! and per organization `tg:o:ORG` and `tg:p:PROJECT:o:ORG` (sorted sets of
//! identity ids).
//!
//! A token id starts with the first 8 bytes of its identity's id
//! (`Id::for_token_of`), so the management API finds a token's identity in
//! `tg:ip` (hash: those 8 bytes -> identity id, 16 bytes): one entry per
//! identity, not per token. A token whose id does not start that way (made
//! elsewhere, or whose identity's 8 bytes were already taken) is listed in
//! `tg:tokens` (hash: token id -> identity id) instead.
//!
//! `tg:po:PROJECT` (string: the owning organization's id) is alone in its
//! slot on purpose. A membership lives in its identity's slot and a project
//! has members from many identities, so no hash tag can put the owner beside
//! every membership, and a Cluster script cannot touch two slots. The owner is
//! therefore checked and claimed by one single-key script on this key before
//! the membership is written (see `RedisStore::put_membership`).

use crate::rate_limit::Bucket;
use crate::token::Id;

pub const IDENTITIES: &str = "tg:identities";
pub const TOKEN_INDEX: &str = "tg:tokens";
pub const IDENTITY_PREFIXES: &str = "tg:ip";

pub fn prefix(iid: Id) -> String {
    format!("tg:{{{}}}:", iid.hex())
}
pub fn identity_key(iid: Id) -> String {
    format!("tg:{{{}}}:i", iid.hex())
}
pub fn config_key(iid: Id) -> String {
    format!("tg:{{{}}}:a", iid.hex())
}
pub fn tokens_key(iid: Id) -> String {
    format!("tg:{{{}}}:t", iid.hex())
}
pub fn membership_key(iid: Id, project: &str) -> String {
    format!("tg:{{{}}}:m:{project}", iid.hex())
}
pub fn identity_projects_key(iid: Id) -> String {
    format!("tg:{{{}}}:ps", iid.hex())
}
pub fn rate_key(b: &Bucket) -> String {
    let mut k = format!("tg:rl{{{}}}:", b.identity.hex());
    if let Some(p) = b.route {
        k.push_str(&format!(
            "r:{}:{}:{}:",
            p.requests, p.window_seconds, p.burst
        ));
    }
    match b.token {
        Some(t) => k.push_str(&format!("t:{}", t.hex())),
        None => k.push('i'),
    }
    k
}
pub fn check_key(iid: Id, nonce: &str) -> String {
    format!("tg:rq{{{}}}:{nonce}", iid.hex())
}
pub fn project_key(project: &str) -> String {
    format!("tg:p:{project}")
}
pub fn project_owner_key(project: &str) -> String {
    format!("tg:po:{project}")
}
// Org and project ids never contain ':' or braces (model::is_valid_scope_id),
// so these names cannot collide with each other or borrow a hash tag.
pub fn org_key(org: &str) -> String {
    format!("tg:o:{org}")
}
pub fn project_org_key(project: &str, org: &str) -> String {
    format!("tg:p:{project}:o:{org}")
}
