#!/usr/bin/env bash
# The management API under schemathesis, driven by docs/openapi.json: starts
# a demo upstream and a gateway (embedded store, lockout off) on free loopback
# ports in a temporary directory, then runs schemathesis twice against the
# proxy listener:
#   1. with the admin key: every phase (examples, coverage, fuzzing, stateful)
#      and every check (no 5xx, status codes, content types, headers and
#      bodies as documented, valid data accepted and invalid data refused,
#      auth not ignored, deleted things gone, 405s, ...), bounded in time;
#   2. with a wrong key: every answer must be a documented refusal (never a
#      success, never a 5xx).
# Settings the checks need are in scripts/schemathesis.toml, each with its
# reason. Prints the number of test cases and exits non-zero on any failure.
# Stops everything it started (by PID) on exit. docs/schemathesis.md says more.
#
# Environment:
#   TOKENGATE_BIN                the gateway binary (default target/debug/tokengate; not built here)
#   SCHEMATHESIS_MAX_TIME        seconds for the admin-key run (default 75)
#   SCHEMATHESIS_MAX_EXAMPLES    test cases per operation and phase (default 25)
#   SCHEMATHESIS_SEED            a seed, to repeat a run
#   SCHEMATHESIS_PORTS           LO-HI: take the ports from this range (default: any free port)
#   SCHEMATHESIS_EXTRA_ARGS      more arguments for both runs, e.g. "--exclude-checks unsupported_method"
# Reports (schemathesis output and NDJSON events) are left in target/schemathesis/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"

SCHEMATHESIS_VERSION=4.32.5
BIN="${TOKENGATE_BIN:-target/debug/tokengate}"
MAX_TIME="${SCHEMATHESIS_MAX_TIME:-75}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
REPORTS="$REPO/target/schemathesis"
DOC="$REPO/docs/openapi.json"
CONFIG="$REPO/scripts/schemathesis.toml"
read -r -a EXTRA <<<"${SCHEMATHESIS_EXTRA_ARGS:-}"

if [ ! -x "$BIN" ]; then
    echo "no gateway binary at $BIN (set TOKENGATE_BIN, or cargo build first)" >&2
    exit 2
fi
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

# ---------------------------------------------------------------------------
# schemathesis, pinned, in the project's venv (.venv, made by scripts/test.sh
# for the Infisical SDK test; the two live together, `pip check` is clean).
VENV="$REPO/.venv"
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "creating $VENV"
    python3 -m venv --clear "$VENV"
fi
installed="$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("schemathesis"))' 2>/dev/null || true)"
if [ "$installed" != "$SCHEMATHESIS_VERSION" ]; then
    echo "installing schemathesis==$SCHEMATHESIS_VERSION into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "schemathesis==$SCHEMATHESIS_VERSION"
fi
ST="$VENV/bin/schemathesis"
PY="$VENV/bin/python"

# ---------------------------------------------------------------------------
# The processes, in a directory of their own; stopped by PID on any exit.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tokengate-schemathesis.XXXXXX")"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # The gateway stops at once with nothing in flight; no wait is unbounded.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Three free loopback ports (upstream, proxy, admin): from SCHEMATHESIS_PORTS
# when given, else whatever the kernel hands out.
read -r UP_PORT PROXY_PORT ADMIN_PORT < <("$PY" - "${SCHEMATHESIS_PORTS:-}" <<'PY'
import random, socket, sys
lo, _, hi = sys.argv[1].partition("-")
candidates = list(range(int(lo), int(hi) + 1)) if lo else [0] * 3
random.shuffle(candidates)
ports, held = [], []
for port in candidates:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue
    held.append(s)
    ports.append(s.getsockname()[1])
    if len(ports) == 3:
        break
if len(ports) < 3:
    sys.exit(f"no 3 free ports in {sys.argv[1]}")
print(*ports)
PY
)
if [ -z "${ADMIN_PORT:-}" ]; then
    echo "could not find three free loopback ports" >&2
    exit 1
fi

ADMIN_KEY="schemathesis-$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
cat >"$WORK/tokengate.yaml" <<EOF
server:
  listen: ["127.0.0.1:$PROXY_PORT"]
  threads: 2
  grace_period_seconds: 1
  max_connections: 1000
  upgrade_socket: $WORK/upgrade.sock
admin:
  listen: "127.0.0.1:$ADMIN_PORT"
  api_key_env: TOKENGATE_ADMIN_KEY
  # The wrong-key run and the ignored_auth check fail authentication on
  # purpose; a lockout would turn the rest of the run into 429s.
  lockout: {threshold: 0}
upstream:
  url: "http://127.0.0.1:$UP_PORT"
store:
  kind: embedded
  path: $WORK/tokengate.redb
audit:
  destination: file
  path: $WORK/audit.log
EOF
"$BIN" check-config "$WORK/tokengate.yaml" >/dev/null

python3 scripts/echo_upstream.py "$UP_PORT" >"$WORK/upstream.log" 2>&1 &
PIDS+=("$!")
TOKENGATE_ADMIN_KEY="$ADMIN_KEY" "$BIN" serve --config "$WORK/tokengate.yaml" >"$WORK/gateway.log" 2>&1 &
PIDS+=("$!")
GATEWAY_PID="$!"

