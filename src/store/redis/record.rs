//! How records are encoded in Redis, compactly: memory per token is what a
//! large fleet pays for.
//!
//! A token is one field of its identity's token hash (`tg:{IID}:t`): the
//! field is the token id (16 bytes), the value this record, big-endian:
//!
//! | bytes (from 1, as Lua counts) | meaning |
//! | --- | --- |
//! | 1 | format version: 1 |
//! | 2-33 | SHA-256 of the secret |
//! | 34 | flags: 1 = revoked, 2 = trusted nowhere (an empty trusted IP list) |
//! | 35-42 | created at (ms) |
//! | 43-50 | last renewed at (ms), 0: never |
//! | 51-58 | last used at (ms), 0: never |
//! | 59-66 | uses counted |
//! | 67-74 | use limit, 0: unlimited |
//! | 75-78 | TTL (s), 0: none |
//! | 79-82 | max TTL (s), 0: no cap |
//! | 83-86 | period (s), 0: not periodic |
//! | 87-88 | number of trusted IP entries, 0: anywhere (unless flag 2) |
//! | then | 18 bytes per entry: family (4 or 6), address (16), prefix length |
//! | then | the name (UTF-8), to the end |
//!
//! `check_and_consume.lua`, `add_uses.lua`, `cancel_check.lua` and `update_token.lua` read and
//! write it with these offsets.
//!
//! Identity hash (`tg:{IID}:i`): `n` name, `r` org role, `o` organization,
//! `p` delete protection ("1"/"0"), `c` created at, `u` updated at (ms).
//! Membership grants (field `g`): one line `start,end,role` per role, `0,0`
//! for a permanent one.

use crate::model::{Identity, Membership, Millis, RoleGrant, TokenRecord};
use crate::store::StoreError;
use crate::token::{Id, SecretHash};
use ipnet::IpNet;
use redis::Value;
use std::collections::HashMap;
use std::net::IpAddr;

/// The identity hash field holding its organization.
pub const ORG_FIELD: &str = "o";

pub fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// The client IP as the script expects it: family byte + 16 address bytes.
pub fn pack_ip(ip: IpAddr) -> [u8; 17] {
    let mut out = [0u8; 17];
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out[0] = 6;
            out[1..].copy_from_slice(&v6.octets());
        }
    }
    out
}

/// Trusted nets keep their own family (no canonicalisation, unlike client
/// IPs), so every entry reads back exactly as written.
pub fn pack_nets(nets: &[IpNet]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nets.len() * 18);
    for n in nets {
        match n {
            IpNet::V4(v4) => {
                out.push(4);
                out.extend_from_slice(&v4.network().octets());
                out.extend_from_slice(&[0; 12]);
            }
            IpNet::V6(v6) => {
                out.push(6);
                out.extend_from_slice(&v6.network().octets());
            }
        }
        out.push(n.prefix_len());
    }
    out
}

pub fn unpack_nets(b: &[u8]) -> Option<Vec<IpNet>> {
    if b.len() % 18 != 0 {
        return None;
    }
    b.chunks(18)
        .map(|e| {
            let ip: IpAddr = match e[0] {
                4 => IpAddr::from([e[1], e[2], e[3], e[4]]),
                6 => IpAddr::from(<[u8; 16]>::try_from(&e[1..17]).ok()?),
                _ => return None,
            };
            IpNet::new(ip, e[17]).ok()
        })
        .collect()
}

/// The record format version (byte 1).
const VERSION: u8 = 1;
/// Bytes before the trusted IP entries.
const FIXED: usize = 88;
const REVOKED: u8 = 1;
/// An empty trusted IP list: no client may use the token. Without this
/// flag no entries means "anywhere", the default, and an empty list would
/// read back as the default (Redis would let in what the others refuse).
const NOWHERE: u8 = 2;

