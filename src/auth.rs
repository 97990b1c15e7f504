//! The authentication decision: token state + presented secret + client IP +
//! now -> allow or deny with a reason (pure, no I/O).
//!
//! The embedded store calls this inside its write transaction; the Redis store
//! runs the same rules in `store/redis/check_and_consume.lua` so the check and the
//! use count happen in one atomic step. The shared store conformance suite
//! holds both to the same answers.

use crate::model::{Identity, Membership, Millis, TokenRecord};
use crate::rate_limit::Refusal;
use crate::token::SecretHash;
use std::net::IpAddr;
use subtle::ConstantTimeEq;

/// Why a request is refused. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deny {
    /// No such token, wrong secret, or its identity is gone.
    UnknownToken,
    Revoked,
    Expired,
    MaxTtlReached,
    UsageLimitReached,
    IpNotTrusted(IpAddr),
    /// The request needs a different org role (the management API needs `admin`).
    OrgRoleNotAllowed,
    NoProjectAccess,
    /// The route needs another project role than the identity has there.
    ProjectRoleNotAllowed,
    /// Every other check passed, but the rate limit that applies is spent.
    RateLimited(Refusal),
}

impl Deny {
    /// The HTTP status the contract gives this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Deny::IpNotTrusted(_)
            | Deny::OrgRoleNotAllowed
            | Deny::NoProjectAccess
            | Deny::ProjectRoleNotAllowed => 403,
            Deny::RateLimited(_) => 429,
            _ => 401,
        }
    }

    /// A short stable name, used as a bounded metrics label.
    pub fn code(&self) -> &'static str {
        match self {
            Deny::UnknownToken => "unknown_token",
            Deny::Revoked => "revoked",
            Deny::Expired => "expired",
            Deny::MaxTtlReached => "max_ttl",
            Deny::UsageLimitReached => "usage_limit",
            Deny::IpNotTrusted(_) => "ip_not_trusted",
            Deny::OrgRoleNotAllowed => "org_role",
            Deny::NoProjectAccess => "no_project_access",
            Deny::ProjectRoleNotAllowed => "project_role",
            Deny::RateLimited(_) => "rate_limited",
        }
    }

    /// The message shown to the client.
    pub fn message(&self) -> String {
        match self {
            Deny::UnknownToken => "invalid access token".into(),
            Deny::Revoked => "access token has been revoked".into(),
            Deny::Expired => "token expired".into(),
            Deny::MaxTtlReached => "token reached its maximum TTL".into(),
            Deny::UsageLimitReached => "token usage limit reached".into(),
            Deny::IpNotTrusted(ip) => format!("IP {ip} is not in the token's trusted IPs"),
            Deny::OrgRoleNotAllowed => "the identity's org role does not allow this request".into(),
            Deny::NoProjectAccess => "identity has no access to this project".into(),
            Deny::ProjectRoleNotAllowed => {
                "the identity's project role does not allow this request".into()
            }
            Deny::RateLimited(r) => r.message(),
        }
    }
}

/// What an allowed request learns about its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub identity_name: String,
    pub org_role: String,
    /// Active project roles (comma-separated) when a project was asked for.
    pub project_roles: Option<String>,
}

/// Is this token usable right now by this client? Checks, in the contract's
/// order: exists and matches, not revoked, not expired, IP trusted, uses left.
pub fn check_token(
    token: &TokenRecord,
    presented: &SecretHash,
    client_ip: IpAddr,
    now: Millis,
) -> Result<(), Deny> {
    check_renewable(token, presented, client_ip, now)?;
    if token.num_uses_limit > 0 && token.num_uses >= token.num_uses_limit {
        return Err(Deny::UsageLimitReached);
    }
    Ok(())
}

/// May this token be renewed at `now` by `client_ip`? Every check of a
/// request but the use limit: it must match, not be revoked, not be expired
/// (a token past its MaxTTL never renews), and be presented from one of its
/// trusted IPs, or a token stolen and used from elsewhere could keep itself
/// alive for ever. Renewal spends no use, so a spent token still renews.
pub fn check_renewable(
    token: &TokenRecord,
    presented: &SecretHash,
    client_ip: IpAddr,
    now: Millis,
) -> Result<(), Deny> {
    if !bool::from(token.secret_hash.ct_eq(presented)) {
        return Err(Deny::UnknownToken);
    }
    if token.revoked {
        return Err(Deny::Revoked);
    }
    if let Some(e) = token.expiry() {
        if now >= e.at {
            return Err(if e.by_max_ttl {
                Deny::MaxTtlReached
            } else {
                Deny::Expired
            });
        }
    }
    let ip = client_ip.to_canonical();
    if !token.trusted_ips.iter().any(|net| net.contains(&ip)) {
        return Err(Deny::IpNotTrusted(ip));
    }
    Ok(())
}

