//! The domain records: identities, Token Auth configuration, access tokens and
//! project memberships, with the contract's defaults and bounds (pure).

use crate::rate_limit::{self, RateLimit};
use crate::token::{Id, SecretHash};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch. Time is always passed in, never read here.
pub type Millis = u64;

/// The largest TTL, MaxTTL or period the contract allows: ten years, in seconds.
pub const MAX_TTL_SECONDS: u64 = 315_360_000;
/// Default TTL and MaxTTL: 30 days, in seconds.
pub const DEFAULT_TTL_SECONDS: u64 = 2_592_000;

/// A machine identity. `role` is the org-level role slug.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub id: Id,
    pub name: String,
    pub org_id: String,
    pub role: String,
    pub has_delete_protection: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Org roles ordered by privilege; custom slugs rank with `member`.
pub fn org_role_rank(role: &str) -> u8 {
    match role {
        "admin" => 3,
        "no-access" => 0,
        _ => 1,
    }
}

/// The Token Auth configuration of one identity (at most one each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenAuthConfig {
    pub id: Id,
    pub identity_id: Id,
    pub ttl: u64,
    pub max_ttl: u64,
    pub num_uses_limit: u64,
    pub trusted_ips: Vec<IpNet>,
    pub period: u64,
    /// Read at every check (never copied onto tokens): a live policy an
    /// operator tightens against a runaway identity applies at once.
    /// Absent in records written before rate limits existed.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// The management API's name for `rate_limit` (a tokengate extension).
pub const RATE_LIMIT_FIELD: &str = "accessTokenRateLimit";

/// The default trusted IPs: everywhere, both families.
pub fn default_trusted_ips() -> Vec<IpNet> {
    vec![
        IpNet::V4(ipnet::Ipv4Net::default()),
        IpNet::V6(ipnet::Ipv6Net::default()),
    ]
}

/// A problem with a Token Auth configuration, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl TokenAuthConfig {
    /// Checks the contract's bounds: each duration within ten years, TTL <= MaxTTL
    /// when MaxTTL is set, at least one trusted IP.
    pub fn validate(&self) -> Result<(), FieldError> {
        for (field, v) in [
            ("accessTokenTTL", self.ttl),
            ("accessTokenMaxTTL", self.max_ttl),
            ("accessTokenPeriod", self.period),
        ] {
            if v > MAX_TTL_SECONDS {
                return Err(FieldError::new(
                    field,
                    format!("must be at most {MAX_TTL_SECONDS} seconds"),
                ));
            }
        }
        if self.max_ttl > 0 && self.ttl > self.max_ttl {
            return Err(FieldError::new(
                "accessTokenTTL",
                "accessTokenTTL cannot be greater than accessTokenMaxTTL",
            ));
        }
        if self.trusted_ips.is_empty() {
            return Err(FieldError::new(
                "accessTokenTrustedIps",
                "at least one trusted IP is required",
            ));
        }
        if let Some(Err((field, message))) = self.rate_limit.map(|l| l.validate()) {
            let name = match field {
                rate_limit::Field::Requests => "requests",
                rate_limit::Field::WindowSeconds => "windowSeconds",
                rate_limit::Field::Burst => "burst",
            };
            return Err(FieldError::new(
                &format!("{RATE_LIMIT_FIELD}.{name}"),
                message,
            ));
        }
        Ok(())
    }
}

/// Parses a trusted-IP entry: an address (a /32 or /128) or a CIDR block.
/// IPv4-mapped IPv6 entries (`::ffff:10.0.0.0/104`) become the IPv4 block they
/// mean: clients are compared in their canonical form, so a mapped entry would
/// otherwise never match anyone.
pub fn parse_trusted_ip(s: &str) -> Result<IpNet, FieldError> {
    let s = s.trim();
    let net = match s.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => match s.parse::<std::net::IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(FieldError::new(
                    "accessTokenTrustedIps",
                    format!("'{}' is not an IP address or CIDR block", shorten(s)),
                ))
            }
        },
    };
    Ok(canonical_net(net))
}

fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

/// Client-supplied text as it may appear in an error message: at most 64 characters.
pub fn shorten(s: &str) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &s[..i]).into(),
        None => s.into(),
    }
}

/// One access token as stored: the configuration copied at creation, the
/// mutable counters, and the hash of the secret (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: Id,
    pub identity_id: Id,
    pub name: String,
    pub secret_hash: SecretHash,
    pub created_at: Millis,
    pub last_renewed_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
    pub num_uses: u64,
    pub num_uses_limit: u64,
    pub ttl: u64,
    pub max_ttl: u64,
    pub period: u64,
    pub trusted_ips: Vec<IpNet>,
    pub revoked: bool,
}

/// When a token stops being valid, and which rule ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub at: Millis,
    /// True when the MaxTTL cap, not the TTL, is what ends the token.
    pub by_max_ttl: bool,
}

impl TokenRecord {
    /// The moment the token expires, or `None` if it never does.
    /// TTL counts from the last renewal (or creation); MaxTTL from creation and
    /// caps everything; a periodic token lives `period` from its last renewal.
    pub fn expiry(&self) -> Option<Expiry> {
        let base = self.last_renewed_at.unwrap_or(self.created_at);
        if self.period > 0 {
            return Some(Expiry {
                at: base.saturating_add(self.period * 1000),
                by_max_ttl: false,
            });
        }
        let by_ttl = (self.ttl > 0).then(|| base.saturating_add(self.ttl * 1000));
        let by_max =
            (self.max_ttl > 0).then(|| self.created_at.saturating_add(self.max_ttl * 1000));
        match (by_ttl, by_max) {
            (None, None) => None,
            (Some(t), None) => Some(Expiry {
                at: t,
                by_max_ttl: false,
            }),
            (None, Some(m)) => Some(Expiry {
                at: m,
                by_max_ttl: true,
            }),
            (Some(t), Some(m)) => Some(Expiry {
                at: t.min(m),
                by_max_ttl: m <= t,
            }),
        }
    }

    /// Seconds of life left at `now`, rounded up so a live token never reads
    /// 0 (which the API uses for "never expires"); 0 when expired, `None` when
    /// unbounded.
    pub fn seconds_left(&self, now: Millis) -> Option<u64> {
        self.expiry()
            .map(|e| e.at.saturating_sub(now).div_ceil(1000))
    }
}

/// One role grant inside a project membership, possibly temporary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleGrant {
    pub id: Id,
    pub role: String,
    pub is_temporary: bool,
    pub temporary_mode: Option<String>,
    pub temporary_range: Option<String>,
    pub temporary_access_start_time: Option<Millis>,
    pub temporary_access_end_time: Option<Millis>,
}

impl RoleGrant {
    /// True when the grant gives this role at `now` (temporary grants only inside their window).
    pub fn is_active(&self, now: Millis) -> bool {
        if !self.is_temporary {
            return true;
        }
        let start = self.temporary_access_start_time.unwrap_or(0);
        let end = self.temporary_access_end_time.unwrap_or(0);
        now >= start && now < end
    }
}

/// An identity's membership of one project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub id: Id,
    pub project_id: String,
    pub identity_id: Id,
    pub roles: Vec<RoleGrant>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Membership {
    /// The roles in force at `now`, comma-separated, leaving out `no-access`;
    /// `None` when nothing gives access.
    pub fn active_roles(&self, now: Millis) -> Option<String> {
        let mut out = String::new();
        for g in self.roles.iter().filter(|g| g.is_active(now)) {
            if g.role == "no-access" {
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&g.role);
        }
        (!out.is_empty()).then_some(out)
    }
}

/// The longest organization or project id.
pub const MAX_SCOPE_ID_CHARS: usize = 128;

