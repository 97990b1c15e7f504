//! How records are encoded in Redis: small hashes with one-letter fields,
//! zero values and defaults left out to keep each record compact.
//!
//! Token hash (`tg:{IID}:t:TID`), read by `check_and_consume.lua`:
//!
//! | field | meaning | absent means |
//! | --- | --- | --- |
//! | `h` | SHA-256 of the secret (32 bytes) | no such token |
//! | `c` | created at (ms) | no such token |
//! | `r` | last renewed at (ms) | never renewed |
//! | `l` | last used at (ms) | never used |
//! | `t` | TTL (s) | 0: no TTL |
//! | `m` | max TTL (s) | 0: no cap |
//! | `d` | period (s) | 0: not periodic |
//! | `k` | use limit | 0: unlimited |
//! | `u` | uses counted | 0 |
//! | `i` | trusted IPs, 18 bytes each: family, address (16), prefix length | anywhere |
//! | `x` | revoked ("1") | not revoked |
//! | `n` | name | empty |
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

/// The token's hash fields. Zero values and the default "anywhere" IP list are
/// left out: the script reads a missing field as zero / anywhere, which keeps
/// the record small.
pub fn token_fields(t: &TokenRecord) -> Vec<(&'static str, Vec<u8>)> {
    let mut f: Vec<(&'static str, Vec<u8>)> = vec![
        ("h", t.secret_hash.to_vec()),
        ("c", t.created_at.to_string().into_bytes()),
    ];
    let mut num = |k: &'static str, v: u64| {
        if v > 0 {
            f.push((k, v.to_string().into_bytes()));
        }
    };
    num("t", t.ttl);
    num("m", t.max_ttl);
    num("d", t.period);
    num("k", t.num_uses_limit);
    num("u", t.num_uses);
    num("r", t.last_renewed_at.unwrap_or(0));
    num("l", t.last_used_at.unwrap_or(0));
    if t.trusted_ips != crate::model::default_trusted_ips() {
        f.push(("i", pack_nets(&t.trusted_ips)));
    }
    if t.revoked {
        f.push(("x", b"1".to_vec()));
    }
    if !t.name.is_empty() {
        f.push(("n", t.name.clone().into_bytes()));
    }
    f
}

pub fn token_from_hash(
    iid: Id,
    tid: Id,
    h: &HashMap<String, Vec<u8>>,
) -> Result<Option<TokenRecord>, StoreError> {
    let Some(hash) = h.get("h") else {
        return Ok(None);
    };
    let secret_hash: SecretHash = hash
        .as_slice()
        .try_into()
        .map_err(|_| corrupt("token hash"))?;
    let num = |k: &str| -> Result<u64, StoreError> {
        match h.get(k) {
            None => Ok(0),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| corrupt(k)),
        }
    };
    let opt = |v: u64| (v > 0).then_some(v);
    Ok(Some(TokenRecord {
        id: tid,
        identity_id: iid,
        name: h
            .get("n")
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default(),
        secret_hash,
        created_at: num("c")?,
        last_renewed_at: opt(num("r")?),
        last_used_at: opt(num("l")?),
        num_uses: num("u")?,
        num_uses_limit: num("k")?,
        ttl: num("t")?,
        max_ttl: num("m")?,
        period: num("d")?,
        trusted_ips: match h.get("i") {
            None => crate::model::default_trusted_ips(),
            Some(b) => unpack_nets(b).ok_or_else(|| corrupt("trusted ips"))?,
        },
        revoked: h.contains_key("x"),
    }))
}

/// The token fields `check_and_consume.lua` reads, in the order it returns
/// them to a gateway that keeps them in its near cache.
pub const SCRIPT_TOKEN_FIELDS: [&str; 10] = ["h", "x", "c", "r", "t", "m", "d", "i", "k", "u"];

/// A token from the script's answer (`SCRIPT_TOKEN_FIELDS`, nil for absent).
pub fn token_from_script(iid: Id, tid: Id, v: Option<&Value>) -> Result<TokenRecord, StoreError> {
    let Some(Value::Array(values)) = v else {
        return Err(corrupt("unexpected script answer"));
    };
    let mut h = HashMap::new();
    for (field, value) in SCRIPT_TOKEN_FIELDS.iter().zip(values) {
        match value {
            Value::BulkString(b) => {
                h.insert(field.to_string(), b.clone());
            }
            Value::Nil => {}
            _ => return Err(corrupt("unexpected script answer")),
        }
    }
    token_from_hash(iid, tid, &h)?.ok_or_else(|| corrupt("unexpected script answer"))
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
