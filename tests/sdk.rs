//! The official Infisical Python SDK (PyPI `infisicalsdk`) pointed at the
//! gateway with a Token Auth access token: it lists and reads secrets from
//! the echo upstream (whose `/api/v3/secrets/raw` answers in Infisical's shape
//! with the injected identity id and project role as secret values), and it
//! sees the gateway's refusals as its own `APIError` with status and message.
//!
//! The SDK runs in a Python interpreter named by `TOKENGATE_SDK_PYTHON`
//! (scripts/test.sh creates `.venv` and sets it); tests/sdk/sdk_client.py is
//! the driver. Without that variable these tests fail, unless
//! `TOKENGATE_SKIP_SDK=1` says to skip them.
//!
//! Renewal is not covered here: infisicalsdk 1.0.18 has no call for
//! `POST /api/v1/auth/token/renew` (its `token_auth.login` only stores the
//! token), and the gateway's renewal is tested through the management API.

#![allow(clippy::unwrap_used)]

mod common;

use common::process::{read_lossy, Proc};
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/sdk_client.py");

/// The version scripts/test.sh installs; only reported, not enforced.
const TESTED_SDK_VERSION: &str = "1.0.18";

/// The SDK retries refused connections for about 15 s; a run that takes
/// longer than this is hung.
const SDK_TIMEOUT: Duration = Duration::from_secs(90);

/// The driver's exit status for an `APIError`.
const EXIT_API_ERROR: i32 = 3;

const ENVIRONMENT: &str = "dev";

fn setup_help() -> String {
    format!(
        "scripts/test.sh sets this up; by hand:\n\
         \n    python3 -m venv .venv\n    .venv/bin/pip install infisicalsdk=={TESTED_SDK_VERSION}\n    \
         export TOKENGATE_SDK_PYTHON=\"$PWD/.venv/bin/python\"\n\n\
         or set TOKENGATE_SKIP_SDK=1 to skip the SDK tests on purpose."
    )
}

/// The interpreter to run the SDK with; None when the tests are explicitly skipped.
fn sdk_python() -> Option<PathBuf> {
    if std::env::var("TOKENGATE_SKIP_SDK").is_ok_and(|v| v == "1") {
        eprintln!("TOKENGATE_SKIP_SDK=1: skipping the Infisical SDK test");
        return None;
    }
    let python = match std::env::var_os("TOKENGATE_SDK_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "TOKENGATE_SDK_PYTHON is not set: the Infisical SDK tests need a Python \
             interpreter with the SDK (PyPI infisicalsdk) installed. {}",
            setup_help()
        ),
    };
    assert!(
        python.is_file(),
        "TOKENGATE_SDK_PYTHON={} is not a file. {}",
        python.display(),
        setup_help()
    );
    Some(python)
}

/// What one run of the driver printed.
struct SdkRun {
    code: i32,
    stdout: String,
    stderr: String,
}

impl SdkRun {
    /// The JSON object on stdout; panics with both streams when there is none.
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "the SDK driver did not print JSON ({e}); exit {}\nstdout:\n{}\nstderr:\n{}",
                self.code, self.stdout, self.stderr
            )
        })
    }

    /// Expects success and returns the JSON.
    #[track_caller]
    fn ok(&self) -> Value {
        assert_eq!(
            self.code, 0,
            "the SDK call failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self.json()
    }

    /// Expects an `APIError` and returns its `error` object.
    #[track_caller]
    fn api_error(&self) -> Value {
        assert_eq!(
            self.code, EXIT_API_ERROR,
            "expected the SDK to raise APIError\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self.json()["error"].clone()
    }
}

/// Runs the driver with `args`; `target` is (gateway URL, token, project id).
fn run_sdk(python: &Path, target: Option<(&str, &str, &str)>, args: &[&str]) -> SdkRun {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut cmd = Command::new(python);
    cmd.arg(SCRIPT)
        .args(args)
        // No __pycache__ inside tests/sdk/.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("TOKENGATE_ENVIRONMENT", ENVIRONMENT)
        // requests honours proxy variables; the gateway is on loopback.
        .env("NO_PROXY", "*")
        .env("no_proxy", "*");
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "TOKENGATE_URL",
        "TOKENGATE_TOKEN",
        "TOKENGATE_PROJECT_ID",
    ] {
        cmd.env_remove(var);
    }
    if let Some((url, token, project)) = target {
        cmd.env("TOKENGATE_URL", url)
            .env("TOKENGATE_TOKEN", token)
            .env("TOKENGATE_PROJECT_ID", project);
    }
    let mut proc = Proc::spawn("infisical sdk driver", &mut cmd, &out, &err);
    let Some(status) = proc.wait_timeout(SDK_TIMEOUT) else {
        proc.kill9();
        panic!(
            "the SDK driver did not finish within {SDK_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
            read_lossy(&out),
            read_lossy(&err)
        );
    };
    SdkRun {
        code: status.code().unwrap_or(-1),
        stdout: read_lossy(&out),
        stderr: read_lossy(&err),
    }
}

