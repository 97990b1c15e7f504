//! Tokens by the admin: issue (config copied, secret shown once, only its
//! hash stored), list newest first, read, rename, revoke by id.

use super::*;
use crate::model::rfc3339;
use crate::token::Id;

fn tokens(id: &str) -> String {
    format!("/api/v1/auth/token-auth/identities/{id}/tokens")
}

fn token(tid: &str) -> String {
    format!("/api/v1/auth/token-auth/tokens/{tid}")
}

#[tokio::test]
async fn issue_copies_the_config_and_shows_the_secret_once() {
    let h = H::new();
    let id = h.identity("member").await;
    h.attach(
        &id,
        json!({"accessTokenTTL": 600, "accessTokenMaxTTL": 3600, "accessTokenNumUsesLimit": 7,
               "accessTokenTrustedIps": [{"ipAddress": "10.0.0.0/8"}]}),
    )
    .await;
    let r = h
        .admin("POST", &tokens(&id), json!({"name": "deploy"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let secret = r.json["accessToken"].as_str().unwrap().to_string();
    h.remember(&secret);
    assert!(secret.starts_with(crate::token::PREFIX));
    assert_eq!(r.json["expiresIn"], 600);
    assert_eq!(r.json["accessTokenMaxTTL"], 3600);
    assert_eq!(r.json["tokenType"], "Bearer");
    let t = &r.json["tokenData"];
    assert_eq!(t["name"], "deploy");
    assert_eq!(t["identityId"], id.as_str());
    assert_eq!(t["authMethod"], "token-auth");
    assert_eq!(
        (
            t["accessTokenTTL"].as_u64(),
            t["accessTokenMaxTTL"].as_u64()
        ),
        (Some(600), Some(3600))
    );
    assert_eq!(
        (
            t["accessTokenNumUses"].as_u64(),
            t["accessTokenNumUsesLimit"].as_u64()
        ),
        (Some(0), Some(7))
    );
    assert_eq!(t["accessTokenPeriod"], 0);
    assert_eq!(
        t["accessTokenTrustedIps"],
        json!([{"type": "ipv4", "prefix": 8, "ipAddress": "10.0.0.0"}])
    );
    assert_eq!(t["accessTokenLastUsedAt"], Value::Null);
    assert_eq!(t["accessTokenLastRenewedAt"], Value::Null);
    assert_eq!(t["isAccessTokenRevoked"], false);
    assert_eq!(t["createdAt"], rfc3339(NOW));
    assert!(!t
        .to_string()
        .contains(&secret[crate::token::PREFIX.len()..]));

    // Only the hash is stored, and it is the hash of this secret.
    let parsed = AccessToken::parse(&secret).unwrap();
    assert_eq!(parsed.token_id.to_string(), t["id"].as_str().unwrap());
    let record = h.store.get_token(parsed.token_id).await.unwrap().unwrap();
    assert_eq!(record.secret_hash, parsed.secret_hash());
    assert!(h.authenticate(&secret, NOW, None).await.is_ok());

    // Reading it back never shows the secret again.
    let r = h
        .admin("GET", &token(t["id"].as_str().unwrap()), Value::Null)
        .await;
    assert!(r.json["accessToken"].is_null());
    assert!(!r
        .json
        .to_string()
        .contains(&secret[crate::token::PREFIX.len()..]));
}

#[tokio::test]
async fn expires_in_follows_the_token_rules() {
    let h = H::new();
    for (cfg, expected) in [
        (json!({"accessTokenTTL": 0, "accessTokenMaxTTL": 0}), 0),
        (json!({"accessTokenTTL": 0, "accessTokenMaxTTL": 90}), 90),
        (
            json!({"accessTokenTTL": 60, "accessTokenMaxTTL": 0, "accessTokenPeriod": 300}),
            300,
        ),
    ] {
        let id = h.identity("member").await;
        h.attach(&id, cfg).await;
        let created = h.issue_at(&id, NOW).await;
        assert_eq!(created["expiresIn"], expected, "{created}");
    }
}

#[tokio::test]
async fn issue_refusals() {
    let h = H::new();
    let id = h.identity("member").await;
    let r = h.admin("POST", &tokens(&id), json!({})).await;
    assert_eq!(r.status, 400, "no Token Auth: {:?}", r.json);
    assert!(r.json["message"].as_str().unwrap().contains("Token Auth"));
    h.attach(&id, json!({})).await;
    assert_invalid(
        &h.admin("POST", &tokens(&id), json!({"name": "x".repeat(65)}))
            .await,
        "name",
    );
    assert_invalid(
        &h.admin("POST", &tokens(&id), json!({"name": ["a"]})).await,
        "name",
    );
    let random = Id::random().to_string();
    for bad in [random.as_str(), "123"] {
        assert_eq!(h.admin("POST", &tokens(bad), json!({})).await.status, 404);
        assert_eq!(h.admin("GET", &tokens(bad), Value::Null).await.status, 404);
    }
    // An unnamed token is fine.
    let r = h.admin("POST", &tokens(&id), Value::Null).await;
    assert_eq!(r.status, 200);
    h.remember(r.json["accessToken"].as_str().unwrap());
    assert_eq!(r.json["tokenData"]["name"], "");
}

#[tokio::test]
async fn list_newest_first_with_paging() {
    let h = H::new();
    let id = h.identity("member").await;
    h.attach(&id, json!({})).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let v = h.issue_at(&id, NOW + n * 1000).await;
        ids.push(v["tokenData"]["id"].as_str().unwrap().to_string());
    }
    ids.reverse();
    let path = tokens(&id);
    let r = h.admin("GET", &path, Value::Null).await;
    assert_eq!(r.status, 200);
    let got: Vec<&str> = r.json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids);
    let r = h
        .send(
            Call::new("GET", &path, Value::Null)
                .admin()
                .query("offset=1&limit=2"),
        )
        .await;
    let got: Vec<&str> = r.json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, &ids[1..3]);
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("offset=x", "offset"),
    ] {
        assert_invalid(
            &h.send(Call::new("GET", &path, Value::Null).admin().query(q))
                .await,
            field,
        );
    }
    let r = h
        .send(
            Call::new("GET", &path, Value::Null)
                .admin()
                .query("limit=100"),
        )
        .await;
    assert_eq!(r.json["tokens"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn get_shows_uses() {
    let h = H::new();
    let (_, secret, tid) = h
        .with_token("member", json!({"accessTokenNumUsesLimit": 3}))
        .await;
    h.authenticate(&secret, NOW + 2_000, None).await.unwrap();
    let r = h.admin("GET", &token(&tid), Value::Null).await;
    assert_eq!(r.status, 200);
    let t = &r.json["token"];
    assert_eq!(t["accessTokenNumUses"], 1);
    assert_eq!(t["accessTokenLastUsedAt"], rfc3339(NOW + 2_000));
    assert_eq!(t["updatedAt"], rfc3339(NOW + 2_000));
    let random = Id::random().to_string();
    for bad in [random.as_str(), "zzz"] {
        assert_eq!(h.admin("GET", &token(bad), Value::Null).await.status, 404);
        assert_eq!(
            h.admin("PATCH", &token(bad), json!({"name": "n"}))
                .await
                .status,
            404
        );
        let r = h
            .admin("POST", &format!("{}/revoke", token(bad)), Value::Null)
            .await;
        assert_eq!(r.status, 404);
    }
}

#[tokio::test]
async fn rename() {
    let h = H::new();
    let (_, secret, tid) = h.with_token("member", json!({})).await;
    let r = h
        .admin("PATCH", &token(&tid), json!({"name": " nightly "}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["token"]["name"], "nightly");
    assert_invalid(&h.admin("PATCH", &token(&tid), json!({})).await, "name");
    assert_invalid(
        &h.admin("PATCH", &token(&tid), json!({"name": "a\u{7}"}))
            .await,
        "name",
    );
    assert_eq!(
        h.admin("GET", &token(&tid), Value::Null).await.json["token"]["name"],
        "nightly"
    );
    assert!(
        h.authenticate(&secret, NOW, None).await.is_ok(),
        "renaming keeps the token valid"
    );
}

#[tokio::test]
async fn revoke_by_id() {
    let h = H::new();
    let (id, secret, tid) = h.with_token("member", json!({})).await;
    let (other, _) = h.issue(&id).await;
    let r = h
        .admin("POST", &format!("{}/revoke", token(&tid)), Value::Null)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(
        r.json,
        json!({"message": "Successfully revoked access token"})
    );
    assert_eq!(h.authenticate(&secret, NOW, None).await, Err(Deny::Revoked));
    assert!(
        h.authenticate(&other, NOW, None).await.is_ok(),
        "only that token"
    );
    let r = h.admin("GET", &token(&tid), Value::Null).await;
    assert_eq!(r.json["token"]["isAccessTokenRevoked"], true);
    // Revoking twice is still a success: the token is revoked either way.
    let r = h
        .admin("POST", &format!("{}/revoke", token(&tid)), Value::Null)
        .await;
    assert_eq!(r.status, 200);
}
