//! Paths that the gateway and the upstream could read differently never get
//! through: dot segments, empty segments, backslashes and needless
//! percent-encodings are refused with 400, and public routes match whole
//! segments only. Requests are written raw so every byte arrives as sent.

mod common;

use common::net::bearer;
use common::*;
use serde_json::json;

fn raw_get(gw: &Gateway, path: &str, token: Option<&str>) -> Resp {
    let auth = token.map(bearer);
    let mut headers = vec![];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    raw_http_resp(&gw.addr(), &raw_request("GET", path, &headers, None))
}

#[test]
fn ambiguous_paths_are_refused_and_public_routes_match_segments() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .public_routes(&["/public"]),
    );
    let (_, token) = gw.admin().identity_with_token("member", json!({}));
    for path in [
        "/public/../api/v3/secrets/raw",
        "/public/%2e%2e/admin",
        "/public/..%2fadmin",
        "/public\\..\\x",
        "/api/v1//identities",
        "/api/v1/%69dentities",
        "/api/v1/./identities",
        "/api/v1/projects/proj1/../secret/x",
    ] {
        for tok in [None, Some(token.access_token.as_str())] {
            let r = raw_get(&gw, path, tok);
            assert_eq!(r.status, 400, "{path}: {}", r.body);
            assert_eq!(r.json()["error"], "BadRequest", "{path}");
        }
    }
    assert_eq!(
        upstream.count(),
        0,
        "an ambiguous path reached the upstream"
    );

    // Public routes cover their own segments only.
    assert_eq!(raw_get(&gw, "/public", None).status, 200);
    assert_eq!(raw_get(&gw, "/public/x", None).status, 200);
    assert_eq!(raw_get(&gw, "/publicXYZ/secret", None).status, 401);
    assert_eq!(
        raw_get(&gw, "/publicXYZ/secret", Some(&token.access_token)).status,
        200
    );
    assert_eq!(upstream.count(), 3);
}