/// The token's record (see the table above).
pub fn encode_token(t: &TokenRecord) -> Vec<u8> {
    // "Anywhere" is the default and is stored as no entries at all.
    let nets: &[IpNet] = if t.trusted_ips == crate::model::default_trusted_ips() {
        &[]
    } else {
        &t.trusted_ips
    };
    let mut out = Vec::with_capacity(FIXED + nets.len() * 18 + t.name.len());
    out.push(VERSION);
    out.extend_from_slice(&t.secret_hash);
    let mut flags = if t.revoked { REVOKED } else { 0 };
    if t.trusted_ips.is_empty() {
        flags |= NOWHERE;
    }
    out.push(flags);
    for v in [
        t.created_at,
        t.last_renewed_at.unwrap_or(0),
        t.last_used_at.unwrap_or(0),
        t.num_uses,
        t.num_uses_limit,
    ] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    for v in [t.ttl, t.max_ttl, t.period] {
        // Config validation keeps these far below u32::MAX seconds.
        out.extend_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_be_bytes());
    }
    out.extend_from_slice(&u16::try_from(nets.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&pack_nets(&nets[..nets.len().min(u16::MAX as usize)]));
    out.extend_from_slice(t.name.as_bytes());
    out
}

pub fn decode_token(iid: Id, tid: Id, b: &[u8]) -> Result<TokenRecord, StoreError> {
    if b.len() < FIXED || b[0] != VERSION {
        return Err(corrupt("token record"));
    }
    let u64_at = |at: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[at..at + 8]);
        u64::from_be_bytes(x)
    };
    let u32_at =
        |at: usize| u64::from(u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]));
    let secret_hash: SecretHash = b[1..33].try_into().map_err(|_| corrupt("token record"))?;
    let entries = usize::from(u16::from_be_bytes([b[86], b[87]]));
    let nets_end = FIXED + entries * 18;
    if b.len() < nets_end {
        return Err(corrupt("token record"));
    }
    let trusted_ips = if b[33] & NOWHERE != 0 {
        Vec::new()
    } else if entries == 0 {
        crate::model::default_trusted_ips()
    } else {
        unpack_nets(&b[FIXED..nets_end]).ok_or_else(|| corrupt("trusted ips"))?
    };
    let opt = |v: u64| (v > 0).then_some(v);
    Ok(TokenRecord {
        id: tid,
        identity_id: iid,
        name: String::from_utf8_lossy(&b[nets_end..]).into_owned(),
        secret_hash,
        revoked: b[33] & REVOKED != 0,
        created_at: u64_at(34),
        last_renewed_at: opt(u64_at(42)),
        last_used_at: opt(u64_at(50)),
        num_uses: u64_at(58),
        num_uses_limit: u64_at(66),
        ttl: u32_at(74),
        max_ttl: u32_at(78),
        period: u32_at(82),
        trusted_ips,
    })
}

/// The grants `encode_grants` wrote, as a membership that answers
/// `active_roles` as the script does (only the grants are read back).
pub fn membership_from_grants(
    iid: Id,
    project: &str,
    grants: &str,
) -> Result<Membership, StoreError> {
    let mut roles = Vec::new();
    for line in grants.lines() {
        let mut parts = line.splitn(3, ',');
        let (Some(s), Some(e), Some(role)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(corrupt("membership grants"));
        };
        let num = |v: &str| {
            v.parse::<Millis>()
                .map_err(|_| corrupt("membership grants"))
        };
        let (start, end) = (num(s)?, num(e)?);
        let permanent = start == 0 && end == 0;
        roles.push(RoleGrant {
            id: Id([0; 16]),
            role: role.to_string(),
            is_temporary: !permanent,
            temporary_mode: None,
            temporary_range: None,
            temporary_access_start_time: (!permanent).then_some(start),
            temporary_access_end_time: (!permanent).then_some(end),
        });
    }
    Ok(Membership {
        id: Id([0; 16]),
        project_id: project.to_string(),
        identity_id: iid,
        roles,
        created_at: 0,
        updated_at: 0,
    })
}

/// Bytes as a Redis answer holds them.
pub fn value_bytes(v: Option<&Value>) -> Result<&[u8], StoreError> {
    match v {
        Some(Value::BulkString(b)) => Ok(b),
        _ => Err(corrupt("unexpected script answer")),
    }
}

pub fn identity_fields(i: &Identity) -> Vec<(&'static str, String)> {
    vec![
        ("n", i.name.clone()),
        ("r", i.role.clone()),
        (ORG_FIELD, i.org_id.clone()),
        ("p", if i.has_delete_protection { "1" } else { "0" }.into()),
        ("c", i.created_at.to_string()),
        ("u", i.updated_at.to_string()),
    ]
}

