//! The operator CLI end to end: the real `tokengate` binary driving a running
//! gateway's management API (`--gateway URL`, the admin key from
//! `TOKENGATE_ADMIN_KEY`), and the token it creates used through the proxy.
//!
//! Every invocation is checked for the admin key in its output: the CLI must
//! never print it, whatever happens.

#![allow(clippy::unwrap_used)]

mod common;

use common::net::bearer;
use common::process::{read_lossy, Proc};
use common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// The CLI's own timeout is 10 s; a run longer than this is hung.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// What one CLI run printed.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    /// Expects exit 0 and an empty stderr; returns stdout.
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "CLI failed: {self:#?}");
        assert_eq!(
            self.stderr, "",
            "CLI succeeded but wrote to stderr: {self:#?}"
        );
        &self.stdout
    }

    /// Expects success and stdout holding one JSON document.
    #[track_caller]
    fn json(&self) -> Value {
        let stdout = self.ok();
        serde_json::from_str(stdout)
            .unwrap_or_else(|e| panic!("--output json is not JSON ({e}): {stdout}"))
    }

    /// Expects a non-zero exit, nothing on stdout and exactly one
    /// `error: ...` line on stderr; returns that line.
    #[track_caller]
    fn error_line(&self) -> &str {
        assert_ne!(self.code, 0, "expected a failure: {self:#?}");
        assert_eq!(self.stdout, "", "a failure printed on stdout: {self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one stderr line: {self:#?}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].len() > "error: ".len(),
            "{self:#?}"
        );
        assert!(self.stderr.ends_with('\n'), "{self:#?}");
        lines[0]
    }

    #[track_caller]
    fn assert_lacks(&self, secret: &str, what: &str) {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "the {what} appears in the CLI's output: {self:#?}"
        );
    }
}

/// Runs `tokengate ARGS` against `gateway` with `admin_key` (None: no key at
/// all) and `env` in a clean environment; checks that neither the test admin
/// key nor `admin_key` is printed.
fn run(gateway: &str, admin_key: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokengate"));
    cmd.args(args).arg("--gateway").arg(gateway);
    for var in [
        "TOKENGATE_URL",
        "TOKENGATE_ADMIN_KEY",
        "TOKENGATE_ORG_ID",
        "TOKENGATE_TOKEN",
        "TOKENGATE_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    if let Some(key) = admin_key {
        cmd.env("TOKENGATE_ADMIN_KEY", key);
    }
    cmd.envs(env.iter().copied());
    let mut proc = Proc::spawn("tokengate cli", &mut cmd, &out, &err);
    let Some(status) = proc.wait_timeout(CLI_TIMEOUT) else {
        proc.kill9();
        panic!(
            "tokengate {args:?} did not finish within {CLI_TIMEOUT:?}\n{}{}",
            read_lossy(&out),
            read_lossy(&err)
        );
    };
    let result = Out {
        code: status.code().unwrap_or(-1),
        stdout: read_lossy(&out),
        stderr: read_lossy(&err),
    };
    result.assert_lacks(ADMIN_KEY, "admin key");
    if let Some(key) = admin_key {
        result.assert_lacks(key, "admin key");
    }
    result
}

fn run_with_key(gateway: &str, admin_key: Option<&str>, args: &[&str]) -> Out {
    run(gateway, admin_key, &[], args)
}

/// `tokengate ARGS --gateway URL` with the test admin key.
fn cli(gateway: &str, args: &[&str]) -> Out {
    run(gateway, Some(ADMIN_KEY), &[], args)
}

#[track_caller]
fn str_field<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer}: {v}"))
}

#[track_caller]
fn assert_rfc3339(v: &Value, pointer: &str) {
    let text = str_field(v, pointer);
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{pointer} = {text:?} is not RFC 3339 ({e}): {v}"));
}

