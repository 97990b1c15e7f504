//! Tests of the command tree: arguments parse into the exact management API
//! requests (method, path, query, JSON body) the contract's table lists.

use super::client::{Method, Request};
use super::output::{Format, View};
use super::{Cli, Command};
use clap::{CommandFactory, Parser};
use serde_json::{json, Value};

const NOW: &str = "2030-01-01T00:00:00Z";

fn parse(args: &[&str]) -> Cli {
    let mut argv = vec!["tokengate"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => panic!("{args:?} did not parse: {e}"),
    }
}

fn plan(args: &[&str]) -> (Request, View) {
    match parse(args).command {
        Command::Identity { cmd, .. } => cmd.plan(),
        Command::TokenAuth { cmd, .. } => cmd.plan(),
        Command::Token { cmd, .. } => cmd.plan(),
        Command::Project { cmd, .. } => cmd.plan(NOW),
        other => panic!("not an operator command: {other:?}"),
    }
}

/// (method, "/path?query", body) for compact assertions.
fn wire(args: &[&str]) -> (Method, String, Option<Value>) {
    let (req, _) = plan(args);
    let mut path = format!("/{}", req.path.join("/"));
    let query: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    (req.method, path, req.body)
}

#[test]
fn the_command_tree_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn serve_and_check_config_take_files() {
    match parse(&["serve", "--config", "gw.yaml"]).command {
        Command::Serve { config, upgrade } => {
            assert_eq!(config.to_str(), Some("gw.yaml"));
            assert!(!upgrade);
        }
        other => panic!("{other:?}"),
    }
    match parse(&["check-config", "a.yaml", "b.yaml"]).command {
        Command::CheckConfig { files } => assert_eq!(files.len(), 2),
        other => panic!("{other:?}"),
    }
    assert!(Cli::try_parse_from(["tokengate", "check-config"]).is_err());
}

#[test]
fn identity_commands() {
    let (m, p, body) = wire(&[
        "identity",
        "create",
        "--name",
        "ci",
        "--role",
        "member",
        "--org-id",
        "org-1",
        "--delete-protection",
    ]);
    assert_eq!((m, p.as_str()), (Method::Post, "/api/v1/identities"));
    assert_eq!(
        body,
        Some(
            json!({"name": "ci", "organizationId": "org-1", "role": "member", "hasDeleteProtection": true})
        )
    );
    let (_, _, body) = wire(&["identity", "create", "--name", "ci", "--org-id", "o"]);
    assert_eq!(
        body,
        Some(json!({"name": "ci", "organizationId": "o", "hasDeleteProtection": false}))
    );

    let (m, p, body) = wire(&[
        "identity",
        "update",
        "id-1",
        "--no-delete-protection",
        "--role",
        "admin",
    ]);
    assert_eq!((m, p.as_str()), (Method::Patch, "/api/v1/identities/id-1"));
    assert_eq!(
        body,
        Some(json!({"role": "admin", "hasDeleteProtection": false}))
    );
    // An update that changes nothing is refused before anything is sent.
    assert!(Cli::try_parse_from(["tokengate", "identity", "update", "id-1"]).is_err());
    assert!(Cli::try_parse_from([
        "tokengate",
        "identity",
        "update",
        "id-1",
        "--delete-protection",
        "--no-delete-protection"
    ])
    .is_err());

    assert_eq!(
        wire(&["identity", "get", "id-1"]).1,
        "/api/v1/identities/id-1"
    );
    let (m, p, body) = wire(&["identity", "delete", "id-1"]);
    assert_eq!(
        (m, p.as_str(), body),
        (Method::Delete, "/api/v1/identities/id-1", None)
    );
    let (m, p, _) = wire(&["identity", "list", "--offset", "20", "--limit", "10"]);
    assert_eq!(
        (m, p.as_str()),
        (Method::Get, "/api/v1/identities?offset=20&limit=10")
    );
}

