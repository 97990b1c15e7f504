//! Two gateways, A and B, sharing one Redis in front of one upstream: a
//! change made through A's management API holds at B on B's very next
//! request, with no pause in between. Revocation (by id and by the holder),
//! identity deletion and Token Auth removal refuse the token at B; an org
//! role change shows in the header B injects; a project membership added or
//! removed through A opens or closes the project at B.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;

/// Header carried by every request this test proxies. Other tests'
/// gateways may send to our echo upstream (a port they took for
/// "unreachable" can be ours a moment later), so our requests are told apart
/// by this marker rather than by position or count.
const MARKER: &str = "x-test-marker";

/// One Redis, one upstream, two gateways on the Redis store.
struct Pair {
    upstream: Upstream,
    a: Gateway,
    b: Gateway,
    marker: String,
    // Declared last so the gateways stop before their store does.
    _redis: Redis,
}

impl Pair {
    fn start() -> Pair {
        let redis = Redis::start();
        let upstream = Upstream::echo();
        // Each builder call picks its own ports.
        let a = Gateway::start(GatewayConfig::redis(&redis.url()).upstream(&upstream.url()));
        let b = Gateway::start(GatewayConfig::redis(&redis.url()).upstream(&upstream.url()));
        assert_ne!(a.port(), b.port());
        Pair {
            upstream,
            a,
            b,
            marker: unique("cross"),
            _redis: redis,
        }
    }

    /// GET `path` through `gw` with `token` and our marker.
    fn send(&self, gw: &Gateway, path: &str, token: &str) -> Resp {
        let auth = format!("Bearer {token}");
        http(
            "GET",
            &format!("{}{path}", gw.url()),
            &[("Authorization", &auth), (MARKER, &self.marker)],
            None,
        )
    }

    /// The requests this test proxied, as the upstream saw them, oldest first.
    fn mine(&self) -> Vec<Recorded> {
        self.upstream
            .requests()
            .into_iter()
            .filter(|r| r.header(MARKER) == Some(self.marker.as_str()))
            .collect()
    }

    /// The last request this test proxied, as the upstream saw it.
    #[track_caller]
    fn last(&self) -> Recorded {
        self.mine()
            .pop()
            .unwrap_or_else(|| panic!("the upstream saw none of our requests"))
    }

    /// `gw` forwards GET /v1/things with `token`; returns what the upstream saw.
    #[track_caller]
    fn forwarded(&self, gw: &Gateway, token: &str) -> Recorded {
        let before = self.mine().len();
        self.send(gw, "/v1/things", token).expect_status(200);
        let mine = self.mine();
        assert_eq!(mine.len(), before + 1);
        mine[before].clone()
    }

    /// `gw` refuses GET /v1/things with `token` with `status`, forwarding
    /// nothing; returns the message.
    #[track_caller]
    fn refused(&self, gw: &Gateway, token: &str, status: u16) -> String {
        let before = self.mine().len();
        let resp = self.send(gw, "/v1/things", token);
        let message = resp.expect_error(status);
        assert!(!resp.body.contains(token), "the error body has the token");
        assert_eq!(self.mine().len(), before, "a refused request was forwarded");
        message
    }

    /// GET /api/v1/projects/{project}/secrets through `gw` with `token`.
    fn project_request(&self, gw: &Gateway, token: &str, project: &str) -> Resp {
        self.send(gw, &format!("/api/v1/projects/{project}/secrets"), token)
    }

    /// Neither gateway forwarded a management request.
    #[track_caller]
    fn no_management_forwarded(&self) {
        for rec in self.upstream.requests() {
            let path = rec.path_only();
            let rest = path.strip_prefix("/api/v1/").unwrap_or_default();
            let segs: Vec<&str> = rest.split('/').collect();
            assert!(
                !matches!(
                    segs.as_slice(),
                    ["identities", ..]
                        | ["auth", "token-auth", ..]
                        | ["auth", "token", "renew" | "revoke"]
                        | ["projects", _, "memberships", "identities", ..]
                ),
                "a management request was forwarded: {} {}",
                rec.method,
                rec.path
            );
        }
    }
}

