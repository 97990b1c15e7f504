//! Routes and upstreams: routes matched by host and path send to named
//! upstreams with their own policies; a pool with a dead address keeps
//! serving, through health checks and through passive ejection.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

/// An address nothing listens on.
fn dead_url() -> String {
    Upstream::unreachable_url()
}

#[test]
fn routes_send_to_their_upstreams_with_their_own_policies() {
    let main = Upstream::echo();
    let billing = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&main.url())
            .section(
                "upstreams",
                &format!("billing:\n  urls: ['{}']\n", billing.url()),
            )
            .section(
                "routes",
                "- {path: /status, auth: public, upstream: billing}\n\
                 - {path: /invoices, upstream: billing}\n\
                 - {path: /, host: billing.example.test, upstream: billing}\n",
            ),
    );
    let (id, token) = gw.admin().identity_with_token("member", json!({}));
    let auth = format!("Bearer {}", token.access_token);

    // Public on billing: no token, reaches billing only.
    get(&format!("{}/status/ok", gw.url())).expect_status(200);
    assert_eq!((billing.count(), main.count()), (1, 0));

    // Token route on billing: refused without, forwarded with, identity injected.
    get(&format!("{}/invoices/1", gw.url())).expect_status(401);
    assert_eq!(billing.count(), 1);
    http(
        "GET",
        &format!("{}/invoices/1", gw.url()),
        &[("Authorization", &auth)],
        None,
    )
    .expect_status(200);
    let rec = billing.last();
    assert_eq!(rec.path_only(), "/invoices/1");
    assert_eq!(rec.header("x-tokengate-identity-id"), Some(id.as_str()));
    // Each upstream gets its own authority as Host.
    assert_eq!(
        rec.header("host"),
        Some(format!("127.0.0.1:{}", billing.port()).as_str())
    );

    // Everything else stays on the default upstream, with a token.
    get(&format!("{}/status2", gw.url())).expect_status(401);
    http(
        "GET",
        &format!("{}/v1/things", gw.url()),
        &[("Authorization", &auth)],
        None,
    )
    .expect_status(200);
    assert_eq!(main.count(), 1);

    // A host route: same path, other host, other upstream; still token-checked.
    let on_host = |auth: Option<&str>| {
        let mut h = vec![("Host", "Billing.Example.Test:8080")];
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        http("GET", &format!("{}/v1/things", gw.url()), &h, None)
    };
    on_host(None).expect_status(401);
    on_host(Some(&auth)).expect_status(200);
    assert_eq!((billing.count(), main.count()), (3, 1));
}

#[test]
fn a_pool_with_a_dead_address_keeps_serving_through_health_checks() {
    let live = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&live.url())
            .public_routes(&["/open"])
            .section(
                "upstreams",
                &format!(
                    "pool:\n  urls: ['{}', '{}']\n  eject_seconds: 0\n  \
                     health_check: {{interval_seconds: 1, timeout_ms: 200, unhealthy_after: 1}}\n",
                    live.url(),
                    dead_url()
                ),
            )
            .section("routes", "- {path: /open, auth: public, upstream: pool}\n"),
    );
    let url = format!("{}/open/x", gw.url());
    // Once the check has marked the dead address, every request is served.
    eventually(Duration::from_secs(20), || {
        (0..10).all(|_| get(&url).status == 200)
    });
    let before = live.count();
    for _ in 0..20 {
        get(&url).expect_status(200);
    }
    assert_eq!(live.count(), before + 20);
}

#[test]
fn a_refused_connection_ejects_the_address_and_the_request_goes_to_another() {
    let live = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&live.url())
            .public_routes(&["/open"])
            .section(
                "upstreams",
                &format!(
                    "pool:\n  urls: ['{}', '{}']\n  eject_seconds: 60\n",
                    dead_url(),
                    live.url()
                ),
            )
            .section("routes", "- {path: /open, auth: public, upstream: pool}\n"),
    );
    // No health check: the first request sent to the dead address is
    // retried on the live one, and the dead one is left out after.
    for i in 0..20 {
        let resp = get(&format!("{}/open/{i}", gw.url()));
        assert_eq!(resp.status, 200, "request {i}: {}", resp.body);
    }
    assert_eq!(live.count(), 20);
    assert!(
        gw.log().contains("refused a connection; left out for"),
        "{}",
        gw.log()
    );
}

#[test]
fn upstream_settings_are_checked_with_their_key_named() {
    for (yaml, key) in [
        ("upstreams: {b: {urls: []}}", "upstreams.b.urls"),
        ("upstreams: {b: {urls: ['ftp://x']}}", "upstreams.b.urls[0]"),
        (
            "upstreams: {b: {urls: ['http://a', 'https://b']}}",
            "upstreams.b.urls",
        ),
        (
            "upstreams: {b: {urls: ['http://a'], selection: random}}",
            "upstreams.b.selection",
        ),
        (
            "upstreams: {default: {urls: ['http://a']}}",
            "upstreams.default",
        ),
        (
            "upstreams: {b: {urls: ['http://a'], health_check: {interval_seconds: 0}}}",
            "upstreams.b.health_check.interval_seconds",
        ),
        (
            "upstreams: {b: {urls: ['http://a'], health_check: {path: 'x y'}}}",
            "upstreams.b.health_check.path",
        ),
        (
            "routes: [{path: /a, upstream: nowhere}]",
            "routes[0].upstream",
        ),
        ("routes: [{path: /a, host: 'a b'}]", "routes[0].host"),
        (
            "routes: [{path: /a, require: {project_role: admin}}]",
            "routes[0].require.project_role",
        ),
        (
            "routes: [{path: /a, require: {org_role: 'Ad Min'}}]",
            "routes[0].require.org_role",
        ),
        (
            "routes: [{path: /a, require: {methods: {delete: {org_role: a}}}}]",
            "routes[0].require.methods.delete",
        ),
        (
            "routes: [{path: /a, auth: public, require: {org_role: a}}]",
            "routes[0].require",
        ),
    ] {
        let yaml = format!(
            "server: {{listen: ['127.0.0.1:1']}}\nupstream: {{url: 'http://127.0.0.1:2'}}\n{yaml}\n"
        );
        let (code, out) = Gateway::check_config_yaml(&yaml);
        assert_ne!(code, 0, "{yaml}");
        assert!(out.contains(key), "{yaml}: {out}");
    }
}

