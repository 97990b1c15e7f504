//! Organizations are a boundary, through a real gateway on the Redis store (a
//! real redis-server) and on the embedded store: an admin identity of one org
//! sees and manages only the identities, Token Auth configurations, tokens and
//! project memberships of its own org, lists included (with `totalCount`
//! counting only those); everything aimed at another org is a 403 that names
//! nothing of that org and changes nothing (checked with the admin key
//! afterwards). The admin key stays global, except that a project belongs to
//! one organization and not even the admin key adds another organization's
//! identity to it; the admin key reassigns a project only explicitly.

#![allow(clippy::unwrap_used)]

mod common;

use common::paths::*;
use common::*;
use serde_json::json;
use std::collections::BTreeSet;

const ORG_A: &str = "org-a";
const ORG_B: &str = "org-b";
/// A project of org-a (its first member is of org-a).
const PROJECT_A: &str = "project-a";
/// A project of org-b.
const PROJECT_B: &str = "project-b";

/// An identity created by the admin key, with Token Auth and one token.
struct Member {
    id: String,
    name: String,
    token: CreatedToken,
}

/// One gateway with two orgs: in each an admin identity (calling with its own
/// token) and a member; `loner` in org-b has no Token Auth yet.
struct World {
    gw: Gateway,
    admin: Admin,
    alice: Member,
    mate: Member,
    bob: Member,
    victim: Member,
    loner: String,
}

impl World {
    fn start(cfg: GatewayConfig) -> World {
        let gw = Gateway::start(cfg);
        let admin = gw.admin();
        let member = |org: &str, role: &str| {
            let name = unique(role);
            let id = admin.create_identity_in(org, &name, role);
            admin.attach_token_auth(&id, json!({}));
            let token = admin.create_token(&id, &unique("token"));
            Member { id, name, token }
        };
        let alice = member(ORG_A, "admin");
        let mate = member(ORG_A, "member");
        let bob = member(ORG_B, "admin");
        let victim = member(ORG_B, "member");
        let loner = admin.create_identity_in(ORG_B, &unique("loner"), "member");
        World {
            gw,
            admin,
            alice,
            mate,
            bob,
            victim,
            loner,
        }
    }

    /// The management client of an identity, with its own token.
    fn as_(&self, m: &Member) -> Admin {
        Admin::with_token(&self.gw.url(), &m.token.access_token)
    }

    /// Asserts a 403 in Infisical's shape that gives away nothing of org-b:
    /// not its id, nor the names or secrets of its identities and tokens.
    #[track_caller]
    fn assert_refused(&self, resp: &Resp) {
        let message = resp.expect_error(403);
        assert!(
            message.contains("another organization"),
            "the refusal says why: {message}"
        );
        for secret in [
            ORG_B,
            &self.victim.name,
            &self.bob.name,
            &self.victim.token.access_token,
            self.victim.token.raw["tokenData"]["name"].as_str().unwrap(),
        ] {
            assert!(
                !resp.body.contains(secret),
                "the refusal leaks {secret:?}: {}",
                resp.body
            );
        }
    }

