//! The audit log: one JSON line per management change and token life event,
//! naming the actor, the target, the client, the request, and the fields
//! before and after; refused management calls recorded too; and with
//! `audit.required`, a change it cannot record is refused.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;

fn with_audit_file(cfg: GatewayConfig, path: &Path, required: bool) -> GatewayConfig {
    cfg.section(
        "audit",
        &format!(
            "destination: file\npath: {}\nrequired: {required}\n",
            path.display()
        ),
    )
}

/// The records of `event` whose target has `key` = `value`.
fn find<'a>(all: &'a [Value], event: &str, key: &str, value: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|r| r["event"] == event && r["target"][key] == value)
        .collect()
}

#[track_caller]
fn one<'a>(all: &'a [Value], event: &str, key: &str, value: &str) -> &'a Value {
    let found = find(all, event, key, value);
    assert_eq!(found.len(), 1, "{event} {key}={value} in {all:#?}");
    found[0]
}

#[test]
fn every_change_is_recorded_with_its_actor_and_before_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let upstream = Upstream::echo();
    let gw = Gateway::start(with_audit_file(
        GatewayConfig::embedded_temp().upstream(&upstream.url()),
        &path,
        false,
    ));
    let admin = gw.admin();

    // Identity: created, renamed, Token Auth attached and changed.
    let id = admin.create_identity(&unique("audited"), "member");
    admin.update_identity(&id, json!({"name": "renamed-one"}));
    admin.attach_token_auth(
        &id,
        json!({"accessTokenTTL": 3600, "accessTokenMaxTTL": 7200}),
    );
    admin.update_token_auth(&id, json!({"accessTokenTTL": 60}));
    let first = admin.create_token(&id, "first");
    admin
        .call(
            "PATCH",
            &format!("/api/v1/auth/token-auth/tokens/{}", first.token_id),
            Some(json!({"name": "first-renamed"})),
        )
        .expect_status(200);
    admin.renew(&first.access_token).expect_status(200);
    let project = unique("proj");
    admin.add_membership(&project, &id, json!({"role": "viewer"}));
    admin
        .call(
            "PATCH",
            &format!("/api/v1/projects/{project}/memberships/identities/{id}"),
            Some(json!({"roles": [{"role": "admin"}]})),
        )
        .expect_status(200);
    admin.remove_membership(&project, &id);
    admin.revoke_token(&first.token_id);
    let second = admin.create_token(&id, "second");
    admin.self_revoke(&second.access_token).expect_status(200);
    let third = admin.create_token(&id, "third");
    let fourth = admin.create_token(&id, "fourth");
    admin.delete_identity(&id);

    // An identity caller, and refusals.
    let (boss, boss_token) = admin.identity_with_token("admin", json!({}));
    let as_boss = Admin::with_token(&gw.url(), &boss_token.access_token);
    let made = as_boss.create_identity(&unique("by-boss"), "member");
    Admin::with_token(&gw.url(), "not-the-admin-key")
        .call("GET", "/api/v1/identities", None)
        .expect_status(401);
    let (_, member_token) = admin.identity_with_token("member", json!({}));
    Admin::with_token(&gw.url(), &member_token.access_token)
        .call("DELETE", &format!("/api/v1/identities/{made}"), None)
        .expect_status(403);

    let all = json_lines(&path);
    for r in &all {
        assert_eq!(r["log"], "audit", "{r}");
        assert_eq!(r["clientIp"], "127.0.0.1", "{r}");
        assert!(r["reqId"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
        assert!(r["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{r}");
    }

    let created = one(&all, "identity.created", "identityId", &id);
    assert_eq!(
        created["actor"],
        json!({"kind": "admin_key", "identityId": null, "tokenId": null})
    );
    assert_eq!(created["before"], Value::Null);
    assert_eq!(created["after"]["role"], "member");

    let renamed = one(&all, "identity.updated", "identityId", &id);
    assert_ne!(renamed["before"]["name"], "renamed-one");
    assert_eq!(renamed["after"]["name"], "renamed-one");

    one(&all, "token_auth.attached", "identityId", &id);
    let changed = one(&all, "token_auth.updated", "identityId", &id);
    assert_eq!(changed["before"]["accessTokenTTL"], 3600);
    assert_eq!(changed["after"]["accessTokenTTL"], 60);

    let issued = one(&all, "token.created", "tokenId", &first.token_id);
    assert_eq!(issued["target"]["identityId"], id.as_str());
    assert_eq!(issued["after"]["name"], "first");
    let r = one(&all, "token.renamed", "tokenId", &first.token_id);
    assert_eq!(
        (&r["before"]["name"], &r["after"]["name"]),
        (&json!("first"), &json!("first-renamed"))
    );

    let renewed = one(&all, "token.renewed", "tokenId", &first.token_id);
    assert_eq!(
        renewed["actor"],
        json!({"kind": "token", "identityId": id, "tokenId": first.token_id})
    );
    assert_eq!(renewed["before"]["accessTokenLastRenewedAt"], Value::Null);
    assert!(
        renewed["after"]["accessTokenLastRenewedAt"].is_string(),
        "{renewed}"
    );

    let added = one(&all, "membership.added", "projectId", &project);
    assert_eq!(added["target"]["identityId"], id.as_str());
    let updated = one(&all, "membership.updated", "projectId", &project);
    assert_eq!(updated["before"]["roles"][0]["role"], "viewer");
    assert_eq!(updated["after"]["roles"][0]["role"], "admin");
    one(&all, "membership.removed", "projectId", &project);

    let by_id = one(&all, "token.revoked", "tokenId", &first.token_id);
    assert_eq!(by_id["target"]["via"], "id");
    assert_eq!(by_id["actor"]["kind"], "admin_key");
    assert_eq!(
        (
            &by_id["before"]["isAccessTokenRevoked"],
            &by_id["after"]["isAccessTokenRevoked"]
        ),
        (&json!(false), &json!(true))
    );
    let by_itself = one(&all, "token.revoked", "tokenId", &second.token_id);
    assert_eq!(by_itself["target"]["via"], "self");
    assert_eq!(by_itself["actor"]["kind"], "token");
    for t in [&third, &fourth] {
        let r = one(&all, "token.revoked", "tokenId", &t.token_id);
        assert_eq!(r["target"]["via"], "identity_deleted");
    }
    // Tokens already revoked are not revoked again by the deletion.
    assert_eq!(
        find(&all, "token.revoked", "tokenId", &first.token_id).len(),
        1
    );
    let deleted = one(&all, "identity.deleted", "identityId", &id);
    assert_eq!(deleted["before"]["name"], "renamed-one");
    assert_eq!(deleted["after"], Value::Null);

    let by_boss = one(&all, "identity.created", "identityId", &made);
    assert_eq!(
        by_boss["actor"],
        json!({"kind": "identity", "identityId": boss, "tokenId": boss_token.token_id})
    );

    let refused: Vec<&Value> = all
        .iter()
        .filter(|r| r["event"] == "management.refused")
        .collect();
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert_eq!(refused[0]["status"], 401);
    assert_eq!(refused[0]["actor"]["kind"], "unauthenticated");
    assert_eq!(refused[1]["status"], 403);
    assert_eq!(
        refused[1]["actor"]["tokenId"],
        member_token.token_id.as_str()
    );
    assert!(
        refused[1]["reason"].as_str().unwrap().contains("org role"),
        "{}",
        refused[1]
    );

    // Reads change nothing and are not recorded.
    assert!(all.iter().all(|r| r["event"] != "management.requested"));
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in [
        &first.access_token,
        &second.access_token,
        &third.access_token,
        &boss_token.access_token,
    ] {
        assert!(!text.contains(secret.as_str()));
    }
    assert!(!text.contains(ADMIN_KEY) && !text.contains("not-the-admin-key"));
}

#[test]
fn a_required_audit_log_refuses_changes_it_cannot_record() {
    // /dev/full opens, and every write to it fails (ENOSPC).
    let upstream = Upstream::echo();
    let gw = Gateway::start(with_audit_file(
        GatewayConfig::embedded_temp().upstream(&upstream.url()),
        Path::new("/dev/full"),
        true,
    ));
    let admin = gw.admin();
    let name = unique("never");
    let resp = admin.call(
        "POST",
        "/api/v1/identities",
        Some(json!({"name": name, "organizationId": ORG_ID})),
    );
    assert_eq!(
        resp.expect_error(503),
        "audit log unavailable: nothing was changed"
    );
    // Reads still work, and show that nothing was created.
    let list = admin.ok("GET", "/api/v1/identities", None);
    assert!(
        list["identities"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["name"] != name.as_str()),
        "{list}"
    );
    assert!(
        gw.metric("tokengate_log_write_errors_total{log=\"audit\"}")
            .unwrap()
            >= 1.0
    );
}

#[test]
fn an_optional_audit_log_counts_what_it_cannot_record_and_lets_changes_through() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(with_audit_file(
        GatewayConfig::embedded_temp().upstream(&upstream.url()),
        Path::new("/dev/full"),
        false,
    ));
    let id = gw.admin().create_identity(&unique("kept"), "member");
    assert_eq!(gw.admin().get_identity(&id)["id"], id.as_str());
    assert_eq!(
        gw.metric("tokengate_log_write_errors_total{log=\"audit\"}"),
        Some(1.0)
    );
    assert!(gw
        .log()
        .contains("audit log: cannot write the identity.created record"));
}

#[test]
fn the_default_audit_log_is_stdout() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let id = gw.admin().create_identity(&unique("stdout"), "member");
    let line = gw
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "identity.created" && v["target"]["identityId"] == id.as_str());
    assert!(line.is_some_and(|v| v["log"] == "audit"), "{}", gw.log());
}
