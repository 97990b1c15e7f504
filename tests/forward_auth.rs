//! Forward-auth mode behind real gateways: nginx (auth_request) and Caddy
//! (forward_auth), each run from its ready-made file in deploy/forward-auth/,
//! in front of an echo API, asking tokengate whether each request may pass.
//! Allowed requests reach the API with tokengate's identity headers and
//! without the client's copies; refusals are tokengate's (nginx passes 401
//! and 403 and turns any other refusal into a 500); a use limit holds under
//! 200 parallel requests; a store that is down lets nothing through.

#![allow(clippy::unwrap_used)]

mod common;

use common::front::{Front, Kind};
use common::*;
use serde_json::json;
use std::sync::{Arc, Barrier};
use std::time::Duration;

/// tokengate in forward-auth mode for `kind` (nginx describes the original
/// in the path, Caddy in headers), trusting the calling gateway's address,
/// with its access log in its directory.
fn tokengate(kind: Kind, cfg: GatewayConfig, upstream: &Upstream) -> Gateway {
    let describe = match kind {
        Kind::Nginx => "path",
        Kind::Caddy => "headers",
    };
    Gateway::start(
        cfg.upstream(&upstream.url())
            .trusted_proxies(&["127.0.0.1/32"])
            .section(
                "routes",
                "- {path: /v1, body: no-project}\n\
                 - {path: /projects/*, project: required, body: no-project}\n\
                 - {path: /status, auth: public}\n\
                 - {path: /hosted, host: public.example.com, auth: public}\n\
                 - {path: /hosted, body: no-project}\n\
                 - {path: /api/*/secrets, project: required}\n",
            )
            .project_sources(&[
                ("path", "/projects/{projectId}"),
                ("query", "projectId"),
                ("header", "x-project-id"),
                ("body", "projectId"),
            ])
            .section("access_log", "destination: file\npath: access.log\n")
            .extra(&format!(
                "forward_auth: {{path: /_tokengate/auth, describe: {describe}}}\n"
            )),
    )
}

fn front(kind: Kind, gw: &Gateway, upstream: &Upstream) -> Front {
    let api = upstream.url().trim_start_matches("http://").to_string();
    Front::start(kind, &gw.addr(), &api)
}

fn call(url: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    http("GET", url, &headers, None)
}

/// A header the API must never see from a client, in the spellings a
/// client might try.
const FORGED: [(&str, &str); 5] = [
    (
        "X-Tokengate-Identity-Id",
        "00000000-0000-0000-0000-000000000000",
    ),
    ("X-TOKENGATE-ORG-ROLE", "admin"),
    ("x_tokengate_project_role", "admin"),
    ("X-Tokengate-Org_Role", "admin"),
    ("X-Tokengate-Project-Id", "someone-elses"),
];

