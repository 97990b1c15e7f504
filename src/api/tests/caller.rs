//! Who may call: the admin key, admin-role identity tokens, and the refusals
//! (401 without or with bad credentials, 403 for other roles) on every route.

use super::*;

/// One request per admin route (ids need not exist: auth comes first).
fn admin_routes(id: &str, tid: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GET", "/api/v1/identities".into()),
        ("POST", "/api/v1/identities".into()),
        ("GET", format!("/api/v1/identities/{id}")),
        ("PATCH", format!("/api/v1/identities/{id}")),
        ("DELETE", format!("/api/v1/identities/{id}")),
        ("POST", format!("/api/v1/auth/token-auth/identities/{id}")),
        ("GET", format!("/api/v1/auth/token-auth/identities/{id}")),
        ("PATCH", format!("/api/v1/auth/token-auth/identities/{id}")),
        ("DELETE", format!("/api/v1/auth/token-auth/identities/{id}")),
        (
            "POST",
            format!("/api/v1/auth/token-auth/identities/{id}/tokens"),
        ),
        (
            "GET",
            format!("/api/v1/auth/token-auth/identities/{id}/tokens"),
        ),
        ("GET", format!("/api/v1/auth/token-auth/tokens/{tid}")),
        ("PATCH", format!("/api/v1/auth/token-auth/tokens/{tid}")),
        (
            "POST",
            format!("/api/v1/auth/token-auth/tokens/{tid}/revoke"),
        ),
        ("GET", "/api/v1/projects/p1/memberships/identities".into()),
        (
            "POST",
            format!("/api/v1/projects/p1/memberships/identities/{id}"),
        ),
        (
            "GET",
            format!("/api/v1/projects/p1/memberships/identities/{id}"),
        ),
        (
            "PATCH",
            format!("/api/v1/projects/p1/memberships/identities/{id}"),
        ),
        (
            "DELETE",
            format!("/api/v1/projects/p1/memberships/identities/{id}"),
        ),
    ]
}

#[tokio::test]
async fn every_admin_route_refuses_missing_and_bad_credentials() {
    let h = H::new();
    let (id, _, tid) = h.with_token("admin", json!({})).await;
    let unknown = AccessToken::generate(crate::token::Id::random()).expose();
    for (method, path) in admin_routes(&id, &tid) {
        let body = json!({"name": "x", "organizationId": ORG, "role": "member"});
        for auth in [
            None,
            Some("Basic dXNlcjpwYXNz".to_string()),
            Some("Bearer".to_string()),
            Some("Bearer wrong-admin-key-0123456789".to_string()),
            Some(format!("Bearer {}x", ADMIN_KEY)),
            Some(format!("Bearer {unknown}")),
        ] {
            let mut c = Call::new(method, &path, body.clone());
            c.auth = auth.clone();
            let r = h.send(c).await;
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}: {:?}", r.json);
            assert_eq!(r.json["error"], "Unauthorized");
        }
    }
    // Nothing was created or changed by all those attempts.
    let r = h.admin("GET", "/api/v1/identities", Value::Null).await;
    assert_eq!(r.json["totalCount"], 1);
}

#[tokio::test]
async fn every_admin_route_refuses_non_admin_identities() {
    let h = H::new();
    let (target, _, tid) = h.with_token("member", json!({})).await;
    let routes = admin_routes(&target, &tid);
    for role in ["member", "no-access", "custom-ops"] {
        let (_, secret, caller_tid) = h.with_token(role, json!({})).await;
        for (method, path) in &routes {
            let r = h
                .send(
                    Call::new(method, path, json!({"name": "x", "role": "admin"})).bearer(&secret),
                )
                .await;
            assert_eq!(r.status, 403, "{role}: {method} {path}: {:?}", r.json);
            assert_eq!(r.json["error"], "PermissionDenied");
        }
        // The role is checked in the same atomic step as the use count, so
        // refused calls leave the token's uses untouched.
        let r = h
            .admin(
                "GET",
                &format!("/api/v1/auth/token-auth/tokens/{caller_tid}"),
                Value::Null,
            )
            .await;
        assert_eq!(r.json["token"]["accessTokenNumUses"], 0);
    }
}