#[test]
fn token_auth_attach_sends_exactly_the_flags_given() {
    let (m, p, body) = wire(&[
        "token-auth",
        "attach",
        "id-1",
        "--ttl",
        "1h",
        "--max-ttl",
        "86400",
        "--num-uses-limit",
        "5",
        "--trusted-ip",
        "10.0.0.0/8",
        "--trusted-ip",
        "192.168.1.1,::1",
        "--period",
        "0",
    ]);
    assert_eq!(
        (m, p.as_str()),
        (Method::Post, "/api/v1/auth/token-auth/identities/id-1")
    );
    assert_eq!(
        body,
        Some(json!({
            "accessTokenTTL": 3600,
            "accessTokenMaxTTL": 86400,
            "accessTokenNumUsesLimit": 5,
            "accessTokenPeriod": 0,
            "accessTokenTrustedIps": [
                {"ipAddress": "10.0.0.0/8"}, {"ipAddress": "192.168.1.1"}, {"ipAddress": "::1"}
            ]
        }))
    );
    let (_, _, body) = wire(&["token-auth", "attach", "id-1"]);
    assert_eq!(body, Some(json!({})));
    let (m, _, body) = wire(&["token-auth", "update", "id-1", "--ttl", "30d"]);
    assert_eq!(
        (m, body),
        (Method::Patch, Some(json!({"accessTokenTTL": 2_592_000})))
    );
    let (_, _, body) = wire(&[
        "token-auth",
        "update",
        "id-1",
        "--rate-limit",
        "600/1m",
        "--rate-limit-burst",
        "20",
        "--rate-limit-per",
        "token",
    ]);
    assert_eq!(
        body,
        Some(json!({"accessTokenRateLimit": {
            "requests": 600, "windowSeconds": 60, "burst": 20, "per": "token"
        }}))
    );
    let (_, _, body) = wire(&["token-auth", "attach", "id-1", "--rate-limit", "10/1"]);
    assert_eq!(
        body,
        Some(json!({"accessTokenRateLimit": {"requests": 10, "windowSeconds": 1}}))
    );
    let (_, _, body) = wire(&["token-auth", "update", "id-1", "--no-rate-limit"]);
    assert_eq!(body, Some(json!({"accessTokenRateLimit": null})));
    for bad in [
        &["--rate-limit", "10"][..],
        &["--rate-limit", "x/1s"],
        &["--rate-limit-burst", "3"],
        &["--rate-limit", "1/1s", "--no-rate-limit"],
        &["--rate-limit", "1/1s", "--rate-limit-per", "org"],
    ] {
        let mut args = vec!["tokengate", "token-auth", "update", "i"];
        args.extend_from_slice(bad);
        assert!(Cli::try_parse_from(&args).is_err(), "{bad:?}");
    }
    assert_eq!(wire(&["token-auth", "remove", "id-1"]).0, Method::Delete);
    assert_eq!(wire(&["token-auth", "get", "id-1"]).0, Method::Get);
    assert!(
        Cli::try_parse_from(["tokengate", "token-auth", "attach", "i", "--ttl", "1w"]).is_err()
    );
}

#[test]
fn token_commands() {
    let (req, view) = plan(&["token", "create", "id-1", "--name", "deploy", "--quiet"]);
    assert_eq!(
        req.path.join("/"),
        "api/v1/auth/token-auth/identities/id-1/tokens"
    );
    assert_eq!(req.body, Some(json!({"name": "deploy"})));
    assert_eq!(view, View::NewToken { quiet: true });

    let (m, p, _) = wire(&["token", "list", "id-1", "--limit", "100"]);
    assert_eq!(
        (m, p.as_str()),
        (
            Method::Get,
            "/api/v1/auth/token-auth/identities/id-1/tokens?limit=100"
        )
    );
    assert_eq!(
        wire(&["token", "get", "t-1"]).1,
        "/api/v1/auth/token-auth/tokens/t-1"
    );
    let (m, _, body) = wire(&["token", "rename", "t-1", "new name"]);
    assert_eq!(
        (m, body),
        (Method::Patch, Some(json!({"name": "new name"})))
    );
    let (m, p, body) = wire(&["token", "revoke", "t-1"]);
    assert_eq!(
        (m, p.as_str(), body),
        (
            Method::Post,
            "/api/v1/auth/token-auth/tokens/t-1/revoke",
            None
        )
    );
}

