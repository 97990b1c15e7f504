//! Running a Selenium script (tests/console/*.py) against a gateway: the
//! interpreter from `TOKENGATE_BROWSER_PYTHON` (skipped only with
//! `TOKENGATE_SKIP_BROWSER=1`), loopback only, bounded in time, and its
//! output, with the gateway's log, in the panic when it fails.

use super::gateway::Gateway;
use super::process::{read_lossy, tail, Proc};
use super::ADMIN_KEY;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn setup_help() -> String {
    "Set it up with:\n\n    sudo apt-get install chromium chromium-driver\n    \
     python3 -m venv .venv && .venv/bin/pip install 'selenium>=4.11'\n    \
     export TOKENGATE_BROWSER_PYTHON=\"$PWD/.venv/bin/python\"\n\n\
     or set TOKENGATE_SKIP_BROWSER=1 to skip the browser tests on purpose."
        .to_string()
}

/// The interpreter with Selenium; None when the tests are explicitly skipped.
pub fn python() -> Option<PathBuf> {
    if std::env::var("TOKENGATE_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("TOKENGATE_SKIP_BROWSER=1: skipping a browser test");
        return None;
    }
    let python = match std::env::var_os("TOKENGATE_BROWSER_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "TOKENGATE_BROWSER_PYTHON is not set: the browser tests need a Python \
             interpreter with Selenium 4. {}",
            setup_help()
        ),
    };
    assert!(
        python.is_file(),
        "TOKENGATE_BROWSER_PYTHON={} is not a file. {}",
        python.display(),
        setup_help()
    );
    Some(python)
}

/// Runs `script` with `args` against `gw` (the console's URL and the admin
/// key in the environment, plus `envs`); panics with its output unless it
/// exits 0 within `timeout`. Returns its standard output.
pub fn run(
    python: &Path,
    script: &str,
    args: &[&str],
    gw: &Gateway,
    envs: &[(&str, &str)],
    timeout: Duration,
) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory for the script's output");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("TOKENGATE_CONSOLE_URL", format!("{}/ui/", gw.admin_url()))
        .env("TOKENGATE_ADMIN_KEY", ADMIN_KEY)
        // The browser and urllib talk to loopback only.
        .env("NO_PROXY", "*")
        .env("no_proxy", "*");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    let what = format!("{script} {}", args.join(" "));
    let mut proc = Proc::spawn(&what, &mut cmd, &out, &err);
    let Some(status) = proc.wait_timeout(timeout) else {
        proc.kill9();
        panic!(
            "{what} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
            read_lossy(&out),
            read_lossy(&err)
        );
    };
    assert!(
        status.success(),
        "{what} failed ({status})\nstdout:\n{}\nstderr:\n{}\ngateway log:\n{}",
        read_lossy(&out),
        read_lossy(&err),
        tail(&gw.log(), 40)
    );
    read_lossy(&out)
}
