#!/usr/bin/env bash
# The benchmark of issue 7, one command: tokengate side by side with nginx and
# with a hand-built nginx+Lua+Redis token check, on this machine, on loopback;
# and (issue 11) tokengate as nginx's auth_request plugin against both.
#
# Variants (every proxy gets one worker: tokengate `server.threads: 1`,
# nginx `worker_processes 1`; the same small nginx upstream behind each):
#   A   the upstream alone (nginx answering 200 with a small JSON body)
#   B   tokengate, every route public (proxying, no token check)
#   C   tokengate, Redis store, unlimited token (near cache on, the default)
#   C0  tokengate, Redis store, unlimited token, near cache off
#   D   tokengate, Redis store, token with a (large) use limit
#   E   tokengate, embedded store, unlimited token;  E-lim: limited token
#   F   nginx, plain reverse proxy
#   G   nginx + Lua, one Redis EVALSHA per request that checks and counts
#   G2  nginx + Lua, token record cached in a lua_shared_dict (Kong key-auth
#       style), uses counted in the dict and flushed to Redis every second
#   H   nginx with auth_request to tokengate in forward-auth mode (Redis
#       store, unlimited token, near cache on, as C), nginx proxying to the
#       upstream; the nginx config follows deploy/forward-auth/nginx.conf
#   H-lim  H with a limited token (large limit): every subrequest reaches Redis, as D
#   H-auth the forward-auth endpoint alone, asked directly by wrk (the decision without nginx)
#   C-bad  C's gateway with a malformed token (only for Redis commands: none expected)
# The Lua peer is scripts/bench/tgpeer.lua.
#
# Measured per variant: req/s (wrk, ROUNDS rounds with the variants
# interleaved, median), proxy CPU per request (utime+stime from /proc of the
# proxy's processes; for H and H-lim nginx's and tokengate's, each recorded),
# proxy RSS, Redis commands per request (INFO
# commandstats), latency p50/p99/p99.9 at a fixed rate (oha, RATE req/s,
# default half of F's median req/s); for IDLE_VARIANTS the RSS with
# IDLE_CONNECTIONS idle keep-alive connections open and after they close;
# revocation through one Redis gateway seen by another; Redis memory per token.
# Writes BENCHMARKS.md and BENCHMARKS.svg (scripts/bench/report.py).
#
# Environment (defaults for a full run, about 8 minutes; QUICK=1 for a smoke run of about one):
#   DURATION=5 ROUNDS=3 CONNECTIONS=32 IDLE_CONNECTIONS=10000 RATE=(half of F)
#   LAT_DURATION=10 IDLE_VARIANTS="B C F G" REVOCATIONS=1000 MEMORY_TOKENS=5000
#   TOKENGATE_BIN=path: benchmark that binary instead of building this tree
#   (built into CARGO_TARGET_DIR when that is set, else target/).
#   BENCH_NOTE="text": a note printed at the top of BENCHMARKS.md (say, "busy machine").
# Ports are chosen free at start.
# Speed is measured, never asserted: this is not part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
HERE="$ROOT/scripts/bench"

QUICK="${QUICK:-0}"
if [ "$QUICK" = 1 ]; then
    DURATION="${DURATION:-2}" ROUNDS="${ROUNDS:-1}" IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-1000}"
    LAT_DURATION="${LAT_DURATION:-2}" REVOCATIONS="${REVOCATIONS:-50}" MEMORY_TOKENS="${MEMORY_TOKENS:-500}"
fi
DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-10000}"
IDLE_VARIANTS="${IDLE_VARIANTS:-B C F G}"
RATE="${RATE:-}"
LAT_DURATION="${LAT_DURATION:-10}"
REVOCATIONS="${REVOCATIONS:-1000}"
MEMORY_TOKENS="${MEMORY_TOKENS:-5000}"
OHA_VERSION="1.16.0"

