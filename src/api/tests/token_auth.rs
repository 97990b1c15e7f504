//! `/api/v1/auth/token-auth/identities/{id}`: defaults, bounds, trusted IPs,
//! changes affecting new tokens only, and removal revoking tokens.

use super::*;
use crate::model::{DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS};

fn path(id: &str) -> String {
    format!("/api/v1/auth/token-auth/identities/{id}")
}

#[tokio::test]
async fn attach_with_defaults_and_read_back() {
    let h = H::new();
    let id = h.identity("member").await;
    let cfg = h.attach(&id, Value::Null).await;
    assert!(crate::token::Id::parse(cfg["id"].as_str().unwrap()).is_some());
    assert_eq!(cfg["identityId"], id.as_str());
    assert_eq!(cfg["accessTokenTTL"], DEFAULT_TTL_SECONDS);
    assert_eq!(cfg["accessTokenMaxTTL"], 2_592_000);
    assert_eq!(cfg["accessTokenNumUsesLimit"], 0);
    assert_eq!(cfg["accessTokenPeriod"], 0);
    assert_eq!(
        cfg["accessTokenTrustedIps"],
        json!([
            {"type": "ipv4", "prefix": 0, "ipAddress": "0.0.0.0"},
            {"type": "ipv6", "prefix": 0, "ipAddress": "::"}
        ])
    );
    let r = h.admin("GET", &path(&id), Value::Null).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["identityTokenAuth"], cfg);

    let r = h.admin("POST", &path(&id), json!({})).await;
    assert_eq!(r.status, 400, "already attached: {:?}", r.json);
}

#[tokio::test]
async fn attach_with_values() {
    let h = H::new();
    let id = h.identity("member").await;
    let cfg = h
        .attach(
            &id,
            json!({
                "accessTokenTTL": 60, "accessTokenMaxTTL": 120, "accessTokenNumUsesLimit": 5,
                "accessTokenPeriod": 0,
                "accessTokenTrustedIps": [
                    {"ipAddress": "10.1.2.3/8"}, {"ipAddress": "192.168.1.7"}, {"ipAddress": "fd00::/8"}
                ]
            }),
        )
        .await;
    assert_eq!(
        (
            cfg["accessTokenTTL"].as_u64(),
            cfg["accessTokenMaxTTL"].as_u64()
        ),
        (Some(60), Some(120))
    );
    assert_eq!(cfg["accessTokenNumUsesLimit"], 5);
    assert_eq!(
        cfg["accessTokenTrustedIps"],
        json!([
            {"type": "ipv4", "prefix": 8, "ipAddress": "10.0.0.0"},
            {"type": "ipv4", "prefix": 32, "ipAddress": "192.168.1.7"},
            {"type": "ipv6", "prefix": 8, "ipAddress": "fd00::"}
        ])
    );
    // MaxTTL 0 lifts the cap, so any TTL up to ten years is fine.
    let other = h.identity("member").await;
    let cfg = h
        .attach(
            &other,
            json!({"accessTokenTTL": MAX_TTL_SECONDS, "accessTokenMaxTTL": 0}),
        )
        .await;
    assert_eq!(cfg["accessTokenTTL"], MAX_TTL_SECONDS);
}