/// An organization id: 1 to 128 of `[A-Za-z0-9_.-]`, not `.` or `..` (path
/// normalisers elsewhere would rewrite those). Project ids are held to the
/// stricter `is_valid_project_id`.
pub fn is_valid_scope_id(id: &str) -> bool {
    (1..=MAX_SCOPE_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && id != "."
        && id != ".."
}

/// A project id in its one spelling: 1-128 lowercase letters, digits, `-`
/// and `_`, starting and ending with a letter or digit, and not a UUID
/// without its hyphens. Upstreams compare ids loosely (case-insensitive
/// collations, UUID parsers that take any case or no hyphens, format
/// suffixes like `.json`), so two spellings the gateway kept apart could be
/// one project upstream: only the canonical spelling is accepted anywhere.
pub fn is_valid_project_id(id: &str) -> bool {
    let b = id.as_bytes();
    let edge_ok = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    is_valid_scope_id(id)
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
        && edge_ok(b.first())
        && edge_ok(b.last())
        && !(b.len() == 32 && b.iter().all(u8::is_ascii_hexdigit))
}

/// Parses Infisical's `temporaryRange` ("30s", "15m", "1h", "2d") into milliseconds.
pub fn parse_temporary_range(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        "y" => 31_536_000_000,
        _ => return None,
    };
    n.checked_mul(unit_ms).filter(|&v| v > 0)
}

