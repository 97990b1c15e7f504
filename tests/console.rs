//! The operator console (ui/, served on the admin listener) in a real
//! browser: tests/console/walk.py drives headless Chromium through the whole
//! workflow with Selenium, and this side checks in the store and at the
//! upstream that what the console showed really happened.
//!
//! The driver runs in a Python interpreter named by `TOKENGATE_BROWSER_PYTHON`
//! (with Selenium 4; Chromium and chromedriver from Debian's `chromium` and
//! `chromium-driver`). Without it the test fails with a setup hint, unless
//! `TOKENGATE_SKIP_BROWSER=1` says to skip it. A passing run refreshes the
//! screenshots in docs/screenshots/.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/walk.py");
const SCREENSHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/screenshots");

/// The walk takes about 25 s on two cores; past this it is hung (and nextest,
/// which ends a test at 4 minutes, has not cut it off before its output is shown).
const WALK_TIMEOUT: Duration = Duration::from_secs(180);

/// One PNG per main screen, as walk.py names them; never the show-once secret.
const SCREENS: [&str; 6] = [
    "sign-in",
    "identities",
    "token-auth",
    "tokens",
    "memberships",
    "status",
];

/// Runs walk.py against `gw`; panics with its output unless it exits 0.
/// Returns what it created (`identityId`, `tokenId`, `accessToken`).
fn walk(python: &Path, gw: &Gateway, project: &str, operator: &str, shots: &Path) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result.json");
    let (shots, result_path) = (shots.display().to_string(), result.display().to_string());
    let out = common::browser::run(
        python,
        SCRIPT,
        &[],
        gw,
        &[
            ("TOKENGATE_PROXY_URL", &gw.url()),
            ("TOKENGATE_PROJECT_ID", project),
            ("TOKENGATE_OPERATOR_TOKEN", operator),
            ("TOKENGATE_SCREENSHOTS", &shots),
            ("TOKENGATE_RESULT", &result_path),
        ],
        WALK_TIMEOUT,
    );
    eprintln!("{out}");
    serde_json::from_str(&common::process::read_lossy(&result)).unwrap()
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() > 1000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn the_console_walks_an_operator_through_the_whole_workflow() {
    let Some(python) = common::browser::python() else {
        return;
    };
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let admin = gw.admin();
    let project = unique("console-project");

    // Something to list before the operator arrives: one plain identity, and
    // one protected admin already in the project, whose token the walk also
    // signs in with.
    admin.create_identity("ci-runner", "member");
    let deploy_bot = admin.create_identity("deploy-bot", "admin");
    admin.update_identity(&deploy_bot, json!({"hasDeleteProtection": true}));
    admin.add_membership(&project, &deploy_bot, json!({"role": "viewer"}));
    admin.attach_token_auth(&deploy_bot, json!({}));
    let operator = admin.create_token(&deploy_bot, "console-operator");

    // Screenshots land in a scratch directory and replace docs/screenshots
    // only after the whole walk passed.
    let shots = tempfile::tempdir().unwrap();
    let created = walk(&python, &gw, &project, &operator.access_token, shots.path());
    let identity_id = created["identityId"].as_str().unwrap();
    let token_id = created["tokenId"].as_str().unwrap();
    let secret = created["accessToken"].as_str().unwrap();

    // The identity and Token Auth the console made.
    let identity = admin.get_identity(identity_id);
    assert_eq!(identity["name"], json!("console-walker"), "{identity}");
    assert_eq!(identity["role"], json!("member"), "{identity}");
    assert_eq!(identity["orgId"], json!(ORG_ID), "{identity}");
    let config = admin.ok(
        "GET",
        &format!("/api/v1/auth/token-auth/identities/{identity_id}"),
        None,
    )["identityTokenAuth"]
        .clone();
    assert_eq!(config["accessTokenTTL"], json!(3600), "{config}");
    assert_eq!(config["accessTokenMaxTTL"], json!(86400), "{config}");
    assert_eq!(config["accessTokenNumUsesLimit"], json!(5), "{config}");
    let ips: Vec<String> = config["accessTokenTrustedIps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{}/{}", t["ipAddress"].as_str().unwrap(), t["prefix"]))
        .collect();
    assert_eq!(ips, ["127.0.0.1/32", "::1/128"], "{config}");

    // The token: used once through the gateway, then revoked from the console.
    let token = admin.get_token(token_id);
    assert_eq!(token["name"], json!("walk-build-server"), "{token}");
    assert_eq!(token["identityId"], json!(identity_id), "{token}");
    assert_eq!(token["accessTokenNumUses"], json!(1), "{token}");
    assert_eq!(token["isAccessTokenRevoked"], json!(true), "{token}");

    // Exactly one request reached the upstream: the one made before the
    // revocation, as the identity, with the role the console set.
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let seen = &seen[0];
    assert_eq!(seen.header("x-tokengate-identity-id"), Some(identity_id));
    assert_eq!(seen.header("x-tokengate-token-id"), Some(token_id));
    assert_eq!(
        seen.header("x-tokengate-project-id"),
        Some(project.as_str())
    );
    assert_eq!(seen.header("x-tokengate-project-role"), Some("member"));
    assert!(!seen.has_header("authorization"), "{:?}", seen.headers);

    // The memberships as the console left them.
    let walker = admin.get_membership(&project, identity_id);
    assert_eq!(walker["roles"][0]["role"], json!("member"), "{walker}");
    assert_eq!(walker["roles"][0]["isTemporary"], json!(false), "{walker}");
    // The protected identity survived its deletion attempt; the token it
    // signed in with was revoked behind the console's back.
    assert_eq!(admin.get_identity(&deploy_bot)["name"], json!("deploy-bot"));
    assert_eq!(
        admin.get_token(&operator.token_id)["isAccessTokenRevoked"],
        json!(true)
    );
    let bot = admin.get_membership(&project, &deploy_bot);
    assert_eq!(bot["roles"][0]["role"], json!("admin"), "{bot}");
    assert_eq!(bot["roles"][0]["isTemporary"], json!(true), "{bot}");
    assert_eq!(bot["roles"][0]["temporaryRange"], json!("8h"), "{bot}");

    let log = gw.log();
    for secret in [secret, operator.access_token.as_str()] {
        assert!(
            !log.contains(secret),
            "a token's secret is in the gateway's log"
        );
    }

    for name in SCREENS {
        let png = shots.path().join(format!("{name}.png"));
        assert!(is_png(&png), "no screenshot {}", png.display());
    }
    std::fs::create_dir_all(SCREENSHOTS).unwrap();
    for name in SCREENS {
        let file = format!("{name}.png");
        std::fs::copy(shots.path().join(&file), Path::new(SCREENSHOTS).join(&file)).unwrap();
    }
}
