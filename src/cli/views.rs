//! The table rows and key/value blocks for each management API resource
//! (identity, Token Auth configuration, token, membership), read from JSON.

use super::output::{clean, flag, fmt_millis, get, human_secs, millis, number, text, when};
use serde_json::Value;

pub const IDENTITY_HEADERS: [&str; 5] = ["ID", "NAME", "ROLE", "DELETE-PROTECTION", "CREATED"];
pub const TOKEN_HEADERS: [&str; 7] = [
    "ID",
    "NAME",
    "USES",
    "LIMIT",
    "REVOKED",
    "EXPIRES",
    "LAST-USED",
];
pub const MEMBERSHIP_HEADERS: [&str; 4] = ["IDENTITY", "NAME", "ROLES", "CREATED"];

// Field names: the gateway's own first, then Infisical's spelling, so the CLI
// also reads answers from Infisical itself.
const TTL: &[&str] = &["ttl", "accessTokenTTL"];
const MAX_TTL: &[&str] = &["maxTtl", "accessTokenMaxTTL"];
const PERIOD: &[&str] = &["period", "accessTokenPeriod"];
const USES: &[&str] = &["numUses", "accessTokenNumUses"];
const LIMIT: &[&str] = &["numUsesLimit", "accessTokenNumUsesLimit"];
const REVOKED: &[&str] = &["revoked", "isAccessTokenRevoked"];
const LAST_USED: &[&str] = &["lastUsedAt", "accessTokenLastUsedAt"];
const LAST_RENEWED: &[&str] = &["lastRenewedAt", "accessTokenLastRenewedAt"];
const TRUSTED_IPS: &[&str] = &["trustedIps", "accessTokenTrustedIps"];

/// Infisical lists org memberships with the identity nested under `identity`
/// and the role beside it; the gateway may answer flat. Read the nested object
/// when it has the field, else the outer one.
fn identity_part<'a>(v: &'a Value, keys: &[&str]) -> &'a Value {
    v.get("identity")
        .filter(|i| i.is_object() && get(i, keys).is_some())
        .unwrap_or(v)
}

pub fn identity_row(v: &Value) -> Vec<String> {
    let cell = |keys: &[&str]| non_empty(Some(text(identity_part(v, keys), keys)));
    let protection = &["hasDeleteProtection"];
    let created = &["createdAt"];
    vec![
        cell(&["id"]),
        cell(&["name"]),
        cell(&["role", "customRoleSlug"]),
        flag(identity_part(v, protection), protection),
        when(identity_part(v, created), created, "-"),
    ]
}

pub fn token_auth_pairs(v: &Value) -> Vec<(&'static str, String)> {
    vec![
        ("identity", text(v, &["identityId"])),
        ("ttl", seconds(v, TTL, "none")),
        ("max ttl", seconds(v, MAX_TTL, "no cap")),
        ("num uses limit", limit(v)),
        ("trusted ips", trusted_ips(v)),
        ("period", seconds(v, PERIOD, "off")),
        ("rate limit", rate_limit(v)),
    ]
}

/// `10/1s, burst 10, per identity`, or `none`.
fn rate_limit(v: &Value) -> String {
    let l = &v["accessTokenRateLimit"];
    match (
        l["requests"].as_u64(),
        l["windowSeconds"].as_u64(),
        l["burst"].as_u64(),
        l["per"].as_str(),
    ) {
        (Some(r), Some(w), Some(b), Some(per)) => format!("{r}/{w}s, burst {b}, per {per}"),
        _ => "none".into(),
    }
}

pub fn new_token_pairs(v: &Value) -> Vec<(&'static str, String)> {
    let data = v.get("tokenData").unwrap_or(&Value::Null);
    vec![
        ("id", text(data, &["id"])),
        ("name", non_empty(Some(text(data, &["name"])))),
        ("expires in", seconds(v, &["expiresIn"], "never")),
        ("max ttl", seconds(v, &["accessTokenMaxTTL"], "no cap")),
    ]
}

