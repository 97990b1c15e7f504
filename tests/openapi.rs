//! The management API's OpenAPI document (`docs/openapi.json`) held to the
//! gateway: the admin listener serves exactly the repository's file; its
//! operations are exactly the router's (`tokengate::api::ROUTES`), and a live
//! gateway answers each of them; its examples validate against its schemas,
//! and so do real answers, success and error, of a gateway on a real Redis.
//!
//! Schemas are validated as JSON Schema 2020-12 (what OpenAPI 3.1 uses) by
//! the small validator in `common/schema.rs`, with the whole document as the
//! root its `#/components/...` references resolve against.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/openapi_doc.rs"]
mod openapi_doc;
#[path = "common/schema.rs"]
mod schema;

use common::*;
use openapi_doc::*;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeSet;

/// Checks `instance` against `schema`, whose references point into `doc`.
fn check(doc: &Value, schema: &Value, instance: &Value) -> Result<(), String> {
    schema::validate(doc, schema, instance)
}

#[track_caller]
fn assert_valid(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    if let Err(e) = check(doc, schema, instance) {
        panic!("{what} does not match its schema:\n{e}\ninstance: {instance}");
    }
}

#[test]
fn the_admin_listener_serves_the_document_in_the_repository() {
    let gw = Gateway::start(GatewayConfig::embedded_temp());
    let served = get(&format!("{}/openapi.json", gw.admin_url()));
    served.expect_status(200);
    assert_eq!(
        served.header("content-type"),
        Some("application/json"),
        "{:?}",
        served.headers
    );
    assert!(
        served.body == doc_text(),
        "the served document differs from {DOC_PATH}"
    );
    let v: Value = serde_json::from_str(&served.body).unwrap();
    let version = v["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi is {version:?}");
    // The proxy listener's paths are the upstream's: it does not serve the
    // document, it asks for a token like for any other path.
    get(&format!("{}/openapi.json", gw.url())).expect_error(401);
}

/// Both ways, so a route added to the router and a path added to the
/// document each fail here until the other side follows.
#[test]
fn the_documented_operations_are_the_routed_ones() {
    let doc = doc();
    let documented = documented(&doc);
    let routed = routed();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routed, not documented: {undocumented:?}"
    );
    assert!(unrouted.is_empty(), "documented, not routed: {unrouted:?}");
    // Each template's parameters are declared, and nothing else is.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let declared: BTreeSet<&str> = [&item["parameters"], &op["parameters"]]
                .into_iter()
                .filter_map(Value::as_array)
                .flatten()
                .map(|p| resolve(&doc, p))
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(declared, in_template, "path parameters of {method} {path}");
        }
    }
}

#[test]
fn every_reference_resolves_and_every_example_matches_its_schema() {
    let doc = doc();
    let mut all = Vec::new();
    walk(&doc, String::new(), &mut all);
    for (at, v) in &all {
        if let Some(r) = v.get("$ref").and_then(Value::as_str) {
            assert!(
                r.strip_prefix('#').and_then(|p| doc.pointer(p)).is_some(),
                "{at}: {r} points to nothing"
            );
        }
    }
    let mut checked = 0;
    // Media types (request bodies and answers, shared ones included) and
    // parameters: wherever an example sits beside its schema.
    for (at, v) in &all {
        let (Some(schema), Some(example)) = (v.get("schema"), v.get("example")) else {
            continue;
        };
        assert_valid(&doc, schema, example, &format!("the example at {at}"));
        checked += 1;
    }
    // Each operation shows an example of its success and of every refusal.
    for (method, template) in documented(&doc) {
        let op = operation(&doc, &method, &template);
        for (status, resp) in op["responses"].as_object().unwrap() {
            let media = &resolve(&doc, resp)["content"]["application/json"];
            assert!(
                media.get("example").is_some(),
                "{method} {template} {status} has no example"
            );
        }
        assert!(
            op["responses"].get("200").is_some(),
            "{method} {template} documents no success"
        );
    }
    assert!(checked >= 40, "only {checked} examples checked");

    // The check can fail: a success without a required field, an error with
    // a status that is not its own, a field the answer never has.
    let identity = response_schema(&doc, "GET", "/api/v1/identities/{identityId}", 200);
    let mut broken = doc["paths"]["/api/v1/identities/{identityId}"]["get"]["responses"]["200"]
        ["content"]["application/json"]["example"]
        .clone();
    assert_valid(&doc, &identity, &broken, "the identity example");
    broken["identity"].as_object_mut().unwrap().remove("orgId");
    assert!(check(&doc, &identity, &broken).is_err());
    let not_found = response_schema(&doc, "GET", "/api/v1/identities/{identityId}", 404);
    let error = json!({"reqId": "req-1", "statusCode": 400, "message": "x", "error": "NotFound"});
    assert!(check(&doc, &not_found, &error).is_err());
    let extra = json!({"reqId": "req-1", "statusCode": 404, "message": "x", "error": "NotFound", "stack": "x"});
    assert!(check(&doc, &not_found, &extra).is_err());
    let bad_time = json!({"identity": {"id": "3f0c8a52-6b1e-4d7a-9c2f-1e5b7a9d4c60", "name": "n",
        "orgId": "o", "role": "member", "hasDeleteProtection": false, "authMethods": [],
        "createdAt": "yesterday", "updatedAt": "2025-01-15T09:30:00.000Z"}});
    assert!(check(&doc, &identity, &bad_time).is_err());
}