# ---------------------------------------------------------------- tools
# Debian packages for what is missing. The Lua module is Debian's
# libnginx-mod-http-lua; lua-resty-redis is not packaged, so tgpeer.lua
# speaks RESP itself.
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || need+=(libnginx-mod-http-lua)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if [ "${#need[@]}" -gt 0 ]; then
    SUDO=()
    [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
    "${SUDO[@]}" timeout 600 apt-get update -qq
    "${SUDO[@]}" timeout 900 env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# The fixed-rate latency tool. oha sends at a set rate with latency
# correction (no coordinated omission, unlike wrk) and reports p99.9 in JSON;
# h2load's -r paces connections, not requests, and reports no percentiles.
# Not packaged in Debian 12, so built from crates.io, once, at a pinned version.
OHA="$(command -v oha || true)"
if [ -z "$OHA" ]; then
    OHA="$HOME/.cargo/bin/oha"
    [ -x "$OHA" ] || timeout 1800 cargo install oha --locked --version "$OHA_VERSION" --quiet
fi

# A target directory of its own keeps a benchmark build from racing another
# build of the same tree for target/.
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# TOKENGATE_BIN runs a binary built elsewhere (another branch, say) instead
# of building this tree.
if [ -n "${TOKENGATE_BIN:-}" ]; then
    BIN="$TOKENGATE_BIN"
    BIN_SOURCE="binary from TOKENGATE_BIN"
else
    cargo build --release --quiet --bin tokengate
    BIN="$TARGET_DIR/release/tokengate"
    # "dirty" only for changes to the sources: this script rewrites BENCHMARKS.*.
    BIN_SOURCE="built from $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [ -n "$(git status --porcelain -- . ':!BENCHMARKS.md' ':!BENCHMARKS.svg' 2>/dev/null)" ]; then
        BIN_SOURCE="$BIN_SOURCE with uncommitted changes"
    fi
fi

# 10,000 idle connections need file descriptors in the client and the
# proxies, which inherit this limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# ---------------------------------------------------------------- processes
WORK="$(mktemp -d /tmp/tokengate-bench.XXXXXX)"
# nginx workers run as an unprivileged user when started by root.
chmod 755 "$WORK"
PIDS=()
cleanup() {
    # Only what this script started, by PID; nginx masters stop their workers.
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
# A process this script has waited for is no longer its to stop.
forget_pid() {
    local keep=() pid
    for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
    PIDS=("${keep[@]}")
}
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    return 1
}

# ---- nginx: start_nginx NAME PORT HTTP_BODY; NAME's master PID in NGINX_PID.
start_nginx() {
    local name="$1" port="$2" body="$3" dir="$WORK/$1"
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<NGINX
# $name, written by scripts/bench.sh
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
worker_rlimit_nofile 65536;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
# Enough for the idle connections and no more: nginx allocates them up front.
events { worker_connections $((IDLE_CONNECTIONS + 2048)); }
http {
    access_log off;
    client_body_temp_path $dir;
    proxy_temp_path $dir;
    fastcgi_temp_path $dir;
    uwsgi_temp_path $dir;
    scgi_temp_path $dir;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
$body
}
NGINX
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;' &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_port "$port"
}
# The master and its workers.
nginx_pids() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; }

# A proxy server block in front of the upstream; $2 is what runs before proxying.
proxy_server() {
    cat <<NGINX
    upstream backend { server 127.0.0.1:$UP_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$1 backlog=4096;
        location / {
            $2
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
NGINX
}

# PROC: the proxy's processes. AUTH: for H and H-lim, the tokengate nginx
# asks, whose CPU is counted apart so both halves of the cost show.
declare -A PORT PATHS HDR PROC AUTH
UP_PORT="$(free_port)"
start_nginx upstream "$UP_PORT" "    server {
        listen 127.0.0.1:$UP_PORT backlog=4096;
        location / { default_type application/json; return 200 '{\"ok\":true}'; }
        # What reached the upstream through H, for the check before measuring.
        location = /_bench/seen {
            return 200 \"\$http_x_tokengate_identity_id|\$http_x_tokengate_client_ip|\$http_authorization\";
        }
    }"
UP_PIDS="$(nginx_pids "$NGINX_PID")"

REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
    --maxclients 1000 >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_port "$REDIS_PORT"
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }

