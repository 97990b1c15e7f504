//! The JSON shapes of the answers, in Infisical's camelCase field names:
//! identity, identityTokenAuth, token, token creation and renewal, and
//! identityMembership. Pure conversions from the model records.

use crate::model::{
    rfc3339, Identity, Membership, Millis, RoleGrant, TokenAuthConfig, TokenRecord,
};
use crate::token::Id;
use ipnet::IpNet;
use serde::Serialize;

/// The only auth method tokengate implements.
pub const TOKEN_AUTH: &str = "token-auth";
/// Project roles Infisical treats as builtin; any other slug is a custom role.
pub const BUILTIN_PROJECT_ROLES: [&str; 4] = ["admin", "member", "viewer", "no-access"];

fn auth_methods(has_token_auth: bool) -> &'static [&'static str] {
    if has_token_auth {
        &[TOKEN_AUTH]
    } else {
        &[]
    }
}

fn opt_time(ms: Option<Millis>) -> Option<String> {
    ms.map(rfc3339)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IdentityView<'a> {
    id: Id,
    name: &'a str,
    org_id: &'a str,
    role: &'a str,
    has_delete_protection: bool,
    auth_methods: &'static [&'static str],
    created_at: String,
    updated_at: String,
}

impl<'a> IdentityView<'a> {
    pub fn new(i: &'a Identity, has_token_auth: bool) -> IdentityView<'a> {
        IdentityView {
            id: i.id,
            name: &i.name,
            org_id: &i.org_id,
            role: &i.role,
            has_delete_protection: i.has_delete_protection,
            auth_methods: auth_methods(has_token_auth),
            created_at: rfc3339(i.created_at),
            updated_at: rfc3339(i.updated_at),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IdentityList<'a> {
    pub identities: Vec<IdentityView<'a>>,
    pub total_count: u64,
}

/// Infisical's trusted-IP entry. `prefix` is always present (32 or 128 for a
/// bare address) so clients need no special case.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TrustedIpView {
    ip_address: String,
    #[serde(rename = "type")]
    kind: &'static str,
    prefix: u8,
}

fn trusted_ips(nets: &[IpNet]) -> Vec<TrustedIpView> {
    nets.iter()
        .map(|n| TrustedIpView {
            ip_address: n.network().to_string(),
            kind: if matches!(n, IpNet::V4(_)) {
                "ipv4"
            } else {
                "ipv6"
            },
            prefix: n.prefix_len(),
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenAuthView {
    id: Id,
    identity_id: Id,
    #[serde(rename = "accessTokenTTL")]
    ttl: u64,
    #[serde(rename = "accessTokenMaxTTL")]
    max_ttl: u64,
    access_token_num_uses_limit: u64,
    access_token_trusted_ips: Vec<TrustedIpView>,
    access_token_period: u64,
    /// A tokengate extension: `null` when the identity has none.
    access_token_rate_limit: Option<RateLimitView>,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RateLimitView {
    requests: u32,
    window_seconds: u32,
    burst: u32,
    per: &'static str,
}

impl TokenAuthView {
    pub fn new(c: &TokenAuthConfig) -> TokenAuthView {
        TokenAuthView {
            id: c.id,
            identity_id: c.identity_id,
            ttl: c.ttl,
            max_ttl: c.max_ttl,
            access_token_num_uses_limit: c.num_uses_limit,
            access_token_trusted_ips: trusted_ips(&c.trusted_ips),
            access_token_period: c.period,
            access_token_rate_limit: c.rate_limit.map(|l| RateLimitView {
                requests: l.requests,
                window_seconds: l.window_seconds,
                burst: l.burst,
                per: l.per.as_str(),
            }),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenView<'a> {
    id: Id,
    name: &'a str,
    identity_id: Id,
    auth_method: &'static str,
    #[serde(rename = "accessTokenTTL")]
    ttl: u64,
    #[serde(rename = "accessTokenMaxTTL")]
    max_ttl: u64,
    access_token_num_uses: u64,
    access_token_num_uses_limit: u64,
    access_token_period: u64,
    access_token_trusted_ips: Vec<TrustedIpView>,
    access_token_last_used_at: Option<String>,
    access_token_last_renewed_at: Option<String>,
    is_access_token_revoked: bool,
    created_at: String,
    updated_at: String,
}

impl<'a> TokenView<'a> {
    pub fn new(t: &'a TokenRecord) -> TokenView<'a> {
        // The record keeps no change time of its own; its latest event stands in.
        let updated = [t.last_renewed_at, t.last_used_at]
            .into_iter()
            .flatten()
            .fold(t.created_at, Millis::max);
        TokenView {
            id: t.id,
            name: &t.name,
            identity_id: t.identity_id,
            auth_method: TOKEN_AUTH,
            ttl: t.ttl,
            max_ttl: t.max_ttl,
            access_token_num_uses: t.num_uses,
            access_token_num_uses_limit: t.num_uses_limit,
            access_token_period: t.period,
            access_token_trusted_ips: trusted_ips(&t.trusted_ips),
            access_token_last_used_at: opt_time(t.last_used_at),
            access_token_last_renewed_at: opt_time(t.last_renewed_at),
            is_access_token_revoked: t.revoked,
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(updated),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct TokenList<'a> {
    pub tokens: Vec<TokenView<'a>>,
}

/// The answer to token creation: the only time the secret is shown.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenCreated<'a> {
    pub access_token: String,
    pub expires_in: u64,
    #[serde(rename = "accessTokenMaxTTL")]
    pub max_ttl: u64,
    pub token_type: &'static str,
    pub token_data: TokenView<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Renewed {
    pub access_token: String,
    pub expires_in: u64,
    #[serde(rename = "accessTokenMaxTTL")]
    pub max_ttl: u64,
    pub token_type: &'static str,
}

/// Infisical reports a custom role as `role: "custom"` plus its slug.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoleView<'a> {
    id: Id,
    role: &'a str,
    custom_role_id: Option<&'a str>,
    custom_role_slug: Option<&'a str>,
    is_temporary: bool,
    temporary_mode: Option<&'a str>,
    temporary_range: Option<&'a str>,
    temporary_access_start_time: Option<String>,
    temporary_access_end_time: Option<String>,
}

impl<'a> RoleView<'a> {
    fn new(g: &'a RoleGrant) -> RoleView<'a> {
        let builtin = BUILTIN_PROJECT_ROLES.contains(&g.role.as_str());
        RoleView {
            id: g.id,
            role: if builtin { &g.role } else { "custom" },
            custom_role_id: None,
            custom_role_slug: (!builtin).then_some(g.role.as_str()),
            is_temporary: g.is_temporary,
            temporary_mode: g.temporary_mode.as_deref(),
            temporary_range: g.temporary_range.as_deref(),
            temporary_access_start_time: opt_time(g.temporary_access_start_time),
            temporary_access_end_time: opt_time(g.temporary_access_end_time),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemberIdentityView<'a> {
    id: Id,
    name: &'a str,
    auth_methods: &'static [&'static str],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MembershipView<'a> {
    id: Id,
    identity_id: Id,
    project_id: &'a str,
    roles: Vec<RoleView<'a>>,
    /// `null` only if the identity vanished between two store reads.
    identity: Option<MemberIdentityView<'a>>,
    created_at: String,
    updated_at: String,
}

impl<'a> MembershipView<'a> {
    /// `identity` is the member with whether it has Token Auth, if it still exists.
    pub fn new(m: &'a Membership, identity: Option<(&'a Identity, bool)>) -> MembershipView<'a> {
        MembershipView {
            id: m.id,
            identity_id: m.identity_id,
            project_id: &m.project_id,
            roles: m.roles.iter().map(RoleView::new).collect(),
            identity: identity.map(|(i, has_token_auth)| MemberIdentityView {
                id: i.id,
                name: &i.name,
                auth_methods: auth_methods(has_token_auth),
            }),
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MembershipList<'a> {
    pub identity_memberships: Vec<MembershipView<'a>>,
    pub total_count: u64,
}
