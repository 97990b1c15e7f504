#!/usr/bin/env bash
# Runs the gateway on the example configuration (embedded store) on a fresh
# Debian machine: installs the build tools Pingora needs if missing, then
# builds and starts `tokengate serve`. Extra arguments replace the config path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUDO=()
[ "$(id -u)" -ne 0 ] && SUDO=(sudo)
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

config="${1:-config/tokengate.yaml}"
if [ -z "${TOKENGATE_ADMIN_KEY:-}" ]; then
    echo "note: TOKENGATE_ADMIN_KEY is not set; the management API will accept only admin identities' tokens" >&2
fi
# mimalloc returns memory freed by closed connections to the system only when
# it purges at once; by default it waits for later allocations that an idle
# gateway never makes (see BENCHMARKS.md, "Cost of a connection").
export MIMALLOC_PURGE_DELAY="${MIMALLOC_PURGE_DELAY:-0}"
exec cargo run --release --bin tokengate -- serve --config "$config"