/// The whole operator flow through the CLI, then the token through the proxy:
/// identity create -> token-auth attach -> token create --quiet ->
/// project add-identity -> request forwarded with the right headers ->
/// token revoke -> the same request refused with 401.
fn token_lifecycle(cfg: GatewayConfig) {
    let upstream = Upstream::echo();
    let gw = Gateway::start(cfg.upstream(&upstream.url()));
    let url = gw.url();
    let name = unique("cli-identity");
    let project = unique("cli-project");
    let token_name = unique("cli-token");

    // identity create, as JSON.
    let created = cli(
        &url,
        &[
            "identity", "create", "--name", &name, "--org-id", ORG_ID, "--role", "member",
            "--output", "json",
        ],
    )
    .json();
    let identity = str_field(&created, "/identity/id").to_string();
    assert_eq!(created["identity"]["name"], json!(name), "{created}");
    assert_eq!(created["identity"]["role"], json!("member"), "{created}");
    assert_eq!(created["identity"]["orgId"], json!(ORG_ID), "{created}");
    assert_eq!(created["identity"]["hasDeleteProtection"], json!(false));
    assert_rfc3339(&created, "/identity/createdAt");

    // The table form names it too.
    let table = cli(&url, &["identity", "get", &identity]).ok().to_string();
    assert!(
        table.contains(&identity) && table.contains(&name),
        "{table}"
    );

    // token-auth attach with durations in the CLI's units.
    let attached = cli(
        &url,
        &[
            "token-auth",
            "attach",
            &identity,
            "--ttl",
            "1h",
            "--max-ttl",
            "2h",
            "--output",
            "json",
        ],
    )
    .json();
    let config = &attached["identityTokenAuth"];
    assert_eq!(config["identityId"], json!(identity), "{attached}");
    assert_eq!(config["accessTokenTTL"], json!(3600), "{attached}");
    assert_eq!(config["accessTokenMaxTTL"], json!(7200), "{attached}");
    assert_eq!(config["accessTokenNumUsesLimit"], json!(0), "{attached}");
    assert_eq!(config["accessTokenPeriod"], json!(0), "{attached}");
    assert!(
        config["accessTokenTrustedIps"]
            .as_array()
            .is_some_and(|ips| !ips.is_empty()),
        "{attached}"
    );
    let got = cli(&url, &["token-auth", "get", &identity, "-o", "json"]).json();
    assert_eq!(
        got["identityTokenAuth"]["accessTokenTTL"],
        json!(3600),
        "{got}"
    );

    // token create --quiet: the token alone, on one line, for $(...) capture.
    let created = cli(
        &url,
        &[
            "token",
            "create",
            &identity,
            "--name",
            &token_name,
            "--quiet",
        ],
    );
    let stdout = created.ok();
    assert_eq!(stdout.lines().count(), 1, "{created:#?}");
    let token = stdout.trim_end_matches('\n').to_string();
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "{created:#?}"
    );

    // token list as JSON gives the public id; the secret is not in it.
    let listed = cli(&url, &["token", "list", &identity, "--output", "json"]);
    listed.assert_lacks(&token, "token secret");
    let listed = listed.json();
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1, "{listed}");
    assert_eq!(tokens[0]["name"], json!(token_name), "{listed}");
    assert_eq!(tokens[0]["identityId"], json!(identity), "{listed}");
    assert_eq!(tokens[0]["accessTokenNumUses"], json!(0), "{listed}");
    assert_eq!(tokens[0]["isAccessTokenRevoked"], json!(false), "{listed}");
    assert_rfc3339(&tokens[0], "/createdAt");
    let token_id = str_field(&tokens[0], "/id").to_string();

    // project add-identity (table), then get as JSON.
    let added = cli(
        &url,
        &[
            "project",
            "add-identity",
            &project,
            &identity,
            "--role",
            "viewer",
        ],
    );
    let table = added.ok();
    assert!(
        table.contains(&identity) && table.contains("viewer"),
        "{added:#?}"
    );
    let membership = cli(&url, &["project", "get", &project, &identity, "-o", "json"]).json();
    let m = &membership["identityMembership"];
    assert_eq!(m["projectId"], json!(project), "{membership}");
    assert_eq!(m["identityId"], json!(identity), "{membership}");
    assert_eq!(m["roles"][0]["role"], json!("viewer"), "{membership}");
    let members = cli(&url, &["project", "list", &project, "-o", "json"]).json();
    assert_eq!(members["identityMemberships"].as_array().unwrap().len(), 1);

    // The token through the proxy reaches the upstream as that identity.
    let secrets_url = format!("{url}/api/v3/secrets/raw?workspaceId={project}&environment=dev");
    let resp = get_with_token(&secrets_url, &token);
    resp.expect_status(200);
    let seen = upstream.last();
    assert_eq!(
        seen.header("x-tokengate-identity-id"),
        Some(identity.as_str())
    );
    assert_eq!(
        seen.header("x-tokengate-identity-name"),
        Some(name.as_str())
    );
    assert_eq!(seen.header("x-tokengate-org-role"), Some("member"));
    assert_eq!(seen.header("x-tokengate-token-id"), Some(token_id.as_str()));
    assert_eq!(
        seen.header("x-tokengate-project-id"),
        Some(project.as_str())
    );
    assert_eq!(seen.header("x-tokengate-project-role"), Some("viewer"));
    assert!(!seen.has_header("authorization"), "{:?}", seen.headers);
    let body = resp.json();
    let secret = |key: &str| {
        body["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["secretKey"] == json!(key))
            .map(|s| s["secretValue"].clone())
    };
    assert_eq!(secret("IDENTITY"), Some(json!(identity)), "{body}");
    assert_eq!(secret("PROJECT_ROLE"), Some(json!("viewer")), "{body}");

    // The use shows in token get.
    let got = cli(&url, &["token", "get", &token_id, "--output", "json"]);
    got.assert_lacks(&token, "token secret");
    let got = got.json();
    assert_eq!(got["token"]["id"], json!(token_id), "{got}");
    assert_eq!(got["token"]["accessTokenNumUses"], json!(1), "{got}");
    assert_rfc3339(&got, "/token/accessTokenLastUsedAt");

    // token renew takes the token from TOKENGATE_TOKEN and never prints it.
    let renewed = run(
        &url,
        Some(ADMIN_KEY),
        &[("TOKENGATE_TOKEN", &token)],
        &["token", "renew", "--output", "json"],
    );
    renewed.assert_lacks(&token, "token secret");
    let renewed = renewed.json();
    let left = renewed["expiresIn"].as_u64().unwrap();
    assert!((3500..=3600).contains(&left), "{renewed}");
    assert_eq!(renewed["accessTokenMaxTTL"], json!(7200), "{renewed}");
    assert!(renewed.get("accessToken").is_none(), "{renewed}");

    // token revoke, then the same request is refused and not forwarded.
    let revoked = cli(&url, &["token", "revoke", &token_id]);
    assert_eq!(revoked.ok().lines().count(), 1, "{revoked:#?}");
    revoked.assert_lacks(&token, "token secret");
    let forwarded = upstream.count();
    let resp = get_with_token(&secrets_url, &token);
    let message = resp.expect_error(401);
    assert!(!message.contains(&token), "{message}");
    assert_eq!(upstream.count(), forwarded, "a revoked token was forwarded");
    let auth = bearer(&token);
    let resp = http("GET", &secrets_url, &[("Authorization", &auth)], None);
    resp.expect_error(401);

    let got = cli(&url, &["token", "get", &token_id, "-o", "json"]).json();
    assert_eq!(got["token"]["isAccessTokenRevoked"], json!(true), "{got}");
    assert_eq!(got["token"]["accessTokenNumUses"], json!(1), "{got}");
    assert_rfc3339(&got, "/token/accessTokenLastRenewedAt");

    // A revoked token cannot be renewed.
    let out = run(
        &url,
        Some(ADMIN_KEY),
        &[("TOKENGATE_TOKEN", &token)],
        &["token", "renew"],
    );
    out.assert_lacks(&token, "token secret");
    assert!(out.error_line().contains("401"), "{out:#?}");

    assert!(
        !gw.log().contains(ADMIN_KEY),
        "the gateway logged the admin key"
    );
    assert!(!gw.log().contains(&token), "the gateway logged the token");
}