#[test]
fn a_routes_role_requirements_hold_per_method_without_spending_uses() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .section(
                "routes",
                "- path: /v1/things\n  project: required\n  require:\n    \
                 project_role: [viewer, admin]\n    methods: {DELETE: {project_role: admin}}\n\
                 - {path: /v1/org, require: {org_role: admin}}\n",
            ),
    );
    let admin = gw.admin();
    let (id, token) = admin.identity_with_token("member", json!({"accessTokenNumUsesLimit": 100}));
    let project = unique("proj");
    admin.add_membership(&project, &id, json!({"role": "viewer"}));
    let auth = format!("Bearer {}", token.access_token);
    let url = format!("{}/v1/things?projectId={project}", gw.url());
    let call = |method: &str, url: &str| http(method, url, &[("Authorization", &auth)], None);

    call("GET", &url).expect_status(200);
    let resp = call("DELETE", &url);
    assert_eq!(
        resp.expect_error(403),
        "the identity's project role does not allow this request"
    );
    assert_eq!(upstream.count(), 1, "the refused DELETE was not forwarded");
    assert_eq!(admin.uses(&token.token_id), 1, "a refusal spends no use");

    admin
        .call(
            "PATCH",
            &format!("/api/v1/projects/{project}/memberships/identities/{id}"),
            Some(json!({"roles": [{"role": "admin"}]})),
        )
        .expect_status(200);
    call("DELETE", &url).expect_status(200);
    assert_eq!(upstream.count(), 2);

    // An org role requirement, for every method.
    let org = format!("{}/v1/org/x", gw.url());
    assert_eq!(
        call("GET", &org).expect_error(403),
        "the identity's org role does not allow this request"
    );
    let (_, boss) = admin.identity_with_token("admin", json!({}));
    http(
        "GET",
        &org,
        &[("Authorization", &format!("Bearer {}", boss.access_token))],
        None,
    )
    .expect_status(200);
    assert!(gw
        .metric("tokengate_auth_denied_total{reason=\"project_role\"}")
        .is_some_and(|n| n == 1.0));
}

#[test]
fn the_method_a_route_checks_is_the_one_every_server_reads() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .section(
                "routes",
                "- path: /v1/things\n  require:\n    org_role: [member, admin]\n    \
                 methods: {DELETE: {org_role: admin}, GET: {org_role: admin}}\n\
                 - {path: /open, auth: public}\n",
            ),
    );
    let (_, token) = gw.admin().identity_with_token("member", json!({}));
    let auth = format!("Bearer {}", token.access_token);
    let url = format!("{}/v1/things/1", gw.url());
    let send = |method: &str, target: &str, headers: &[(&str, &str)], body: Option<&str>| {
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        let raw = raw_request(method, target, &all, body);
        raw_http_resp(&gw.addr(), &raw)
    };

    // Spellings some servers upper-case are refused where needs differ by method.
    for method in ["delete", "Delete", "get"] {
        let resp = send(method, "/v1/things/1", &[], None);
        assert_eq!(resp.status, 400, "{method}: {}", resp.body);
    }
    // HEAD runs the GET handler in most servers: it needs what GET needs.
    assert_eq!(
        http("HEAD", &url, &[("Authorization", &auth)], None).status,
        403
    );
    // A method override field in a form, multipart or JSON body.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let json_body = [("Content-Type", "application/json")];
    let multipart = [("Content-Type", "multipart/form-data; boundary=b")];
    for (headers, body) in [
        (&form[..], "_method=DELETE&a=1"),
        (&form[..], "a=1&X-HTTP-Method=DELETE"),
        (&json_body[..], r#"{"_method": "DELETE"}"#),
        (
            &multipart[..],
            "--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n",
        ),
    ] {
        let resp = send("POST", "/v1/things/1", headers, Some(body));
        assert_eq!(resp.status, 400, "{body}: {}", resp.body);
    }
    // In the query, on any route.
    for target in [
        "/v1/things/1?_method=DELETE",
        "/open/x?_METHOD=delete",
        "/open/x?x-http-method-override=DELETE",
    ] {
        let resp = send("POST", target, &[], Some(""));
        assert_eq!(resp.status, 400, "{target}: {}", resp.body);
    }
    assert_eq!(upstream.count(), 0, "nothing reached the upstream");

    // What the route allows still goes through, and other routes keep bodies as they are.
    http(
        "POST",
        &url,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some("a=1"),
    )
    .expect_status(200);
    http(
        "POST",
        &format!("{}/open/x", gw.url()),
        &[("Content-Type", "application/json")],
        Some(r#"{"method": "card"}"#),
    )
    .expect_status(200);
    http(
        "GET",
        &format!("{}/open/x?method=card", gw.url()),
        &[],
        None,
    )
    .expect_status(200);
    assert_eq!(upstream.count(), 3);
}
