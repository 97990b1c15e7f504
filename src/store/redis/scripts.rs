//! The Lua scripts of the Redis store (the `.lua` files beside this one) and
//! the one table of deny codes the check script answers with, shared by both
//! sides: the script gets it as a prelude (`local DENY = {unknown_token = 1,
//! ...}`) and Rust reads the number back through the same table.

use crate::auth::Deny;
use crate::rate_limit::{Per, RateLimit, Refusal};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

/// What an answer says beyond its code: the client IP (the gateway's own)
/// and, for a rate-limit refusal, the policy and wait the script answered.
#[derive(Debug, Clone, Copy)]
pub struct Detail {
    pub ip: IpAddr,
    pub rate: Option<Refusal>,
}

/// Every refusal of the check script, numbered by position from 1 (0 is
/// "allowed"). The names the script uses are the refusals' own codes
/// (`Deny::code`), so a new refusal is added here and nowhere else.
const DENIALS: [fn(&Detail) -> Option<Deny>; 10] = [
    |_| Some(Deny::UnknownToken),
    |_| Some(Deny::Revoked),
    |_| Some(Deny::Expired),
    |_| Some(Deny::MaxTtlReached),
    |d| Some(Deny::IpNotTrusted(d.ip.to_canonical())),
    |_| Some(Deny::UsageLimitReached),
    |_| Some(Deny::NoProjectAccess),
    |_| Some(Deny::OrgRoleNotAllowed),
    |d| d.rate.map(Deny::RateLimited),
    |_| Some(Deny::ProjectRoleNotAllowed),
];

/// The refusal a script answered with `code`, or `None` for a number the
/// table does not hold (or a rate-limit refusal without its detail).
pub fn deny_from_code(code: i64, detail: &Detail) -> Option<Deny> {
    let index = usize::try_from(code).ok()?.checked_sub(1)?;
    DENIALS.get(index).and_then(|make| make(detail))
}

/// `local DENY = {unknown_token = 1, ...}` for the check script.
fn deny_prelude() -> String {
    let any = Detail {
        ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        rate: Some(Refusal {
            limit: RateLimit {
                requests: 1,
                window_seconds: 1,
                burst: 1,
                per: Per::Identity,
            },
            retry_after_ms: 1,
        }),
    };
    let entries: Vec<String> = DENIALS
        .iter()
        .enumerate()
        .filter_map(|(i, make)| make(&any).map(|d| format!("{} = {}", d.code(), i + 1)))
        .collect();
    format!("local DENY = {{{}}}\n", entries.join(", "))
}

/// The request path's check, one call per authenticated request.
pub static CHECK_AND_CONSUME: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{}{}",
        deny_prelude(),
        include_str!("check_and_consume.lua")
    ))
});

/// Gives back the use of a check whose answer was lost (see the script).
pub static CANCEL_CHECK: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("cancel_check.lua")));

/// Uses of unlimited tokens counted by the near cache, written in batches.
pub static ADD_USES: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("add_uses.lua")));

// Small single-slot scripts for the management API: each makes a
// read-check-write atomic without WATCH (which a multiplexed connection cannot use).
pub static UPDATE_TOKEN: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("update_token.lua")));
pub static HDEL_IF_EQUAL: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("hdel_if_equal.lua")));
pub static HSET_IF_EXISTS: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("hset_if_exists.lua")));
pub static PUT_CONFIG: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("put_config.lua")));
pub static CREATE_TOKEN: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("create_token.lua")));
pub static PUT_MEMBERSHIP: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("put_membership.lua")));
pub static CLAIM_PROJECT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("claim_project.lua")));
pub static RESTORE_OWNER: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("restore_owner.lua")));
pub static REMOVE_CONFIG: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("remove_config.lua")));
pub static DELETE_IDENTITY: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("delete_identity.lua")));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_the_script_uses_is_in_the_table() {
        let prelude = deny_prelude();
        let script = include_str!("check_and_consume.lua");
        for used in script.split("DENY.").skip(1) {
            let name: String = used
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                prelude.contains(&format!("{name} = ")),
                "DENY.{name} is not in the table"
            );
        }
    }

    #[test]
    fn codes_read_back_as_their_refusals() {
        let ip: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let rate = Refusal {
            limit: RateLimit::decode("10,1,10,t").unwrap(),
            retry_after_ms: 40,
        };
        let d = Detail {
            ip,
            rate: Some(rate),
        };
        for (i, make) in DENIALS.iter().enumerate() {
            let code = i64::try_from(i + 1).unwrap();
            assert_eq!(deny_from_code(code, &d), make(&d));
            assert!(make(&d).is_some());
        }
        assert_eq!(
            deny_from_code(5, &d),
            Some(Deny::IpNotTrusted("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(deny_from_code(9, &d), Some(Deny::RateLimited(rate)));
        let bare = Detail { ip, rate: None };
        assert_eq!(
            deny_from_code(9, &bare),
            None,
            "a refusal without its detail"
        );
        assert_eq!(deny_from_code(10, &d), Some(Deny::ProjectRoleNotAllowed));
        for bad in [0, -1, 11, i64::MAX] {
            assert_eq!(deny_from_code(bad, &d), None);
        }
        assert!(deny_prelude().ends_with("rate_limited = 9, project_role = 10}\n"));
        assert!(deny_prelude().starts_with("local DENY = {unknown_token = 1, revoked = 2,"));
    }
}