/// Checks that the interpreter has the SDK, with a setup hint when it has not.
fn check_sdk(python: &Path) {
    let run = run_sdk(python, None, &["version"]);
    assert!(
        run.code == 0,
        "TOKENGATE_SDK_PYTHON={} cannot run the SDK driver (is infisicalsdk \
         installed in it?)\nstdout:\n{}\nstderr:\n{}\n{}",
        python.display(),
        run.stdout,
        run.stderr,
        setup_help()
    );
    let version = run.json()["sdkVersion"].as_str().unwrap().to_string();
    eprintln!("infisicalsdk {version} (tested with {TESTED_SDK_VERSION})");
}

/// `secrets` of a `list` answer as (key, value) pairs.
fn secret_map(answer: &Value) -> Vec<(String, String)> {
    answer["secrets"]
        .as_array()
        .unwrap_or_else(|| panic!("no secrets array: {answer}"))
        .iter()
        .map(|s| {
            (
                s["secretKey"].as_str().unwrap().to_string(),
                s["secretValue"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn value_of<'a>(map: &'a [(String, String)], key: &str) -> &'a str {
    map.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no secret {key} in {map:?}"))
}

/// An identity with Token Auth, a token, and a membership in `project` with `project_role`.
fn member(
    admin: &Admin,
    org_role: &str,
    project: &str,
    project_role: &str,
) -> (String, CreatedToken) {
    let (id, token) = admin.identity_with_token(org_role, json!({}));
    admin.add_membership(project, &id, json!({ "role": project_role }));
    (id, token)
}

#[test]
fn sdk_lists_and_reads_secrets_through_the_gateway_with_a_token_auth_token() {
    let Some(python) = sdk_python() else { return };
    check_sdk(&python);
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let admin = gw.admin();
    let project = unique("project");
    let url = gw.url();

    let (viewer_id, viewer) = member(&admin, "member", &project, "viewer");
    let (admin_id, project_admin) = member(&admin, "member", &project, "admin");

    // list_secrets after token_auth.login.
    let answer = run_sdk(
        &python,
        Some((&url, &viewer.access_token, &project)),
        &["list"],
    )
    .ok();
    let map = secret_map(&answer);
    assert_eq!(value_of(&map, "IDENTITY"), viewer_id, "{answer}");
    assert_eq!(value_of(&map, "PROJECT_ROLE"), "viewer", "{answer}");
    for secret in answer["secrets"].as_array().unwrap() {
        assert_eq!(secret["workspace"], json!(project), "{answer}");
        assert_eq!(secret["environment"], json!(ENVIRONMENT), "{answer}");
    }
    assert!(
        !answer.to_string().contains(&viewer.access_token),
        "{answer}"
    );

    // What the SDK sent, as the upstream saw it after the gateway.
    let seen = upstream.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path_only(), "/api/v3/secrets/raw", "{}", seen.path);
    assert!(
        seen.path.contains(&format!("workspaceId={project}")),
        "{}",
        seen.path
    );
    assert_eq!(
        seen.header("x-tokengate-identity-id"),
        Some(viewer_id.as_str())
    );
    assert_eq!(
        seen.header("x-tokengate-project-id"),
        Some(project.as_str())
    );
    assert_eq!(seen.header("x-tokengate-project-role"), Some("viewer"));
    assert_eq!(
        seen.header("x-tokengate-token-id"),
        Some(viewer.token_id.as_str())
    );
    assert!(
        !seen.has_header("authorization"),
        "the token reached the upstream: {:?}",
        seen.headers
    );

    // get_secret_by_name with the token given to the constructor, twice on
    // one client (one keep-alive session): each request is authenticated.
    let answer = run_sdk(
        &python,
        Some((&url, &viewer.access_token, &project)),
        &["get", "IDENTITY", "PROJECT_ROLE"],
    )
    .ok();
    let map = secret_map(&answer);
    assert_eq!(
        map,
        [
            ("IDENTITY".to_string(), viewer_id.clone()),
            ("PROJECT_ROLE".to_string(), "viewer".to_string())
        ],
        "{answer}"
    );
    let paths: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.path_only().to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "/api/v3/secrets/raw",
            "/api/v3/secrets/raw/IDENTITY",
            "/api/v3/secrets/raw/PROJECT_ROLE"
        ]
    );
    for seen in upstream.requests() {
        assert_eq!(
            seen.header("x-tokengate-identity-id"),
            Some(viewer_id.as_str())
        );
        assert_eq!(seen.header("x-tokengate-project-role"), Some("viewer"));
    }
    assert_eq!(admin.uses(&viewer.token_id), 3, "one use per SDK call");

    // Another identity in the same project sees its own id and role.
    let answer = run_sdk(
        &python,
        Some((&url, &project_admin.access_token, &project)),
        &["list"],
    )
    .ok();
    let map = secret_map(&answer);
    assert_eq!(value_of(&map, "IDENTITY"), admin_id, "{answer}");
    assert_eq!(value_of(&map, "PROJECT_ROLE"), "admin", "{answer}");
    assert_eq!(admin.uses(&project_admin.token_id), 1);

    let log = gw.log();
    for secret in [&viewer.access_token, &project_admin.access_token] {
        assert!(!log.contains(secret.as_str()), "a token secret was logged");
    }
}

