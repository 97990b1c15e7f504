//! Client for the gateway's Infisical-compatible management API (identities, Token Auth, tokens, project memberships).

use super::http::{try_http, Resp};
use super::{unique, ADMIN_KEY, ORG_ID};
use serde_json::{json, Value};

/// Calls the management API on a gateway's proxy listener. Typed helpers
/// expect a 2xx answer and panic with the body otherwise; use
/// [`Admin::call`] to observe refusals.
#[derive(Debug, Clone)]
pub struct Admin {
    base: String,
    bearer: Option<String>,
}

/// What `POST .../identities/{id}/tokens` returned.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    /// The secret bearer token.
    pub access_token: String,
    /// The public token id (`tokenData.id`).
    pub token_id: String,
    pub expires_in: u64,
    /// The whole answer.
    pub raw: Value,
}

impl Admin {
    /// Authenticated with [`ADMIN_KEY`]; `base` is the gateway proxy URL.
    pub fn new(base: &str) -> Admin {
        Admin::with_bearer(base, Some(ADMIN_KEY))
    }

    /// Authenticated with an access token (an identity with org role admin, or not).
    pub fn with_token(base: &str, access_token: &str) -> Admin {
        Admin::with_bearer(base, Some(access_token))
    }

    /// No Authorization header at all.
    pub fn anonymous(base: &str) -> Admin {
        Admin::with_bearer(base, None)
    }

    fn with_bearer(base: &str, bearer: Option<&str>) -> Admin {
        Admin {
            base: base.trim_end_matches('/').to_string(),
            bearer: bearer.map(str::to_string),
        }
    }