pub fn identity_from_hash(
    id: Id,
    h: &HashMap<String, String>,
) -> Result<Option<Identity>, StoreError> {
    let Some(name) = h.get("n") else {
        return Ok(None);
    };
    let num = |k: &str| {
        h.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt(k))
    };
    Ok(Some(Identity {
        id,
        name: name.clone(),
        org_id: h.get(ORG_FIELD).cloned().unwrap_or_default(),
        role: h.get("r").cloned().ok_or_else(|| corrupt("role"))?,
        has_delete_protection: h.get("p").map(|p| p == "1").unwrap_or(false),
        created_at: num("c")?,
        updated_at: num("u")?,
    }))
}

/// Membership grants as the script reads them: "start,end,role\n" per grant,
/// "0,0" for a permanent one.
pub fn encode_grants(m: &Membership) -> String {
    let mut out = String::new();
    for g in &m.roles {
        let (s, e) = if g.is_temporary {
            // An end of 0 would read as permanent; 1 keeps an unbounded-less grant inactive.
            (
                g.temporary_access_start_time.unwrap_or(0),
                g.temporary_access_end_time.unwrap_or(0).max(1),
            )
        } else {
            (0, 0)
        };
        out.push_str(&format!("{s},{e},{}\n", g.role));
    }
    out
}

pub fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| corrupt(&e.to_string()))
}

pub fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(&e.to_string()))
}

pub fn value_string(v: Option<&Value>) -> Result<String, StoreError> {
    match v {
        Some(Value::BulkString(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
        Some(Value::SimpleString(s)) => Ok(s.clone()),
        _ => Err(corrupt("unexpected script answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RoleGrant;

    fn token() -> TokenRecord {
        TokenRecord {
            id: Id([1; 16]),
            identity_id: Id([2; 16]),
            name: "deploy bot".into(),
            secret_hash: [7; 32],
            created_at: 1_800_000_000_123,
            last_renewed_at: Some(1_800_000_100_000),
            last_used_at: None,
            num_uses: 41,
            num_uses_limit: 100,
            ttl: 3600,
            max_ttl: 86400,
            period: 0,
            trusted_ips: vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            revoked: true,
        }
    }

    #[test]
    fn token_records_read_back_exactly() {
        for t in [
            token(),
            TokenRecord {
                trusted_ips: crate::model::default_trusted_ips(),
                name: String::new(),
                revoked: false,
                ..token()
            },
            // Trusted nowhere is not "anywhere", revoked or not.
            TokenRecord {
                trusted_ips: Vec::new(),
                ..token()
            },
            TokenRecord {
                trusted_ips: Vec::new(),
                revoked: false,
                ..token()
            },
        ] {
            let b = encode_token(&t);
            assert_eq!(decode_token(t.identity_id, t.id, &b).unwrap(), t);
        }
        // An unlimited, unnamed token that may be used anywhere: 88 bytes.
        let plain = TokenRecord {
            trusted_ips: crate::model::default_trusted_ips(),
            name: String::new(),
            ..token()
        };
        assert_eq!(encode_token(&plain).len(), FIXED);
    }

    #[test]
    fn damaged_records_are_refused() {
        let b = encode_token(&token());
        assert!(decode_token(Id([2; 16]), Id([1; 16]), &b[..FIXED - 1]).is_err());
        assert!(decode_token(Id([2; 16]), Id([1; 16]), &b[..FIXED + 10]).is_err());
        let mut v2 = b.clone();
        v2[0] = 2;
        assert!(decode_token(Id([2; 16]), Id([1; 16]), &v2).is_err());
    }

    #[test]
    fn grants_read_back_with_the_same_active_roles() {
        let grant = |role: &str, temp: Option<(u64, u64)>| RoleGrant {
            id: Id([3; 16]),
            role: role.into(),
            is_temporary: temp.is_some(),
            temporary_mode: None,
            temporary_range: None,
            temporary_access_start_time: temp.map(|t| t.0),
            temporary_access_end_time: temp.map(|t| t.1),
        };
        let m = Membership {
            id: Id([4; 16]),
            project_id: "p1".into(),
            identity_id: Id([2; 16]),
            roles: vec![
                grant("viewer", None),
                grant("admin", Some((1000, 2000))),
                grant("no-access", None),
            ],
            created_at: 0,
            updated_at: 0,
        };
        let back = membership_from_grants(m.identity_id, "p1", &encode_grants(&m)).unwrap();
        for now in [0, 999, 1000, 1999, 2000, 5000] {
            assert_eq!(back.active_roles(now), m.active_roles(now), "at {now}");
        }
    }
}