/// Real ids for a template's parameters.
struct Ids {
    identity: String,
    token: String,
    project: String,
}

impl Ids {
    fn fill(&self, template: &str) -> String {
        template
            .replace("{identityId}", &self.identity)
            .replace("{tokenId}", &self.token)
            .replace("{projectId}", &self.project)
    }
}

/// An answer the router gives when it has no route for the path.
fn is_route_not_found(resp: &Resp) -> bool {
    resp.status == 404 && resp.json()["message"] == "route not found"
}

#[test]
fn a_live_gateway_answers_every_documented_operation() {
    let redis = Redis::start();
    let gw = Gateway::start(GatewayConfig::redis(&redis.url()));
    let admin = gw.admin();
    let project = unique("proj");
    let (identity, token) = admin.identity_with_token("member", json!({}));
    admin.add_membership(&project, &identity, json!({"role": "viewer"}));
    let ids = Ids {
        identity,
        token: token.token_id,
        project,
    };
    let doc = doc();
    // Deletions last, so the calls before them find what they name.
    let mut ops: Vec<_> = documented(&doc).into_iter().collect();
    ops.sort_by_key(|(m, _)| m == "DELETE");
    for (method, template) in &ops {
        let op = operation(&doc, method, template);
        let body = op["requestBody"]["content"]["application/json"]
            .get("example")
            .cloned();
        let path = ids.fill(template);
        let resp = admin.call(method, &path, body);
        assert!(
            !is_route_not_found(&resp) && resp.status != 405,
            "{method} {path}: {} {}",
            resp.status,
            resp.body
        );
        let status = resp.status;
        assert!(status < 500, "{method} {path}: {status} {}", resp.body);
    }
    // The two answers looked for above do happen, so their absence means something.
    let outside = admin.call(
        "GET",
        &format!("/api/v1/identities/{}/x", ids.identity),
        None,
    );
    assert!(is_route_not_found(&outside), "{}", outside.body);
    assert_eq!(admin.call("PUT", "/api/v1/identities", None).status, 405);
}

/// Calls operations of a live gateway and checks each request body and each
/// answer against the document; remembers which operations answered 200.
struct Checked<'d> {
    doc: &'d Value,
    succeeded: RefCell<BTreeSet<(String, String)>>,
}

impl Checked<'_> {
    /// `method template` (filled in as `path`) by `who`: expects `status`,
    /// validates the answer against the documented one for that status and,
    /// for a success, the body sent against the documented request body.
    #[track_caller]
    fn call(
        &self,
        who: &Admin,
        method: &str,
        template: &str,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let op = operation(self.doc, method, template);
        if let (200, Some(sent)) = (status, &body) {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            assert!(!schema.is_null(), "{method} {template} documents no body");
            assert_valid(
                self.doc,
                schema,
                sent,
                &format!("the body of {method} {path}"),
            );
        }
        let resp = who.call(method, path, body);
        assert_eq!(resp.status, status, "{method} {path}: {}", resp.body);
        assert!(resp.header("x-request-id").is_some(), "{:?}", resp.headers);
        let answer = resp.json();
        let schema = response_schema(self.doc, method, template, status);
        assert_valid(
            self.doc,
            &schema,
            &answer,
            &format!("the {status} answer of {method} {path}"),
        );
        if status == 200 {
            self.succeeded
                .borrow_mut()
                .insert((method.to_string(), template.to_string()));
        }
        answer
    }
}