/// The last instant RFC 3339 can write with a four-digit year:
/// 9999-12-31T23:59:59.999Z. Later timestamps are refused where they enter.
pub const MAX_TIMESTAMP: Millis = 253_402_300_799_999;

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds
/// (clamped to `MAX_TIMESTAMP`, so it never fails).
pub fn rfc3339(ms: Millis) -> String {
    let ms = ms.min(MAX_TIMESTAMP) as i64;
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

/// Parses an RFC 3339 timestamp into milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The wall clock, for the edges of the program (the request path and the API).
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_have_one_spelling() {
        for ok in [
            "p1",
            "my-project",
            "a_b",
            "3f2c1a9e-8b7d-4c6e-9f10-aa55bb66cc77",
            "x",
        ] {
            assert!(is_valid_project_id(ok), "{ok}");
        }
        for bad in [
            "P1",
            "3F2C1A9E-8B7D-4C6E-9F10-AA55BB66CC77",
            "3f2c1a9e8b7d4c6e9f10aa55bb66cc77",
            "p.b",
            "p1.json",
            "-p",
            "p-",
            "_p",
            "p_",
            "",
            "p b",
        ] {
            assert!(!is_valid_project_id(bad), "{bad}");
        }
    }

    fn token(ttl: u64, max_ttl: u64, period: u64) -> TokenRecord {
        TokenRecord {
            id: Id([1; 16]),
            identity_id: Id([2; 16]),
            name: String::new(),
            secret_hash: [0; 32],
            created_at: 1_000_000,
            last_renewed_at: None,
            last_used_at: None,
            num_uses: 0,
            num_uses_limit: 0,
            ttl,
            max_ttl,
            period,
            trusted_ips: default_trusted_ips(),
            revoked: false,
        }
    }

    #[test]
    fn expiry_rules() {
        assert_eq!(token(0, 0, 0).expiry(), None);
        let e = token(10, 100, 0).expiry().unwrap();
        assert_eq!((e.at, e.by_max_ttl), (1_010_000, false));
        let mut t = token(10, 15, 0);
        t.last_renewed_at = Some(1_008_000);
        let e = t.expiry().unwrap();
        assert_eq!((e.at, e.by_max_ttl), (1_015_000, true));
        let mut p = token(10, 15, 60);
        p.last_renewed_at = Some(2_000_000);
        assert_eq!(p.expiry().unwrap().at, 2_060_000);
        assert_eq!(token(0, 20, 0).expiry().unwrap().at, 1_020_000);
    }

    #[test]
    fn seconds_left_rounds_up() {
        let t = token(10, 0, 0);
        assert_eq!(t.seconds_left(1_000_000), Some(10));
        assert_eq!(t.seconds_left(1_009_999), Some(1), "alive for 1 ms more");
        assert_eq!(t.seconds_left(1_010_000), Some(0));
        assert_eq!(token(0, 0, 0).seconds_left(1_000_000), None);
    }

    #[test]
    fn config_bounds() {
        let mut c = TokenAuthConfig {
            id: Id([0; 16]),
            identity_id: Id([0; 16]),
            ttl: 100,
            max_ttl: 50,
            num_uses_limit: 0,
            trusted_ips: default_trusted_ips(),
            period: 0,
            rate_limit: None,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(c.validate().unwrap_err().field, "accessTokenTTL");
        c.max_ttl = 0;
        assert!(c.validate().is_ok());
        c.period = MAX_TTL_SECONDS + 1;
        assert_eq!(c.validate().unwrap_err().field, "accessTokenPeriod");
        c.period = 0;
        c.trusted_ips.clear();
        assert_eq!(c.validate().unwrap_err().field, "accessTokenTrustedIps");
        c.trusted_ips = default_trusted_ips();
        c.rate_limit = Some(RateLimit {
            requests: 10,
            window_seconds: 1,
            burst: 0,
            per: rate_limit::Per::Identity,
        });
        assert_eq!(
            c.validate().unwrap_err().field,
            "accessTokenRateLimit.burst"
        );
    }

    #[test]
    fn trusted_ip_parsing() {
        assert_eq!(
            parse_trusted_ip("10.0.0.1").unwrap().to_string(),
            "10.0.0.1/32"
        );
        assert_eq!(
            parse_trusted_ip("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_trusted_ip("::1").unwrap().to_string(), "::1/128");
        let e = parse_trusted_ip("10.0.0.300").unwrap_err();
        assert!(e.message.contains("10.0.0.300"));
        assert_eq!(
            parse_trusted_ip("::ffff:10.1.2.3/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_trusted_ip("::ffff:127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(parse_trusted_ip("::/0").unwrap().to_string(), "::/0");
        let long = "x".repeat(100_000);
        assert!(parse_trusted_ip(&long).unwrap_err().message.len() < 150);
    }

    #[test]
    fn temporary_roles() {
        assert_eq!(parse_temporary_range("1h"), Some(3_600_000));
        assert_eq!(parse_temporary_range("15m"), Some(900_000));
        assert_eq!(parse_temporary_range("abc"), None);
        assert_eq!(parse_temporary_range("0s"), None);
        let grant = |role: &str, tmp: Option<(u64, u64)>| RoleGrant {
            id: Id([0; 16]),
            role: role.into(),
            is_temporary: tmp.is_some(),
            temporary_mode: None,
            temporary_range: None,
            temporary_access_start_time: tmp.map(|t| t.0),
            temporary_access_end_time: tmp.map(|t| t.1),
        };
        let m = Membership {
            id: Id([0; 16]),
            project_id: "p".into(),
            identity_id: Id([0; 16]),
            roles: vec![grant("no-access", None), grant("admin", Some((100, 200)))],
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(m.active_roles(150).as_deref(), Some("admin"));
        assert_eq!(m.active_roles(200), None);
        assert_eq!(m.active_roles(50), None);
    }

    #[test]
    fn scope_ids() {
        assert!(is_valid_scope_id("proj-1.a_b"));
        for bad in ["", ".", "..", "a/b", "a b"] {
            assert!(!is_valid_scope_id(bad), "{bad:?}");
        }
        assert!(is_valid_scope_id(&"a".repeat(128)));
        assert!(!is_valid_scope_id(&"a".repeat(129)));
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(MAX_TIMESTAMP), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.500Z"), Some(1500));
    }
}