/// The roles a request needs, each a comma-separated list of which any one
/// will do; `None` for any. Checked before the use is counted, so a refused
/// caller keeps its uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs<'a> {
    /// The identity's org role (the management API needs `admin`).
    pub org_role: Option<&'a str>,
    /// An active role of the identity's membership in the request's project.
    pub project_role: Option<&'a str>,
}

impl Needs<'_> {
    pub const ANY: Needs<'static> = Needs {
        org_role: None,
        project_role: None,
    };
}

/// Is one of the comma-separated `wanted` among the comma-separated `held`?
pub fn any_role(wanted: &str, held: &str) -> bool {
    wanted
        .split(',')
        .any(|w| !w.is_empty() && held.split(',').any(|h| h == w))
}

/// Where a request stands with a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Project<'a> {
    /// The request names no project.
    NotNamed,
    /// It names one: the identity's membership there, `None` for none.
    Named(Option<&'a Membership>),
}

/// Everything one decision looks at.
#[derive(Clone, Copy)]
pub struct Facts<'a> {
    /// The token record the presented token names, if the store has it.
    pub token: Option<&'a TokenRecord>,
    /// The identity the token belongs to, if the store has it.
    pub identity: Option<&'a Identity>,
    /// The hash of the secret the client presented.
    pub presented: &'a SecretHash,
    pub client_ip: IpAddr,
    pub now: Millis,
    /// The roles the request needs.
    pub needs: Needs<'a>,
    pub project: Project<'a>,
}

