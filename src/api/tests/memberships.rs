//! `/api/v1/projects/{projectId}/memberships/identities[/{identityId}]`:
//! permanent, custom and temporary roles, and what the request path then allows.

use super::*;
use crate::model::rfc3339;

const HOUR: Millis = 3_600_000;

fn path(project: &str, id: &str) -> String {
    format!("/api/v1/projects/{project}/memberships/identities/{id}")
}

#[tokio::test]
async fn add_read_and_use_a_membership() {
    let h = H::new();
    let (id, secret, _) = h.with_token("member", json!({})).await;
    assert_eq!(
        h.authenticate(&secret, NOW, Some("p1")).await,
        Err(Deny::NoProjectAccess)
    );
    let r = h
        .admin("POST", &path("p1", &id), json!({"role": "viewer"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let m = &r.json["identityMembership"];
    assert_eq!(
        (m["identityId"].as_str(), m["projectId"].as_str()),
        (Some(id.as_str()), Some("p1"))
    );
    assert!(crate::token::Id::parse(m["id"].as_str().unwrap()).is_some());
    let role = &m["roles"][0];
    assert_eq!(role["role"], "viewer");
    assert_eq!(
        (role["customRoleId"].clone(), role["customRoleSlug"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(role["isTemporary"], false);
    for f in [
        "temporaryMode",
        "temporaryRange",
        "temporaryAccessStartTime",
        "temporaryAccessEndTime",
    ] {
        assert_eq!(role[f], Value::Null, "{f}");
    }
    assert_eq!(
        m["identity"],
        json!({"id": id, "name": "member-identity", "authMethods": ["token-auth"]})
    );
    assert_eq!(m["createdAt"], rfc3339(NOW));

    let g = h.authenticate(&secret, NOW, Some("p1")).await.unwrap();
    assert_eq!(g.project_roles.as_deref(), Some("viewer"));
    assert_eq!(
        h.authenticate(&secret, NOW, Some("p2")).await,
        Err(Deny::NoProjectAccess)
    );

    let r = h.admin("GET", &path("p1", &id), Value::Null).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["identityMembership"], *m);
    let r = h
        .admin("POST", &path("p1", &id), json!({"role": "admin"}))
        .await;
    assert_eq!(r.status, 400, "already a member: {:?}", r.json);
}

#[tokio::test]
async fn custom_and_temporary_roles() {
    let h = H::new();
    let (id, secret, _) = h.with_token("member", json!({})).await;
    let body = json!({"roles": [
        {"role": "deployer"},
        {"role": "admin", "isTemporary": true, "temporaryMode": "relative",
         "temporaryRange": "1h", "temporaryAccessStartTime": rfc3339(NOW + HOUR)}
    ]});
    let r = h.admin("POST", &path("proj-a_b-1", &id), body).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let roles = &r.json["identityMembership"]["roles"];
    assert_eq!(
        (
            roles[0]["role"].as_str(),
            roles[0]["customRoleSlug"].as_str()
        ),
        (Some("custom"), Some("deployer"))
    );
    let t = &roles[1];
    assert_eq!(
        (t["role"].as_str(), t["isTemporary"].as_bool()),
        (Some("admin"), Some(true))
    );
    assert_eq!(
        (t["temporaryMode"].as_str(), t["temporaryRange"].as_str()),
        (Some("relative"), Some("1h"))
    );
    assert_eq!(t["temporaryAccessStartTime"], rfc3339(NOW + HOUR));
    assert_eq!(t["temporaryAccessEndTime"], rfc3339(NOW + 2 * HOUR));

    let roles_at = |now| h.authenticate(&secret, now, Some("proj-a_b-1"));
    assert_eq!(
        roles_at(NOW).await.unwrap().project_roles.as_deref(),
        Some("deployer")
    );
    assert_eq!(
        roles_at(NOW + HOUR + 1)
            .await
            .unwrap()
            .project_roles
            .as_deref(),
        Some("deployer,admin")
    );
    assert_eq!(
        roles_at(NOW + 2 * HOUR)
            .await
            .unwrap()
            .project_roles
            .as_deref(),
        Some("deployer")
    );

    // A temporary grant alone gives nothing once it has ended.
    let body = json!({"roles": [{"role": "viewer", "isTemporary": true, "temporaryMode": "relative",
                                 "temporaryRange": "30m", "temporaryAccessStartTime": rfc3339(NOW)}]});
    let r = h.admin("POST", &path("p2", &id), body).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert!(h
        .authenticate(&secret, NOW + HOUR / 4, Some("p2"))
        .await
        .is_ok());
    assert_eq!(
        h.authenticate(&secret, NOW + HOUR, Some("p2")).await,
        Err(Deny::NoProjectAccess)
    );
}

#[tokio::test]
async fn validation() {
    let h = H::new();
    let id = h.identity("member").await;
    let tmp = |extra: Value| {
        let mut r = json!({"role": "viewer", "isTemporary": true, "temporaryMode": "relative",
                           "temporaryRange": "1h", "temporaryAccessStartTime": rfc3339(NOW)});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                r.as_object_mut().unwrap().remove(k);
            } else {
                r[k] = v.clone();
            }
        }
        json!({ "roles": [{"role": "member"}, r] })
    };
    for (body, field) in [
        (json!({}), "roles"),
        (
            json!({"role": "viewer", "roles": [{"role": "viewer"}]}),
            "roles",
        ),
        (json!({"roles": []}), "roles"),
        (json!({"roles": "viewer"}), "roles"),
        (json!({"roles": ["viewer"]}), "roles[0]"),
        (json!({"role": "Viewer"}), "role"),
        (
            json!({"roles": [{"role": "ok"}, {"role": "no spaces"}]}),
            "roles[1].role",
        ),
        (json!({"roles": [{}]}), "roles[0].role"),
        (
            tmp(json!({"temporaryMode": null})),
            "roles[1].temporaryMode",
        ),
        (
            tmp(json!({"temporaryMode": "absolute"})),
            "roles[1].temporaryMode",
        ),
        (
            tmp(json!({"temporaryRange": "soon"})),
            "roles[1].temporaryRange",
        ),
        (
            tmp(json!({"temporaryRange": "0h"})),
            "roles[1].temporaryRange",
        ),
        (
            tmp(json!({"temporaryAccessStartTime": null})),
            "roles[1].temporaryAccessStartTime",
        ),
        (
            tmp(json!({"temporaryAccessStartTime": "yesterday"})),
            "roles[1].temporaryAccessStartTime",
        ),
        (tmp(json!({"isTemporary": "yes"})), "roles[1].isTemporary"),
        // An end past year 9999 cannot be written as RFC 3339: refused, never a panic.
        (
            tmp(
                json!({"temporaryRange": "1h", "temporaryAccessStartTime": "9999-12-31T23:59:59Z"}),
            ),
            "roles[1].temporaryRange",
        ),
        (
            tmp(json!({"temporaryRange": "100000y"})),
            "roles[1].temporaryRange",
        ),
    ] {
        let r = h.admin("POST", &path("p1", &id), body.clone()).await;
        assert_invalid(&r, field);
    }
    let long = "p".repeat(129);
    for project in ["bad!id", "..", "a%2Fb", long.as_str(), ""] {
        let r = h
            .admin("POST", &path(project, &id), json!({"role": "viewer"}))
            .await;
        assert_invalid(&r, "projectId");
        let r = h
            .admin(
                "GET",
                &format!("/api/v1/projects/{project}/memberships/identities"),
                Value::Null,
            )
            .await;
        assert_invalid(&r, "projectId");
    }
    assert_eq!(
        h.admin("GET", &path("p1", &id), Value::Null).await.status,
        404
    );
    let r = h
        .send(
            Call::new("POST", &path("p1", &id), Value::Null)
                .admin()
                .raw_body(b"{\"role\""),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn unknown_identity_or_membership() {
    let h = H::new();
    let random = crate::token::Id::random().to_string();
    for id in [random.as_str(), "x"] {
        for method in ["POST", "GET", "PATCH", "DELETE"] {
            let r = h
                .admin(method, &path("p1", id), json!({"role": "viewer"}))
                .await;
            assert_eq!(r.status, 404, "{method} {id}: {:?}", r.json);
        }
    }
    let id = h.identity("member").await;
    for method in ["GET", "PATCH", "DELETE"] {
        let r = h
            .admin(
                method,
                &path("p1", &id),
                json!({"roles": [{"role": "viewer"}]}),
            )
            .await;
        assert_eq!(r.status, 404, "{method} without membership: {:?}", r.json);
    }
}

#[tokio::test]
async fn update_replaces_roles_and_delete_removes_access() {
    let h = H::new();
    let (id, secret, _) = h.with_token("member", json!({})).await;
    h.admin("POST", &path("p1", &id), json!({"role": "viewer"}))
        .await;
    let created = h.admin("GET", &path("p1", &id), Value::Null).await.json;
    let r = h
        .send(
            Call::new(
                "PATCH",
                &path("p1", &id),
                json!({"roles": [{"role": "member"}, {"role": "no-access"}]}),
            )
            .admin()
            .at(NOW + 1000),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let m = &r.json["identityMembership"];
    assert_eq!(m["id"], created["identityMembership"]["id"]);
    assert_eq!(m["roles"].as_array().unwrap().len(), 2);
    assert_eq!(m["createdAt"], rfc3339(NOW));
    assert_eq!(m["updatedAt"], rfc3339(NOW + 1000));
    assert_eq!(
        h.authenticate(&secret, NOW, Some("p1"))
            .await
            .unwrap()
            .project_roles
            .as_deref(),
        Some("member")
    );
    assert_invalid(
        &h.admin("PATCH", &path("p1", &id), json!({"roles": []}))
            .await,
        "roles",
    );

    let r = h.admin("DELETE", &path("p1", &id), Value::Null).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["identityMembership"]["projectId"], "p1");
    assert_eq!(
        h.authenticate(&secret, NOW, Some("p1")).await,
        Err(Deny::NoProjectAccess)
    );
    assert_eq!(
        h.admin("GET", &path("p1", &id), Value::Null).await.status,
        404
    );
    assert_eq!(
        h.admin("DELETE", &path("p1", &id), Value::Null)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn list_a_project() {
    let h = H::new();
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = h.identity("member").await;
        let url = path("p1", &id);
        let c = Call::new("POST", &url, json!({"role": "viewer"}))
            .admin()
            .at(NOW + n);
        assert_eq!(h.send(c).await.status, 200);
        ids.push(id);
    }
    let other = h.identity("member").await;
    h.admin("POST", &path("p2", &other), json!({"role": "viewer"}))
        .await;
    let url = "/api/v1/projects/p1/memberships/identities";
    let r = h.admin("GET", url, Value::Null).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["totalCount"], 3);
    let got: Vec<&str> = r.json["identityMemberships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["identity"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids);
    assert_eq!(
        r.json["identityMemberships"][0]["identity"]["authMethods"],
        json!([])
    );
    let r = h
        .send(
            Call::new("GET", url, Value::Null)
                .admin()
                .query("offset=2&limit=5"),
        )
        .await;
    assert_eq!(
        (
            r.json["totalCount"].as_u64(),
            r.json["identityMemberships"].as_array().map(Vec::len)
        ),
        (Some(3), Some(1))
    );
    assert_invalid(
        &h.send(
            Call::new("GET", url, Value::Null)
                .admin()
                .query("limit=500"),
        )
        .await,
        "limit",
    );
    let r = h
        .admin(
            "GET",
            "/api/v1/projects/empty/memberships/identities",
            Value::Null,
        )
        .await;
    assert_eq!(r.json, json!({"identityMemberships": [], "totalCount": 0}));
}
