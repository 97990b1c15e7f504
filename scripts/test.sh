#!/usr/bin/env bash
# The one command that checks tokengate on a fresh Debian machine: installs
# the system tools the tests need, then runs format, lint, build, config
# checks and the whole test suite. CI runs it through .ci/run.
#
# Environment:
#   TOKENGATE_TEST_THREADS  parallel tests (default: 2 x cores, 2 to 8)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() {
    printf '\n==== %s ====\n' "$*"
}

# ---------------------------------------------------------------------------
section "system packages"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        "${SUDO[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    # No stdin in CI: never let a package ask a question.
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@"
}

# command -> Debian package providing it
need_command() {
    local cmd="$1" pkg="$2"
    if command -v "$cmd" >/dev/null 2>&1; then
        echo "found $cmd: $(command -v "$cmd")"
    else
        echo "installing $pkg (for $cmd)"
        apt_install "$pkg"
    fi
}

need_command redis-server redis-server
need_command cmake cmake
need_command pkg-config pkg-config
need_command openssl openssl

# Some packages start a server when installed: Debian's prometheus (for
# promtool, which tests/metrics_exposition.rs lints /metrics with) on :9090,
# the admin port of scripts/run.sh, and caddy (for tests/forward_auth.rs) on
# :80. A policy-rc.d that refuses every start (invoke-rc.d and
# deb-systemd-invoke both ask it) keeps them from starting; on a systemd
# host they would still start at boot, so they are disabled.
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_OURS=0
install_without_starting() {
    local cmd="$1" pkg="$2" service="$3"
    if command -v "$cmd" >/dev/null 2>&1; then
        echo "found $cmd: $(command -v "$cmd")"
        return
    fi
    if [ ! -e "$POLICY_RC" ]; then
        # Removed on any exit too, should the install fail.
        trap '[ "$POLICY_RC_OURS" -eq 0 ] || "${SUDO[@]}" rm -f "$POLICY_RC"' EXIT
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY_RC" >/dev/null
        "${SUDO[@]}" chmod 755 "$POLICY_RC"
        POLICY_RC_OURS=1
    fi
    need_command "$cmd" "$pkg"
    if [ "$POLICY_RC_OURS" -eq 1 ]; then
        "${SUDO[@]}" rm -f "$POLICY_RC"
        POLICY_RC_OURS=0
    fi
    if [ -d /run/systemd/system ]; then
        "${SUDO[@]}" systemctl disable --now "$service" >/dev/null 2>&1 || true
    fi
}
install_without_starting promtool prometheus prometheus.service
# The gateways tests/forward_auth.rs puts in front of tokengate: nginx with
# auth_request (nginx-light has it; /usr/sbin may not be on PATH) and Caddy.
if [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1; then
    echo "found nginx"
else
    install_without_starting nginx nginx-light nginx.service
fi
install_without_starting caddy caddy caddy.service

# Python venv support, for the Infisical SDK compatibility test.
if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3 python3-venv
elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_install python3-venv
fi
echo "python3: $(python3 --version 2>&1)"

# >>> HOOK(sdk-test): set up the Python environment for the Infisical SDK test.
# tests/sdk.rs runs the official Infisical Python SDK (tests/sdk/*.py) with
# the interpreter in TOKENGATE_SDK_PYTHON; it fails when that is unset, unless
# TOKENGATE_SKIP_SDK=1. The SDK lives in .venv (in .gitignore), pinned to the
# version the test was written against; a re-run with it in place is a no-op.
INFISICAL_SDK_VERSION=1.0.18
SDK_VENV="$PWD/.venv"
sdk_ready() {
    "$SDK_VENV/bin/python" - "$INFISICAL_SDK_VERSION" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version
import infisical_sdk
sys.exit(version("infisicalsdk") != sys.argv[1])
PY
}
if ! "$SDK_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    # Missing, or made by a Python that is gone: (re)create it.
    echo "creating $SDK_VENV"
    python3 -m venv --clear "$SDK_VENV"
fi
if ! sdk_ready; then
    echo "installing infisicalsdk==$INFISICAL_SDK_VERSION into $SDK_VENV"
    "$SDK_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input "infisicalsdk==$INFISICAL_SDK_VERSION"
    sdk_ready || { echo "infisicalsdk $INFISICAL_SDK_VERSION is not importable from $SDK_VENV" >&2; exit 1; }
fi
export TOKENGATE_SDK_PYTHON="$SDK_VENV/bin/python"
echo "infisicalsdk $INFISICAL_SDK_VERSION: $TOKENGATE_SDK_PYTHON"
# <<< HOOK(sdk-test)

# >>> HOOK(browser-test): the operator console's browser test (tests/console.rs)
# drives Debian's Chromium through its matching chromedriver with Selenium,
# installed into the same .venv. The driver is named explicitly, so Selenium
# never tries to download one.
need_command chromium chromium
need_command chromedriver chromium-driver
SELENIUM_VERSION=4.51.0
if ! "$SDK_VENV/bin/python" - "$SELENIUM_VERSION" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version
import selenium.webdriver
sys.exit(version("selenium") != sys.argv[1])
PY
then
    echo "installing selenium==$SELENIUM_VERSION into $SDK_VENV"
    "$SDK_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input "selenium==$SELENIUM_VERSION"
fi
export TOKENGATE_BROWSER_PYTHON="$SDK_VENV/bin/python"
echo "browser test: $(chromium --version 2>/dev/null | head -1), selenium $SELENIUM_VERSION"
# <<< HOOK(browser-test)

echo "redis-server: $(redis-server --version)"
echo "cargo: $(cargo --version)"

# ---------------------------------------------------------------------------
section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo build"
cargo build --workspace --all-targets

section "check-config"
shopt -s nullglob
configs=(config/*.yaml)
shopt -u nullglob
if [ "${#configs[@]}" -eq 0 ]; then
    echo "no config/*.yaml to check" >&2
    exit 1
fi
# The docker-compose example. It reads its Redis URL from REDIS_URL, which is
# not set here: check-config warns and passes. The Kubernetes ConfigMap's
# embedded file is checked by tests/deploy_examples.rs, with the variables set.
configs+=(deploy/compose/tokengate.yaml deploy/forward-auth/tokengate.yaml)
for cfg in "${configs[@]}"; do
    echo "-- $cfg"
    cargo run --quiet -- check-config "$cfg"
done

# ---------------------------------------------------------------------------
# Each test starts its own redis-server and gateway on free ports, so tests
# run in parallel; they mostly wait on sockets, so more than one per core.
cores="$(nproc 2>/dev/null || echo 2)"
threads="${TOKENGATE_TEST_THREADS:-$((cores * 2))}"
if [ "$threads" -lt 2 ]; then threads=2; fi
if [ -z "${TOKENGATE_TEST_THREADS:-}" ] && [ "$threads" -gt 8 ]; then threads=8; fi

if cargo nextest --version >/dev/null 2>&1; then
    section "cargo nextest run (test threads: $threads)"
    cargo nextest run --workspace --test-threads "$threads"
else
    section "cargo test (nextest not installed; test threads: $threads)"
    cargo test --workspace --no-fail-fast -- --test-threads "$threads"
fi

# The near cache (store.cache) is on by default for the Redis stores. The
# tests of gateways on Redis run a second time with it off
# (TOKENGATE_TEST_REDIS_CACHE=off makes the harness write
# `cache: {enabled: false}`), so both modes keep passing. Embedded-store twins
# and the near_cache tests that set the cache themselves are left out.
REDIS_CACHE_OFF_BINARIES=(cross_gateway use_limit redis_outage proxy_auth renewal
    management projects client_ip org_boundary near_cache cluster_failover)
REDIS_CACHE_OFF_SKIP=(_embedded cache_on:: cache_off:: config:: harness::)
if cargo nextest --version >/dev/null 2>&1; then
    section "Redis-backed tests with the near cache off (test threads: $threads)"
    binaries="$(printf 'binary(%s) | ' "${REDIS_CACHE_OFF_BINARIES[@]}")"
    filter="(${binaries% | }) and not test(/_embedded\$/)"
    filter+=" and not (binary(near_cache) and test(/^(cache_on|cache_off|config|harness)::/))"
    TOKENGATE_TEST_REDIS_CACHE=off cargo nextest run --test-threads "$threads" -E "$filter"
else
    section "Redis-backed tests with the near cache off (cargo test; test threads: $threads)"
    tests=()
    for b in "${REDIS_CACHE_OFF_BINARIES[@]}"; do tests+=(--test "$b"); done
    skips=()
    for s in "${REDIS_CACHE_OFF_SKIP[@]}"; do skips+=(--skip "$s"); done
    TOKENGATE_TEST_REDIS_CACHE=off cargo test --no-fail-fast "${tests[@]}" -- \
        --test-threads "$threads" "${skips[@]}"
fi

# nextest does not run doctests.
if [ -f src/lib.rs ] && cargo nextest --version >/dev/null 2>&1; then
    section "doctests"
    cargo test --doc
fi

# The management API against its OpenAPI document (docs/schemathesis.md):
# no 5xx, every answer as documented. Installs schemathesis into .venv.
section "schemathesis on the management API"
TOKENGATE_BIN=target/debug/tokengate scripts/schemathesis.sh

section "all checks passed"
