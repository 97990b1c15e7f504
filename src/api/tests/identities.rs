//! `/api/v1/identities`: create, read, change, delete (with protection), list.

use super::*;
use crate::model::rfc3339;

fn path(id: &str) -> String {
    format!("/api/v1/identities/{id}")
}

#[tokio::test]
async fn create_and_get() {
    let h = H::new();
    let r = h
        .admin(
            "POST",
            "/api/v1/identities",
            json!({"name": "  ci-runner ", "organizationId": ORG}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let i = &r.json["identity"];
    let id = i["id"].as_str().unwrap();
    assert!(crate::token::Id::parse(id).is_some());
    assert_eq!(i["name"], "ci-runner");
    assert_eq!(i["orgId"], ORG);
    assert_eq!(i["role"], "no-access", "least privilege by default");
    assert_eq!(i["hasDeleteProtection"], false);
    assert_eq!(i["authMethods"], json!([]));
    assert_eq!(i["createdAt"], rfc3339(NOW));
    assert_eq!(i["updatedAt"], "2023-11-14T22:13:20.000Z");

    let r = h.admin("GET", &path(id), Value::Null).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["identity"], *i);
    h.attach(id, json!({})).await;
    let r = h.admin("GET", &path(id), Value::Null).await;
    assert_eq!(r.json["identity"]["authMethods"], json!(["token-auth"]));

    let r = h
        .admin(
            "POST",
            "/api/v1/identities",
            json!({"name": "ops", "organizationId": ORG, "role": "my-custom-role", "hasDeleteProtection": true}),
        )
        .await;
    assert_eq!(r.json["identity"]["role"], "my-custom-role");
    assert_eq!(r.json["identity"]["hasDeleteProtection"], true);
}

#[tokio::test]
async fn create_validation() {
    let h = H::new();
    let long = "x".repeat(65);
    for (body, field) in [
        (json!({"organizationId": ORG}), "name"),
        (json!({"name": "  ", "organizationId": ORG}), "name"),
        (json!({"name": long, "organizationId": ORG}), "name"),
        (json!({"name": "a\nb", "organizationId": ORG}), "name"),
        (json!({"name": 7, "organizationId": ORG}), "name"),
        (json!({"name": "a"}), "organizationId"),
        (
            json!({"name": "a", "organizationId": "org/1"}),
            "organizationId",
        ),
        (
            json!({"name": "a", "organizationId": ORG, "role": "Admin"}),
            "role",
        ),
        (
            json!({"name": "a", "organizationId": ORG, "role": ""}),
            "role",
        ),
        (
            json!({"name": "a", "organizationId": ORG, "role": "a_b"}),
            "role",
        ),
        (
            json!({"name": "a", "organizationId": ORG, "hasDeleteProtection": "yes"}),
            "hasDeleteProtection",
        ),
    ] {
        let r = h.admin("POST", "/api/v1/identities", body.clone()).await;
        assert_invalid(&r, field);
    }
    // 64 characters (not bytes) is the limit.
    let ok = "é".repeat(64);
    let r = h
        .admin(
            "POST",
            "/api/v1/identities",
            json!({"name": ok, "organizationId": ORG}),
        )
        .await;
    assert_eq!(r.status, 200);
    for raw in [&b"{\"name\": "[..], b"not json", b"\xff\xfe"] {
        let r = h
            .send(
                Call::new("POST", "/api/v1/identities", Value::Null)
                    .admin()
                    .raw_body(raw),
            )
            .await;
        assert_eq!(r.status, 400, "{:?}", r.json);
        assert_eq!(r.json["error"], "BadRequest");
    }
    let r = h.admin("POST", "/api/v1/identities", json!(["a"])).await;
    assert_eq!(r.status, 400);
    let r = h.admin("GET", "/api/v1/identities", Value::Null).await;
    assert_eq!(r.json["totalCount"], 1);
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let h = H::new();
    let random = crate::token::Id::random().to_string();
    for id in [random.as_str(), "not-a-uuid", "", "%2e%2e"] {
        for method in ["GET", "PATCH", "DELETE"] {
            let r = h.admin(method, &path(id), json!({"name": "x"})).await;
            assert_eq!(r.status, 404, "{method} {id}: {:?}", r.json);
        }
    }
}

#[tokio::test]
async fn update() {
    let h = H::new();
    let id = h.identity("member").await;
    let r = h
        .send(
            Call::new(
                "PATCH",
                &path(&id),
                json!({"name": "renamed", "role": "admin", "hasDeleteProtection": true}),
            )
            .admin()
            .at(NOW + 5_000),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let i = &r.json["identity"];
    assert_eq!(
        (i["name"].as_str(), i["role"].as_str()),
        (Some("renamed"), Some("admin"))
    );
    assert_eq!(i["hasDeleteProtection"], true);
    assert_eq!(i["createdAt"], rfc3339(NOW));
    assert_eq!(i["updatedAt"], rfc3339(NOW + 5_000));
    // Absent fields stay as they were.
    let r = h
        .admin("PATCH", &path(&id), json!({"role": "member"}))
        .await;
    assert_eq!(r.json["identity"]["name"], "renamed");
    assert_eq!(r.json["identity"]["hasDeleteProtection"], true);
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"role": "ADMIN"}), "role"),
        (json!({"hasDeleteProtection": 1}), "hasDeleteProtection"),
    ] {
        assert_invalid(&h.admin("PATCH", &path(&id), body).await, field);
    }
    let r = h.admin("GET", &path(&id), Value::Null).await;
    assert_eq!(r.json["identity"]["role"], "member");
}