#[test]
fn renew_sends_the_token_in_the_body_and_no_admin_key() {
    let (req, view) = plan(&["token", "renew", "--token", "tg_abc"]);
    assert_eq!(req.path.join("/"), "api/v1/auth/token/renew");
    assert_eq!(req.body, Some(json!({"accessToken": "tg_abc"})));
    assert!(!req.auth);
    assert_eq!(view, View::Renewed);
}

#[test]
fn project_membership_bodies() {
    let base = "/api/v1/projects/p-1/memberships/identities";
    let (m, p, body) = wire(&["project", "add-identity", "p-1", "id-1", "--role", "viewer"]);
    assert_eq!((m, p), (Method::Post, format!("{base}/id-1")));
    assert_eq!(body, Some(json!({"role": "viewer"})));

    let (_, _, body) = wire(&[
        "project",
        "add-identity",
        "p-1",
        "id-1",
        "--role",
        "admin",
        "--temporary-range",
        "1h",
    ]);
    assert_eq!(
        body,
        Some(
            json!({"roles": [{"role": "admin", "isTemporary": true, "temporaryMode": "relative",
                               "temporaryRange": "1h", "temporaryAccessStartTime": NOW}]})
        )
    );

    let (m, _, body) = wire(&[
        "project", "update", "p-1", "id-1", "--role", "viewer", "--role", "member",
    ]);
    assert_eq!(m, Method::Patch);
    assert_eq!(
        body,
        Some(json!({"roles": [{"role": "viewer", "isTemporary": false},
                              {"role": "member", "isTemporary": false}]}))
    );
    let (_, _, body) = wire(&[
        "project",
        "update",
        "p-1",
        "id-1",
        "--role",
        "viewer",
        "--temporary-range",
        "2h",
        "--temporary-start",
        "2031-02-03T04:05:06Z",
    ]);
    assert_eq!(
        body.unwrap()["roles"][0]["temporaryAccessStartTime"],
        "2031-02-03T04:05:06Z"
    );

    assert_eq!(
        wire(&["project", "remove", "p-1", "id-1"]).0,
        Method::Delete
    );
    let (m, p, _) = wire(&["project", "list", "p-1", "--offset", "5"]);
    assert_eq!((m, p), (Method::Get, format!("{base}?offset=5")));

    // A start without a range, a bad start time, or no role at all: refused locally.
    for bad in [
        &[
            "project",
            "add-identity",
            "p",
            "i",
            "--role",
            "a",
            "--temporary-start",
            NOW,
        ][..],
        &[
            "project",
            "add-identity",
            "p",
            "i",
            "--role",
            "a",
            "--temporary-range",
            "1h",
            "--temporary-start",
            "tomorrow",
        ],
        &["project", "add-identity", "p", "i"],
    ] {
        let mut argv = vec!["tokengate"];
        argv.extend_from_slice(bad);
        assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
    }
}

#[test]
fn global_options_work_before_or_after_the_subcommand() {
    for args in [
        &[
            "token",
            "--output",
            "json",
            "--gateway",
            "http://gw:9",
            "list",
            "i",
        ][..],
        &[
            "token",
            "list",
            "i",
            "-o",
            "json",
            "--gateway",
            "http://gw:9",
        ],
    ] {
        match parse(args).command {
            Command::Token { remote, .. } => {
                assert_eq!(remote.output, Format::Json);
                assert_eq!(remote.gateway, "http://gw:9");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn seconds_accept_units() {
    use super::commands::parse_seconds;
    assert_eq!(parse_seconds("90"), Ok(90));
    assert_eq!(parse_seconds("15m"), Ok(900));
    assert_eq!(parse_seconds("2h"), Ok(7200));
    assert_eq!(parse_seconds("30d"), Ok(2_592_000));
    assert!(parse_seconds("-1").is_err());
    assert!(parse_seconds("1y").is_err());
    assert!(parse_seconds("").is_err());
}