#[tokio::test]
async fn admin_identity_may_manage_and_its_token_counts_a_use() {
    let h = H::new();
    let (caller_id, secret, caller_tid) = h.with_token("admin", json!({})).await;
    let r = h
        .send(
            Call::new(
                "POST",
                "/api/v1/identities",
                json!({"name": "made-by-identity", "organizationId": ORG, "role": "admin"}),
            )
            .bearer(&secret),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let other = r.json["identity"]["id"].as_str().unwrap().to_string();
    // Equal rank is allowed: an admin identity may manage another admin.
    let r = h
        .send(
            Call::new(
                "POST",
                &format!("/api/v1/auth/token-auth/identities/{other}"),
                Value::Null,
            )
            .bearer(&secret),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let r = h
        .send(
            Call::new(
                "POST",
                &format!("/api/v1/auth/token-auth/identities/{other}/tokens"),
                Value::Null,
            )
            .bearer(&secret),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    h.remember(r.json["accessToken"].as_str().unwrap());
    let r = h
        .admin(
            "GET",
            &format!("/api/v1/auth/token-auth/tokens/{caller_tid}"),
            Value::Null,
        )
        .await;
    assert_eq!(r.json["token"]["accessTokenNumUses"], 3);
    assert_eq!(r.json["token"]["identityId"], caller_id.as_str());
}

#[tokio::test]
async fn identity_caller_is_held_to_its_token_rules() {
    let h = H::new();
    let (_, secret, tid) = h
        .with_token(
            "admin",
            json!({"accessTokenTTL": 60, "accessTokenNumUsesLimit": 2,
                   "accessTokenTrustedIps": [{"ipAddress": "10.0.0.0/8"}]}),
        )
        .await;
    let list = |now, ip: &str| {
        let mut c = Call::new("GET", "/api/v1/identities", Value::Null)
            .bearer(&secret)
            .at(now);
        c.ip = super::ip(ip);
        c
    };
    let r = h.send(list(NOW, "192.168.1.1")).await;
    assert_eq!(r.status, 403);
    assert!(r.json["message"].as_str().unwrap().contains("192.168.1.1"));
    let r = h.send(list(NOW + 61_000, "10.0.0.1")).await;
    assert_eq!(
        (r.status, r.json["message"].as_str()),
        (401, Some("token expired"))
    );
    assert_eq!(h.send(list(NOW, "10.0.0.1")).await.status, 200);
    assert_eq!(h.send(list(NOW, "10.0.0.1")).await.status, 200);
    let r = h.send(list(NOW, "10.0.0.1")).await;
    assert_eq!(
        (r.status, r.json["message"].as_str()),
        (401, Some("token usage limit reached"))
    );
    h.admin(
        "POST",
        &format!("/api/v1/auth/token-auth/tokens/{tid}/revoke"),
        Value::Null,
    )
    .await;
    let r = h.send(list(NOW, "10.0.0.1")).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn demoted_identity_loses_access_at_once() {
    let h = H::new();
    let (id, secret, _) = h.with_token("admin", json!({})).await;
    let list = || Call::new("GET", "/api/v1/identities", Value::Null).bearer(&secret);
    assert_eq!(h.send(list()).await.status, 200);
    let r = h
        .admin(
            "PATCH",
            &format!("/api/v1/identities/{id}"),
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.send(list()).await.status, 403);
}

#[tokio::test]
async fn admin_key_edge_cases() {
    let h = H::new();
    // The scheme is case-insensitive and surrounding spaces do not matter.
    let mut c = Call::new("GET", "/api/v1/identities", Value::Null);
    c.auth = Some(format!("bearer   {ADMIN_KEY} "));
    assert_eq!(h.send(c).await.status, 200);
    // An empty configured key is no key: an empty bearer must not match it.
    let api = Api::new(h.store.clone(), Some(String::new()));
    for auth in ["Bearer ", "Bearer", ""] {
        let mut c = Call::new("GET", "/api/v1/identities", Value::Null);
        c.auth = Some(auth.into());
        assert_eq!(send_to(&api, &[], c).await.status, 401);
    }
    let api = Api::new(h.store.clone(), None);
    let c = Call::new("GET", "/api/v1/identities", Value::Null).admin();
    assert_eq!(send_to(&api, &[], c).await.status, 401);
    assert!(!format!("{:?}", h.api).contains(ADMIN_KEY));
}
