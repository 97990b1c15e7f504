//! Routing: which paths the gateway claims, unknown routes, wrong methods,
//! and a store outage becoming a 503 with a generic message.

use super::super::{Api, Route, ROUTES};
use super::*;
use crate::model::{Identity, Membership, TokenAuthConfig, TokenRecord};
use crate::store::{
    AuthOutcome, Deletion, MembershipWrite, OwnerChange, Page, PutMode, StoreError,
};
use crate::token::Id;
use async_trait::async_trait;

#[test]
fn management_paths() {
    for p in [
        "/api/v1/identities",
        "/api/v1/identities/",
        "/api/v1/identities/abc",
        "/api/v1/identities/abc/extra",
        "/api/v1/auth/token-auth",
        "/api/v1/auth/token-auth/identities/x",
        "/api/v1/auth/token-auth/tokens/x/revoke",
        "/api/v1/auth/token-auth/whatever",
        "/api/v1/auth/token/renew",
        "/api/v1/auth/token/revoke",
        "/api/v1/projects/p1/memberships/identities",
        "/api/v1/projects/p1/memberships/identities/x",
        "/api/v1/projects/p1/memberships/identities/x/y",
        "/api/v1/projects/p1/organization",
        "/api/v1/projects/p1/organization/x",
        "/API/v1/Projects/p1/Organization",
        "/api/v1/projects/p1/organization.json",
        "/api/v1/projects/p1/organization%20",
        "/API/V1/IDENTITIES",
        "/api.json/v1.x/identities",
        "/%61pi/v1/identities",
        "/api/v1/Auth/Token-Auth/tokens/x",
        "/api/v1/identities.json",
        "/api/v1/auth/token/renew/",
        "/api/v1/auth/token/revoke/x",
        "/API/v1/Auth/Token/Renew/",
    ] {
        assert!(Api::is_management_path(p), "{p}");
    }
    for p in [
        "/",
        "/api/v1/identitiesx",
        "/api/v1/auth/token-authx",
        "/api/v1/auth/token/renewal",
        "/api/v1/auth/token",
        "/api/v1/auth/universal-auth/login",
        "/api/v1/projects/p1",
        "/api/v1/projects/p1/secrets",
        "/api/v1/projects/p1/memberships/users",
        "/api/v1/projects/p1/memberships/identitiesx",
        "/api/v1/projects/p1/organizations",
        "/api/v3/secrets/raw",
        "/api/v2/identities",
    ] {
        assert!(!Api::is_management_path(p), "{p}");
    }
}

#[test]
fn every_route_is_a_management_path() {
    for p in [
        "/api/v1/identities",
        "/api/v1/identities/i",
        "/api/v1/auth/token-auth/identities/i",
        "/api/v1/auth/token-auth/identities/i/tokens",
        "/api/v1/auth/token-auth/tokens/t",
        "/api/v1/auth/token-auth/tokens/t/revoke",
        "/api/v1/auth/token/renew",
        "/api/v1/auth/token/revoke",
        "/api/v1/projects/p/memberships/identities",
        "/api/v1/projects/p/memberships/identities/i",
        "/api/v1/projects/p/organization",
    ] {
        assert!(Route::parse(p).is_some(), "{p}");
        assert!(Api::is_management_path(p), "{p}");
    }
    assert_eq!(Route::parse("/api/v1/a/b/c/d/e/f/g/h/i"), None);
}

const IDENTITY: &str = "11111111-2222-4333-8444-555555555555";
const TOKEN: &str = "66666666-7777-4888-9999-aaaaaaaaaaaa";
const PROJECT: &str = "p1";

/// A template of `ROUTES` with its parameters filled in.
fn filled(template: &str) -> String {
    template
        .replace("{identityId}", IDENTITY)
        .replace("{tokenId}", TOKEN)
        .replace("{projectId}", PROJECT)
}

/// One route of each variant, with the ids `filled` uses. The match has no
/// wildcard, so a new variant does not compile until it is listed here too.
fn every_route() -> Vec<Route<'static>> {
    let every = vec![
        Route::Identities,
        Route::Identity(IDENTITY),
        Route::TokenAuth(IDENTITY),
        Route::IdentityTokens(IDENTITY),
        Route::Token(TOKEN),
        Route::TokenRevoke(TOKEN),
        Route::Renew,
        Route::RevokeSelf,
        Route::Memberships(PROJECT),
        Route::Membership(PROJECT, IDENTITY),
        Route::ProjectOrganization(PROJECT),
    ];
    for r in &every {
        match r {
            Route::Identities
            | Route::Identity(_)
            | Route::TokenAuth(_)
            | Route::IdentityTokens(_)
            | Route::Token(_)
            | Route::TokenRevoke(_)
            | Route::Renew
            | Route::RevokeSelf
            | Route::Memberships(_)
            | Route::Membership(..)
            | Route::ProjectOrganization(_) => {}
        }
    }
    every
}