    /// `GET` of a list as `who`: (ids of `key`, totalCount).
    #[track_caller]
    fn list(&self, who: &Admin, path: &str, key: &str) -> (BTreeSet<String>, u64) {
        let answer = who.ok("GET", path, None);
        let ids = answer[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} is not an array: {answer}"))
            .iter()
            .map(|v| {
                let id = if key == "identities" {
                    &v["id"]
                } else {
                    &v["identityId"]
                };
                id.as_str().unwrap().to_string()
            })
            .collect();
        (ids, answer["totalCount"].as_u64().unwrap())
    }
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// Identities

fn case_identities(cfg: GatewayConfig) {
    let w = World::start(cfg);
    let (alice, bob) = (w.as_(&w.alice), w.as_(&w.bob));

    // Create: only in one's own org.
    let resp = alice.call(
        "POST",
        IDENTITIES,
        Some(json!({"name": "intruder", "organizationId": ORG_B, "role": "admin"})),
    );
    w.assert_refused(&resp);
    let resp = bob.call(
        "POST",
        IDENTITIES,
        Some(json!({"name": "intruder", "organizationId": ORG_A, "role": "member"})),
    );
    w.assert_refused(&resp);
    let own = alice.ok(
        "POST",
        IDENTITIES,
        Some(json!({"name": "helper", "organizationId": ORG_A, "role": "member"})),
    );
    let helper = own["identity"]["id"].as_str().unwrap().to_string();
    assert_eq!(own["identity"]["orgId"], ORG_A);

    // List: own org only, totalCount and paging over that org.
    let org_a = set(&[&w.alice.id, &w.mate.id, &helper]);
    let org_b = set(&[&w.bob.id, &w.victim.id, &w.loner]);
    assert_eq!(w.list(&alice, IDENTITIES, "identities"), (org_a.clone(), 3));
    assert_eq!(w.list(&bob, IDENTITIES, "identities"), (org_b.clone(), 3));
    let page = w.list(
        &alice,
        &format!("{IDENTITIES}?offset=1&limit=1"),
        "identities",
    );
    assert_eq!(page.1, 3);
    assert_eq!(page.0.len(), 1);
    assert!(page.0.is_subset(&org_a));
    let page = w.list(&alice, &format!("{IDENTITIES}?offset=3"), "identities");
    assert_eq!((page.0.len(), page.1), (0, 3));
    // The admin key sees every org, and nobody was created in org-b.
    let everyone: BTreeSet<String> = org_a.union(&org_b).cloned().collect();
    assert_eq!(
        w.list(&w.admin, &format!("{IDENTITIES}?limit=100"), "identities"),
        (everyone, 6)
    );

    // Read, change and delete an identity of the other org: 403.
    let victim = identity_path(&w.victim.id);
    let before = w.admin.get_identity(&w.victim.id);
    w.assert_refused(&alice.call("GET", &victim, None));
    for body in [
        json!({"name": "pwned"}),
        json!({"role": "admin"}),
        json!({"hasDeleteProtection": true}),
        json!({"organizationId": ORG_A}),
    ] {
        w.assert_refused(&alice.call("PATCH", &victim, Some(body)));
    }
    w.assert_refused(&alice.call("DELETE", &victim, None));
    w.assert_refused(&alice.call("DELETE", &identity_path(&w.bob.id), None));
    assert_eq!(
        w.admin.get_identity(&w.victim.id),
        before,
        "the victim is unchanged"
    );
    w.admin.get_identity(&w.bob.id);
    // An unknown id is still a 404, not a 403.
    alice
        .call(
            "GET",
            &identity_path(&tokengate::token::Id::random().to_string()),
            None,
        )
        .expect_error(404);

    // Moving an identity out of its org: 403 for an identity, 422 for the admin key.
    let mate = identity_path(&w.mate.id);
    w.assert_refused(&alice.call("PATCH", &mate, Some(json!({"organizationId": ORG_B}))));
    let resp = w
        .admin
        .call("PATCH", &mate, Some(json!({"organizationId": ORG_B})));
    resp.expect_error(422);
    assert_eq!(resp.json()["details"][0]["field"], "organizationId");
    assert_eq!(w.admin.get_identity(&w.mate.id)["orgId"], ORG_A);
    // Naming its own org is no move.
    let renamed = alice.ok(
        "PATCH",
        &mate,
        Some(json!({"organizationId": ORG_A, "name": "mate-renamed"})),
    );
    assert_eq!(renamed["identity"]["name"], "mate-renamed");
    assert_eq!(renamed["identity"]["orgId"], ORG_A);

    // Inside its own org an identity manages as before.
    assert_eq!(alice.get_identity(&w.mate.id)["name"], "mate-renamed");
    alice.delete_identity(&helper);

    // The admin key manages every org.
    let created = w.admin.create_identity_in(ORG_B, "by-admin", "admin");
    assert_eq!(w.admin.get_identity(&created)["orgId"], ORG_B);
    w.admin
        .update_identity(&w.victim.id, json!({"name": "renamed-by-admin"}));
    w.admin.delete_identity(&w.victim.id);
    w.admin.call("GET", &victim, None).expect_error(404);
}

on_both_stores!(case_identities, identities_redis, identities_embedded);

// ---------------------------------------------------------------------------
// Token Auth and tokens

fn case_token_auth_and_tokens(cfg: GatewayConfig) {
    let w = World::start(cfg);
    let alice = w.as_(&w.alice);
    let victim_token = &w.victim.token.token_id;
    let token_before = w.admin.get_token(victim_token);
    let config_before = w.admin.ok("GET", &token_auth_path(&w.victim.id), None);

    // Token Auth of another org's identity: attach, read, change, remove.
    w.assert_refused(&alice.call("POST", &token_auth_path(&w.loner), Some(json!({}))));
    w.admin
        .call("GET", &token_auth_path(&w.loner), None)
        .expect_error(404);
    w.assert_refused(&alice.call("GET", &token_auth_path(&w.victim.id), None));
    w.assert_refused(&alice.call(
        "PATCH",
        &token_auth_path(&w.victim.id),
        Some(json!({"accessTokenNumUsesLimit": 1})),
    ));
    w.assert_refused(&alice.call("DELETE", &token_auth_path(&w.victim.id), None));
    assert_eq!(
        w.admin.ok("GET", &token_auth_path(&w.victim.id), None),
        config_before
    );

    // Its tokens: issue, list.
    w.assert_refused(&alice.call(
        "POST",
        &tokens_path(&w.victim.id),
        Some(json!({"name": "stolen"})),
    ));
    w.assert_refused(&alice.call("GET", &tokens_path(&w.victim.id), None));
    assert_eq!(
        w.admin.list_tokens(&w.victim.id).len(),
        1,
        "no token was issued"
    );

    // A token by id: read, rename, revoke.
    w.assert_refused(&alice.call("GET", &token_path(victim_token), None));
    w.assert_refused(&alice.call(
        "PATCH",
        &token_path(victim_token),
        Some(json!({"name": "stolen"})),
    ));
    w.assert_refused(&alice.call(
        "POST",
        &format!("{}/revoke", token_path(victim_token)),
        None,
    ));
    assert_eq!(
        w.admin.get_token(victim_token),
        token_before,
        "the token is unchanged"
    );
    // And it still works: renewal refuses revoked tokens.
    w.admin
        .renew(&w.victim.token.access_token)
        .expect_status(200);

    // Inside its own org: everything works.
    let own = alice.create_token(&w.mate.id, "from-alice");
    assert_eq!(alice.list_tokens(&w.mate.id).len(), 2);
    alice.ok(
        "PATCH",
        &token_path(&own.token_id),
        Some(json!({"name": "renamed"})),
    );
    alice.revoke_token(&own.token_id);
    assert_eq!(alice.get_token(&own.token_id)["isAccessTokenRevoked"], true);
    alice.update_token_auth(&w.mate.id, json!({"accessTokenNumUsesLimit": 5}));

    // The admin key manages every org.
    w.admin.attach_token_auth(&w.loner, json!({}));
    let issued = w.admin.create_token(&w.loner, "by-admin");
    w.admin.revoke_token(&issued.token_id);
    w.admin.revoke_token(victim_token);
    assert_eq!(
        w.admin.get_token(victim_token)["isAccessTokenRevoked"],
        true
    );
    w.admin.remove_token_auth(&w.victim.id);
}

on_both_stores!(
    case_token_auth_and_tokens,
    token_auth_and_tokens_redis,
    token_auth_and_tokens_embedded
);

// ---------------------------------------------------------------------------
// Project memberships

fn case_memberships(cfg: GatewayConfig) {
    let w = World::start(cfg);
    let (alice, bob) = (w.as_(&w.alice), w.as_(&w.bob));
    w.admin
        .add_membership(PROJECT_A, &w.mate.id, json!({"role": "member"}));
    for (m, role) in [(&w.bob, "member"), (&w.victim, "viewer")] {
        w.admin
            .add_membership(PROJECT_B, &m.id, json!({"role": role}));
    }
    let before = w.admin.get_membership(PROJECT_B, &w.victim.id);

    // Add, read, change, remove a membership of another org's identity.
    w.assert_refused(&alice.call(
        "POST",
        &membership_path("p-new", &w.victim.id),
        Some(json!({"role": "admin"})),
    ));
    w.admin
        .call("GET", &membership_path("p-new", &w.victim.id), None)
        .expect_error(404);
    let victim = membership_path(PROJECT_B, &w.victim.id);
    w.assert_refused(&alice.call("GET", &victim, None));
    w.assert_refused(&alice.call(
        "PATCH",
        &victim,
        Some(json!({"roles": [{"role": "admin"}]})),
    ));
    w.assert_refused(&alice.call("DELETE", &victim, None));
    assert_eq!(
        w.admin.get_membership(PROJECT_B, &w.victim.id),
        before,
        "the membership is unchanged"
    );

    // Lists hold only the caller's org, and count only it.
    let list = memberships_path(PROJECT_B);
    assert_eq!(
        w.list(&alice, &list, "identityMemberships"),
        (BTreeSet::new(), 0)
    );
    assert_eq!(
        w.list(&alice, &memberships_path(PROJECT_A), "identityMemberships"),
        (set(&[&w.mate.id]), 1)
    );
    assert_eq!(
        w.list(
            &alice,
            &format!("{}?offset=1", memberships_path(PROJECT_A)),
            "identityMemberships"
        ),
        (BTreeSet::new(), 1)
    );
    assert_eq!(
        w.list(&bob, &list, "identityMemberships"),
        (set(&[&w.bob.id, &w.victim.id]), 2)
    );
    let page = w.list(
        &bob,
        &format!("{list}?offset=1&limit=1"),
        "identityMemberships",
    );
    assert_eq!((page.0.len(), page.1), (1, 2));
    assert_eq!(
        w.list(&w.admin, &list, "identityMemberships"),
        (set(&[&w.bob.id, &w.victim.id]), 2)
    );

    // Inside its own org: everything works.
    alice.add_membership("p-new", &w.mate.id, json!({"role": "viewer"}));
    alice.ok(
        "PATCH",
        &membership_path(PROJECT_A, &w.mate.id),
        Some(json!({"roles": [{"role": "viewer"}]})),
    );
    assert_eq!(
        alice.get_membership(PROJECT_A, &w.mate.id)["roles"][0]["role"],
        "viewer"
    );
    alice.remove_membership(PROJECT_A, &w.mate.id);
    assert_eq!(
        w.list(&alice, &memberships_path(PROJECT_A), "identityMemberships"),
        (BTreeSet::new(), 0)
    );

    // The admin key manages every org, within each project's own org.
    w.admin
        .add_membership("p-new-b", &w.victim.id, json!({"role": "viewer"}));
    w.admin.ok(
        "PATCH",
        &victim,
        Some(json!({"roles": [{"role": "admin"}]})),
    );
    w.admin.remove_membership(PROJECT_B, &w.victim.id);
    assert_eq!(
        w.list(&w.admin, &list, "identityMemberships"),
        (set(&[&w.bob.id]), 1)
    );
}

on_both_stores!(case_memberships, memberships_redis, memberships_embedded);

// ---------------------------------------------------------------------------
// Project ownership

/// `/api/v1/projects/{project}/organization`.
fn owner_path(project: &str) -> String {
    format!("/api/v1/projects/{project}/organization")
}

/// Sends a proxied request naming `project` with `token`: the status, and
/// the project header the upstream received, if anything reached it.
fn proxied(
    gw: &Gateway,
    upstream: &Upstream,
    token: &CreatedToken,
    project: &str,
) -> (u16, Option<Vec<String>>) {
    let count = upstream.count();
    let auth = net::bearer(&token.access_token);
    let resp = http(
        "GET",
        &format!("{}/api/v1/projects/{project}/secrets", gw.url()),
        &[("Authorization", auth.as_str())],
        None,
    );
    let seen = (upstream.count() > count).then(|| {
        upstream
            .last()
            .header_all("x-tokengate-project-id")
            .into_iter()
            .map(|s| s.to_string())
            .collect()
    });
    (resp.status, seen)
}

fn case_project_ownership(cfg: GatewayConfig) {
    let upstream = Upstream::echo();
    let gw = Gateway::start(cfg.upstream(&upstream.url()));
    let admin = gw.admin();
    let (alice_id, alice_token) = admin.identity_with_token_in(ORG_A, "admin", json!({}));
    let (bob_id, bob_token) = admin.identity_with_token_in(ORG_B, "admin", json!({}));
    let (mate_b, _) = admin.identity_with_token_in(ORG_B, "member", json!({}));
    let alice = Admin::with_token(&gw.url(), &alice_token.access_token);
    let bob = Admin::with_token(&gw.url(), &bob_token.access_token);
    let pb = "pb";

    // org-b's admin makes pb: the first membership claims it for org-b.
    bob.add_membership(pb, &bob_id, json!({"role": "admin"}));
    assert_eq!(
        admin.ok("GET", &owner_path(pb), None)["project"]["organizationId"],
        ORG_B
    );

    // Another spelling of pb (which a case-insensitive or UUID-parsing
    // upstream reads as pb) is not a project id: nobody can claim it.
    for spelling in ["PB", "Pb", "pb.json", "pb-", "_pb"] {
        let resp = alice.call(
            "POST",
            &membership_path(spelling, &alice_id),
            Some(json!({"role": "admin"})),
        );
        assert_eq!(resp.status, 422, "{spelling}: {}", resp.body);
    }

    // The hole: org-a's admin adds itself to org-b's project. Refused, for
    // its own token and for the admin key alike, and nothing is written.
    for who in [&alice, &admin] {
        let resp = who.call(
            "POST",
            &membership_path(pb, &alice_id),
            Some(json!({"role": "admin"})),
        );
        let message = resp.expect_error(403);
        assert_eq!(
            message,
            format!("project {pb} belongs to another organization")
        );
        assert!(!resp.body.contains(ORG_B), "{}", resp.body);
    }
    admin
        .call("GET", &membership_path(pb, &alice_id), None)
        .expect_error(404);
    assert_eq!(
        proxied(&gw, &upstream, &alice_token, pb),
        (403, None),
        "org-a's token reaches nothing of pb"
    );
    let members = admin.ok("GET", &memberships_path(pb), None);
    assert_eq!(members["totalCount"], 1, "{members}");

    // org-b's own admin still adds org-b identities, who reach pb.
    bob.add_membership(pb, &mate_b, json!({"role": "viewer"}));
    assert_eq!(
        proxied(&gw, &upstream, &bob_token, pb),
        (200, Some(vec![pb.to_string()]))
    );

    // Only the admin key reads or sets the owner.
    for who in [&alice, &bob] {
        who.call("GET", &owner_path(pb), None).expect_error(403);
        who.call(
            "PUT",
            &owner_path(pb),
            Some(json!({"organizationId": ORG_A})),
        )
        .expect_error(403);
    }
    // Not while org-b has members there.
    let message = admin
        .call(
            "PUT",
            &owner_path(pb),
            Some(json!({"organizationId": ORG_A})),
        )
        .expect_error(400);
    assert!(
        message.contains("members of another organization"),
        "{message}"
    );
    assert_eq!(
        admin.ok("GET", &owner_path(pb), None)["project"]["organizationId"],
        ORG_B
    );

    // Once they are gone, the admin key moves it to org-a, whose admin gets in.
    bob.remove_membership(pb, &bob_id);
    bob.remove_membership(pb, &mate_b);
    let moved = admin.ok(
        "PUT",
        &owner_path(pb),
        Some(json!({"organizationId": ORG_A})),
    );
    assert_eq!(moved["project"], json!({"id": pb, "organizationId": ORG_A}));
    alice.add_membership(pb, &alice_id, json!({"role": "admin"}));
    assert_eq!(
        proxied(&gw, &upstream, &alice_token, pb),
        (200, Some(vec![pb.to_string()]))
    );
    bob.call(
        "POST",
        &membership_path(pb, &bob_id),
        Some(json!({"role": "admin"})),
    )
    .expect_error(403);

    // An unclaimed project: the admin key gives it to org-b before anyone
    // joins, and then org-a cannot claim it by being first.
    assert_eq!(
        admin.ok("GET", &owner_path("fresh"), None)["project"],
        json!({"id": "fresh", "organizationId": null})
    );
    admin.ok(
        "PUT",
        &owner_path("fresh"),
        Some(json!({"organizationId": ORG_B})),
    );
    alice
        .call(
            "POST",
            &membership_path("fresh", &alice_id),
            Some(json!({"role": "admin"})),
        )
        .expect_error(403);
    bob.add_membership("fresh", &bob_id, json!({"role": "admin"}));

    // The route is the gateway's own, never forwarded, in any spelling.
    let count = upstream.count();
    for path in [
        "/api/v1/projects/pb/organization",
        "/API/v1/projects/pb/Organization",
        "/api/v1/projects/pb/organization.json",
    ] {
        let resp = http("GET", &format!("{}{path}", gw.url()), &[], None);
        assert_ne!(resp.status, 200, "{path}");
    }
    assert_eq!(upstream.count(), count, "nothing was forwarded");
}

on_both_stores!(
    case_project_ownership,
    project_ownership_redis,
    project_ownership_embedded
);