pub fn renewed_pairs(v: &Value) -> Vec<(&'static str, String)> {
    vec![
        ("renewed", "yes".into()),
        ("expires in", seconds(v, &["expiresIn"], "never")),
        ("max ttl", seconds(v, &["accessTokenMaxTTL"], "no cap")),
    ]
}

pub fn token_row(v: &Value) -> Vec<String> {
    vec![
        text(v, &["id"]),
        non_empty(Some(text(v, &["name"]))),
        number(v, USES).map_or("-".into(), |n| n.to_string()),
        limit(v),
        flag(v, REVOKED),
        expires(v),
        when(v, LAST_USED, "never"),
    ]
}

pub fn token_pairs(v: &Value) -> Vec<(&'static str, String)> {
    vec![
        ("id", text(v, &["id"])),
        ("name", non_empty(Some(text(v, &["name"])))),
        ("identity", text(v, &["identityId"])),
        ("created", when(v, &["createdAt"], "-")),
        ("last renewed", when(v, LAST_RENEWED, "never")),
        ("last used", when(v, LAST_USED, "never")),
        (
            "uses",
            number(v, USES).map_or("-".into(), |n| n.to_string()),
        ),
        ("uses limit", limit(v)),
        ("ttl", seconds(v, TTL, "none")),
        ("max ttl", seconds(v, MAX_TTL, "no cap")),
        ("period", seconds(v, PERIOD, "off")),
        ("trusted ips", trusted_ips(v)),
        ("expires", expires(v)),
        ("revoked", flag(v, REVOKED)),
    ]
}

pub fn membership_row(v: &Value) -> Vec<String> {
    let identity = v.get("identity").filter(|i| i.is_object());
    let id = match get(v, &["identityId"]) {
        Some(_) => text(v, &["identityId"]),
        None => identity.map_or("-".into(), |i| text(i, &["id"])),
    };
    let name = identity.map_or("-".into(), |i| non_empty(Some(text(i, &["name"]))));
    vec![id, name, roles(v), when(v, &["createdAt"], "-")]
}

/// `viewer, admin (temporary until 2030-01-01T01:00:00Z)`.
fn roles(v: &Value) -> String {
    let Some(Value::Array(grants)) = v.get("roles") else {
        return non_empty(Some(text(v, &["role"])));
    };
    let shown: Vec<String> = grants
        .iter()
        .map(|g| {
            let mut role = text(g, &["customRoleSlug", "role"]);
            if g.get("isTemporary").and_then(Value::as_bool) == Some(true) {
                let end = get(g, &["temporaryAccessEndTime"]);
                match millis(end) {
                    Some(ms) => role.push_str(&format!(" (temporary until {})", fmt_millis(ms))),
                    None => role.push_str(&format!(
                        " (temporary, {} from {})",
                        text(g, &["temporaryRange"]),
                        when(g, &["temporaryAccessStartTime"], "-")
                    )),
                }
            }
            role
        })
        .collect();
    if shown.is_empty() {
        "-".into()
    } else {
        shown.join(", ")
    }
}

fn seconds(v: &Value, keys: &[&str], zero: &str) -> String {
    match number(v, keys) {
        None => text(v, keys),
        Some(0) => zero.to_string(),
        Some(n) => format!("{n} ({})", human_secs(n, zero)),
    }
}

fn limit(v: &Value) -> String {
    match number(v, LIMIT) {
        Some(0) => "unlimited".into(),
        Some(n) => n.to_string(),
        None => text(v, LIMIT),
    }
}

/// Entries are `{ipAddress}` objects (Infisical may split off `prefix`) or strings.
fn trusted_ips(v: &Value) -> String {
    let Some(Value::Array(ips)) = get(v, TRUSTED_IPS) else {
        return "-".into();
    };
    let shown: Vec<String> = ips
        .iter()
        .map(|ip| match ip {
            Value::String(s) => clean(s),
            other => {
                let addr = text(other, &["ipAddress"]);
                match number(other, &["prefix"]) {
                    Some(p) if !addr.contains('/') => format!("{addr}/{p}"),
                    _ => addr,
                }
            }
        })
        .collect();
    shown.join(", ")
}