/// `ROUTES` is what the OpenAPI test holds the document to, so it must say
/// exactly what `Route::parse` and `Route::methods` answer.
#[test]
fn routes_table_is_what_the_router_answers() {
    let mut seen = std::collections::BTreeSet::new();
    for (method, template) in ROUTES {
        assert!(
            seen.insert((*method, *template)),
            "listed twice: {method} {template}"
        );
        let path = filled(template);
        let route = Route::parse(&path).unwrap_or_else(|| panic!("{template} does not parse"));
        let mut table: Vec<&str> = ROUTES
            .iter()
            .filter(|(_, t)| t == template)
            .map(|(m, _)| *m)
            .collect();
        let mut router = route.methods().to_vec();
        table.sort_unstable();
        router.sort_unstable();
        assert_eq!(table, router, "methods of {template}");
    }
    // Every variant has a template and every template names its own variant.
    let mut templates: Vec<&str> = ROUTES.iter().map(|(_, t)| *t).collect();
    templates.dedup();
    let every = every_route();
    assert_eq!(templates.len(), every.len(), "{templates:?}");
    for (template, expected) in templates.iter().zip(&every) {
        assert_eq!(Route::parse(&filled(template)).as_ref(), Some(expected));
    }
    let answered: usize = every.iter().map(|r| r.methods().len()).sum();
    assert_eq!(ROUTES.len(), answered);
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let h = H::new();
    for p in [
        "/api/v1/identities/x/extra",
        "/api/v1/auth/token-auth/whatever",
        "/api/v1/projects/p1/memberships/identities/x/y",
    ] {
        // No credentials needed to learn that a route does not exist.
        let r = h.send(Call::new("GET", p, Value::Null)).await;
        assert_eq!(r.status, 404, "{p}: {:?}", r.json);
        assert_eq!(r.json["error"], "NotFound");
    }
    let r = h
        .send(Call::new("PUT", "/api/v1/identities", Value::Null).admin())
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.json["error"], "MethodNotAllowed");
    assert!(r.json["message"].as_str().unwrap().contains("GET, POST"));
    let r = h
        .send(Call::new("GET", "/api/v1/auth/token/renew", Value::Null))
        .await;
    assert_eq!(r.status, 405);
    let r = h
        .send(
            Call::new(
                "DELETE",
                "/api/v1/projects/p/memberships/identities",
                Value::Null,
            )
            .admin(),
        )
        .await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn handle_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let h = H::new();
    let req = ApiRequest {
        method: "GET",
        path: "/api/v1/identities",
        query: None,
        authorization: None,
        body: b"",
        client_ip: client(),
        now: NOW,
        req_id: REQ_ID,
        site: Default::default(),
    };
    let audit = crate::audit::AuditLog::default();
    let fut = h.api.handle(&req, &audit);
    assert_send(&fut);
    assert_eq!(fut.await.status, 401);
}

#[test]
fn operations_are_bounded_labels_without_ids() {
    let op = |method: &str, path: &str| {
        Api::operation(&ApiRequest {
            method,
            path,
            query: None,
            authorization: None,
            body: b"",
            client_ip: client(),
            now: NOW,
            req_id: REQ_ID,
            site: Default::default(),
        })
    };
    assert_eq!(op("GET", "/api/v1/identities"), ("identities", "GET"));
    let id = "11111111-2222-4333-8444-555555555555";
    assert_eq!(
        op("PATCH", &format!("/api/v1/identities/{id}")),
        ("identity", "PATCH")
    );
    assert_eq!(
        op(
            "POST",
            &format!("/api/v1/auth/token-auth/tokens/{id}/revoke")
        ),
        ("token_revoke", "POST")
    );
    assert_eq!(
        op(
            "DELETE",
            &format!("/api/v1/projects/p1/memberships/identities/{id}")
        ),
        ("membership", "DELETE")
    );
    // A method the route does not answer, or no route at all.
    assert_eq!(op("BREW", "/api/v1/identities"), ("identities", "other"));
    assert_eq!(op("GET", "/api/v1/nothing/here"), ("other", "other"));
}