#[test]
fn cli_token_lifecycle_on_the_embedded_store() {
    token_lifecycle(GatewayConfig::embedded_temp());
}

#[test]
fn cli_token_lifecycle_on_redis() {
    let redis = Redis::start();
    token_lifecycle(GatewayConfig::redis(&redis.url()));
}

#[test]
fn cli_errors_are_one_line_on_stderr_with_a_nonzero_exit() {
    let gw = Gateway::start(GatewayConfig::embedded_temp());
    let url = gw.url();
    let identity = gw
        .admin()
        .create_identity(&unique("cli-identity"), "member");

    let not_found: &[&[&str]] = &[
        &["identity", "get", "no-such-identity"],
        &["identity", "get", "no-such-identity", "--output", "json"],
        &["identity", "delete", "no-such-identity"],
        &["token-auth", "attach", "no-such-identity"],
        &["token-auth", "get", &identity],
        &["token", "create", "no-such-identity", "--quiet"],
        &["token", "get", "no-such-token"],
        &["token", "revoke", "no-such-token"],
        &[
            "project",
            "add-identity",
            "p1",
            "no-such-identity",
            "--role",
            "viewer",
        ],
        &["project", "get", "p1", &identity],
    ];
    for args in not_found {
        let out = cli(&url, args);
        let line = out.error_line();
        assert!(line.contains("404"), "{args:?}: {line}");
    }

    // Ids are path segments: a slash is encoded and cannot reach another
    // route; the gateway refuses the encoded slash outright.
    let out = cli(&url, &["identity", "get", "../identities"]);
    let line = out.error_line();
    assert!(line.contains("400"), "{line}");

    // A wrong key is refused and not echoed (run_with_key checks that).
    let wrong = "tg-wrong-admin-key-0123456789abcdef";
    let out = run_with_key(&url, Some(wrong), &["identity", "list"]);
    assert!(out.error_line().contains("401"), "{out:#?}");

    // No key at all: the line says how to give one.
    let out = run_with_key(&url, None, &["identity", "list"]);
    let line = out.error_line();
    assert!(
        line.contains("401") && line.contains("TOKENGATE_ADMIN_KEY"),
        "{line}"
    );

    // A refused validation is a 4xx line too, not a crash.
    let out = cli(
        &url,
        &[
            "token-auth",
            "attach",
            &identity,
            "--trusted-ip",
            "10.0.0.300",
        ],
    );
    let line = out.error_line();
    assert!(line.contains("HTTP 4"), "{line}");
}

#[test]
fn cli_unreachable_gateway_is_one_error_line() {
    let nowhere = Upstream::unreachable_url();
    for args in [
        &["identity", "list"][..],
        &["identity", "list", "--output", "json"][..],
        &["token", "revoke", "some-token-id"][..],
        // The key given as an argument is not echoed either.
        &[
            "identity",
            "get",
            "x",
            "--admin-key",
            "tg-argument-key-5e1f0c9a",
        ][..],
    ] {
        let out = cli(&nowhere, args);
        let line = out.error_line();
        assert!(
            line.contains("cannot reach the gateway") && line.contains(&nowhere),
            "{args:?}: {line}"
        );
        out.assert_lacks("tg-argument-key-5e1f0c9a", "admin key");
    }

    // A URL that is not one is reported as such, on one line.
    let out = cli("not a url", &["identity", "list"]);
    assert!(out.error_line().contains("gateway URL"), "{out:#?}");
}
