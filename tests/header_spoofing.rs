//! Header spoofing: a client's own copies of the injected headers, in any
//! case, with `_` for `-`, and repeated, never reach the upstream; the
//! upstream sees exactly one value per injected header, the gateway's.
//! Requests are written as raw bytes so every spelling arrives as sent.

mod common;

use common::net::bearer;
use common::*;
use serde_json::json;

/// (config field, default header name)
const INJECTED: [(&str, &str); 7] = [
    ("identity_id", "x-tokengate-identity-id"),
    ("identity_name", "x-tokengate-identity-name"),
    ("org_role", "x-tokengate-org-role"),
    ("token_id", "x-tokengate-token-id"),
    ("project_id", "x-tokengate-project-id"),
    ("project_role", "x-tokengate-project-role"),
    ("client_ip", "x-tokengate-client-ip"),
];

const SPOOF: &str = "spoofed";

fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Every spelling a client might try for `name`, some of them twice.
fn spellings(name: &str) -> Vec<String> {
    let title = title_case(name);
    let under = name.replace('-', "_");
    vec![
        name.to_string(),
        name.to_ascii_uppercase(),
        title.clone(),
        under.clone(),
        under.to_ascii_uppercase(),
        title.replace('-', "_"),
        name.to_string(),
        under,
        title,
    ]
}

/// Raw header lines spoofing every one of `names`, values "spoofed-N".
fn spoofed_headers(names: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in names {
        for spelling in spellings(name) {
            let value = format!("{SPOOF}-{}", out.len());
            out.push((spelling, value));
        }
    }
    out
}

fn send(gw: &Gateway, method: &str, path: &str, token: Option<&str>, names: &[&str]) -> Resp {
    let spoofed = spoofed_headers(names);
    let auth = token.map(bearer);
    let mut headers: Vec<(&str, &str)> = Vec::new();
    // Spoofed lines both before and after Authorization.
    let (first, second) = spoofed.split_at(spoofed.len() / 2);
    headers.extend(first.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    headers.extend(second.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    headers.push(("X-Other", "kept"));
    raw_http_resp(&gw.addr(), &raw_request(method, path, &headers, None))
}

/// No header spelled like one of `names` with underscores, and no spoofed value at all.
#[track_caller]
fn assert_no_spoof(rec: &Recorded, names: &[&str]) {
    for (name, value) in &rec.headers {
        assert!(
            !value.contains(SPOOF),
            "spoofed value arrived as {name}: {value}; all: {:?}",
            rec.headers
        );
        let dashed = name.replace('_', "-").to_ascii_lowercase();
        assert!(
            !(name.contains('_') && names.contains(&dashed.as_str())),
            "underscore spelling {name} arrived; all: {:?}",
            rec.headers
        );
    }
    assert_eq!(rec.header_all("x-other"), ["kept"]);
}

fn names() -> Vec<&'static str> {
    INJECTED.iter().map(|(_, n)| *n).collect()
}

#[test]
fn spoofed_headers_are_replaced_by_the_gateways_values() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let admin = gw.admin();
    let name = unique("spoof");
    let id = admin.create_identity(&name, "member");
    admin.attach_token_auth(&id, json!({}));
    let token = admin.create_token(&id, "t");
    admin.add_membership("p1", &id, json!({"role": "viewer"}));
    let names = names();

    // With a project: all six are injected, each exactly once.
    send(
        &gw,
        "GET",
        "/api/v1/projects/p1/secrets",
        Some(&token.access_token),
        &names,
    )
    .expect_status(200);
    let rec = upstream.last();
    assert_no_spoof(&rec, &names);
    let expected = [
        id.as_str(),
        name.as_str(),
        "member",
        token.token_id.as_str(),
        "p1",
        "viewer",
        "127.0.0.1",
    ];
    for (header, value) in names.iter().zip(expected) {
        assert_eq!(
            rec.header_all(header),
            [value],
            "{header}; all: {:?}",
            rec.headers
        );
    }
    assert!(!rec.has_header("authorization"));

    // Without a project: the project headers do not arrive at all.
    send(&gw, "GET", "/v1/things", Some(&token.access_token), &names).expect_status(200);
    let rec = upstream.last();
    assert_no_spoof(&rec, &names);
    for (i, (header, value)) in names.iter().zip(expected).enumerate() {
        if i != 4 && i != 5 {
            assert_eq!(rec.header_all(header), [value], "{header}");
        }
    }
    for header in &names[4..6] {
        assert!(
            !rec.has_header(header),
            "{header} arrived without a project: {:?}",
            rec.headers
        );
    }

    // A refused request is not forwarded at all, spoofed headers or not.
    let count = upstream.count();
    send(&gw, "GET", "/v1/things", None, &names).expect_error(401);
    assert_eq!(upstream.count(), count);
}

#[test]
fn public_route_forwards_none_of_the_injected_headers() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .public_routes(&["/public"]),
    );
    let names = names();
    send(&gw, "GET", "/public/health", None, &names).expect_status(200);
    let rec = upstream.last();
    assert_eq!(rec.path, "/public/health");
    assert_no_spoof(&rec, &names);
    for header in &names {
        assert!(
            !rec.has_header(header),
            "{header} arrived on a public route: {:?}",
            rec.headers
        );
    }
}

/// CGI-style servers read `X_Forwarded_For` as `X-Forwarded-For`: no header
/// name with `_` reaches the upstream, on any route; other headers do.
#[test]
fn header_names_with_underscores_never_reach_the_upstream() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .public_routes(&["/public"]),
    );
    let raw = raw_request(
        "GET",
        "/public/x",
        &[
            ("X_Forwarded_For", "6.6.6.6"),
            ("x_custom", "1"),
            ("X-Custom", "kept"),
        ],
        None,
    );
    let (status, body) = raw_http(&gw.addr(), &raw);
    assert_eq!(status, 200, "{body}");
    let rec = upstream.last();
    assert!(
        rec.headers.iter().all(|(n, _)| !n.contains('_')),
        "{:?}",
        rec.headers
    );
    assert_eq!(rec.header("x-custom"), Some("kept"));
}

#[test]
fn renamed_headers_are_stripped_and_injected_under_their_new_names() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .header_name("identity_id", "x-identity-id")
            .header_name("org_role", "X-Org-Role"),
    );
    let admin = gw.admin();
    let (id, token) = admin.identity_with_token("member", json!({}));
    let renamed = ["x-identity-id", "x-org-role"];
    send(
        &gw,
        "GET",
        "/v1/things",
        Some(&token.access_token),
        &renamed,
    )
    .expect_status(200);
    let rec = upstream.last();
    assert_no_spoof(&rec, &renamed);
    assert_eq!(rec.header_all("x-identity-id"), [id.as_str()]);
    assert_eq!(rec.header_all("x-org-role"), ["member"]);
    assert_eq!(
        rec.header_all("x-tokengate-token-id"),
        [token.token_id.as_str()]
    );
    assert!(
        !rec.has_header("x-tokengate-identity-id"),
        "the default name is injected although it was renamed: {:?}",
        rec.headers
    );
}