export TOKENGATE_ADMIN_KEY="bench-admin-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# ---- tokengate: start_gateway NAME STORE_YAML [EXTRA_YAML]; port in GW_PORT, PID in GW_PID.
start_gateway() {
    local name="$1" store="$2" extra="${3:-}"
    GW_PORT="$(free_port)"
    cat >"$WORK/$name.yaml" <<YAML
server: {listen: ["127.0.0.1:$GW_PORT"], threads: 1, grace_period_seconds: 0}
admin: {listen: "127.0.0.1:$(free_port)"}
upstream: {url: "http://127.0.0.1:$UP_PORT"}
store: $store
$extra
YAML
    # exec, so the PID recorded is the gateway's own.
    # MIMALLOC_PURGE_DELAY=0 as scripts/run.sh and the Dockerfile run it.
    (cd "$WORK" && RUST_LOG=warn MIMALLOC_PURGE_DELAY=0 exec "$BIN" serve --config "$WORK/$name.yaml" >"$WORK/$name.log" 2>&1) &
    GW_PID=$!
    PIDS+=("$GW_PID")
    wait_port "$GW_PORT"
}

# issue_token PORT LIMIT -> a token of a new identity; its id in ISSUED_ID.
issue_token() {
    local url="http://127.0.0.1:$1"
    ISSUED_ID="$("$BIN" identity create --gateway "$url" --name bench --org-id bench --role member --quiet)"
    "$BIN" token-auth attach --gateway "$url" "$ISSUED_ID" --ttl 1d --max-ttl 1d --num-uses-limit "$2" >/dev/null
    "$BIN" token create --gateway "$url" "$ISSUED_ID" --quiet
}

# B: every route public.
start_gateway public "{kind: embedded, path: $WORK/public.redb}" 'routes: [{path: "/", auth: public}]'
PORT[B]="$GW_PORT" PATHS[B]=/bench HDR[B]="" PROC[B]="$GW_PID"

# C, D (and C-bad): Redis store.
start_gateway redis "{kind: redis, url: \"redis://127.0.0.1:$REDIS_PORT/0\"}"
REDIS_GW_PORT="$GW_PORT"
PORT[C]="$GW_PORT" PATHS[C]=/bench HDR[C]="Authorization: Bearer $(issue_token "$GW_PORT" 0)" PROC[C]="$GW_PID"
PORT[D]="$GW_PORT" PATHS[D]=/bench HDR[D]="Authorization: Bearer $(issue_token "$GW_PORT" 1000000000)" PROC[D]="$GW_PID"
# Right shape, wrong checksum: refused before the store.
BAD="tgat_$(head -c 68 /dev/urandom | base64 -w0 | tr '+/' '-_' | head -c 91)"
PORT[C-bad]="$GW_PORT" PATHS[C-bad]=/bench HDR[C-bad]="Authorization: Bearer $BAD" PROC[C-bad]="$GW_PID"

# C0: Redis store with the near cache off (every request one EVALSHA).
start_gateway redis-nocache "{kind: redis, url: \"redis://127.0.0.1:$REDIS_PORT/0\", cache: {enabled: false}}"
PORT[C0]="$GW_PORT" PATHS[C0]=/bench HDR[C0]="Authorization: Bearer $(issue_token "$GW_PORT" 0)" PROC[C0]="$GW_PID"

# E, E-lim: embedded store.
start_gateway embedded "{kind: embedded, path: $WORK/embedded.redb}"
PORT[E]="$GW_PORT" PATHS[E]=/bench HDR[E]="Authorization: Bearer $(issue_token "$GW_PORT" 0)" PROC[E]="$GW_PID"
PORT[E-lim]="$GW_PORT" PATHS[E-lim]=/bench HDR[E-lim]="Authorization: Bearer $(issue_token "$GW_PORT" 1000000000)" PROC[E-lim]="$GW_PID"

# A: the upstream itself.
PORT[A]="$UP_PORT" PATHS[A]=/bench HDR[A]="" PROC[A]="$UP_PIDS"

# F: nginx as a plain reverse proxy.
PORT[F]="$(free_port)"
start_nginx proxy-f "${PORT[F]}" "$(proxy_server "${PORT[F]}" "")"
PATHS[F]=/bench HDR[F]="" PROC[F]="$(nginx_pids "$NGINX_PID")"