/// No header named like an injected one, in any spelling, unless it is `want`.
#[track_caller]
fn only(seen: &Recorded, name: &str, want: Option<&str>) {
    let spelled: Vec<&str> = seen
        .headers
        .iter()
        .filter(|(n, _)| n.replace('_', "-").eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
        .collect();
    assert_eq!(spelled, want.into_iter().collect::<Vec<_>>(), "{name}");
}

fn case_allowed_requests_carry_tokengates_identity_only(kind: Kind) {
    let upstream = Upstream::echo();
    let gw = tokengate(kind, GatewayConfig::embedded_temp(), &upstream);
    let front = front(kind, &gw, &upstream);
    let admin = gw.admin();
    let (id, token) = admin.identity_with_token("member", json!({}));
    admin.add_membership("p1", &id, json!({"role": "viewer"}));
    let t = Some(token.access_token.as_str());

    let resp = call(
        &format!("{}/projects/p1/things?x=1", front.url()),
        t,
        &FORGED,
    );
    assert_eq!(resp.status, 200, "{kind:?}: {}", resp.body);
    let seen = upstream.last();
    assert_eq!(seen.path, "/projects/p1/things?x=1");
    only(&seen, "x-tokengate-identity-id", Some(&id));
    only(&seen, "x-tokengate-org-role", Some("member"));
    only(&seen, "x-tokengate-project-id", Some("p1"));
    only(&seen, "x-tokengate-project-role", Some("viewer"));
    only(&seen, "x-tokengate-token-id", Some(&token.token_id));
    only(&seen, "x-tokengate-client-ip", Some("127.0.0.1"));
    assert!(
        !seen.has_header("authorization"),
        "the token stays at the gateway"
    );

    // No project: the client's project headers do not survive either.
    let resp = call(&format!("{}/v1/things", front.url()), t, &FORGED);
    assert_eq!(resp.status, 200, "{kind:?}: {}", resp.body);
    let seen = upstream.last();
    only(&seen, "x-tokengate-identity-id", Some(&id));
    only(&seen, "x-tokengate-project-id", None);
    only(&seen, "x-tokengate-project-role", None);

    // A public route: no token, and no identity.
    let resp = call(&format!("{}/status", front.url()), None, &FORGED);
    assert_eq!(resp.status, 200, "{kind:?}: {}", resp.body);
    let seen = upstream.last();
    only(&seen, "x-tokengate-identity-id", None);
    only(&seen, "x-tokengate-org-role", None);
    only(&seen, "x-tokengate-project-role", None);
    assert_eq!(upstream.count(), 3);
    assert_eq!(admin.uses(&token.token_id), 2);

    // The access record is the request decided about, not the subrequest.
    let log = gw.dir().join("access.log");
    let mut record = None;
    eventually(Duration::from_secs(10), || {
        record = json_lines(&log)
            .into_iter()
            .find(|r| r["path"] == "/projects/p1/things?x=1");
        record.is_some()
    });
    let record = record.unwrap();
    assert_eq!(record["outcome"], "allowed", "{record}");
    assert_eq!(record["method"], "GET");
    assert_eq!(record["project"], "p1");
    assert_eq!(record["identityId"], id.as_str());
    assert!(record["identityName"].is_string(), "{record}");
}

/// What the hostile review found: ways to have tokengate decide about
/// something other than what the API receives. None gets through.
fn case_the_request_decided_is_the_request_received(kind: Kind) {
    let upstream = Upstream::echo();
    let gw = tokengate(kind, GatewayConfig::embedded_temp(), &upstream);
    let front = front(kind, &gw, &upstream);
    let admin = gw.admin();
    let (id, token) = admin.identity_with_token("member", json!({}));
    admin.add_membership("p1", &id, json!({"role": "viewer"}));
    let addr = front.url().trim_start_matches("http://").to_string();
    let raw = |target: &str, extra: &str| {
        raw_http_resp(
            &addr,
            &format!(
                "GET {target} HTTP/1.1\r\nHost: api.example.com\r\n{extra}Connection: close\r\n\r\n"
            ),
        )
    };
    // A target without a path: for nginx, a bare endpoint, where a client's
    // X-Original-URI would have described a public route.
    let r = raw(
        "http://api.example.com?op=drop",
        "X-Original-URI: /status\r\n",
    );
    assert!(r.status >= 400, "{kind:?}: {} {}", r.status, r.body);
    // A host route chosen by a client's X-Forwarded-Host / X-Original-Host.
    for forged in ["X-Forwarded-Host", "X-Original-Host"] {
        let r = raw("/hosted", &format!("{forged}: public.example.com\r\n"));
        assert!(
            r.status >= 400,
            "{kind:?} {forged}: {} {}",
            r.status,
            r.body
        );
    }
    // A Host tokengate would have matched loosely (`..`) while the API
    // compares it as sent.
    let r = raw_http_resp(
        &addr,
        "GET /hosted HTTP/1.1\r\nHost: public.example.com..\r\nConnection: close\r\n\r\n",
    );
    assert!(r.status >= 400, "{kind:?}: {} {}", r.status, r.body);
    // CONNECT names an authority, which Caddy describes as `/`.
    let r = raw_http_resp(
        &addr,
        "CONNECT public.example.com:443 HTTP/1.1\r\nHost: public.example.com:443\r\nConnection: close\r\n\r\n",
    );
    assert!(r.status >= 400, "{kind:?} CONNECT: {} {}", r.status, r.body);
    // A fragment, which tokengate may not see and the API may read as path.
    let auth = format!("Authorization: Bearer {}\r\n", token.access_token);
    let r = raw("/projects/p1/things#?projectId=p2", &auth);
    assert!(r.status >= 400, "{kind:?}: {} {}", r.status, r.body);
    // A client's own description headers, whatever the shape.
    let bearer = format!("Bearer {}", token.access_token);
    for (name, value) in [
        ("X-Forwarded-Method", "GET"),
        ("X-Original-URI", "/v1/x"),
        ("X-Forwarded-Uri", "/v1/x"),
    ] {
        let resp = http(
            "GET",
            &format!("{}/projects/p2/things", front.url()),
            &[("Authorization", &bearer), (name, value)],
            None,
        );
        assert!(
            resp.status >= 400,
            "{kind:?} {name}: {} {}",
            resp.status,
            resp.body
        );
    }
    // A fragment relayed to tokengate itself (a calling gateway that passes
    // the client's target on as it came), which the parsed target drops.
    let direct = raw_http_resp(
        &gw.addr(),
        &format!(
            "GET /_tokengate/auth/projects/p1/things#?projectId=p2 HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
            token.access_token
        ),
    );
    assert_eq!(direct.status, 400, "{kind:?}: {}", direct.body);
    assert_eq!(upstream.count(), 0, "nothing reached the API");
}

/// The status a refusal reaches the client with: tokengate's, except that
/// nginx turns anything but 401 and 403 into a 500.
fn through(kind: Kind, status: u16) -> u16 {
    match (kind, status) {
        (Kind::Nginx, 401 | 403) | (Kind::Caddy, _) => status,
        (Kind::Nginx, _) => 500,
    }
}

fn case_refusals_are_tokengates(kind: Kind) {
    let upstream = Upstream::echo();
    let gw = tokengate(kind, GatewayConfig::embedded_temp(), &upstream);
    let front = front(kind, &gw, &upstream);
    let admin = gw.admin();
    let things = format!("{}/v1/things", front.url());
    let refused = |token: &str, url: &str, status: u16| {
        let resp = call(url, Some(token), &[]);
        assert_eq!(
            resp.status,
            through(kind, status),
            "{kind:?} {url}: {}",
            resp.body
        );
        if kind == Kind::Caddy {
            assert!(
                resp.json()["message"].is_string(),
                "tokengate's body: {}",
                resp.body
            );
        }
    };

    let (_, revoked) = admin.identity_with_token("member", json!({}));
    admin.revoke_token(&revoked.token_id);
    refused(&revoked.access_token, &things, 401);

    let (_, once) = admin.identity_with_token("member", json!({"accessTokenNumUsesLimit": 1}));
    assert_eq!(call(&things, Some(&once.access_token), &[]).status, 200);
    refused(&once.access_token, &things, 401);

    let (_, short) = admin.identity_with_token(
        "member",
        json!({"accessTokenTTL": 1, "accessTokenMaxTTL": 1}),
    );
    std::thread::sleep(Duration::from_millis(1100));
    refused(&short.access_token, &things, 401);

    let (_, elsewhere) = admin.identity_with_token(
        "member",
        json!({"accessTokenTrustedIps": [{"ipAddress": "10.0.0.0/8"}]}),
    );
    refused(&elsewhere.access_token, &things, 403);

    let (id, member) = admin.identity_with_token("member", json!({}));
    admin.add_membership("p1", &id, json!({"role": "viewer"}));
    refused(
        &member.access_token,
        &format!("{}/projects/p2/things", front.url()),
        403,
    );
    // A body the auth subrequest cannot show, on a route that reads bodies.
    refused(
        &member.access_token,
        &format!("{}/api/v3/secrets?projectId=p1", front.url()),
        400,
    );
    refused("tgat_not-a-token", &things, 401);
    assert_eq!(upstream.count(), 1, "only the one allowed request");
}

fn case_use_limit_is_exact_under_200_parallel_requests(kind: Kind) {
    const LIMIT: u64 = 50;
    let upstream = Upstream::echo();
    let redis = Redis::start();
    let gw = tokengate(kind, GatewayConfig::redis(&redis.url()), &upstream);
    let front = front(kind, &gw, &upstream);
    let (_, token) = gw
        .admin()
        .identity_with_token("member", json!({"accessTokenNumUsesLimit": LIMIT}));
    let url = format!("{}/v1/things", front.url());
    let start = Arc::new(Barrier::new(200));
    let answers: Vec<u16> = (0..200)
        .map(|_| {
            let (url, token, start) = (url.clone(), token.access_token.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                call(&url, Some(&token), &[]).status
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let allowed = answers.iter().filter(|s| **s == 200).count() as u64;
    let refused = answers.iter().filter(|s| **s == 401).count() as u64;
    assert_eq!(
        (allowed, refused),
        (LIMIT, 200 - LIMIT),
        "{kind:?}: {answers:?}"
    );
    assert_eq!(upstream.count() as u64, LIMIT);
    assert_eq!(gw.admin().uses(&token.token_id), LIMIT);
}

fn case_a_store_that_is_down_lets_nothing_through(kind: Kind) {
    let upstream = Upstream::echo();
    let mut redis = Redis::start();
    let gw = tokengate(
        kind,
        GatewayConfig::redis(&redis.url()).redis_timeouts(300, 300, 0),
        &upstream,
    );
    let front = front(kind, &gw, &upstream);
    let (_, token) = gw.admin().identity_with_token("member", json!({}));
    let url = format!("{}/v1/things", front.url());
    assert_eq!(call(&url, Some(&token.access_token), &[]).status, 200);
    redis.kill();
    for _ in 0..3 {
        let resp = call(&url, Some(&token.access_token), &[]);
        assert_eq!(resp.status, through(kind, 503), "{kind:?}: {}", resp.body);
    }
    assert_eq!(
        upstream.count(),
        1,
        "nothing passed while the store was down"
    );
}

macro_rules! on_both_fronts {
    ($case:ident, $nginx:ident, $caddy:ident) => {
        #[test]
        fn $nginx() {
            $case(Kind::Nginx);
        }

        #[test]
        fn $caddy() {
            $case(Kind::Caddy);
        }
    };
}

on_both_fronts!(
    case_allowed_requests_carry_tokengates_identity_only,
    nginx_passes_tokengates_identity_only,
    caddy_passes_tokengates_identity_only
);
on_both_fronts!(
    case_the_request_decided_is_the_request_received,
    nginx_sends_only_what_tokengate_decided_about,
    caddy_sends_only_what_tokengate_decided_about
);
on_both_fronts!(
    case_refusals_are_tokengates,
    nginx_refuses_as_tokengate_does,
    caddy_refuses_as_tokengate_does
);
on_both_fronts!(
    case_use_limit_is_exact_under_200_parallel_requests,
    nginx_holds_the_use_limit_under_200_parallel_requests,
    caddy_holds_the_use_limit_under_200_parallel_requests
);
on_both_fronts!(
    case_a_store_that_is_down_lets_nothing_through,
    nginx_lets_nothing_through_while_the_store_is_down,
    caddy_lets_nothing_through_while_the_store_is_down
);
