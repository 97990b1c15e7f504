//! Redis key names. Everything one request needs lives under its identity's
//! hash tag, so in one Redis Cluster slot:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `tg:{IID}:i` | hash | the identity (`record::identity_fields`) |
//! | `tg:{IID}:a` | string | its Token Auth configuration (JSON) |
//! | `tg:{IID}:t:TID` | hash | a token (`record::token_fields`) |
//! | `tg:{IID}:ts` | sorted set | its token ids by creation time |
//! | `tg:{IID}:m:PROJECT` | hash | a membership: `j` JSON, `g` grants |
//! | `tg:{IID}:ps` | set | the projects it is a member of |
//!
//! Global indexes, touched only by the management API: `tg:identities`
//! (sorted set of identity ids), `tg:tokens` (hash: token id -> identity id),
//! `tg:p:PROJECT` (set of member identity ids), and per organization
//! `tg:o:ORG` and `tg:p:PROJECT:o:ORG` (sorted sets of identity ids).
//!
//! `tg:po:PROJECT` (string: the owning organization's id) is alone in its
//! slot on purpose. A membership lives in its identity's slot and a project
//! has members from many identities, so no hash tag can put the owner beside
//! every membership, and a Cluster script cannot touch two slots. The owner is
//! therefore checked and claimed by one single-key script on this key before
//! the membership is written (see `RedisStore::put_membership`).

use crate::token::Id;

pub const IDENTITIES: &str = "tg:identities";
pub const TOKEN_INDEX: &str = "tg:tokens";

pub fn prefix(iid: Id) -> String {
    format!("tg:{{{}}}:", iid.hex())
}
pub fn identity_key(iid: Id) -> String {
    format!("tg:{{{}}}:i", iid.hex())
}
pub fn config_key(iid: Id) -> String {
    format!("tg:{{{}}}:a", iid.hex())
}
pub fn token_key(iid: Id, tid: Id) -> String {
    format!("tg:{{{}}}:t:{}", iid.hex(), tid.hex())
}
pub fn token_list_key(iid: Id) -> String {
    format!("tg:{{{}}}:ts", iid.hex())
}
pub fn membership_key(iid: Id, project: &str) -> String {
    format!("tg:{{{}}}:m:{project}", iid.hex())
}
pub fn identity_projects_key(iid: Id) -> String {
    format!("tg:{{{}}}:ps", iid.hex())
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