/// The gateway's `expiresAt` when it sends one; otherwise worked out from the
/// token's own fields with the contract's rules (TTL from the last renewal or
/// creation, capped by MaxTTL from creation; periodic tokens live one period
/// from their last renewal).
fn expires(v: &Value) -> String {
    if get(v, &["expiresAt"]).is_some() {
        return when(v, &["expiresAt"], "never");
    }
    let Some(created) = millis(get(v, &["createdAt"])) else {
        return "-".into();
    };
    let base = millis(get(v, LAST_RENEWED)).unwrap_or(created);
    let secs = |keys| number(v, keys).map(|s| i128::from(s) * 1000);
    let at = match secs(PERIOD) {
        Some(p) if p > 0 => Some(base + p),
        _ => {
            let by_ttl = secs(TTL).filter(|t| *t > 0).map(|t| base + t);
            let by_max = secs(MAX_TTL).filter(|m| *m > 0).map(|m| created + m);
            match (by_ttl, by_max) {
                (Some(t), Some(m)) => Some(t.min(m)),
                (t, m) => t.or(m),
            }
        }
    };
    at.map_or("never".into(), fmt_millis)
}

fn non_empty(s: Option<String>) -> String {
    match s {
        Some(s) if !s.is_empty() => s,
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_auth_shows_defaults_in_words() {
        let v = json!({"identityId": "i", "accessTokenTTL": 2592000, "accessTokenMaxTTL": 0,
            "accessTokenNumUsesLimit": 0, "accessTokenPeriod": 0,
            "accessTokenTrustedIps": [{"ipAddress": "0.0.0.0/0"}, {"ipAddress": "10.0.0.0", "prefix": 8}, "::/0"]});
        let p = token_auth_pairs(&v);
        assert_eq!(p[1], ("ttl", "2592000 (30d)".to_string()));
        assert_eq!(p[2], ("max ttl", "no cap".to_string()));
        assert_eq!(p[3], ("num uses limit", "unlimited".to_string()));
        assert_eq!(
            p[4],
            ("trusted ips", "0.0.0.0/0, 10.0.0.0/8, ::/0".to_string())
        );
        assert_eq!(p[5], ("period", "off".to_string()));
        assert_eq!(p[6], ("rate limit", "none".to_string()));
        let limited = json!({"accessTokenRateLimit":
            {"requests": 10, "windowSeconds": 1, "burst": 5, "per": "token"}});
        assert_eq!(
            token_auth_pairs(&limited)[6],
            ("rate limit", "10/1s, burst 5, per token".to_string())
        );
    }

    #[test]
    fn memberships_show_temporary_grants() {
        let v = json!({"identityId": "i1", "identity": {"id": "i1", "name": "ci"},
            "createdAt": "2025-01-01T00:00:00Z",
            "roles": [{"role": "viewer", "isTemporary": false},
                      {"role": "admin", "isTemporary": true, "temporaryRange": "1h",
                       "temporaryAccessEndTime": "2030-01-01T01:00:00Z"}]});
        assert_eq!(
            membership_row(&v),
            vec![
                "i1".to_string(),
                "ci".into(),
                "viewer, admin (temporary until 2030-01-01T01:00:00Z)".into(),
                "2025-01-01T00:00:00Z".into()
            ]
        );
    }

    #[test]
    fn periodic_and_unbounded_tokens_expire_as_the_contract_says() {
        let periodic = json!({"createdAt": 0, "lastRenewedAt": 10_000, "period": 60, "ttl": 5});
        assert_eq!(expires(&periodic), "1970-01-01T00:01:10Z");
        let forever = json!({"createdAt": 0, "ttl": 0, "maxTtl": 0});
        assert_eq!(expires(&forever), "never");
        let sent = json!({"createdAt": 0, "expiresAt": "2031-05-06T07:08:09Z"});
        assert_eq!(expires(&sent), "2031-05-06T07:08:09Z");
    }
}
