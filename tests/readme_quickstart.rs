//! The README walkthrough, run as written: the operator commands of
//! "terminal 3" and the follow-up block, against the example config, the demo
//! upstream script and the real binary. Uses the example's fixed ports
//! (8080, 9090, 3000), so it is the only test that does.

#![allow(clippy::unwrap_used)]

mod common;

use common::process::{run_bounded, Proc};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The ```sh blocks of the README, in order.
fn sh_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = readme;
    while let Some(start) = rest.find("```sh\n") {
        let body = &rest[start + 6..];
        let end = body.find("```").expect("unterminated code block");
        blocks.push(body[..end].to_string());
        rest = &body[end + 3..];
    }
    blocks
}

fn block_containing<'a>(blocks: &'a [String], marker: &str) -> &'a str {
    blocks
        .iter()
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("no README block contains {marker:?}"))
}

fn admin_key(block: &str) -> String {
    let line = block
        .lines()
        .find(|l| l.starts_with("export TOKENGATE_ADMIN_KEY="))
        .expect("the gateway block exports the admin key");
    line.trim_start_matches("export TOKENGATE_ADMIN_KEY=")
        .to_string()
}

fn wait_healthy(url: &str) {
    common::eventually(Duration::from_secs(30), || {
        common::try_http("GET", url, &[], None).is_ok_and(|r| r.status == 200)
    });
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = sh_blocks(&readme);
    let operator = block_containing(&blocks, "# terminal 3");
    let follow_up = block_containing(&blocks, "tokengate token list");
    let key = admin_key(block_containing(&blocks, "# terminal 2"));
    assert_eq!(key, admin_key(operator), "both terminals use the same key");

    let dir = tempfile::tempdir().unwrap();
    let log = |name: &str| dir.path().join(name);
    let _upstream = Proc::spawn(
        "echo upstream",
        Command::new("python3")
            .arg(repo().join("scripts/echo_upstream.py"))
            .arg("3000"),
        &log("upstream.out"),
        &log("upstream.err"),
    );
    // The walkthrough's gateway, on the example config, in a fresh directory
    // so the embedded store starts empty.
    let _gateway = Proc::spawn(
        "gateway",
        Command::new(env!("CARGO_BIN_EXE_tokengate"))
            .args(["serve", "--config"])
            .arg(repo().join("config/tokengate.yaml"))
            .current_dir(dir.path())
            .env("TOKENGATE_ADMIN_KEY", &key),
        &log("gateway.out"),
        &log("gateway.err"),
    );
    wait_healthy("http://127.0.0.1:9090/healthz");
    common::eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect("127.0.0.1:3000").is_ok()
    });

    let bin_dir = Path::new(env!("CARGO_BIN_EXE_tokengate")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("set -euo pipefail\n{operator}\necho '---'\n{follow_up}");
    let (code, out) = run_bounded(
        "walkthrough",
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .env("PATH", path)
            .env_remove("TOKENGATE_URL"),
        Duration::from_secs(60),
    );
    let gateway_log = std::fs::read_to_string(log("gateway.err")).unwrap_or_default();
    assert_eq!(
        code, 0,
        "walkthrough failed:\n{out}\n--- gateway log ---\n{gateway_log}"
    );
    let (first, second) = out.split_once("---").unwrap();
    let lower = first.to_ascii_lowercase();
    assert!(
        lower.contains(r#""x-tokengate-project-role": "viewer""#),
        "{out}"
    );
    assert!(
        lower.contains(r#""x-tokengate-identity-name": "ci-runner""#),
        "{out}"
    );
    assert!(
        lower.contains(r#""x-tokengate-org-role": "member""#),
        "{out}"
    );
    assert!(
        !lower.contains("authorization"),
        "Authorization must not reach the upstream: {out}"
    );
    assert!(
        second.contains("identity has no access to this project"),
        "{out}"
    );
    assert!(second.contains("access token has been revoked"), "{out}");
}

/// Every README config example that says `check-config` accepts it is
/// accepted: the sections (rate limits, routes, TLS, ...) must not drift
/// from what the gateway parses.
#[test]
fn the_readme_config_examples_are_accepted() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut checked = 0;
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("```yaml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("unterminated code block");
        let yaml = &body[..end];
        rest = &body[end + 3..];
        if !yaml.contains("check-config accepts this file") {
            continue;
        }
        let (code, out) = common::Gateway::check_config_yaml(yaml);
        assert_eq!(code, 0, "README example refused:\n{yaml}\n{out}");
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} README config examples found");
}