#[test]
fn sdk_writes_resolve_the_project_from_the_json_body() {
    let Some(python) = sdk_python() else { return };
    check_sdk(&python);
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let admin = gw.admin();
    let project = unique("project");
    let url = gw.url();
    let (id, token) = member(&admin, "member", &project, "viewer");

    // create, update and delete send workspaceId in the JSON body only.
    let answer = run_sdk(
        &python,
        Some((&url, &token.access_token, &project)),
        &["write"],
    )
    .ok();
    let map = secret_map(&answer);
    assert_eq!(
        map,
        [
            ("PROJECT_ROLE".to_string(), "viewer".to_string()),
            ("IDENTITY".to_string(), id.clone()),
            ("PROJECT_ROLE".to_string(), "viewer".to_string()),
        ],
        "{answer}"
    );
    let seen = upstream.requests();
    let methods: Vec<&str> = seen.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["POST", "PATCH", "DELETE"]);
    for rec in &seen {
        assert!(!rec.path.contains('?'), "{}", rec.path);
        assert_eq!(rec.header("x-tokengate-project-id"), Some(project.as_str()));
        assert_eq!(rec.header("x-tokengate-identity-id"), Some(id.as_str()));
        let body: Value = serde_json::from_slice(&rec.body).unwrap_or_else(|e| {
            panic!("{} body is not JSON ({e}): {}", rec.method, rec.body_str())
        });
        assert_eq!(body["workspaceId"], json!(project), "{body}");
        assert_eq!(body["environment"], json!(ENVIRONMENT), "{body}");
    }
    assert_eq!(
        serde_json::from_slice::<Value>(&seen[0].body).unwrap()["secretValue"],
        json!("written-by-sdk")
    );
    assert_eq!(admin.uses(&token.token_id), 3);

    // An identity without membership is refused on the body's project.
    let (_, outsider) = admin.identity_with_token("member", json!({}));
    let run = run_sdk(
        &python,
        Some((&url, &outsider.access_token, &project)),
        &["write"],
    );
    let error = run.api_error();
    assert_eq!(error["statusCode"], json!(403), "{error}");
    assert_eq!(upstream.count(), 3, "a refused write was forwarded");
    assert_eq!(admin.uses(&outsider.token_id), 0);
}

#[test]
fn sdk_raises_api_errors_with_the_gateway_status_and_message() {
    let Some(python) = sdk_python() else { return };
    check_sdk(&python);
    let upstream = Upstream::echo();
    let gw = Gateway::start(GatewayConfig::embedded_temp().upstream(&upstream.url()));
    let admin = gw.admin();
    let project = unique("project");
    let url = gw.url();

    let check = |run: SdkRun, status: u64, token: &str| -> String {
        let error = run.api_error();
        assert_eq!(error["statusCode"], json!(status), "{error}");
        let response = &error["response"];
        assert_eq!(response["statusCode"], json!(status), "{error}");
        for field in ["reqId", "message", "error"] {
            assert!(response[field].is_string(), "no {field} in {error}");
        }
        let message = error["message"].as_str().unwrap().to_string();
        assert!(!message.is_empty(), "{error}");
        assert!(
            !run.stdout.contains(token) && !run.stderr.contains(token),
            "the token is in the SDK's error: {}{}",
            run.stdout,
            run.stderr
        );
        message
    };

    // A token whose identity has no membership in the project: 403.
    let (_, outsider) = admin.identity_with_token("member", json!({}));
    let run = run_sdk(
        &python,
        Some((&url, &outsider.access_token, &project)),
        &["list"],
    );
    check(run, 403, &outsider.access_token);
    assert_eq!(
        admin.uses(&outsider.token_id),
        0,
        "a request refused for its project consumed a use"
    );

    // A revoked token: 401, in every SDK call.
    let (_, token) = member(&admin, "member", &project, "viewer");
    run_sdk(
        &python,
        Some((&url, &token.access_token, &project)),
        &["list"],
    )
    .ok();
    admin.revoke_token(&token.token_id);
    for args in [&["list"][..], &["get", "IDENTITY"][..]] {
        let run = run_sdk(&python, Some((&url, &token.access_token, &project)), args);
        let message = check(run, 401, &token.access_token);
        assert!(message.contains("revoked"), "{message}");
    }

    // Not a token at all: 401.
    let run = run_sdk(&python, Some((&url, "not-a-token", &project)), &["list"]);
    check(run, 401, "not-a-token");

    // Nothing refused reached the upstream: only the one good call did.
    assert_eq!(upstream.count(), 1, "{:?}", upstream.requests());
}
