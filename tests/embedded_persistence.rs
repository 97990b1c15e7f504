//! The embedded store survives the gateway: a clean stop and a kill -9 both
//! keep every issued token, every counted use, revocations, memberships and
//! which organization owns a project.

mod common;

use common::*;
use serde_json::json;

const EXHAUSTED: &str = "token usage limit reached";

#[test]
fn tokens_and_uses_survive_stop_and_kill_9() {
    let upstream = Upstream::echo();
    let mut gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let url = format!("{}/v1/things", gw.url());
    let admin = gw.admin();
    let (limited_id, limited) =
        admin.identity_with_token("member", json!({"accessTokenNumUsesLimit": 10}));
    for _ in 0..3 {
        get_with_token(&url, &limited.access_token).expect_status(200);
    }
    assert_eq!(admin.uses(&limited.token_id), 3);

    // Clean stop.
    let status = gw.stop();
    assert!(status.success(), "SIGTERM exit status: {status}");
    gw.restart();
    let admin = gw.admin();
    assert_eq!(
        admin.uses(&limited.token_id),
        3,
        "uses after a clean restart"
    );
    get_with_token(&url, &limited.access_token).expect_status(200);
    assert_eq!(
        admin.uses(&limited.token_id),
        4,
        "counting continues from 3"
    );
    assert_eq!(admin.get_identity(&limited_id)["id"], limited_id.as_str());

    // State written shortly before a crash.
    let (plain_id, plain) = admin.identity_with_token("member", json!({}));
    admin.add_membership("p1", &plain_id, json!({"role": "viewer"}));
    get_with_token(&url, &plain.access_token).expect_status(200);
    let revoked = admin.create_token(&plain_id, "revoked");
    admin.revoke_token(&revoked.token_id);
    get_with_token(&url, &limited.access_token).expect_status(200); // use 5
    let last_minute = admin.create_token(&plain_id, "last-minute");

    gw.kill9();
    gw.restart();
    let admin = gw.admin();

    get_with_token(&url, &plain.access_token).expect_status(200);
    get_with_token(&url, &last_minute.access_token).expect_status(200);
    assert_eq!(
        upstream.last().header("x-tokengate-token-id"),
        Some(last_minute.token_id.as_str())
    );
    get_with_token(
        &format!("{}/api/v1/projects/p1/secrets", gw.url()),
        &plain.access_token,
    )
    .expect_status(200);
    assert_eq!(
        upstream.last().header("x-tokengate-project-role"),
        Some("viewer"),
        "membership after kill -9"
    );
    assert_eq!(
        get_with_token(&url, &revoked.access_token).expect_error(401),
        "access token has been revoked"
    );
    // p1 is still its first member's organization's: another's is refused.
    let outsider = admin.create_identity_in("another-org", "outsider", "member");
    admin
        .call(
            "POST",
            &format!("/api/v1/projects/p1/memberships/identities/{outsider}"),
            Some(json!({"role": "viewer"})),
        )
        .expect_error(403);
    assert_eq!(
        admin.ok("GET", "/api/v1/projects/p1/organization", None)["project"]["organizationId"],
        ORG_ID
    );

    // Uses consumed before the crash stay consumed: exactly 5 of 10 are left.
    assert_eq!(admin.uses(&limited.token_id), 5, "uses after kill -9");
    let before = upstream.count();
    let mut allowed = 0;
    loop {
        let resp = get_with_token(&url, &limited.access_token);
        if resp.status != 200 {
            assert_eq!(resp.expect_error(401), EXHAUSTED);
            break;
        }
        allowed += 1;
        assert!(allowed <= 10, "the limited token never ran out");
    }
    assert_eq!(allowed, 5, "requests left after 5 of 10 uses");
    assert_eq!(upstream.count(), before + 5);
    assert_eq!(admin.uses(&limited.token_id), 10);

    // One more crash right after exhausting it: it stays exhausted.
    gw.kill9();
    gw.restart();
    assert_eq!(
        get_with_token(&url, &limited.access_token).expect_error(401),
        EXHAUSTED
    );
    assert_eq!(gw.admin().uses(&limited.token_id), 10);
    for token in [&limited, &plain, &revoked, &last_minute] {
        assert!(!gw.log().contains(&token.access_token));
    }
}

#[test]
fn unlimited_token_statistics_are_written_on_a_clean_stop() {
    let upstream = Upstream::echo();
    let mut gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let url = format!("{}/v1/things", gw.url());
    let (_, unlimited) = gw.admin().identity_with_token("member", json!({}));
    for _ in 0..7 {
        get_with_token(&url, &unlimited.access_token).expect_status(200);
    }
    // Statistics of unlimited tokens are kept in memory between flushes; a
    // clean stop writes them straight away, whatever the flush timer says.
    let status = gw.stop();
    assert!(status.success(), "SIGTERM exit status: {status}");
    assert!(gw.log().contains("tokengate stopped"), "{}", gw.log());
    gw.restart();
    let token = gw.admin().get_token(&unlimited.token_id);
    assert_eq!(token["accessTokenNumUses"], 7, "{token}");
    assert!(token["accessTokenLastUsedAt"].is_string(), "{token}");
}