#[test]
fn revocations_through_a_refuse_the_token_at_b_on_the_next_request() {
    let p = Pair::start();
    let admin_a = p.a.admin();
    let admin_b = p.b.admin();
    let id = admin_a.create_identity(&unique("shared"), "member");
    admin_a.attach_token_auth(&id, json!({}));
    let by_id = admin_a.create_token(&id, "by-id");
    let by_holder = admin_a.create_token(&id, "by-holder");
    let by_b = admin_b.create_token(&id, "by-b");
    for t in [&by_id, &by_holder, &by_b] {
        p.forwarded(&p.b, &t.access_token);
        p.forwarded(&p.a, &t.access_token);
    }

    // Revocation by id through A.
    admin_a.revoke_token(&by_id.token_id);
    assert_eq!(
        p.refused(&p.b, &by_id.access_token, 401),
        "access token has been revoked"
    );
    assert_eq!(
        admin_b.get_token(&by_id.token_id)["isAccessTokenRevoked"],
        true
    );
    p.refused(&p.b, &by_id.access_token, 401);
    p.refused(&p.a, &by_id.access_token, 401);
    // The other tokens of the identity are untouched.
    p.forwarded(&p.b, &by_holder.access_token);

    // Revocation by the holder through A's /api/v1/auth/token/revoke.
    admin_a
        .self_revoke(&by_holder.access_token)
        .expect_status(200);
    assert_eq!(
        p.refused(&p.b, &by_holder.access_token, 401),
        "access token has been revoked"
    );
    // Nor can B renew it.
    admin_b.renew(&by_holder.access_token).expect_error(401);

    // And the other way round: revoked through B, refused at A.
    p.forwarded(&p.a, &by_b.access_token);
    admin_b.revoke_token(&by_b.token_id);
    p.refused(&p.a, &by_b.access_token, 401);

    // Identity deletion through A.
    let (doomed, doomed_token) = admin_a.identity_with_token("member", json!({}));
    p.forwarded(&p.b, &doomed_token.access_token);
    admin_a.delete_identity(&doomed);
    p.refused(&p.b, &doomed_token.access_token, 401);

    // Token Auth removal through A.
    let (stripped, stripped_token) = admin_a.identity_with_token("member", json!({}));
    let second = admin_a.create_token(&stripped, "second");
    p.forwarded(&p.b, &stripped_token.access_token);
    p.forwarded(&p.b, &second.access_token);
    admin_a.remove_token_auth(&stripped);
    p.refused(&p.b, &stripped_token.access_token, 401);
    p.refused(&p.b, &second.access_token, 401);
    // B's management API sees the removal too.
    admin_b
        .call(
            "POST",
            &format!("/api/v1/auth/token-auth/identities/{stripped}/tokens"),
            Some(json!({"name": "after"})),
        )
        .expect_error(400);

    p.no_management_forwarded();
}

#[test]
fn role_and_membership_changes_through_a_are_seen_at_b_on_the_next_request() {
    let p = Pair::start();
    let admin_a = p.a.admin();
    let (id, token) = admin_a.identity_with_token("member", json!({}));
    let t = &token.access_token;

    // Org role: member -> admin -> member, each seen by B's next request.
    let rec = p.forwarded(&p.b, t);
    assert_eq!(rec.header_all("x-tokengate-org-role"), ["member"]);
    admin_a.update_identity(&id, json!({"role": "admin"}));
    let rec = p.forwarded(&p.b, t);
    assert_eq!(rec.header_all("x-tokengate-org-role"), ["admin"]);
    assert_eq!(rec.header("x-tokengate-identity-id"), Some(id.as_str()));
    // The promoted identity may now use B's management API with its token.
    let as_identity = Admin::with_token(&p.b.url(), t);
    as_identity.ok("GET", "/api/v1/identities", None);
    admin_a.update_identity(&id, json!({"role": "member"}));
    assert_eq!(
        as_identity
            .call("GET", "/api/v1/identities", None)
            .expect_error(403),
        "the management API needs the admin key or an identity with org role 'admin'"
    );
    let rec = p.forwarded(&p.b, t);
    assert_eq!(rec.header_all("x-tokengate-org-role"), ["member"]);

    // Project membership: absent -> added -> changed -> removed.
    let project = unique("project");
    let resp = p.project_request(&p.b, t, &project);
    resp.expect_error(403);
    let count = p.mine().len();

    admin_a.add_membership(&project, &id, json!({"role": "viewer"}));
    let resp = p.project_request(&p.b, t, &project);
    resp.expect_status(200);
    let rec = p.last();
    assert_eq!(rec.header_all("x-tokengate-project-id"), [project.as_str()]);
    assert_eq!(rec.header_all("x-tokengate-project-role"), ["viewer"]);

    admin_a.ok(
        "PATCH",
        &format!("/api/v1/projects/{project}/memberships/identities/{id}"),
        Some(json!({"roles": [{"role": "admin"}]})),
    );
    p.project_request(&p.b, t, &project).expect_status(200);
    assert_eq!(p.last().header_all("x-tokengate-project-role"), ["admin"]);

    admin_a.remove_membership(&project, &id);
    let resp = p.project_request(&p.b, t, &project);
    assert_eq!(
        resp.expect_error(403),
        "identity has no access to this project"
    );
    assert_eq!(
        p.mine().len(),
        count + 2,
        "only the two allowed project requests were forwarded"
    );
    // The token itself is fine: requests without a project still pass at B.
    p.forwarded(&p.b, t);
    p.no_management_forwarded();
}