/// A store that is always down; its error text must never reach the client.
struct DownStore;

const DOWN: &str = "connection refused by 10.9.9.9:6379";

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable(DOWN.into()))
}

#[async_trait]
impl Store for DownStore {
    async fn authenticate(&self, _: &AuthRequest<'_>) -> Result<AuthOutcome, StoreError> {
        down()
    }
    async fn create_identity(&self, _: &Identity) -> Result<(), StoreError> {
        down()
    }
    async fn get_identity(&self, _: Id) -> Result<Option<Identity>, StoreError> {
        down()
    }
    async fn update_identity(&self, _: &Identity) -> Result<bool, StoreError> {
        down()
    }
    async fn delete_identity(&self, _: Id) -> Result<Deletion, StoreError> {
        down()
    }
    async fn list_identities(
        &self,
        _: Option<&str>,
        _: u64,
        _: u64,
    ) -> Result<Page<Identity>, StoreError> {
        down()
    }
    async fn put_token_auth(&self, _: &TokenAuthConfig, _: PutMode) -> Result<bool, StoreError> {
        down()
    }
    async fn get_token_auth(&self, _: Id) -> Result<Option<TokenAuthConfig>, StoreError> {
        down()
    }
    async fn remove_token_auth(&self, _: Id) -> Result<Option<TokenAuthConfig>, StoreError> {
        down()
    }
    async fn create_token(&self, _: &TokenRecord) -> Result<bool, StoreError> {
        down()
    }
    async fn get_token(&self, _: Id) -> Result<Option<TokenRecord>, StoreError> {
        down()
    }
    async fn list_tokens(&self, _: Id, _: u64, _: u64) -> Result<Vec<TokenRecord>, StoreError> {
        down()
    }
    async fn rename_token(&self, _: Id, _: &str) -> Result<Option<TokenRecord>, StoreError> {
        down()
    }
    async fn revoke_token(&self, _: Id) -> Result<bool, StoreError> {
        down()
    }
    async fn set_renewed(&self, _: Id, _: Millis) -> Result<bool, StoreError> {
        down()
    }
    async fn put_membership(&self, _: &Membership) -> Result<MembershipWrite, StoreError> {
        down()
    }
    async fn project_owner(&self, _: &str) -> Result<Option<String>, StoreError> {
        down()
    }
    async fn set_project_owner(&self, _: &str, _: &str) -> Result<OwnerChange, StoreError> {
        down()
    }
    async fn get_membership(&self, _: &str, _: Id) -> Result<Option<Membership>, StoreError> {
        down()
    }
    async fn delete_membership(&self, _: &str, _: Id) -> Result<Option<Membership>, StoreError> {
        down()
    }
    async fn list_memberships(
        &self,
        _: &str,
        _: Option<&str>,
        _: u64,
        _: u64,
    ) -> Result<Page<Membership>, StoreError> {
        down()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        down()
    }
}

#[tokio::test]
async fn store_outage_is_a_generic_503() {
    let api = Api::new(Arc::new(DownStore), Some(ADMIN_KEY.into()));
    let one = format!("/api/v1/identities/{}", Id::random());
    let token = AccessToken::generate(Id::random()).expose();
    let cases = [
        Call::new("GET", "/api/v1/identities", Value::Null).admin(),
        Call::new(
            "POST",
            "/api/v1/identities",
            json!({"name": "a", "organizationId": ORG}),
        )
        .admin(),
        Call::new("GET", &one, Value::Null).admin(),
        Call::new(
            "POST",
            "/api/v1/auth/token/renew",
            json!({"accessToken": token}),
        ),
        Call::new("GET", "/api/v1/identities", Value::Null).bearer(&token),
    ];
    for c in cases {
        let r = send_to(&api, std::slice::from_ref(&token), c).await;
        assert_eq!(r.status, 503, "{:?}", r.json);
        assert_eq!(r.json["error"], "ServiceUnavailable");
        assert!(!r.json.to_string().contains("10.9.9.9"), "{:?}", r.json);
    }
    // A malformed token is refused before the store is asked: 401, not 503.
    let r = send_to(
        &api,
        &[],
        Call::new("GET", "/api/v1/identities", Value::Null).bearer("tgat_nope"),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = send_to(
        &api,
        &[],
        Call::new(
            "POST",
            "/api/v1/auth/token/renew",
            json!({"accessToken": "tgat_nope"}),
        ),
    )
    .await;
    assert_eq!(r.status, 401);
}