#[tokio::test]
async fn delete_revokes_tokens_and_honours_protection() {
    let h = H::new();
    let (id, secret, tid) = h.with_token("member", json!({})).await;
    assert!(h.authenticate(&secret, NOW, None).await.is_ok());
    h.admin("PATCH", &path(&id), json!({"hasDeleteProtection": true}))
        .await;
    let r = h.admin("DELETE", &path(&id), Value::Null).await;
    assert_eq!(r.status, 400, "{:?}", r.json);
    assert!(r.json["message"]
        .as_str()
        .unwrap()
        .contains("delete protection"));
    assert!(
        h.authenticate(&secret, NOW, None).await.is_ok(),
        "still usable"
    );

    h.admin("PATCH", &path(&id), json!({"hasDeleteProtection": false}))
        .await;
    let r = h.admin("DELETE", &path(&id), Value::Null).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["identity"]["id"], id.as_str());
    assert_eq!(r.json["identity"]["authMethods"], json!(["token-auth"]));
    assert_eq!(
        h.authenticate(&secret, NOW, None).await,
        Err(Deny::UnknownToken)
    );
    assert_eq!(h.admin("GET", &path(&id), Value::Null).await.status, 404);
    let r = h
        .admin(
            "GET",
            &format!("/api/v1/auth/token-auth/tokens/{tid}"),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(h.admin("DELETE", &path(&id), Value::Null).await.status, 404);
}

#[tokio::test]
async fn list_pages_oldest_first() {
    let h = H::new();
    let mut ids = Vec::new();
    for n in 0..5 {
        let body = json!({"name": format!("id-{n}"), "organizationId": ORG});
        let r = h
            .send(
                Call::new("POST", "/api/v1/identities", body)
                    .admin()
                    .at(NOW + n),
            )
            .await;
        ids.push(r.json["identity"]["id"].as_str().unwrap().to_string());
    }
    h.attach(&ids[1], json!({})).await;
    let r = h.admin("GET", "/api/v1/identities", Value::Null).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["totalCount"], 5);
    let got: Vec<&str> = r.json["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids);
    assert_eq!(
        r.json["identities"][1]["authMethods"],
        json!(["token-auth"])
    );
    let r = h
        .send(
            Call::new("GET", "/api/v1/identities", Value::Null)
                .admin()
                .query("offset=3&limit=1"),
        )
        .await;
    assert_eq!(r.json["totalCount"], 5);
    assert_eq!(r.json["identities"].as_array().unwrap().len(), 1);
    assert_eq!(r.json["identities"][0]["id"], ids[3].as_str());
    let r = h
        .send(
            Call::new("GET", "/api/v1/identities", Value::Null)
                .admin()
                .query("offset=99"),
        )
        .await;
    assert_eq!(r.json["identities"], json!([]));
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
    ] {
        let r = h
            .send(
                Call::new("GET", "/api/v1/identities", Value::Null)
                    .admin()
                    .query(q),
            )
            .await;
        assert_invalid(&r, field);
    }
}