ready=0
for _ in $(seq 100); do
    if ! kill -0 "$GATEWAY_PID" 2>/dev/null; then
        break
    fi
    if "$PY" - "$ADMIN_PORT" <<'PY' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=1)
PY
        ready=1
        break
    fi
    sleep 0.1
done
if [ "$ready" -ne 1 ]; then
    echo "the gateway did not become ready; its log:" >&2
    cat "$WORK/gateway.log" >&2
    exit 1
fi
echo "gateway $("$BIN" --version) ($BIN): proxy 127.0.0.1:$PROXY_PORT, admin 127.0.0.1:$ADMIN_PORT"

# The document tested is the repository's. A binary built before its last
# change serves an older one: say so (tests/openapi.rs holds them equal).
if ! "$PY" - "$ADMIN_PORT" "$DOC" <<'PY'; then
import sys, urllib.request
served = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/openapi.json", timeout=5).read()
sys.exit(served != open(sys.argv[2], "rb").read())
PY
    echo "note: the binary serves another /openapi.json than $DOC (built before the document changed?); testing the repository's"
fi

# ---------------------------------------------------------------------------
rm -rf "$REPORTS"
mkdir -p "$REPORTS"
SEED_ARGS=()
if [ -n "${SCHEMATHESIS_SEED:-}" ]; then
    SEED_ARGS=(--seed "$SCHEMATHESIS_SEED")
fi

# One run: NAME, then schemathesis arguments. Output to the terminal and to
# target/schemathesis/NAME.txt, events to NAME.ndjson. Returns its exit code.
run() {
    local name="$1"
    shift
    echo
    echo "==== schemathesis: $name ===="
    local rc=0
    "$ST" --config-file "$CONFIG" run "$DOC" \
        --url "http://127.0.0.1:$PROXY_PORT" \
        --request-timeout 10 \
        --no-color \
        --report ndjson --report-ndjson-path "$REPORTS/$name.ndjson" \
        "${SEED_ARGS[@]}" "$@" "${EXTRA[@]}" 2>&1 | tee "$REPORTS/$name.txt" || rc=$?
    return "$rc"
}

status=0
run admin-key \
    -H "Authorization: Bearer $ADMIN_KEY" \
    --max-examples "$MAX_EXAMPLES" \
    --max-time "$MAX_TIME" || status=1
# Examples and coverage reach every operation and every documented refusal;
# fuzzing adds little when every answer is the same 401.
run wrong-key \
    -H "Authorization: Bearer wrong-$ADMIN_KEY" \
    --phases examples,coverage \
    --max-examples 5 \
    --max-time 30 || status=1

# ---------------------------------------------------------------------------
# What ran, from the events: cases, answers by status, failed checks. With a
# wrong key no credentialed operation may succeed; renew and revoke take the
# token in the body and are held to the same (the key is no token).
echo
"$PY" - "$REPORTS" <<'PY' || status=1
import collections, json, sys
reports = sys.argv[1]
bad = []
total_cases = total_failed = 0
for name in ("admin-key", "wrong-key"):
    cases, failed = set(), set()
    statuses, checks, kinds = collections.Counter(), collections.Counter(), set()
    try:
        lines = open(f"{reports}/{name}.ndjson")
    except FileNotFoundError:
        bad.append(f"{name}: no events (schemathesis did not run)")
        continue
    for line in lines:
        ev = json.loads(line).get("ScenarioFinished")
        if not ev:
            continue
        rec = ev["recorder"]
        for cid, inter in rec.get("interactions", {}).items():
            resp = inter.get("response")
            status = resp["status_code"] if resp else None
            statuses[status] += 1
            op = rec["cases"].get(cid, {}).get("value", {})
            if status is None or status >= 500:
                bad.append(f"{name}: {op.get('method')} {op.get('path')} answered {status}")
            elif name == "wrong-key" and status < 400:
                bad.append(f"{name}: {op.get('method')} {op.get('path')} answered {status} to a wrong key")
        for cid, results in rec.get("checks", {}).items():
            cases.add(cid)
            for r in results:
                kinds.add(r["name"])
                if r["status"] == "failure":
                    failed.add(cid)
                    checks[r["name"]] += 1
    answers = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items(), key=lambda kv: str(kv[0])))
    print(f"{name}: {len(cases)} test cases, {sum(statuses.values())} requests ({answers}), {len(kinds)} checks")
    if checks:
        print(f"{name}: failed checks: " + ", ".join(f"{c} x{n}" for c, n in checks.most_common()))
    total_cases += len(cases)
    total_failed += len(failed)
for b in bad[:20]:
    print(b)
print(f"schemathesis: {total_cases - total_failed} passed, {total_failed} failed")
sys.exit(1 if bad or total_failed else 0)
PY

if [ "$status" -ne 0 ]; then
    echo "FAILED: see above and $REPORTS/; the gateway's warnings and errors:" >&2
    grep -v ' INFO ' "$WORK/gateway.log" | tail -n 20 >&2 || true
    exit 1
fi
echo "OK: the management API matches docs/openapi.json (reports in $REPORTS/)"