# G and G2: nginx + Lua + Redis. The peer's tokens have tokengate's shape,
# and Redis holds only their SHA-256.
peer_token() {
    local token key expires
    token="tgat_$(head -c 68 /dev/urandom | base64 -w0 | tr '+/' '-_' | head -c 91)"
    key="gp:t:$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)"
    expires=$(( $(date +%s) * 1000 + 86400000 ))
    rcli HSET "$key" i "$(cat /proc/sys/kernel/random/uuid)" n bench r member x 0 e "$expires" k "$1" u 0 >/dev/null
    echo "$token"
}
LUA_HTTP="    lua_package_path \"$HERE/?.lua;;\";
    init_by_lua_block { require(\"tgpeer\").configure(\"127.0.0.1\", $REDIS_PORT) }"
PORT[G]="$(free_port)"
start_nginx proxy-g "${PORT[G]}" "$LUA_HTTP
$(proxy_server "${PORT[G]}" 'access_by_lua_block { require("tgpeer").access_redis() }')"
PATHS[G]=/bench HDR[G]="Authorization: Bearer $(peer_token 0)" PROC[G]="$(nginx_pids "$NGINX_PID")"
PORT[G2]="$(free_port)"
start_nginx proxy-g2 "${PORT[G2]}" "$LUA_HTTP
    lua_shared_dict tgpeer_cache 16m;
    lua_shared_dict tgpeer_uses 4m;
    init_worker_by_lua_block { require(\"tgpeer\").init_worker() }
$(proxy_server "${PORT[G2]}" 'access_by_lua_block { require("tgpeer").access_cached() }')"
PATHS[G2]=/bench HDR[G2]="Authorization: Bearer $(peer_token 0)" PROC[G2]="$(nginx_pids "$NGINX_PID")"

# H, H-lim, H-auth: tokengate as nginx's auth_request plugin. The route
# declares its bodies name no project: an auth subrequest never shows the
# body, and tokengate refuses (400) where the body could name one.
start_gateway forward-auth "{kind: redis, url: \"redis://127.0.0.1:$REDIS_PORT/0\"}" \
    'forward_auth: {path: /_tokengate/auth}
trusted_proxies: ["127.0.0.1/32"]
routes: [{path: "/", body: no-project}]'
FA_PORT="$GW_PORT" FA_PID="$GW_PID"
# deploy/forward-auth/nginx.conf's approach, with the benchmark's ports and a
# keep-alive pool as large as the upstream's.
forward_auth_server() {
    local copy="" h
    for h in identity-id identity-name org-role token-id project-id project-role client-ip; do
        copy+="
            auth_request_set \$tg_${h//-/_} \$upstream_http_x_tokengate_${h//-/_};
            proxy_set_header X-Tokengate-$h \$tg_${h//-/_};"
    done
    cat <<NGINX
    underscores_in_headers off;
    upstream backend { server 127.0.0.1:$UP_PORT; keepalive 64; }
    upstream tokengate { server 127.0.0.1:$2; keepalive 64; }
    server {
        listen 127.0.0.1:$1 backlog=4096;
        location / {
            auth_request /_tokengate_auth;$copy
            proxy_set_header Authorization "";
            proxy_set_header Host \$host;
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location = /_tokengate_auth {
            internal;
            proxy_pass http://tokengate/_tokengate/auth\$request_uri;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
NGINX
}
PORT[H]="$(free_port)"
start_nginx proxy-h "${PORT[H]}" "$(forward_auth_server "${PORT[H]}" "$FA_PORT")"
H_PROC="$(nginx_pids "$NGINX_PID")"
# Not in $(...): H_ID is checked against what the upstream receives.
issue_token "$FA_PORT" 0 >"$WORK/h.token"
H_ID="$ISSUED_ID"
PATHS[H]=/bench HDR[H]="Authorization: Bearer $(cat "$WORK/h.token")" PROC[H]="$H_PROC" AUTH[H]="$FA_PID"
PORT[H-lim]="${PORT[H]}" PATHS[H-lim]=/bench HDR[H-lim]="Authorization: Bearer $(issue_token "$FA_PORT" 1000000000)" PROC[H-lim]="$H_PROC" AUTH[H-lim]="$FA_PID"
# The endpoint asked directly, in the first shape, with H's token.
PORT[H-auth]="$FA_PORT" PATHS[H-auth]=/_tokengate/auth/bench HDR[H-auth]="${HDR[H]}" PROC[H-auth]="$FA_PID"
PORT[H-bad]="${PORT[H]}" PATHS[H-bad]=/bench HDR[H-bad]="Authorization: Bearer $BAD" PROC[H-bad]="$H_PROC"

VARIANTS=(A B C C0 D E E-lim F G G2 H H-lim H-auth)

# Every variant answers 200 before anything is measured (C-bad, H-bad: 401,
# nginx passing tokengate's refusal on).
for v in "${VARIANTS[@]}" C-bad H-bad; do
    hdr=()
    [ -n "${HDR[$v]}" ] && hdr=(-H "${HDR[$v]}")
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${hdr[@]}" "http://127.0.0.1:${PORT[$v]}${PATHS[$v]}")"
    want=200
    [ "${v%-bad}" != "$v" ] && want=401
    if [ "$code" != "$want" ]; then
        echo "variant $v answered $code, expected $want" >&2
        tail -5 "$WORK"/*.log "$WORK"/*/error.log >&2 || true
        exit 1
    fi
done
# What H's upstream receives: tokengate's identity and the client's address
# from nginx's X-Forwarded-For, and no token.
seen="$(curl -s --max-time 5 -H "${HDR[H]}" "http://127.0.0.1:${PORT[H]}/_bench/seen")"
if [ "$seen" != "$H_ID|127.0.0.1|" ]; then
    echo "H's upstream saw \"$seen\", expected \"$H_ID|127.0.0.1|\"" >&2
    exit 1
fi
# H's logs so far hold start-up lines only; what follows is written under load.
H_LOGS=(forward-auth.log proxy-h/error.log)
declare -A LOG_START
for log in "${H_LOGS[@]}"; do LOG_START[$log]="$(wc -l <"$WORK/$log")"; done

# ---------------------------------------------------------------- measures
RESULTS="$WORK/results"
: >"$RESULTS"
CLK_TCK="$(getconf CLK_TCK)"
# utime+stime (clock ticks) of the given processes; fields 14 and 15 of
# /proc/PID/stat, counted after the ")" that ends the command name.
cpu_ticks() {
    local total=0 p
    for p in "$@"; do total=$((total + $(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$p/stat"))); done
    echo "$total"
}
rss_kib() {
    local total=0 p
    for p in "$@"; do total=$((total + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done
    echo "$total"
}
# "EVAL(SHA) calls, all calls" from INFO commandstats, without our own INFO
# and without PING: the near cache's invalidation connections send 5 a second
# per gateway whatever the traffic, so they are no request's cost.
redis_calls() {
    rcli INFO commandstats | tr -d '\r' | awk -F'[:=,]' '
        /^cmdstat_/ { if ($1 != "cmdstat_info" && $1 != "cmdstat_ping") all += $3; if ($1 == "cmdstat_evalsha" || $1 == "cmdstat_eval") ev += $3 }
        END { print ev + 0, all + 0 }'
}

# run_load VARIANT ROUND: one wrk run, with CPU and Redis deltas around it.
run_load() {
    local v="$1" round="$2" out cpu0 cpu1 up0 up1 au0=0 au1=0 r0 r1
    local args=(-t 1 -c "$CONNECTIONS" -d "${DURATION}s" --timeout 2s)
    [ -n "${HDR[$v]}" ] && args+=(-H "${HDR[$v]}")
    # shellcheck disable=SC2086
    cpu0="$(cpu_ticks ${PROC[$v]})" up0="$(cpu_ticks $UP_PIDS)" r0="$(redis_calls)"
    # shellcheck disable=SC2086
    [ -n "${AUTH[$v]:-}" ] && au0="$(cpu_ticks ${AUTH[$v]})"
    out="$(timeout $((DURATION + 30)) wrk "${args[@]}" "http://127.0.0.1:${PORT[$v]}${PATHS[$v]}")"
    # shellcheck disable=SC2086
    cpu1="$(cpu_ticks ${PROC[$v]})" up1="$(cpu_ticks $UP_PIDS)"
    # shellcheck disable=SC2086
    [ -n "${AUTH[$v]:-}" ] && au1="$(cpu_ticks ${AUTH[$v]})"
    # G2, and tokengate's near cache with an unlimited token, flush their
    # counted uses every second: wait for the last flush, so its Redis
    # commands are counted here and not in the next variant (C-bad's none).
    case "$v" in G2 | C | H | H-auth) sleep 1.5 ;; esac
    r1="$(redis_calls)"
    local requests rps non2xx
    requests="$(awk '/requests in/ {print $1}' <<<"$out")"
    rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    non2xx="$(awk '/Non-2xx/ {print $4}' <<<"$out")"
    if [ -n "$non2xx" ] && [ "${v%-bad}" = "$v" ]; then
        echo "$v: $non2xx non-2xx answers; the benchmark is invalid" >&2
        echo "$out" >&2
        exit 1
    fi
    local auth_rss=0
    # shellcheck disable=SC2086
    [ -n "${AUTH[$v]:-}" ] && auth_rss="$(rss_kib ${AUTH[$v]})"
    # shellcheck disable=SC2086
    echo "load $v $round $rps $requests $((cpu1 - cpu0)) $((up1 - up0)) $CLK_TCK $(rss_kib ${PROC[$v]}) ${r0% *} ${r0#* } ${r1% *} ${r1#* } $((au1 - au0)) $auth_rss" >>"$RESULTS"
    printf '  %-6s %9s req/s  proxy CPU %s ticks%s\n' "$v" "$rps" "$((cpu1 - cpu0))" \
        "$([ -n "${AUTH[$v]:-}" ] && echo " + tokengate $((au1 - au0))")"
}

echo "== throughput: wrk -t1 -c$CONNECTIONS, ${DURATION}s per variant, $ROUNDS round(s)"
for round in $(seq 1 "$ROUNDS"); do
    echo "-- round $round of $ROUNDS"
    for v in "${VARIANTS[@]}"; do run_load "$v" "$round"; done
done
# A malformed token once, for its Redis commands (none expected).
run_load C-bad 1

# The fixed rate: half of F's median saturation rate unless RATE is given.
if [ -z "$RATE" ]; then
    RATE="$(awk '$1 == "load" && $2 == "F" {print $4}' "$RESULTS" | sort -n |
        awk '{a[NR] = $1} END {printf "%d", a[int((NR + 1) / 2)] / 2}')"
fi
echo "== latency at $RATE req/s: oha, ${LAT_DURATION}s per variant"
for v in "${VARIANTS[@]}"; do
    args=(-z "${LAT_DURATION}s" -q "$RATE" -c "$CONNECTIONS" --latency-correction --no-tui --output-format json)
    [ -n "${HDR[$v]}" ] && args+=(-H "${HDR[$v]}")
    timeout $((LAT_DURATION + 30)) "$OHA" "${args[@]}" "http://127.0.0.1:${PORT[$v]}${PATHS[$v]}" >"$WORK/oha-$v.json"
    python3 - "$v" "$WORK/oha-$v.json" >>"$RESULTS" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
p = r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
bad = sum(n for code, n in codes.items() if code != "200")
print("lat %s %.4f %.4f %.4f %.1f %d" % (sys.argv[1], p["p50"] * 1e3, p["p99"] * 1e3, p["p99.9"] * 1e3,
                                       r["summary"]["requestsPerSec"], bad))
PY
    tail -1 "$RESULTS"
done

# What tokengate (RUST_LOG=warn) and nginx logged while H was under load: a
# failing auth subrequest may show here even when nginx still answered 200.
for log in "${H_LOGS[@]}"; do
    n=$(( $(wc -l <"$WORK/$log") - ${LOG_START[$log]} ))
    echo "logs $log $n" | tee -a "$RESULTS"
    tail -n +"$(( ${LOG_START[$log]} + 1 ))" "$WORK/$log" | head -5
done

# Idle keep-alive connections: RSS before, with them open, and after closing.
echo "== RSS with $IDLE_CONNECTIONS idle keep-alive connections: $IDLE_VARIANTS"
for v in $IDLE_VARIANTS; do
    # shellcheck disable=SC2086
    before="$(rss_kib ${PROC[$v]})"
    # The helper holds the connections until its stdin (a FIFO we hold open) closes.
    rm -f "$WORK/idle.in" "$WORK/idle.out"
    mkfifo "$WORK/idle.in"
    python3 "$HERE/idle_conns.py" "${PORT[$v]}" "${PATHS[$v]}" "$IDLE_CONNECTIONS" 120 180 "${HDR[$v]}" \
        <"$WORK/idle.in" >"$WORK/idle.out" &
    IDLE_PID=$!
    PIDS+=("$IDLE_PID")
    exec {idle_hold}>"$WORK/idle.in"
    for _ in $(seq 1 1800); do
        grep -q '^ready' "$WORK/idle.out" && break
        kill -0 "$IDLE_PID" 2>/dev/null || break
        sleep 0.1
    done
    read -r _ opened failed < <(grep '^ready' "$WORK/idle.out" || echo "ready 0 $IDLE_CONNECTIONS")
    sleep 1
    # shellcheck disable=SC2086
    during="$(rss_kib ${PROC[$v]})"
    # End of its stdin: the helper closes every connection and exits.
    exec {idle_hold}>&-
    wait "$IDLE_PID" || true
    forget_pid "$IDLE_PID"
    sleep 2
    # shellcheck disable=SC2086
    after="$(rss_kib ${PROC[$v]})"
    echo "idle $v $IDLE_CONNECTIONS $opened $failed $before $during $after" | tee -a "$RESULTS"
done

# Revocation through one Redis gateway, refused by another on the same Redis.
echo "== revocation: $REVOCATIONS tokens revoked through one gateway, refused by another"
start_gateway redis-2 "{kind: redis, url: \"redis://127.0.0.1:$REDIS_PORT/0\"}"
issue_token "$REDIS_GW_PORT" 0 >/dev/null
timeout 600 python3 "$HERE/mgmt_probe.py" revoke "$REDIS_GW_PORT" "$GW_PORT" "$ISSUED_ID" "$REVOCATIONS" 300 | tee -a "$RESULTS"

# Redis memory per token: tokens with a use limit and a trusted-IP list.
echo "== Redis memory per token over $MEMORY_TOKENS tokens"
ID="$("$BIN" identity create --gateway "http://127.0.0.1:$GW_PORT" --name mem --org-id bench --role member --quiet)"
"$BIN" token-auth attach --gateway "http://127.0.0.1:$GW_PORT" "$ID" --ttl 1d --max-ttl 1d --num-uses-limit 100 \
    --trusted-ip 10.0.0.0/8,192.168.0.0/16 >/dev/null
mem0="$(rcli INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" {print $2}')"
made="$(timeout 600 python3 "$HERE/mgmt_probe.py" tokens "$GW_PORT" "$ID" "$MEMORY_TOKENS" 300 | awk '{print $2}')"
mem1="$(rcli INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" {print $2}')"
echo "tokenmem $made $((mem1 - mem0))" | tee -a "$RESULTS"

# ---------------------------------------------------------------- report
{
    echo "meta date $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "meta cpu $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "meta cores $(nproc)"
    echo "meta kernel $(uname -sr)"
    echo "meta load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "meta tokengate $("$BIN" --version | awk '{print $2}') ($BIN_SOURCE)"
    echo "meta nginx $(nginx -v 2>&1 | sed 's|.*nginx/||')"
    echo "meta lua-module $(dpkg-query -W -f '${Version}' libnginx-mod-http-lua 2>/dev/null || echo unknown)"
    echo "meta redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
    echo "meta wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
    echo "meta oha $("$OHA" --version | awk '{print $2}')"
    [ -n "${BENCH_NOTE:-}" ] && echo "meta note $BENCH_NOTE"
    echo "meta settings DURATION=$DURATION ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS RATE=$RATE LAT_DURATION=$LAT_DURATION IDLE_CONNECTIONS=$IDLE_CONNECTIONS REVOCATIONS=$REVOCATIONS MEMORY_TOKENS=$MEMORY_TOKENS QUICK=$QUICK"
} >>"$RESULTS"
mkdir -p "$TARGET_DIR" 2>/dev/null && cp "$RESULTS" "$TARGET_DIR/bench-results.txt" 2>/dev/null || true
python3 "$HERE/report.py" "$RESULTS" "$ROOT/BENCHMARKS.md" "$ROOT/BENCHMARKS.svg"
echo "wrote BENCHMARKS.md and BENCHMARKS.svg (raw figures: $TARGET_DIR/bench-results.txt)"