#[tokio::test]
async fn validation() {
    let h = H::new();
    let id = h.identity("member").await;
    let ips = |v: Value| json!({ "accessTokenTrustedIps": v });
    for (body, field, needle) in [
        (
            ips(json!([{"ipAddress": "10.0.0.300"}])),
            "accessTokenTrustedIps",
            "'10.0.0.300'",
        ),
        (
            ips(json!([{"ipAddress": "0.0.0.0/0"}, {"ipAddress": "::/129"}])),
            "accessTokenTrustedIps",
            "::/129",
        ),
        (ips(json!([])), "accessTokenTrustedIps", "at least one"),
        (
            ips(json!(["10.0.0.1"])),
            "accessTokenTrustedIps",
            "ipAddress",
        ),
        (ips(json!("10.0.0.1")), "accessTokenTrustedIps", "array"),
        (
            json!({"accessTokenTTL": 100, "accessTokenMaxTTL": 50}),
            "accessTokenTTL",
            "MaxTTL",
        ),
        (
            json!({"accessTokenTTL": MAX_TTL_SECONDS + 1, "accessTokenMaxTTL": 0}),
            "accessTokenTTL",
            "at most",
        ),
        (
            json!({"accessTokenMaxTTL": MAX_TTL_SECONDS + 1}),
            "accessTokenMaxTTL",
            "at most",
        ),
        (
            json!({"accessTokenPeriod": MAX_TTL_SECONDS + 1}),
            "accessTokenPeriod",
            "at most",
        ),
        (
            json!({"accessTokenTTL": -1}),
            "accessTokenTTL",
            "non-negative",
        ),
        (
            json!({"accessTokenTTL": 1.5}),
            "accessTokenTTL",
            "non-negative",
        ),
        (
            json!({"accessTokenNumUsesLimit": "5"}),
            "accessTokenNumUsesLimit",
            "non-negative",
        ),
    ] {
        let r = h.admin("POST", &path(&id), body.clone()).await;
        assert_invalid(&r, field);
        let msg = r.json["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    // None of the refused attempts attached anything.
    assert_eq!(h.admin("GET", &path(&id), Value::Null).await.status, 404);
    let r = h
        .send(
            Call::new("POST", &path(&id), Value::Null)
                .admin()
                .raw_body(b"{"),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn unknown_identity_or_configuration() {
    let h = H::new();
    let random = crate::token::Id::random().to_string();
    for id in [random.as_str(), "nope"] {
        for method in ["POST", "GET", "PATCH", "DELETE"] {
            let r = h.admin(method, &path(id), json!({})).await;
            assert_eq!(r.status, 404, "{method} {id}");
        }
    }
    let id = h.identity("member").await;
    for method in ["GET", "PATCH", "DELETE"] {
        let r = h.admin(method, &path(&id), json!({})).await;
        assert_eq!(r.status, 404, "{method} without Token Auth");
    }
}

#[tokio::test]
async fn update_changes_new_tokens_only() {
    let h = H::new();
    let id = h.identity("member").await;
    h.attach(&id, json!({"accessTokenTTL": 60, "accessTokenMaxTTL": 120}))
        .await;
    let (old_secret, old_tid) = h.issue(&id).await;
    let r = h
        .send(
            Call::new(
                "PATCH",
                &path(&id),
                json!({"accessTokenTTL": 30, "accessTokenTrustedIps": [{"ipAddress": "10.0.0.0/8"}]}),
            )
            .admin()
            .at(NOW + 1_000),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let cfg = &r.json["identityTokenAuth"];
    assert_eq!(
        (
            cfg["accessTokenTTL"].as_u64(),
            cfg["accessTokenMaxTTL"].as_u64()
        ),
        (Some(30), Some(120))
    );
    assert_eq!(cfg["updatedAt"], crate::model::rfc3339(NOW + 1_000));
    assert_eq!(cfg["createdAt"], crate::model::rfc3339(NOW));

    let new = h.issue_at(&id, NOW + 1_000).await;
    assert_eq!(new["expiresIn"], 30);
    assert_eq!(new["tokenData"]["accessTokenTrustedIps"][0]["prefix"], 8);
    let r = h
        .admin(
            "GET",
            &format!("/api/v1/auth/token-auth/tokens/{old_tid}"),
            Value::Null,
        )
        .await;
    assert_eq!(r.json["token"]["accessTokenTTL"], 60);
    // The old token still works at 45 s: its own TTL of 60 s applies.
    assert!(h
        .authenticate(&old_secret, NOW + 45_000, None)
        .await
        .is_ok());

    // A PATCH is checked against the stored values too.
    let r = h
        .admin("PATCH", &path(&id), json!({"accessTokenMaxTTL": 10}))
        .await;
    assert_invalid(&r, "accessTokenTTL");
    let r = h
        .admin(
            "PATCH",
            &path(&id),
            json!({"accessTokenTrustedIps": [{"ipAddress": "300.1.1.1"}]}),
        )
        .await;
    assert_invalid(&r, "accessTokenTrustedIps");
    let r = h.admin("GET", &path(&id), Value::Null).await;
    assert_eq!(r.json["identityTokenAuth"]["accessTokenMaxTTL"], 120);
}

#[tokio::test]
async fn remove_revokes_every_token() {
    let h = H::new();
    let id = h.identity("member").await;
    h.attach(&id, json!({})).await;
    let (a, _) = h.issue(&id).await;
    let (b, b_tid) = h.issue(&id).await;
    let r = h.admin("DELETE", &path(&id), Value::Null).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["identityTokenAuth"]["identityId"], id.as_str());
    for s in [&a, &b] {
        assert_eq!(h.authenticate(s, NOW, None).await, Err(Deny::Revoked));
    }
    let r = h
        .admin(
            "GET",
            &format!("/api/v1/auth/token-auth/tokens/{b_tid}"),
            Value::Null,
        )
        .await;
    assert_eq!(r.json["token"]["isAccessTokenRevoked"], true);
    let r = h
        .admin("GET", &format!("/api/v1/identities/{id}"), Value::Null)
        .await;
    assert_eq!(r.json["identity"]["authMethods"], json!([]));
    assert_eq!(h.admin("DELETE", &path(&id), Value::Null).await.status, 404);
    // Re-attaching works, and the old tokens stay revoked.
    h.attach(&id, json!({})).await;
    assert_eq!(h.authenticate(&a, NOW, None).await, Err(Deny::Revoked));
}