const IDENTITIES: &str = "/api/v1/identities";
const IDENTITY: &str = "/api/v1/identities/{identityId}";
const TOKEN_AUTH: &str = "/api/v1/auth/token-auth/identities/{identityId}";
const TOKENS: &str = "/api/v1/auth/token-auth/identities/{identityId}/tokens";
const TOKEN: &str = "/api/v1/auth/token-auth/tokens/{tokenId}";
const TOKEN_REVOKE: &str = "/api/v1/auth/token-auth/tokens/{tokenId}/revoke";
const RENEW: &str = "/api/v1/auth/token/renew";
const REVOKE_SELF: &str = "/api/v1/auth/token/revoke";
const MEMBERSHIPS: &str = "/api/v1/projects/{projectId}/memberships/identities";
const MEMBERSHIP: &str = "/api/v1/projects/{projectId}/memberships/identities/{identityId}";
const ORGANIZATION: &str = "/api/v1/projects/{projectId}/organization";

#[test]
fn live_answers_match_the_documented_schemas() {
    let doc = doc();
    let mut redis = Redis::start();
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::redis(&redis.url()).upstream(&upstream.url()));
    let admin = gw.admin();
    let anonymous = Admin::anonymous(&gw.url());
    let c = Checked {
        doc: &doc,
        succeeded: RefCell::new(BTreeSet::new()),
    };
    let project = unique("proj");
    let ids = |identity: &str, token: &str| Ids {
        identity: identity.to_string(),
        token: token.to_string(),
        project: project.clone(),
    };

    // Identities.
    let created = c.call(
        &admin,
        "POST",
        IDENTITIES,
        IDENTITIES,
        Some(json!({"name": unique("ci"), "organizationId": ORG_ID, "role": "member"})),
        200,
    );
    let id = created["identity"]["id"].as_str().unwrap().to_string();
    let at = ids(&id, "");
    c.call(
        &admin,
        "GET",
        IDENTITIES,
        "/api/v1/identities?offset=0&limit=5",
        None,
        200,
    );
    c.call(&admin, "GET", IDENTITY, &at.fill(IDENTITY), None, 200);
    c.call(
        &admin,
        "PATCH",
        IDENTITY,
        &at.fill(IDENTITY),
        Some(json!({"name": unique("renamed"), "hasDeleteProtection": false})),
        200,
    );

    // Token Auth.
    let config = json!({
        "accessTokenTTL": 3600,
        "accessTokenMaxTTL": 86400,
        "accessTokenNumUsesLimit": 10,
        "accessTokenTrustedIps": [{"ipAddress": "127.0.0.1"}, {"ipAddress": "::1/128"}],
    });
    let ta = at.fill(TOKEN_AUTH);
    c.call(&admin, "POST", TOKEN_AUTH, &ta, Some(config.clone()), 200);
    c.call(&admin, "POST", TOKEN_AUTH, &ta, Some(config), 400);
    c.call(&admin, "GET", TOKEN_AUTH, &ta, None, 200);
    c.call(
        &admin,
        "PATCH",
        TOKEN_AUTH,
        &ta,
        Some(json!({"accessTokenTTL": 90000})),
        422,
    );
    c.call(
        &admin,
        "PATCH",
        TOKEN_AUTH,
        &ta,
        Some(json!({"accessTokenNumUsesLimit": 0})),
        200,
    );

    // Tokens, used once through the proxy so their last use is a time, not null.
    let issued = c.call(
        &admin,
        "POST",
        TOKENS,
        &at.fill(TOKENS),
        Some(json!({"name": "laptop"})),
        200,
    );
    let secret = issued["accessToken"].as_str().unwrap().to_string();
    let token_id = issued["tokenData"]["id"].as_str().unwrap().to_string();
    let at = ids(&id, &token_id);
    get_with_token(&format!("{}/anything", gw.url()), &secret).expect_status(200);
    c.call(
        &admin,
        "GET",
        TOKENS,
        &format!("{}?limit=10", at.fill(TOKENS)),
        None,
        200,
    );
    c.call(&admin, "GET", TOKEN, &at.fill(TOKEN), None, 200);
    c.call(
        &admin,
        "PATCH",
        TOKEN,
        &at.fill(TOKEN),
        Some(json!({"name": "build-server"})),
        200,
    );
    c.call(
        &anonymous,
        "POST",
        RENEW,
        RENEW,
        Some(json!({"accessToken": secret})),
        200,
    );

    // Memberships, one with a temporary custom role.
    let m = at.fill(MEMBERSHIP);
    c.call(
        &admin,
        "POST",
        MEMBERSHIP,
        &m,
        Some(json!({"role": "viewer"})),
        200,
    );
    c.call(
        &admin,
        "POST",
        MEMBERSHIP,
        &m,
        Some(json!({"role": "viewer"})),
        400,
    );
    c.call(&admin, "GET", MEMBERSHIP, &m, None, 200);
    let roles = json!({"roles": [
        {"role": "deployer", "isTemporary": true, "temporaryMode": "relative",
         "temporaryRange": "1h", "temporaryAccessStartTime": "2030-01-01T00:00:00Z"},
        {"role": "member"},
    ]});
    let patched = c.call(&admin, "PATCH", MEMBERSHIP, &m, Some(roles), 200);
    assert_eq!(
        patched["identityMembership"]["roles"][0]["customRoleSlug"],
        "deployer"
    );
    c.call(&admin, "GET", MEMBERSHIPS, &at.fill(MEMBERSHIPS), None, 200);

    // The project's organization (admin key only).
    let org = at.fill(ORGANIZATION);
    c.call(&admin, "GET", ORGANIZATION, &org, None, 200);
    c.call(
        &admin,
        "PUT",
        ORGANIZATION,
        &org,
        Some(json!({"organizationId": ORG_ID})),
        200,
    );
    c.call(
        &admin,
        "PUT",
        ORGANIZATION,
        &org,
        Some(json!({"organizationId": "other-org"})),
        400,
    );

    // Revocation by id, then by the holder of a second token.
    c.call(
        &admin,
        "POST",
        TOKEN_REVOKE,
        &at.fill(TOKEN_REVOKE),
        None,
        200,
    );
    c.call(
        &anonymous,
        "POST",
        RENEW,
        RENEW,
        Some(json!({"accessToken": secret})),
        401,
    );
    let second = admin.create_token(&id, "second");
    c.call(
        &anonymous,
        "POST",
        REVOKE_SELF,
        REVOKE_SELF,
        Some(json!({"accessToken": second.access_token})),
        200,
    );

    // Refusals of other kinds.
    c.call(&anonymous, "GET", IDENTITIES, IDENTITIES, None, 401);
    let (_, member) = admin.identity_with_token("member", json!({}));
    let member = Admin::with_token(&gw.url(), &member.access_token);
    c.call(&member, "GET", IDENTITIES, IDENTITIES, None, 403);
    let nobody = ids(&tokengate::token::Id::random().to_string(), "");
    c.call(&admin, "GET", IDENTITY, &nobody.fill(IDENTITY), None, 404);
    c.call(
        &admin,
        "GET",
        MEMBERSHIPS,
        "/api/v1/projects/Not_Canonical/memberships/identities",
        None,
        422,
    );
    let r = admin.call("PUT", IDENTITIES, None);
    r.expect_status(405);
    assert_valid(
        &doc,
        &component_response_schema(&doc, "MethodNotAllowed"),
        &r.json(),
        "a 405",
    );
    let r = admin.call("GET", &format!("{}/extra", at.fill(IDENTITY)), None);
    assert!(is_route_not_found(&r), "{}", r.body);
    assert_valid(
        &doc,
        &component_response_schema(&doc, "NotFound"),
        &r.json(),
        "route not found",
    );

    // Removals.
    c.call(&admin, "DELETE", MEMBERSHIP, &m, None, 200);
    c.call(&admin, "DELETE", TOKEN_AUTH, &ta, None, 200);
    c.call(&admin, "DELETE", IDENTITY, &at.fill(IDENTITY), None, 200);

    // Every operation's success answer was checked against the document.
    let missing: Vec<_> = routed()
        .difference(&c.succeeded.borrow())
        .cloned()
        .collect();
    assert!(missing.is_empty(), "no success checked for {missing:?}");

    // The store gone: a 503 in the documented shape.
    redis.kill();
    c.call(
        &admin,
        "POST",
        IDENTITIES,
        IDENTITIES,
        Some(json!({"name": "late", "organizationId": ORG_ID})),
        503,
    );
}