    /// Any request to `path` (e.g. "/api/v1/identities"); never panics on status.
    #[track_caller]
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let url = format!("{}{path}", self.base);
        let auth = self.bearer.as_ref().map(|b| format!("Bearer {b}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        let body = body.map(|b| b.to_string());
        try_http(method, &url, &headers, body.as_deref()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Admin::call`] that panics with the body unless the status is 2xx,
    /// and returns the JSON answer.
    #[track_caller]
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let resp = self.call(method, path, body);
        assert!(
            (200..300).contains(&resp.status),
            "{method} {path}: expected 2xx, got {}: {}",
            resp.status,
            resp.body
        );
        resp.json()
    }

    /// `answer[field]`, panicking with the answer when it is missing.
    #[track_caller]
    fn field(answer: Value, field: &str) -> Value {
        match answer.get(field) {
            Some(v) => v.clone(),
            None => panic!("answer lacks {field:?}: {answer}"),
        }
    }

    /// Creates an identity in [`ORG_ID`]; returns its id.
    #[track_caller]
    pub fn create_identity(&self, name: &str, role: &str) -> String {
        self.create_identity_in(ORG_ID, name, role)
    }

    /// Creates an identity in organization `org`; returns its id.
    #[track_caller]
    pub fn create_identity_in(&self, org: &str, name: &str, role: &str) -> String {
        let identity = Self::field(
            self.ok(
                "POST",
                "/api/v1/identities",
                Some(json!({"name": name, "organizationId": org, "role": role})),
            ),
            "identity",
        );
        identity["id"]
            .as_str()
            .unwrap_or_else(|| panic!("identity without string id: {identity}"))
            .to_string()
    }

    /// The `identity` object.
    #[track_caller]
    pub fn get_identity(&self, id: &str) -> Value {
        Self::field(
            self.ok("GET", &format!("/api/v1/identities/{id}"), None),
            "identity",
        )
    }

    /// PATCH with `body` (`{name?, role?, hasDeleteProtection?}`); the `identity` object.
    #[track_caller]
    pub fn update_identity(&self, id: &str, body: Value) -> Value {
        Self::field(
            self.ok("PATCH", &format!("/api/v1/identities/{id}"), Some(body)),
            "identity",
        )
    }

    /// The deleted `identity` object.
    #[track_caller]
    pub fn delete_identity(&self, id: &str) -> Value {
        Self::field(
            self.ok("DELETE", &format!("/api/v1/identities/{id}"), None),
            "identity",
        )
    }

    /// Attaches Token Auth with `config` (the five fields, all optional:
    /// `json!({})` takes the defaults); the `identityTokenAuth` object.
    #[track_caller]
    pub fn attach_token_auth(&self, identity_id: &str, config: Value) -> Value {
        Self::field(
            self.ok(
                "POST",
                &format!("/api/v1/auth/token-auth/identities/{identity_id}"),
                Some(config),
            ),
            "identityTokenAuth",
        )
    }

    /// PATCH of the Token Auth config; the `identityTokenAuth` object.
    #[track_caller]
    pub fn update_token_auth(&self, identity_id: &str, config: Value) -> Value {
        Self::field(
            self.ok(
                "PATCH",
                &format!("/api/v1/auth/token-auth/identities/{identity_id}"),
                Some(config),
            ),
            "identityTokenAuth",
        )
    }

    /// Removes Token Auth (revoking its tokens); the `identityTokenAuth` object.
    #[track_caller]
    pub fn remove_token_auth(&self, identity_id: &str) -> Value {
        Self::field(
            self.ok(
                "DELETE",
                &format!("/api/v1/auth/token-auth/identities/{identity_id}"),
                None,
            ),
            "identityTokenAuth",
        )
    }

    #[track_caller]
    pub fn create_token(&self, identity_id: &str, name: &str) -> CreatedToken {
        let raw = self.ok(
            "POST",
            &format!("/api/v1/auth/token-auth/identities/{identity_id}/tokens"),
            Some(json!({ "name": name })),
        );
        let access_token = raw["accessToken"]
            .as_str()
            .unwrap_or_else(|| panic!("no accessToken in {raw}"))
            .to_string();
        let token_id = raw["tokenData"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no tokenData.id in {raw}"))
            .to_string();
        let expires_in = raw["expiresIn"]
            .as_u64()
            .unwrap_or_else(|| panic!("no numeric expiresIn in {raw}"));
        CreatedToken {
            access_token,
            token_id,
            expires_in,
            raw,
        }
    }

    /// The `tokens` array of an identity (first page, newest first).
    #[track_caller]
    pub fn list_tokens(&self, identity_id: &str) -> Vec<Value> {
        let tokens = Self::field(
            self.ok(
                "GET",
                &format!("/api/v1/auth/token-auth/identities/{identity_id}/tokens"),
                None,
            ),
            "tokens",
        );
        tokens
            .as_array()
            .unwrap_or_else(|| panic!("tokens is not an array: {tokens}"))
            .clone()
    }

    /// The `token` object (`id`, `accessTokenNumUses`, ...).
    #[track_caller]
    pub fn get_token(&self, token_id: &str) -> Value {
        Self::field(
            self.ok(
                "GET",
                &format!("/api/v1/auth/token-auth/tokens/{token_id}"),
                None,
            ),
            "token",
        )
    }

    /// The answer (`{message}`).
    #[track_caller]
    pub fn revoke_token(&self, token_id: &str) -> Value {
        self.ok(
            "POST",
            &format!("/api/v1/auth/token-auth/tokens/{token_id}/revoke"),
            None,
        )
    }

    /// `POST /api/v1/auth/token/renew` without an Authorization header, as
    /// Infisical's clients do; returns the raw response.
    #[track_caller]
    pub fn renew(&self, access_token: &str) -> Resp {
        Admin::anonymous(&self.base).call(
            "POST",
            "/api/v1/auth/token/renew",
            Some(json!({ "accessToken": access_token })),
        )
    }

    /// `POST /api/v1/auth/token/revoke` (self-revocation); returns the raw response.
    #[track_caller]
    pub fn self_revoke(&self, access_token: &str) -> Resp {
        Admin::anonymous(&self.base).call(
            "POST",
            "/api/v1/auth/token/revoke",
            Some(json!({ "accessToken": access_token })),
        )
    }

    /// Adds a project membership with `body` (`{role}` or `{roles: [...]}`);
    /// the `identityMembership` object.
    #[track_caller]
    pub fn add_membership(&self, project_id: &str, identity_id: &str, body: Value) -> Value {
        Self::field(
            self.ok(
                "POST",
                &format!("/api/v1/projects/{project_id}/memberships/identities/{identity_id}"),
                Some(body),
            ),
            "identityMembership",
        )
    }

    /// The `identityMembership` object.
    #[track_caller]
    pub fn get_membership(&self, project_id: &str, identity_id: &str) -> Value {
        Self::field(
            self.ok(
                "GET",
                &format!("/api/v1/projects/{project_id}/memberships/identities/{identity_id}"),
                None,
            ),
            "identityMembership",
        )
    }

    /// The deleted `identityMembership` object.
    #[track_caller]
    pub fn remove_membership(&self, project_id: &str, identity_id: &str) -> Value {
        Self::field(
            self.ok(
                "DELETE",
                &format!("/api/v1/projects/{project_id}/memberships/identities/{identity_id}"),
                None,
            ),
            "identityMembership",
        )
    }

    /// How many requests the token has authenticated (`accessTokenNumUses`).
    #[track_caller]
    pub fn uses(&self, token_id: &str) -> u64 {
        let token = self.get_token(token_id);
        token["accessTokenNumUses"]
            .as_u64()
            .unwrap_or_else(|| panic!("accessTokenNumUses is not a number: {token}"))
    }

    /// A fresh identity with org role `role`, Token Auth `config`, and one token.
    #[track_caller]
    pub fn identity_with_token(&self, role: &str, config: Value) -> (String, CreatedToken) {
        self.identity_with_token_in(ORG_ID, role, config)
    }

    /// [`Admin::identity_with_token`] in organization `org`.
    #[track_caller]
    pub fn identity_with_token_in(
        &self,
        org: &str,
        role: &str,
        config: Value,
    ) -> (String, CreatedToken) {
        let id = self.create_identity_in(org, &unique("identity"), role);
        self.attach_token_auth(&id, config);
        let token = self.create_token(&id, &unique("token"));
        (id, token)
    }
}