/// The whole decision for one request. On `Ok` the caller must count the
/// use in the same atomic step.
pub fn decide(facts: Facts<'_>) -> Result<Grant, Deny> {
    let Facts {
        token,
        identity,
        presented,
        client_ip,
        now,
        needs,
        project,
    } = facts;
    let (Some(token), Some(identity)) = (token, identity) else {
        return Err(Deny::UnknownToken);
    };
    check_token(token, presented, client_ip, now)?;
    if needs.org_role.is_some_and(|r| !any_role(r, &identity.role)) {
        return Err(Deny::OrgRoleNotAllowed);
    }
    let project_roles = match project {
        Project::NotNamed => None,
        Project::Named(m) => Some(
            m.and_then(|m| m.active_roles(now))
                .ok_or(Deny::NoProjectAccess)?,
        ),
    };
    if let Some(wanted) = needs.project_role {
        // A project role without a project is none at all.
        if !project_roles
            .as_deref()
            .is_some_and(|held| any_role(wanted, held))
        {
            return Err(Deny::ProjectRoleNotAllowed);
        }
    }
    Ok(Grant {
        identity_name: identity.name.clone(),
        org_role: identity.role.clone(),
        project_roles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{default_trusted_ips, RoleGrant};
    use crate::token::Id;

    const NOW: Millis = 10_000_000;
    const HASH: SecretHash = [7; 32];

    fn token() -> TokenRecord {
        TokenRecord {
            id: Id([1; 16]),
            identity_id: Id([2; 16]),
            name: "t".into(),
            secret_hash: HASH,
            created_at: NOW - 5_000,
            last_renewed_at: None,
            last_used_at: None,
            num_uses: 0,
            num_uses_limit: 0,
            ttl: 60,
            max_ttl: 120,
            period: 0,
            trusted_ips: default_trusted_ips(),
            revoked: false,
        }
    }

    fn identity() -> Identity {
        Identity {
            id: Id([2; 16]),
            name: "ci".into(),
            org_id: "org".into(),
            role: "member".into(),
            has_delete_protection: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The facts of a request with token `t` of identity `id`, the right
    /// secret, from 1.1.1.1 now, needing nothing and naming no project.
    fn facts<'a>(t: &'a TokenRecord, id: &'a Identity) -> Facts<'a> {
        Facts {
            token: Some(t),
            identity: Some(id),
            presented: &HASH,
            client_ip: ip("1.1.1.1"),
            now: NOW,
            needs: Needs::ANY,
            project: Project::NotNamed,
        }
    }

    fn run(t: &TokenRecord, client: &str, now: Millis) -> Result<Grant, Deny> {
        decide(Facts {
            client_ip: ip(client),
            now,
            ..facts(t, &identity())
        })
    }

    #[test]
    fn valid_token_is_allowed_with_identity() {
        let g = run(&token(), "10.0.0.1", NOW).unwrap();
        assert_eq!(
            (g.identity_name.as_str(), g.org_role.as_str()),
            ("ci", "member")
        );
        assert_eq!(g.project_roles, None);
    }

    #[test]
    fn unknown_wrong_secret_or_missing_identity() {
        let (t, id) = (token(), identity());
        let base = facts(&t, &id);
        for f in [
            Facts {
                presented: &[8; 32],
                ..base
            },
            Facts {
                token: None,
                ..base
            },
            Facts {
                identity: None,
                ..base
            },
        ] {
            assert_eq!(decide(f), Err(Deny::UnknownToken));
        }
    }

    #[test]
    fn revoked_comes_before_everything_else() {
        let mut t = token();
        t.revoked = true;
        t.num_uses_limit = 1;
        t.num_uses = 1;
        assert_eq!(run(&t, "1.1.1.1", NOW + 10_000_000), Err(Deny::Revoked));
    }

    #[test]
    fn ttl_and_max_ttl() {
        let t = token();
        assert!(run(&t, "1.1.1.1", t.created_at + 59_999).is_ok());
        assert_eq!(
            run(&t, "1.1.1.1", t.created_at + 60_000),
            Err(Deny::Expired)
        );
        let mut r = token();
        r.last_renewed_at = Some(r.created_at + 100_000);
        assert!(run(&r, "1.1.1.1", r.created_at + 110_000).is_ok());
        assert_eq!(
            run(&r, "1.1.1.1", r.created_at + 120_000),
            Err(Deny::MaxTtlReached)
        );
    }

    #[test]
    fn ip_allowlist_v4_v6_and_mapped() {
        let mut t = token();
        t.trusted_ips = vec!["127.0.0.1/32".parse().unwrap(), "fd00::/8".parse().unwrap()];
        assert!(run(&t, "127.0.0.1", NOW).is_ok());
        assert!(run(&t, "::ffff:127.0.0.1", NOW).is_ok());
        assert!(run(&t, "fd12::1", NOW).is_ok());
        assert_eq!(
            run(&t, "127.0.0.2", NOW),
            Err(Deny::IpNotTrusted(ip("127.0.0.2")))
        );
        assert_eq!(run(&t, "::1", NOW).unwrap_err().status(), 403);
    }

    #[test]
    fn ipv4_any_does_not_admit_ipv6() {
        let mut t = token();
        t.trusted_ips = vec!["0.0.0.0/0".parse().unwrap()];
        assert!(run(&t, "8.8.8.8", NOW).is_ok());
        assert!(run(&t, "2001:db8::1", NOW).is_err());
    }

    #[test]
    fn use_limit() {
        let mut t = token();
        t.num_uses_limit = 5;
        t.num_uses = 4;
        assert!(run(&t, "1.1.1.1", NOW).is_ok());
        t.num_uses = 5;
        assert_eq!(run(&t, "1.1.1.1", NOW), Err(Deny::UsageLimitReached));
    }

    #[test]
    fn expiry_is_checked_before_ip_and_ip_before_limit() {
        let mut t = token();
        t.trusted_ips = vec!["10.0.0.0/8".parse().unwrap()];
        t.num_uses_limit = 1;
        t.num_uses = 1;
        assert_eq!(run(&t, "1.1.1.1", NOW + 1_000_000), Err(Deny::Expired));
        assert_eq!(
            run(&t, "1.1.1.1", NOW).unwrap_err().code(),
            "ip_not_trusted"
        );
        assert_eq!(run(&t, "10.1.1.1", NOW), Err(Deny::UsageLimitReached));
    }

    #[test]
    fn project_membership() {
        let t = token();
        let id = identity();
        let grant = |role: &str, window: Option<(Millis, Millis)>| RoleGrant {
            id: Id([3; 16]),
            role: role.into(),
            is_temporary: window.is_some(),
            temporary_mode: window.map(|_| "relative".into()),
            temporary_range: None,
            temporary_access_start_time: window.map(|w| w.0),
            temporary_access_end_time: window.map(|w| w.1),
        };
        let mut m = Membership {
            id: Id([4; 16]),
            project_id: "p1".into(),
            identity_id: id.id,
            roles: vec![grant("viewer", None)],
            created_at: 0,
            updated_at: 0,
        };
        let d = |m: Option<&Membership>| {
            decide(Facts {
                project: Project::Named(m),
                ..facts(&t, &id)
            })
        };
        assert_eq!(
            d(Some(&m)).unwrap().project_roles.as_deref(),
            Some("viewer")
        );
        assert_eq!(d(None), Err(Deny::NoProjectAccess));
        m.roles = vec![grant("no-access", None)];
        assert_eq!(d(Some(&m)), Err(Deny::NoProjectAccess));
        m.roles = vec![grant("admin", Some((NOW - 10, NOW)))];
        assert_eq!(d(Some(&m)), Err(Deny::NoProjectAccess));
        m.roles = vec![grant("admin", Some((NOW - 10, NOW + 1)))];
        assert_eq!(d(Some(&m)).unwrap().project_roles.as_deref(), Some("admin"));
    }

    #[test]
    fn required_roles_any_of_a_list() {
        let t = token();
        let id = identity();
        let m = Membership {
            id: Id([3; 16]),
            project_id: "p1".into(),
            identity_id: id.id,
            roles: vec![RoleGrant {
                id: Id([4; 16]),
                role: "viewer".into(),
                is_temporary: false,
                temporary_mode: None,
                temporary_range: None,
                temporary_access_start_time: None,
                temporary_access_end_time: None,
            }],
            created_at: 0,
            updated_at: 0,
        };
        let d = |org, project, membership: Project<'_>| {
            decide(Facts {
                needs: Needs {
                    org_role: org,
                    project_role: project,
                },
                project: membership,
                ..facts(&t, &id)
            })
        };
        assert!(d(Some("admin,member"), None, Project::NotNamed).is_ok());
        assert_eq!(
            d(Some("admin,mem"), None, Project::NotNamed),
            Err(Deny::OrgRoleNotAllowed)
        );
        assert!(d(None, Some("admin,viewer"), Project::Named(Some(&m))).is_ok());
        assert_eq!(
            d(None, Some("admin"), Project::Named(Some(&m))),
            Err(Deny::ProjectRoleNotAllowed)
        );
        assert_eq!(
            d(None, Some("viewer"), Project::NotNamed),
            Err(Deny::ProjectRoleNotAllowed)
        );
        assert_eq!(Deny::ProjectRoleNotAllowed.status(), 403);
        assert!(any_role("a,b", "c,b") && !any_role("", "") && !any_role("a", "ab"));
    }

    #[test]
    fn required_org_role() {
        let (t, id) = (token(), identity());
        let d = |role| {
            decide(Facts {
                needs: Needs {
                    org_role: role,
                    project_role: None,
                },
                ..facts(&t, &id)
            })
        };
        assert_eq!(d(Some("admin")), Err(Deny::OrgRoleNotAllowed));
        assert!(d(Some("member")).is_ok());
        let mut expired = token();
        expired.ttl = 1;
        let e = decide(Facts {
            needs: Needs {
                org_role: Some("admin"),
                project_role: None,
            },
            ..facts(&expired, &id)
        });
        assert_eq!(e, Err(Deny::Expired), "token validity is checked first");
    }

    #[test]
    fn renewal_rules() {
        let t = token();
        assert!(check_renewable(&t, &HASH, ip("1.1.1.1"), t.created_at + 59_000).is_ok());
        assert_eq!(
            check_renewable(&t, &HASH, ip("1.1.1.1"), t.created_at + 60_000),
            Err(Deny::Expired)
        );
        assert_eq!(
            check_renewable(&t, &[0; 32], ip("1.1.1.1"), t.created_at),
            Err(Deny::UnknownToken)
        );
        let mut r = t.clone();
        r.last_renewed_at = Some(r.created_at + 100_000);
        assert_eq!(
            check_renewable(&r, &HASH, ip("1.1.1.1"), r.created_at + 120_000),
            Err(Deny::MaxTtlReached)
        );
    }

    #[test]
    fn messages_and_statuses() {
        assert_eq!(Deny::Expired.message(), "token expired");
        assert_eq!(
            Deny::UsageLimitReached.message(),
            "token usage limit reached"
        );
        assert_eq!(
            Deny::IpNotTrusted(ip("10.1.2.3")).message(),
            "IP 10.1.2.3 is not in the token's trusted IPs"
        );
        assert_eq!(Deny::Revoked.status(), 401);
        assert_eq!(Deny::NoProjectAccess.status(), 403);
    }
}
