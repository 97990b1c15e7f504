//! The management API's paths, built in one place for every test.

pub const IDENTITIES: &str = "/api/v1/identities";

pub fn identity_path(id: &str) -> String {
    format!("{IDENTITIES}/{id}")
}

pub fn token_auth_path(id: &str) -> String {
    format!("/api/v1/auth/token-auth/identities/{id}")
}

pub fn tokens_path(id: &str) -> String {
    format!("/api/v1/auth/token-auth/identities/{id}/tokens")
}

pub fn token_path(token_id: &str) -> String {
    format!("/api/v1/auth/token-auth/tokens/{token_id}")
}

pub fn revoke_path(token_id: &str) -> String {
    format!("/api/v1/auth/token-auth/tokens/{token_id}/revoke")
}

pub fn membership_path(project: &str, id: &str) -> String {
    format!("/api/v1/projects/{project}/memberships/identities/{id}")
}

pub fn memberships_path(project: &str) -> String {
    format!("/api/v1/projects/{project}/memberships/identities")
}
