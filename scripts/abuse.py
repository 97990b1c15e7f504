#!/usr/bin/env python3
"""Abuse measurement (issue 10, item 5): what hostile traffic costs one gateway.
This file owns the measurement and docs/abuse.md, which it rewrites on each run.

Starts, on free loopback ports from PORT_BASE (48500) up to 48999, its own
redis-server (store kind redis, so store commands can be counted with
CONFIG RESETSTAT and INFO commandstats), the demo upstream
(scripts/echo_upstream.py, whose request log on stderr counts what reached
it) and the gateway binary; creates an identity with Token Auth and an
unlimited token through the management API; then measures, in four parts:

1. Token flood. Valid keep-alive clients alone, then with flood clients
   sending invalid tokens of nine kinds (junk, right prefix with a bad
   checksum, wrong length, characters outside base64url, a well-formed
   token for an unknown identity, for the real identity with an unknown
   token id, the real token id with a wrong secret, no Bearer, a 40 KiB
   header), at a fixed rate and unthrottled. Redis commands are counted
   for the flood alone and per kind.
2. Idle and slow connections from one address: thousands of silent,
   slowloris (a header byte every few seconds), idle keep-alive, slow
   second request and slow body connections from 127.0.0.1, kept up while
   valid clients are measured; which of them the gateway closed and after
   how long; its RSS before, during and after. A second gateway with a small
   max_connections shows what one address can take, and with a small near
   cache what a flood of unknown identities does to it.
3. Oversized input: headers over 32 KiB (431), bodies over the project body
   limit and the management body limit (413), none of them forwarded; and
   bodies declared large but never sent: the gateway's RSS per connection.
4. Failed admin authentication lockout from one address, the lockout metric,
   and another loopback address (127.0.0.2) still served.
Parts 3 and 4 check correctness only and can run on another build
(--check-binary) than the one timed.

Figures are reported, never judged. The exit status is non-zero only on a
correctness failure: a 5xx other than an expected 503, an oversized request
forwarded, valid clients with no success at all, a lockout that does not engage.

    python3 scripts/abuse.py --binary target/release/tokengate       # about 3 minutes
    DURATION=4 ROUNDS=1 IDLE=500 SLOW=500 python3 scripts/abuse.py   # shorter
Flags (environment in brackets): --binary [TOKENGATE_BIN], --check-binary
[CHECK_BIN] for parts 3 and 4 (default --binary), --build (release/debug,
else guessed from the path), --duration [DURATION] s per load phase (8),
--rounds [ROUNDS] (3), --clients [CLIENTS] valid keep-alive clients (8),
--flood-clients [FLOOD_CLIENTS] (8), --flood-rate [FLOOD_RATE] req/s for the
fixed-rate flood (default: the valid clients' own rate), --per-kind
[PER_KIND] requests per token kind (400), --idle [IDLE] (2000), --slow
[SLOW] (2000), --keepalive [KEEPALIVE] (500), --slow-second [SLOW_SECOND]
(250), --slow-body [SLOW_BODY] (250), --declared [DECLARED] connections
per declared-body case (300), --budget [BUDGET] s for the whole run
(420), --port-base [PORT_BASE] (48500), --loadgen wrk|python (wrk when
installed), --log-level [LOG_LEVEL] of the gateway (info, its default),
--parts (1,2,3,4), --doc (docs/abuse.md; "" for none).
Every loop is bounded in count and time; every process it starts is stopped
by its PID at the end.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import platform
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN_KEY = "abuse-admin-key-0123456789abcdef"
VALID_PATH = "/v1/things"
# The gateway's documented limits (README "What tokengate does on each request",
# src/proxy.rs): request target and header fields together, bodies read for a
# project (project.max_body_bytes, at most 64 KiB), management bodies.
HEADER_LIMIT = 32 * 1024
PROJECT_BODY_LIMIT = 64 * 1024
MANAGEMENT_BODY_LIMIT = 1 << 20
# The config's client-connection limits, set explicitly and reported.
HEADER_TIMEOUT = 10
KEEPALIVE_TIMEOUT = 20
MAX_CONNECTIONS = 10000
LOCKOUT = {"threshold": 10, "window_seconds": 300, "duration_seconds": 300}
SMALL_MAX_CONNECTIONS = 200
SMALL_CACHE = 100
# Redis commands the gateway sends whatever the traffic (the near cache's
# PING every 200 ms) and the ones this script sends itself.
OWN_COMMANDS = ("info", "config|resetstat", "config")


class Budget(Exception):
    pass


class Broken(Exception):
    """Something this script needs did not work (a process, a port, a setup call)."""


def env_default(name, default, kind=str):
    return kind(os.environ.get(name, default))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=env_default("TOKENGATE_BIN", os.path.join(ROOT, "target/release/tokengate")))
    ap.add_argument("--build", default="", help="release or debug (default: guessed from the path)")
    ap.add_argument("--check-binary", default=env_default("CHECK_BIN", ""),
                    help="the gateway for parts 3 and 4, correctness only (default --binary): "
                         "a current build when --binary is an older one kept for timing")
    ap.add_argument("--duration", type=float, default=env_default("DURATION", 8, float))
    ap.add_argument("--rounds", type=int, default=env_default("ROUNDS", 3, int))
    ap.add_argument("--clients", type=int, default=env_default("CLIENTS", 8, int))
    ap.add_argument("--flood-clients", type=int, default=env_default("FLOOD_CLIENTS", 8, int))
    ap.add_argument("--flood-rate", type=float, default=env_default("FLOOD_RATE", 0, float))
    ap.add_argument("--per-kind", type=int, default=env_default("PER_KIND", 400, int))
    ap.add_argument("--idle", type=int, default=env_default("IDLE", 2000, int))
    ap.add_argument("--slow", type=int, default=env_default("SLOW", 2000, int))
    ap.add_argument("--keepalive", type=int, default=env_default("KEEPALIVE", 500, int))
    ap.add_argument("--slow-second", type=int, default=env_default("SLOW_SECOND", 250, int))
    ap.add_argument("--slow-body", type=int, default=env_default("SLOW_BODY", 250, int))
    ap.add_argument("--declared", type=int, default=env_default("DECLARED", 300, int))
    ap.add_argument("--slow-interval", type=float, default=3.0, help="seconds between a slow client's bytes")
    ap.add_argument("--budget", type=float, default=env_default("BUDGET", 420, float))
    ap.add_argument("--port-base", type=int, default=env_default("PORT_BASE", 48500, int))
    ap.add_argument("--loadgen", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    ap.add_argument("--log-level", default=env_default("LOG_LEVEL", "info"))
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs/abuse.md"))
    ap.add_argument("--parts", default="1,2,3,4", help="which parts to run (2 includes the second gateway)")
    args = ap.parse_args()
    if not 48500 <= args.port_base <= 48999 - 7:
        ap.error("--port-base must keep every port inside 48500-48999")
    if not args.build:
        args.build = build_of(args.binary)
    args.check_binary = args.check_binary or args.binary
    return args


def build_of(binary):
    name = os.path.basename(binary) + os.path.dirname(binary)
    return "release" if "release" in name else "debug" if "debug" in name else "unknown"


def accepts_lockout(binary, work):
    """Whether `binary` knows admin.lockout (older builds refuse the key)."""
    cfg = os.path.join(work, "probe.yaml")
    with open(cfg, "w") as f:
        f.write("server: {listen: ['127.0.0.1:9']}\nadmin: {listen: '127.0.0.1:10', lockout: {threshold: 10}}\n"
                "upstream: {url: 'http://127.0.0.1:9'}\nstore: {kind: redis, url: 'redis://127.0.0.1:9/0'}\n")
    r = subprocess.run([binary, "check-config", cfg], capture_output=True, text=True, timeout=30)
    return "lockout" not in r.stdout + r.stderr


# ------------------------------------------------------------------ processes

def free_ports(base, n, avoid=()):
    """n ports from `base` up inside 48500-48999 that nothing holds now:
    outgoing connections (this script's own too) take ports in this range,
    so a gateway's are picked just before it starts."""
    out = []
    for port in range(base, 49000):
        if port in avoid:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        out.append(port)
        if len(out) == n:
            return out
    raise Broken(f"fewer than {n} free ports between {base} and 48999")


def wait_port(port, proc=None, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Broken(f"process for port {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise Broken(f"nothing listens on {port} after {timeout} s")


def stop_proc(proc):
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Redis:
    def __init__(self, port, workdir):
        self.port = port
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, self.proc)

    def command(self, *words):
        """One command in RESP; returns the reply's text (bulk or simple)."""
        out = b"*%d\r\n" % len(words) + b"".join(
            b"$%d\r\n%s\r\n" % (len(w.encode()), w.encode()) for w in words)
        with socket.create_connection(("127.0.0.1", self.port), 5) as s:
            s.sendall(out)
            buf = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if buf.startswith(b"$"):
                    head, _, rest = buf.partition(b"\r\n")
                    if len(rest) >= int(head[1:]) + 2:
                        return rest[: int(head[1:])].decode()
                elif buf.endswith(b"\r\n"):
                    return buf[1:-2].decode()
        raise RuntimeError(f"no reply from redis to {words[0]}")

    def reset_stats(self):
        self.command("CONFIG", "RESETSTAT")

    def commandstats(self):
        """{command: calls}, without the ones this script sends."""
        calls = {}
        for line in self.command("INFO", "commandstats").splitlines():
            m = re.match(r"cmdstat_([^:]+):calls=(\d+)", line)
            if m and m.group(1) not in OWN_COMMANDS:
                calls[m.group(1)] = int(m.group(2))
        return calls

    def stop(self):
        stop_proc(self.proc)


def gateway_yaml(ports, work, max_connections=MAX_CONNECTIONS, max_identities=100000, name="gw", lockout=True,
                 log_level="info"):
    proxy, admin, upstream, redis = ports
    return (
        "server:\n"
        f"  listen: ['127.0.0.1:{proxy}']\n"
        "  threads: 2\n"
        "  grace_period_seconds: 1\n"
        f"  keepalive_timeout_seconds: {KEEPALIVE_TIMEOUT}\n"
        f"  header_timeout_seconds: {HEADER_TIMEOUT}\n"
        f"  max_connections: {max_connections}\n"
        f"  upgrade_socket: {work}/{name}-upgrade.sock\n"
        "admin:\n"
        f"  listen: '127.0.0.1:{admin}'\n"
        "  api_key_env: TOKENGATE_ADMIN_KEY\n"
        + (f"  lockout: {{threshold: {LOCKOUT['threshold']}, window_seconds: {LOCKOUT['window_seconds']}, "
           f"duration_seconds: {LOCKOUT['duration_seconds']}}}\n" if lockout else "") +
        f"upstream: {{url: 'http://127.0.0.1:{upstream}'}}\n"
        "store:\n"
        "  kind: redis\n"
        f"  url: 'redis://127.0.0.1:{redis}/0'\n"
        f"  cache: {{enabled: true, max_age_seconds: 60, max_identities: {max_identities}}}\n"
        f"project: {{max_body_bytes: {PROJECT_BODY_LIMIT}}}\n"
        "access_log: {destination: off}\n"
        "audit: {destination: off}\n"
        f"log: {{format: text, level: '{log_level}'}}\n"
    )


class Gateway:
    def __init__(self, binary, yaml, work, name, proxy, admin):
        self.proxy, self.admin = proxy, admin
        self.cfg = os.path.join(work, f"{name}.yaml")
        with open(self.cfg, "w") as f:
            f.write(yaml)
        self.yaml = yaml
        self.log = os.path.join(work, f"{name}.log")
        # The level comes from the file (log.level), so a reload can change it.
        env = dict(os.environ, TOKENGATE_ADMIN_KEY=ADMIN_KEY, MIMALLOC_PURGE_DELAY="0")
        env.pop("RUST_LOG", None)
        self.proc = subprocess.Popen([binary, "serve", "--config", self.cfg], cwd=work, env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        wait_port(proxy, self.proc)
        wait_port(admin, self.proc)

    def metrics(self):
        status, _, body = call(self.admin, "GET", "/metrics")
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                try:
                    out[key] = float(value)
                except ValueError:
                    pass
        return out

    def reload(self, yaml):
        """Rewrites the config file and reloads it (POST /reload)."""
        with open(self.cfg, "w") as f:
            f.write(yaml)
        st, _, body = call(self.admin, "POST", "/reload", token=ADMIN_KEY)
        if st != 200:
            raise Broken(f"reload: {st} {body[:200]!r}")

    def log_bytes(self):
        return os.path.getsize(self.log)

    def stop(self):
        stop_proc(self.proc)


def metric(m, name, **labels):
    """The sum of every series of `name` whose labels include `labels`."""
    total = 0.0
    for key, value in m.items():
        base, _, rest = key.partition("{")
        if base == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


# ------------------------------------------------------------------ HTTP

def call(port, method, path, body=None, token=None, headers=None, source=None, timeout=10):
    """One request on a fresh connection; (status, headers, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    h = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        h["Authorization"] = f"Bearer {token}"
    h.update(headers or {})
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body)
    try:
        conn.request(method, path, data, h)
        resp = conn.getresponse()
        out = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, out
    finally:
        conn.close()


def read_response(sock, deadline):
    """Reads one HTTP/1.1 answer; returns (status, head text, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline:
            raise TimeoutError("answer header")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before an answer" if not buf else "closed inside the answer")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while not body.endswith(b"0\r\n\r\n"):
            if time.monotonic() > deadline:
                raise TimeoutError("answer body")
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    else:
        length = int(headers.get(b"content-length", b"0"))
        while len(body) < length:
            if time.monotonic() > deadline:
                raise TimeoutError("answer body")
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside the answer body")
            body += chunk
    return status, head.decode("latin-1"), body


def exchange(port, raw, source=None, timeout=15.0):
    """Sends raw bytes (from a thread, so a gateway that answers before
    reading everything is heard) and reads one answer: its status, or a
    word for what happened instead."""
    s = socket.socket()
    if source:
        s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))

    def send():
        try:
            s.sendall(raw)
        except OSError:
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        status, _, body = read_response(s, time.monotonic() + timeout)
        return status, body
    except ConnectionResetError:
        return "reset", b""
    except (ConnectionError, TimeoutError, socket.timeout) as e:
        return str(e) or "timeout", b""
    finally:
        s.close()
        sender.join(timeout=5)


class KeepAlive:
    """A keep-alive client that records statuses and reconnects when closed."""

    def __init__(self, port, source=None):
        self.port, self.source = port, source
        self.conn = None

    def get(self, path, headers, body=None, method="GET"):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=10,
                    source_address=(self.source, 0) if self.source else None)
            try:
                self.conn.request(method, path, body, headers)
                resp = self.conn.getresponse()
                resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.close()
                return resp.status
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    return "closed"
        return "closed"

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ------------------------------------------------------------------ tokens

def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token_parts(token):
    raw = base64.urlsafe_b64decode(token[5:] + "=" * (-len(token[5:]) % 4))
    return raw[:16], raw[16:32], raw[32:64]


def make_token(identity, token_id, secret):
    payload = identity + token_id + secret
    return "tgat_" + b64(payload + hashlib.sha256(payload).digest()[:4])


def flood_kinds(token, rng):
    """Name -> function giving one Authorization header value (or None for
    no header) of that kind. Every one is invalid."""
    iid, tid, _ = token_parts(token)
    alphabet = string.ascii_letters + string.digits

    def junk():
        return "Bearer " + "".join(rng.choice(alphabet + "-_.~") for _ in range(rng.randint(8, 200)))

    def bad_checksum():
        return "Bearer tgat_" + "".join(rng.choice(alphabet + "-_") for _ in range(len(token) - 5))

    def wrong_length():
        cut = rng.choice([-1, -2, -10, 1, 2, 10])
        return "Bearer " + (token[:cut] if cut < 0 else token + "A" * cut)

    def bad_charset():
        i = rng.randint(5, len(token) - 1)
        return "Bearer " + token[:i] + rng.choice("+/!=*%$ ") + token[i + 1:]

    def unknown_identity():
        return "Bearer " + make_token(os.urandom(16), os.urandom(16), os.urandom(32))

    def unknown_token_id():
        return "Bearer " + make_token(iid, iid[:8] + os.urandom(8), os.urandom(32))

    def wrong_secret():
        return "Bearer " + make_token(iid, tid, os.urandom(32))

    def not_bearer():
        return rng.choice([None, "Basic " + b64(os.urandom(24)), "Token " + token, token, "Bearer"])

    def huge_header():
        return "Bearer " + "A" * (40 * 1024)

    return {
        "junk string": junk,
        "tgat_ prefix, bad checksum": bad_checksum,
        "wrong length": wrong_length,
        "character outside base64url": bad_charset,
        "well-formed, unknown identity": unknown_identity,
        "real identity, unknown token id": unknown_token_id,
        "real token id, wrong secret": wrong_secret,
        "missing or not Bearer": not_bearer,
        "40 KiB Authorization header": huge_header,
    }


# ------------------------------------------------------------------ load

LUA = r"""
-- Generated by scripts/abuse.py: cycles the requests below, tallies statuses.
local threads = {}
local reqs_src = {%(reqs)s}
function setup(thread) table.insert(threads, thread) end
function init(args)
  statuses = {}
  reqs = {}
  for i, r in ipairs(reqs_src) do
    local h = {}
    for k, v in pairs(r) do h[k] = v end
    reqs[i] = wrk.format("GET", "%(path)s", h)
  end
  idx = math.random(#reqs)
end
function request() idx = idx %% #reqs + 1; return reqs[idx] end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
%(delay)s
function done(summary, latency, requests)
  local st = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then for k, v in pairs(s) do st[k] = (st[k] or 0) + v end end
  end
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d %%d %%d %%d\n", summary.requests, summary.duration,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
  for k, v in pairs(st) do io.write(string.format("STATUS %%d %%d\n", k, v)) end
end
"""


def lua_str(s):
    out = []
    for ch in s:
        o = ord(ch)
        if ch in '\\"' or o < 32 or o > 126:
            out.append("\\%d" % o if ch not in '\\"' else "\\" + ch)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


class Load:
    """Keep-alive load of `clients` connections cycling `headers_list` (a
    list of header dicts) for `duration` s, at `rate` req/s in all when set.
    run() returns {requests, rps, statuses, errors, p50_ms, p99_ms}."""

    def __init__(self, tool, port, headers_list, clients, duration, rate, work, name):
        self.tool, self.port, self.headers_list = tool, port, headers_list
        self.clients, self.duration, self.rate, self.work, self.name = clients, duration, rate, work, name
        self.result = None
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def wait(self):
        self.thread.join(timeout=self.duration + 60)
        if self.result is None:
            raise RuntimeError(f"load {self.name} did not finish")
        return self.result

    def run(self):
        return self.start().wait()

    def _run(self):
        try:
            self.result = self._wrk() if self.tool == "wrk" else self._python()
        except Exception as e:  # reported as a load that failed
            self.result = {"requests": 0, "rps": 0.0, "statuses": {}, "errors": 1,
                           "p50_ms": float("nan"), "p99_ms": float("nan"), "failure": repr(e)}

    def _wrk(self):
        reqs = ",".join("{" + ",".join(f"[{lua_str(k)}]={lua_str(v)}" for k, v in h.items()) + "}"
                        for h in self.headers_list)
        delay = ""
        if self.rate:
            delay = f"function delay() return {max(1, round(1000 * self.clients / self.rate))} end"
        script = os.path.join(self.work, f"{self.name}.lua")
        with open(script, "w") as f:
            f.write(LUA % {"reqs": reqs, "path": VALID_PATH, "delay": delay})
        out = subprocess.run(
            ["wrk", "-t1", f"-c{self.clients}", f"-d{self.duration:g}s", "--timeout", "10s", "-s", script,
             f"http://127.0.0.1:{self.port}{VALID_PATH}"],
            capture_output=True, text=True, timeout=self.duration + 40).stdout
        statuses, res = {}, None
        for line in out.splitlines():
            if line.startswith("RESULT "):
                res = [int(x) for x in line.split()[1:]]
            elif line.startswith("STATUS "):
                _, code, n = line.split()
                statuses[int(code)] = int(n)
        if res is None:
            raise RuntimeError("wrk printed no result: " + out[-500:])
        n, dur_us, c_err, r_err, w_err, t_err, p50, p99, _ = res
        return {"requests": n, "rps": n / (dur_us / 1e6), "statuses": statuses,
                "errors": c_err + r_err + w_err + t_err, "p50_ms": p50 / 1000, "p99_ms": p99 / 1000}

    def _python(self):
        lock = threading.Lock()
        statuses, lat, errors = {}, [], [0]
        end = time.monotonic() + self.duration
        gap = self.clients / self.rate if self.rate else 0.0

        def client(i):
            c = KeepAlive(self.port)
            j = i
            while time.monotonic() < end:
                h = self.headers_list[j % len(self.headers_list)]
                j += 1
                t0 = time.monotonic()
                st = c.get(VALID_PATH, h)
                dt = time.monotonic() - t0
                with lock:
                    if st == "closed":
                        errors[0] += 1
                    else:
                        statuses[st] = statuses.get(st, 0) + 1
                        lat.append(dt)
                if gap and gap > dt:
                    time.sleep(min(gap - dt, max(0.0, end - time.monotonic())))
            c.close()

        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=self.duration + 30)
        n = sum(statuses.values())
        return {"requests": n, "rps": n / (time.monotonic() - started), "statuses": statuses,
                "errors": errors[0], "p50_ms": pct(lat, 50) * 1000, "p99_ms": pct(lat, 99) * 1000}


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


# ------------------------------------------------------------------ the run

class Run:
    def __init__(self, args):
        self.args = args
        self.end = time.monotonic() + args.budget
        self.work = tempfile.mkdtemp(prefix="tg-abuse-")
        self.ports = dict(zip(["upstream", "redis"], free_ports(args.port_base, 2)))
        self.failures = []
        self.report = {}
        self.upstream = self.redis = self.gw = None
        self.upstream_log = os.path.join(self.work, "upstream.log")
        self.unexpected_5xx = {}

    def check_budget(self, what):
        if time.monotonic() > self.end:
            raise Budget(f"budget of {self.args.budget:g} s spent before {what}")
        for gw in (self.gw, getattr(self, "gw2", None), getattr(self, "gw3", None)):
            if gw is not None and gw.proc.poll() is not None:
                raise Broken(f"a gateway exited (status {gw.proc.returncode}) before {what}; its log: {gw.log}")

    def fail(self, why):
        print(f"  CORRECTNESS FAILURE: {why}", flush=True)
        self.failures.append(why)

    def note_statuses(self, where, statuses, allow_503=False):
        for code, n in statuses.items():
            if isinstance(code, int) and code >= 500 and not (allow_503 and code == 503):
                self.unexpected_5xx[f"{where}: {code}"] = self.unexpected_5xx.get(f"{where}: {code}", 0) + n

    def upstream_count(self):
        with open(self.upstream_log, "rb") as f:
            return sum(1 for line in f if b'HTTP/1.1"' in line or b'HTTP/1.0"' in line)

    # -------------------------------------------------------------- setup
    def start(self):
        a = self.args
        self.redis = Redis(self.ports["redis"], self.work)
        self.upstream = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "scripts/echo_upstream.py"), str(self.ports["upstream"])],
            stdout=subprocess.DEVNULL, stderr=open(self.upstream_log, "w"))
        wait_port(self.ports["upstream"], self.upstream)
        self.main_lockout = accepts_lockout(a.binary, self.work)
        self.gw = self.gateway("gw", a.binary, lockout=self.main_lockout)
        self.ports["proxy"] = self.gw.proxy
        self.token, self.iid = self.make_identity("abuse", "admin")
        self.member_token, _ = self.make_identity("abuse-member", "member")
        self.valid_headers = {"Authorization": f"Bearer {self.token}"}

    def gateway(self, name, binary, **config):
        """Starts a gateway on two ports free just now (again on others if
        one was taken meanwhile)."""
        for attempt in range(3):
            used = set(self.ports.values())
            proxy, admin = free_ports(self.args.port_base, 2, avoid=used)
            yaml = gateway_yaml((proxy, admin, self.ports["upstream"], self.ports["redis"]), self.work,
                                name=name, log_level=self.args.log_level, **config)
            try:
                return Gateway(binary, yaml, self.work, name, proxy, admin)
            except Broken:
                with open(os.path.join(self.work, f"{name}.log")) as f:
                    if "in use" not in f.read() or attempt == 2:
                        raise
        raise Broken(f"gateway {name} did not start")

    def make_identity(self, name, role, port=None):
        port = port or self.ports["proxy"]
        st, _, body = call(port, "POST", "/api/v1/identities",
                           {"name": name, "organizationId": "org-abuse", "role": role}, ADMIN_KEY)
        if st != 200:
            raise Broken(f"creating an identity: {st} {body[:200]!r}")
        iid = json.loads(body)["identity"]["id"]
        st, _, body = call(port, "POST", f"/api/v1/auth/token-auth/identities/{iid}", {}, ADMIN_KEY)
        if st != 200:
            raise Broken(f"attaching Token Auth: {st} {body[:200]!r}")
        st, _, body = call(port, "POST", f"/api/v1/auth/token-auth/identities/{iid}/tokens", {"name": "t"}, ADMIN_KEY)
        if st != 200:
            raise Broken(f"creating a token: {st} {body[:200]!r}")
        return json.loads(body)["accessToken"], iid

    def stop(self):
        for thing in (self.gw, getattr(self, "gw2", None), getattr(self, "gw3", None)):
            if thing is not None:
                thing.stop()
        stop_proc(self.upstream)
        if self.redis is not None:
            self.redis.stop()

    def load(self, headers_list, clients, rate, name, duration=None):
        return Load(self.args.loadgen, self.ports["proxy"], headers_list, clients,
                    duration or self.args.duration, rate, self.work, name)

    # -------------------------------------------------------------- part 1
    def snapshot(self):
        """Starts counting: Redis commands (from zero), the gateway's CPU and metrics."""
        self.redis.reset_stats()
        return {"t": time.monotonic(), "cpu": cpu_seconds(self.gw.proc.pid), "m": self.gw.metrics(),
                "log": self.gw.log_bytes()}

    def since(self, snap, background):
        """What happened since `snap`: seconds, gateway CPU seconds, Redis
        commands beyond the background, near-cache hits and misses, forwarded requests."""
        stats = self.redis.commandstats()
        m1 = self.gw.metrics()
        dt = time.monotonic() - snap["t"]
        d = lambda name, **kw: metric(m1, name, **kw) - metric(snap["m"], name, **kw)
        redis = attributed(stats, background, dt)
        return {"seconds": dt, "cpu": cpu_seconds(self.gw.proc.pid) - snap["cpu"], "redis": redis,
                "evalsha": redis.get("evalsha", 0) + redis.get("eval", 0),
                "hits": d("tokengate_store_cache_hits_total"), "misses": d("tokengate_store_cache_misses_total"),
                "forwarded": d("tokengate_requests_total", outcome="forwarded"),
                "log": self.gw.log_bytes() - snap["log"]}

    def part_flood(self):
        a = self.args
        print("== 1. token flood", flush=True)
        rng = random.Random(10)
        kinds = flood_kinds(self.token, rng)
        flood_list = []
        for i in range(40):
            for k, make in kinds.items():
                v = make()
                flood_list.append({"Authorization": v} if v is not None else {"X-No-Auth": "1"})
        warm = self.load([self.valid_headers], a.clients, 0, "warm", duration=2).run()
        self.note_statuses("warm-up", warm["statuses"])
        time.sleep(2)  # the unlimited token's uses are written once a second

        # Background: what the gateway sends Redis with no traffic at all.
        self.check_budget("the Redis baseline")
        self.redis.reset_stats()
        t0 = time.monotonic()
        time.sleep(3)
        idle = self.redis.commandstats()
        background = {k: v / (time.monotonic() - t0) for k, v in idle.items()}
        print(f"  Redis commands with no traffic: {fmt_rates(background)} per s", flush=True)

        # Per kind, one keep-alive client, sequential, no valid traffic meanwhile.
        per_kind = []
        for name, make in kinds.items():
            self.check_budget(f"flood kind {name}")
            c = KeepAlive(self.ports["proxy"])
            snap = self.snapshot()
            statuses = {}
            for _ in range(a.per_kind):
                v = make()
                st = c.get(VALID_PATH, {"Authorization": v} if v is not None else {})
                statuses[st] = statuses.get(st, 0) + 1
            c.close()
            row = dict(self.since(snap, background), kind=name, requests=a.per_kind, statuses=statuses)
            per_kind.append(row)
            self.note_statuses(f"kind {name}", statuses)
            print(f"  {name:<34} {fmt_statuses(statuses):<12} Redis {fmt_counts(row['redis'])} "
                  f"({row['evalsha'] / a.per_kind:.2f} EVALSHA/req), cache hits {row['hits']:g} misses {row['misses']:g}, "
                  f"log {row['log'] / a.per_kind:.0f} B/req",
                  flush=True)
            if row["forwarded"]:
                self.fail(f"flood kind {name}: {row['forwarded']:g} requests forwarded")

        # The mixed flood alone, unthrottled: its rate, the gateway's CPU per
        # request and every Redis command it caused.
        self.check_budget("the flood alone")
        snap = self.snapshot()
        flood_alone = self.load(flood_list, a.flood_clients, 0, "flood-alone").run()
        flood_alone.update(self.since(snap, background))
        flood_alone["cpu_us"] = flood_alone["cpu"] / max(1, flood_alone["requests"]) * 1e6
        self.note_statuses("flood alone", flood_alone["statuses"])
        if flood_alone["forwarded"]:
            self.fail(f"flood alone: {flood_alone['forwarded']:g} invalid requests forwarded")
        print(f"  flood alone: {flood_alone['rps']:.0f} req/s {fmt_statuses(flood_alone['statuses'])}, "
              f"gateway CPU {flood_alone['cpu_us']:.0f} us/req, process log {flood_alone['log'] / max(1, flood_alone['requests']):.0f} "
              f"B/req, Redis {fmt_counts(flood_alone['redis'])}", flush=True)

        # The same at log level warn (a reload), for what the process log's
        # line per refusal costs; then back.
        quiet = None
        if a.log_level != "warn":
            self.check_budget("the flood alone at warn")
            self.gw.reload(self.gw.yaml.replace(f"level: '{a.log_level}'}}", "level: 'warn'}"))
            snap = self.snapshot()
            quiet = self.load(flood_list, a.flood_clients, 0, "flood-alone-warn").run()
            quiet.update(self.since(snap, background))
            quiet["cpu_us"] = quiet["cpu"] / max(1, quiet["requests"]) * 1e6
            self.gw.reload(self.gw.yaml)
            self.note_statuses("flood alone at warn", quiet["statuses"])
            print(f"  flood alone, log level warn: {quiet['rps']:.0f} req/s, gateway CPU {quiet['cpu_us']:.0f} us/req, "
                  f"process log {quiet['log'] / max(1, quiet['requests']):.0f} B/req", flush=True)

        # Rounds: valid alone, valid + fixed-rate flood, valid + unthrottled flood.
        rounds = []
        rate = a.flood_rate
        for r in range(a.rounds):
            row = {}
            # Each round starts with another phase, so no phase always
            # follows the same one.
            order = ("alone", "rated", "unthrottled")
            for phase in order[r % 3:] + order[:r % 3]:
                self.check_budget(f"round {r + 1} {phase}")
                snap = self.snapshot()
                valid = self.load([self.valid_headers], a.clients, 0, f"valid-{r}-{phase}")
                flood = None
                if phase != "alone":
                    flood = self.load(flood_list, a.flood_clients, rate if phase == "rated" else 0,
                                      f"flood-{r}-{phase}")
                    flood.start()
                v = valid.run()
                f = flood.wait() if flood else None
                seen = self.since(snap, background)
                self.note_statuses(f"valid {phase}", v["statuses"])
                if f:
                    self.note_statuses(f"flood {phase}", f["statuses"])
                if v["statuses"].get(200, 0) == 0:
                    self.fail(f"round {r + 1} {phase}: no valid request succeeded")
                forwarded_extra = seen["forwarded"] - v["statuses"].get(200, 0)
                if forwarded_extra > a.clients:
                    self.fail(f"round {r + 1} {phase}: {forwarded_extra:g} more requests forwarded than valid ones answered 200")
                row[phase] = dict(seen, valid=v, flood=f)
                if phase == "alone" and not rate:
                    rate = max(100.0, v["rps"])
                extra = f"; flood {f['rps']:.0f} req/s {fmt_statuses(f['statuses'])}" if f else ""
                print(f"  round {r + 1} {phase:<12} valid {v['rps']:7.0f} req/s p50 {v['p50_ms']:.2f} ms "
                      f"p99 {v['p99_ms']:.2f} ms {fmt_statuses(v['statuses'])}{extra}; EVALSHA {seen['evalsha']}, "
                      f"cache hits {seen['hits']:g} misses {seen['misses']:g}, gateway CPU {seen['cpu']:.1f} s", flush=True)
            rounds.append(row)
        self.report["flood"] = {"background": background, "per_kind": per_kind, "alone": flood_alone, "quiet": quiet,
                                "rounds": rounds, "rate": rate, "kinds": list(kinds)}

    # -------------------------------------------------------------- part 2
    def part_connections(self):
        a = self.args
        print("== 2. idle and slow connections from 127.0.0.1", flush=True)
        counts = dict(zip(Holder.KINDS, (a.idle, a.slow, a.keepalive, a.slow_second, a.slow_body)))
        want = sum(counts.values()) + 500
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want), hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft < want:
            scale = (soft - 500) / (want - 500)
            counts = {k: int(v * scale) for k, v in counts.items()}
            print(f"  open-file limit {soft}: scaled down to {counts}")
        pid = self.gw.proc.pid
        log_at = self.gw.log_bytes()
        self.check_budget("the connection baseline")
        time.sleep(1)
        rss_before = rss_kib(pid)
        base = self.valid_phase("baseline")
        holder = Holder(self.ports["proxy"], a.slow_interval, self.token)
        t_open = time.monotonic()
        holder.open(counts, deadline=time.monotonic() + 60)
        opened_s = time.monotonic() - t_open
        holder.start(maintain=True)
        time.sleep(1)
        m = self.gw.metrics()
        held_metric = metric(m, "tokengate_open_connections")
        fds = open_fds(pid)
        rss_samples = [rss_kib(pid)]
        sampler_stop = threading.Event()

        def sample():
            while not sampler_stop.wait(1.0):
                rss_samples.append(rss_kib(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # Long enough for the gateway to cut (and the script to reopen) every
        # header-timeout connection once while valid clients are measured.
        during = self.valid_phase("during", max(a.duration, HEADER_TIMEOUT + 4))
        holder.maintain = False
        wait_until = time.monotonic() + max(HEADER_TIMEOUT, KEEPALIVE_TIMEOUT) + 10
        while time.monotonic() < wait_until and holder.open_count() > 0:
            self.check_budget("waiting for the gateway to close connections")
            time.sleep(0.5)
        sampler_stop.set()
        sampler.join(timeout=5)
        holder.stop()
        time.sleep(3)
        rss_after = rss_kib(pid)
        time.sleep(7)
        rss_after10 = rss_kib(pid)
        m = self.gw.metrics()
        groups = holder.summary()
        errors = {}
        with open(self.gw.log, "rb") as f:
            f.seek(log_at)
            for line in f:
                if b" ERROR " in line:
                    why = line.split(b"cause:", 1)[-1].split(b",", 1)[0].strip().decode("latin-1", "replace")[:80]
                    errors[why] = errors.get(why, 0) + 1
        self.report["connections"] = {
            "rss_before": rss_before, "rss_during": max(rss_samples), "rss_after": rss_after,
            "rss_after10": rss_after10,
            "open_metric": held_metric, "fds": fds, "opened_s": opened_s, "base": base,
            "during": during, "groups": groups, "after_open_metric": metric(m, "tokengate_open_connections"),
            "requested": counts, "during_s": max(a.duration, HEADER_TIMEOUT + 4), "errors": errors,
        }
        for g in groups:
            print(f"  {g['kind']:<17} opened {g['opened']:5d} (reopened {g['reopened']}), closed by the gateway "
                  f"{g['closed']:5d}, still open {g['still_open']}, after {fmt_s(g['life_min'])}/{fmt_s(g['life_p50'])}/"
                  f"{fmt_s(g['life_max'])} (min/p50/max), it sent {g['sent']}", flush=True)
        print(f"  gateway RSS {rss_before / 1024:.1f} -> {max(rss_samples) / 1024:.1f} -> {rss_after / 1024:.1f} "
              f"-> {rss_after10 / 1024:.1f} MiB (before, most while held, 3 s and 10 s after); "
              f"open connections (metric) {held_metric:g}, fds {fds}", flush=True)
        print(f"  process log lines at ERROR meanwhile: {errors}", flush=True)
        for name, r in (("baseline", base), ("during", during)):
            if r["keepalive"]["statuses"].get(200, 0) == 0:
                self.fail(f"connections {name}: no valid keep-alive request succeeded")
            if r["fresh"]["ok"] == 0:
                self.fail(f"connections {name}: no valid request on a new connection succeeded")

    def valid_phase(self, name, duration=None):
        """Valid keep-alive clients (the load tool) and, at the same time, one
        client opening a new connection per request."""
        a = self.args
        duration = duration or a.duration
        self.check_budget(f"valid clients {name}")
        load = self.load([self.valid_headers], a.clients, 0, f"conn-{name}", duration=duration).start()
        fresh = {"ok": 0, "failed": 0, "other": {}, "lat": []}
        end = time.monotonic() + duration
        while time.monotonic() < end:
            t0 = time.monotonic()
            try:
                st, _, _ = call(self.ports["proxy"], "GET", VALID_PATH, token=self.token, timeout=10)
            except OSError as e:
                st = type(e).__name__
            dt = time.monotonic() - t0
            if st == 200:
                fresh["ok"] += 1
                fresh["lat"].append(dt)
            else:
                fresh["failed"] += 1
                fresh["other"][st] = fresh["other"].get(st, 0) + 1
            time.sleep(0.02)
        ka = load.wait()
        self.note_statuses(f"valid {name}", ka["statuses"])
        self.note_statuses(f"fresh {name}", {k: v for k, v in fresh["other"].items() if isinstance(k, int)})
        fresh["p50_ms"] = pct(fresh["lat"], 50) * 1000
        fresh["p99_ms"] = pct(fresh["lat"], 99) * 1000
        del fresh["lat"]
        print(f"  valid {name:<9} keep-alive {ka['rps']:7.0f} req/s p50 {ka['p50_ms']:.2f} ms p99 {ka['p99_ms']:.2f} ms "
              f"{fmt_statuses(ka['statuses'])} errors {ka['errors']}; new connection each: {fresh['ok']} ok, "
              f"{fresh['failed']} failed, p50 {fresh['p50_ms']:.2f} ms p99 {fresh['p99_ms']:.2f} ms", flush=True)
        return {"keepalive": ka, "fresh": fresh}

    # -------------------------------------------------------------- part 2b and 1c
    def part_small_gateway(self):
        """A second gateway on the same Redis with a small max_connections and
        a small near cache: what one address can take of each."""
        a = self.args
        print(f"== 2b. one address against max_connections {SMALL_MAX_CONNECTIONS}, "
              f"and the near cache (max_identities {SMALL_CACHE}) under unknown identities", flush=True)
        self.check_budget("the second gateway")
        p = {"proxy2": None}
        self.gw2 = self.gateway("gw2", a.binary, max_connections=SMALL_MAX_CONNECTIONS,
                                max_identities=SMALL_CACHE, lockout=self.main_lockout)
        p["proxy2"] = self.gw2.proxy
        out = {}
        # (a) max_connections: silent connections from 127.0.0.1 up to the limit.
        holder = Holder(p["proxy2"], a.slow_interval, self.token)
        holder.open({"silent": SMALL_MAX_CONNECTIONS}, deadline=time.monotonic() + 30)
        holder.start(maintain=False)
        time.sleep(1)
        statuses = {}
        for src in ("127.0.0.1", "127.0.0.2"):
            try:
                st, _, _ = call(p["proxy2"], "GET", VALID_PATH, token=self.token, source=src, timeout=5)
            except OSError as e:
                st = type(e).__name__
            statuses[src] = st
        m = self.gw2.metrics()
        holder.stop()
        time.sleep(1)
        try:
            after, _, _ = call(p["proxy2"], "GET", VALID_PATH, token=self.token, timeout=5)
        except OSError as e:
            after = type(e).__name__
        out["maxconn"] = {"held": SMALL_MAX_CONNECTIONS, "statuses": statuses, "after": after,
                          "refused_metric": metric(m, "tokengate_connections_refused_total")}
        self.note_statuses("max_connections", {v: 1 for v in statuses.values() if isinstance(v, int)}, allow_503=True)
        print(f"  {SMALL_MAX_CONNECTIONS} silent connections held: a valid request from 127.0.0.1 got {statuses['127.0.0.1']}, "
              f"from 127.0.0.2 {statuses['127.0.0.2']}; after they closed: {after}", flush=True)

        # (b) the near cache: a fresh identity's valid requests, alone and while
        # one client sends well-formed tokens naming unknown identities.
        token2, _ = self.make_identity("abuse-cache", "member", port=self.ports["proxy"])
        kinds = flood_kinds(self.token, random.Random(3))
        rows = {}
        for phase in ("alone", "with unknown-identity flood", "after the flood"):
            self.check_budget(f"near cache {phase}")
            stop = threading.Event()
            flooder = None
            flood_sent = [0]
            if phase.startswith("with"):
                def flood():
                    c = KeepAlive(p["proxy2"])
                    while not stop.is_set() and flood_sent[0] < 200000:
                        c.get(VALID_PATH, {"Authorization": kinds["well-formed, unknown identity"]()})
                        flood_sent[0] += 1
                    c.close()
                flooder = threading.Thread(target=flood, daemon=True)
                flooder.start()
                time.sleep(2)
            m0 = self.gw2.metrics()
            self.redis.reset_stats()
            c = KeepAlive(p["proxy2"])
            st_counts = {}
            sent0 = flood_sent[0]
            for _ in range(200):
                st = c.get(VALID_PATH, {"Authorization": f"Bearer {token2}"})
                st_counts[st] = st_counts.get(st, 0) + 1
                time.sleep(0.01)
            c.close()
            m1 = self.gw2.metrics()
            stats = self.redis.commandstats()
            flood_n = flood_sent[0] - sent0
            stop.set()
            if flooder:
                flooder.join(timeout=15)
            hits = metric(m1, "tokengate_store_cache_hits_total") - metric(m0, "tokengate_store_cache_hits_total")
            misses = metric(m1, "tokengate_store_cache_misses_total") - metric(m0, "tokengate_store_cache_misses_total")
            self.note_statuses(f"near cache {phase}", st_counts)
            rows[phase] = {"statuses": st_counts, "hits": hits, "misses": misses, "flood": flood_n,
                           "evalsha": stats.get("evalsha", 0)}
            print(f"  near cache, {phase:<28} valid {fmt_statuses(st_counts)}: cache hits {hits:g}, misses {misses:g} "
                  f"(flood requests meanwhile {flood_n}), EVALSHA {stats.get('evalsha', 0)}", flush=True)
            if phase.startswith("with"):
                time.sleep(4)  # empty slots are swept after 2 s
        out["cache"] = rows
        self.gw2.stop()
        self.gw2 = None
        self.report["small"] = out

    # -------------------------------------------------------------- parts 3 and 4
    def start_check_gateway(self):
        """Parts 3 and 4 run on a gateway of their own (--check-binary), on
        the same Redis and upstream: correctness, not speed."""
        a = self.args
        self.check_budget("the check gateway")
        self.check_lockout = accepts_lockout(a.check_binary, self.work)
        self.gw3 = self.gateway("gw3", a.check_binary, lockout=self.check_lockout)
        self.ports["proxy3"] = self.gw3.proxy
        print(f"== parts 3 and 4 on {a.check_binary} ({build_of(a.check_binary)})", flush=True)

    def part_oversized(self):
        print("== 3. oversized input", flush=True)
        port = self.ports["proxy3"]
        auth = f"Authorization: Bearer {self.token}\r\n"
        admin = f"Authorization: Bearer {ADMIN_KEY}\r\n"
        n = [0]

        def marker():
            n[0] += 1
            return f"/abuse-oversized-{n[0]}"

        def get(headers, target=None):
            return (f"GET {target or marker()} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{headers}"
                    "Connection: close\r\n\r\n").encode()

        def post(path, body, extra, chunked=False):
            head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Type: application/json\r\nConnection: close\r\n"
            if chunked:
                chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 16384]), body[i:i + 16384])
                                  for i in range(0, len(body), 16384))
                return head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
            return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body

        def json_body(size):
            pad = "x" * max(0, size - 40)
            return json.dumps({"name": "abuse-big", "organizationId": "org-abuse", "pad": pad}).encode()

        pad = lambda size: "X-Pad: " + "a" * size + "\r\n"
        many = "".join(f"X-Pad-{i}: " + "b" * 250 + "\r\n" for i in range(150))
        cases = [
            ("one header just under 32 KiB (control)", get(pad(HEADER_LIMIT - 1200)), 200, True),
            ("one 33 KiB header", get(pad(33 * 1024)), 431, False),
            ("150 headers, 38 KiB in all", get(many), 431, False),
            ("a 40 KiB request target", get("", target=marker() + "?q=" + "c" * 40960), 431, False),
            ("a 40 KiB Authorization header", get("").replace(auth.encode(), ("Authorization: Bearer " + "A" * 40960 + "\r\n").encode()), 431, False),
            ("one 1 MiB header", get(pad(1 << 20)), None, False),
            ("300 small headers (4 KiB in all)", get("".join(f"X-H{i}: v\r\n" for i in range(300))), None, None),
            ("proxied JSON body just under 64 KiB (control)", post(marker(), json_body(PROJECT_BODY_LIMIT - 100), auth), 200, True),
            ("proxied JSON body of 65 KiB, Content-Length", post(marker(), json_body(PROJECT_BODY_LIMIT + 1024), auth), 413, False),
            ("proxied JSON body of 65 KiB, chunked", post(marker(), json_body(PROJECT_BODY_LIMIT + 1024), auth, chunked=True), 413, False),
            ("proxied JSON body of 8 MiB, Content-Length", post(marker(), json_body(8 << 20), auth), 413, False),
            ("management body of 1 MiB + 1 KiB, Content-Length", post("/api/v1/identities", json_body(MANAGEMENT_BODY_LIMIT + 1024), admin), 413, False),
            ("management body of 1 MiB + 1 KiB, chunked", post("/api/v1/identities", json_body(MANAGEMENT_BODY_LIMIT + 1024), admin, chunked=True), 413, False),
            ("management body of 900 KiB (control: under the limit)", post("/api/v1/identities", json_body(900 * 1024), admin), None, False),
        ]
        m0 = self.gw3.metrics()
        rows = []
        for name, raw, expect, forwardable in cases:
            self.check_budget(f"oversized: {name}")
            before = self.upstream_count()
            t0 = time.monotonic()
            status, body = exchange(port, raw)
            dt = time.monotonic() - t0
            time.sleep(0.2)
            reached = self.upstream_count() - before
            rows.append({"case": name, "bytes": len(raw), "status": status, "expected": expect,
                         "forwarded": reached, "ms": dt * 1000, "error": error_name(body)})
            print(f"  {name:<52} {len(raw):>8} B -> {status} {error_name(body)} ({dt * 1000:.0f} ms), "
                  f"reached the upstream: {reached}", flush=True)
            if isinstance(status, int):
                self.note_statuses(f"oversized {name}", {status: 1})
            if expect is not None and status != expect:
                self.fail(f"oversized: {name}: got {status}, expected {expect}")
            if forwardable is False and reached:
                self.fail(f"oversized: {name}: reached the upstream")
            if forwardable is True and not reached:
                self.fail(f"oversized: {name}: the control request did not reach the upstream (counting is broken)")
        m1 = self.gw3.metrics()
        st, _, body = call(port, "GET", "/api/v1/identities?limit=100", token=ADMIN_KEY)
        created = sum(1 for i in json.loads(body).get("identities", []) if i.get("name") == "abuse-big") if st == 200 else None
        self.report["oversized"] = {"rows": rows, "big_identities": created,
                                    "bad_request": metric(m1, "tokengate_requests_total", outcome="bad_request")
                                    - metric(m0, "tokengate_requests_total", outcome="bad_request")}
        print(f"  identities named abuse-big afterwards (only the 900 KiB control may create one): {created}", flush=True)
        if created is not None and created > 1:
            self.fail("an oversized management body created an identity")
        self.report["oversized"]["declared"] = self.declared_bodies()

    def declared_bodies(self):
        """Bodies declared large and never sent: connections that send a
        request header with a Content-Length and one byte of body, held
        open; the gateway's RSS per connection shows what it sets aside."""
        a = self.args
        port, pid = self.ports["proxy3"], self.gw3.proc.pid
        auth = f"Authorization: Bearer {self.token}\r\n"
        cases = [
            ("management POST, no credentials, declares 1 MiB", "/api/v1/identities", MANAGEMENT_BODY_LIMIT, ""),
            ("management POST, no credentials, declares 4 KiB", "/api/v1/identities", 4096, ""),
            ("proxied POST, no token, declares 64 KiB", "/v1/things", PROJECT_BODY_LIMIT, ""),
            ("proxied POST, valid token, declares 64 KiB", "/v1/things", PROJECT_BODY_LIMIT, auth),
        ]
        rows = []
        for name, path, length, extra in cases:
            self.check_budget(f"declared bodies: {name}")
            time.sleep(1)
            rss0 = rss_kib(pid)
            socks = []
            try:
                for _ in range(a.declared):
                    s = socket.create_connection(("127.0.0.1", port), timeout=10)
                    s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Type: application/json\r\n"
                              f"Content-Length: {length}\r\n\r\n{{".encode())
                    socks.append(s)
                peak = rss0
                for _ in range(8):
                    time.sleep(0.5)
                    peak = max(peak, rss_kib(pid))
                answered = {}
                sel = selectors.DefaultSelector()
                for s in socks:
                    s.setblocking(False)
                    sel.register(s, selectors.EVENT_READ)
                for key, _ in sel.select(timeout=0):
                    try:
                        first = key.fileobj.recv(200).split(b"\r\n", 1)[0].decode("latin-1")[:30] or "closed"
                    except OSError:
                        first = "reset"
                    answered[first] = answered.get(first, 0) + 1
                sel.close()
            finally:
                for s in socks:
                    s.close()
            time.sleep(3)
            after = rss_kib(pid)
            per = (peak - rss0) / max(1, len(socks))
            rows.append({"case": name, "connections": len(socks), "declared": length, "rss0": rss0, "peak": peak,
                         "after": after, "per_conn_kib": per, "answered": answered})
            print(f"  {name:<50} {len(socks)} held: RSS {rss0 / 1024:.0f} -> {peak / 1024:.0f} MiB "
                  f"({per:.0f} KiB per connection), {after / 1024:.0f} MiB 3 s after closing; answered before the "
                  f"body: {answered or 'none'}", flush=True)
        return rows

    # -------------------------------------------------------------- part 4
    def part_lockout(self):
        a = self.args
        print("== 4. failed admin authentication lockout", flush=True)
        if not self.check_lockout:
            self.fail(f"lockout: {a.check_binary} does not know admin.lockout (pass a current --check-binary)")
            return
        gw = self.gw3
        port = self.ports["proxy3"]
        thr = LOCKOUT["threshold"]
        m0 = gw.metrics()
        kinds = flood_kinds(self.token, random.Random(4))
        attempts = thr + 5
        rows = []
        cases = [
            ("wrong admin key", "127.0.0.3", "GET", "/api/v1/identities", None,
             lambda: {"Authorization": "Bearer wrong-" + os.urandom(12).hex()}),
            ("unknown well-formed token", "127.0.0.5", "GET", "/api/v1/identities", None,
             lambda: {"Authorization": kinds["well-formed, unknown identity"]()}),
            ("renew with a wrong secret", "127.0.0.6", "POST", "/api/v1/auth/token/renew",
             lambda: json.dumps({"accessToken": kinds["real token id, wrong secret"]()[7:]}).encode(),
             lambda: {"Content-Type": "application/json"}),
        ]
        for name, src, method, path, body, headers in cases:
            self.check_budget(f"lockout {name}")
            c = KeepAlive(port, source=src)
            seq = [c.get(path, headers(), body() if body else None, method) for _ in range(attempts)]
            c.close()
            first = next((i + 1 for i, s in enumerate(seq) if s == 429), None)
            right_same = call(port, "GET", "/api/v1/identities", token=ADMIN_KEY, source=src)[0]
            proxied_same = call(port, "GET", VALID_PATH, token=self.token, source=src)[0]
            rows.append({"case": name, "source": src, "statuses": seq, "first_429": first,
                         "right_key_same": right_same, "proxied_same": proxied_same})
            self.note_statuses(f"lockout {name}", {s: 1 for s in seq if isinstance(s, int)})
            print(f"  {name:<28} from {src}: {compress(seq)}; first 429 at attempt {first}; then the right "
                  f"admin key from there: {right_same}, a proxied request with a valid token: {proxied_same}", flush=True)
            if first is None or first > thr + 1:
                self.fail(f"lockout: {name}: no 429 within {thr + 1} attempts ({compress(seq)})")
        other = call(port, "GET", "/api/v1/identities", token=ADMIN_KEY, source="127.0.0.2")[0]
        m1 = gw.metrics()
        lockouts = metric(m1, "tokengate_management_lockouts_total") - metric(m0, "tokengate_management_lockouts_total")
        print(f"  the right admin key from 127.0.0.2: {other}; tokengate_management_lockouts_total rose by {lockouts:g}",
              flush=True)
        if other != 200:
            self.fail(f"lockout: the right admin key from another address got {other}")
        if lockouts < 1:
            self.fail("lockout: tokengate_management_lockouts_total did not rise")

        # Reported, not judged: does a successful call with another
        # credential, one any token holder has, clear the count of wrong
        # admin keys from the same address? Two such calls: a member
        # identity's listing (authenticated, refused 403) and the renewal of
        # its own token (200).
        resets = []
        for i, (label, method, path, body_of, headers_of) in enumerate([
            ("a member token's GET /api/v1/identities", "GET", "/api/v1/identities", None,
             lambda: {"Authorization": f"Bearer {self.member_token}"}),
            ("renewing a member token", "POST", "/api/v1/auth/token/renew",
             lambda: json.dumps({"accessToken": self.member_token}).encode(),
             lambda: {"Content-Type": "application/json"}),
        ]):
            self.check_budget("lockout reset")
            src = f"127.0.0.{7 + i}"
            c = KeepAlive(port, source=src)
            wrong, other_calls = [], []
            for _ in range(5):
                for _ in range(thr - 1):
                    wrong.append(c.get("/api/v1/identities", {"Authorization": "Bearer wrong-" + os.urandom(12).hex()}))
                other_calls.append(c.get(path, headers_of(), body_of() if body_of else None, method))
            c.close()
            reset = {"label": label, "source": src, "wrong": len(wrong), "wrong_429": sum(1 for s in wrong if s == 429),
                     "wrong_401": sum(1 for s in wrong if s == 401), "other_statuses": compress(other_calls)}
            resets.append(reset)
            self.note_statuses(f"lockout reset {label}", {s: 1 for s in wrong + other_calls if isinstance(s, int)})
            print(f"  {len(wrong)} wrong admin keys from {src}, {label} after every {thr - 1}: "
                  f"{reset['wrong_401']} got 401, {reset['wrong_429']} got 429; the interleaved calls got "
                  f"{reset['other_statuses']}", flush=True)
        self.report["lockout"] = {"rows": rows, "other": other, "lockouts": lockouts, "resets": resets}


# ------------------------------------------------------------------ connection holder

class Holder:
    """Holds hostile connections in one thread and notes when the gateway
    closes each, after how long, and what it sent before. Kinds:
      silent           connect, send nothing
      slowloris        a request's first byte at once, then one header byte
                       every `slow_interval` s, never finishing
      keep-alive idle  one valid request and its answer, then nothing
      slow 2nd request one valid request and its answer, then a second
                       request trickled as slowloris does
      slow body        a whole valid request header (POST, Content-Length
                       60,000, JSON), then one body byte every `slow_interval` s
    Lifetimes count from the accept, or from the answer for the kinds that
    get one first."""

    KINDS = ("silent", "slowloris", "keep-alive idle", "slow 2nd request", "slow body")

    def __init__(self, port, slow_interval, token):
        self.port, self.slow_interval, self.token = port, slow_interval, token
        self.sel = selectors.DefaultSelector()
        self.recs = []
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.maintain = False
        self.thread = None
        self.slow_text = b"GET /v1/things HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100000
        self.body_text = b'{"pad": "' + b"b" * 100000

    def _first(self, kind, s):
        """What a connection of `kind` sends at once; returns its (reference time, bytes trickled so far)."""
        if kind in ("keep-alive idle", "slow 2nd request"):
            s.sendall(f"GET /v1/things HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n\r\n".encode())
            read_response(s, time.monotonic() + 10)
            if kind == "slow 2nd request":
                s.sendall(self.slow_text[:1])
                return time.monotonic(), 1
            return time.monotonic(), 0
        if kind == "slowloris":
            s.sendall(self.slow_text[:1])
            return time.monotonic(), 1
        if kind == "slow body":
            s.sendall(f"POST /v1/things HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n".encode() + self.body_text[:1])
            return time.monotonic(), 1
        return time.monotonic(), 0

    def _open_one(self, kind, reopened=False):
        s = socket.socket()
        s.settimeout(10)
        rec = {"kind": kind, "sock": s, "closed": None, "got": b"", "reopened": reopened}
        try:
            s.connect(("127.0.0.1", self.port))
            rec["ref"], rec["sent"] = self._first(kind, s)
            s.setblocking(False)
        except (OSError, ConnectionError, TimeoutError) as e:
            s.close()
            rec.update(ref=time.monotonic(), closed=time.monotonic(), got=repr(e).encode(), sent=0, failed=True)
            with self.lock:
                self.recs.append(rec)
            return
        with self.lock:
            self.recs.append(rec)
            self.sel.register(s, selectors.EVENT_READ, rec)

    def open(self, counts, deadline):
        """counts: {kind: n}."""
        for kind in self.KINDS:
            for _ in range(counts.get(kind, 0)):
                if time.monotonic() > deadline:
                    return
                self._open_one(kind)

    def start(self, maintain):
        self.maintain = maintain
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _closed(self, rec):
        rec["closed"] = time.monotonic()
        try:
            self.sel.unregister(rec["sock"])
        except (KeyError, ValueError):
            pass
        rec["sock"].close()
        if self.maintain and not self.stop_ev.is_set():
            self._open_one(rec["kind"], reopened=True)

    def _loop(self):
        next_slow = time.monotonic() + self.slow_interval
        while not self.stop_ev.is_set():
            with self.lock:
                ready = self.sel.select(timeout=0.2) if self.sel.get_map() else None
            if ready is None:
                time.sleep(0.2)
                ready = []
            for key, _ in ready:
                rec = key.data
                try:
                    data = rec["sock"].recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    rec["got"] += data[:200]
                else:
                    self._closed(rec)
            if time.monotonic() >= next_slow:
                next_slow = time.monotonic() + self.slow_interval
                for rec in [r for r in self.recs if r["closed"] is None and r["sent"]]:
                    text = self.body_text if rec["kind"] == "slow body" else self.slow_text
                    try:
                        rec["sock"].send(text[rec["sent"]:rec["sent"] + 1])
                        rec["sent"] += 1
                    except BlockingIOError:
                        pass
                    except OSError:
                        self._closed(rec)

    def open_count(self):
        return sum(1 for r in self.recs if r["closed"] is None)

    def stop(self):
        self.stop_ev.set()
        if self.thread:
            self.thread.join(timeout=10)
        for r in self.recs:
            if r["closed"] is None:
                r["by_us"] = True
                r["closed"] = time.monotonic()
                r["sock"].close()

    def summary(self):
        out = []
        for kind in self.KINDS:
            rs = [r for r in self.recs if r["kind"] == kind]
            if not rs:
                continue
            by_gw = [r for r in rs if not r.get("by_us") and not r.get("failed")]
            life = [r["closed"] - r["ref"] for r in by_gw]
            sent = {}
            for r in by_gw:
                first = r["got"].split(b"\r\n", 1)[0].decode("latin-1")[:40] or "nothing"
                sent[first] = sent.get(first, 0) + 1
            out.append({"kind": kind, "opened": len(rs), "reopened": sum(1 for r in rs if r["reopened"]),
                        "failed": sum(1 for r in rs if r.get("failed")), "closed": len(by_gw),
                        "still_open": sum(1 for r in rs if r.get("by_us")),
                        "life_min": min(life) if life else None, "life_p50": pct(life, 50) if life else None,
                        "life_max": max(life) if life else None, "sent": sent})
        return out


# ------------------------------------------------------------------ formatting

def attributed(stats, background, seconds):
    """Commands in `stats` minus what the gateway sends anyway in `seconds`
    (PING, the near cache's keep-alive, is left out altogether)."""
    out = {}
    for k, v in stats.items():
        if k == "ping":
            continue
        left = v - background.get(k, 0.0) * seconds
        if left >= 0.5:
            out[k] = int(round(left))
    return out


def fmt_rates(r):
    return ", ".join(f"{k} {v:.1f}" for k, v in sorted(r.items())) or "none"


def fmt_counts(c):
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"


def fmt_statuses(s):
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(s.items(), key=lambda kv: str(kv[0]))) + "}"


def fmt_s(v):
    return "-" if v is None else f"{v:.1f}s"


def compress(seq):
    out, prev, n = [], None, 0
    for s in seq + [object()]:
        if s == prev:
            n += 1
            continue
        if prev is not None:
            out.append(f"{prev}x{n}" if n > 1 else str(prev))
        prev, n = s, 1
    return " ".join(out)


def error_name(body):
    try:
        return json.loads(body).get("error", "")
    except (ValueError, AttributeError):
        return ""


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "load": os.getloadavg(), "kernel": platform.release()}


# ------------------------------------------------------------------ the report

def write_doc(run, path, started, mach, finished_load, version):
    a, r = run.args, run.report
    L = []
    w = L.append
    w("# Abuse measurements")
    w("")
    w("<!-- Written by scripts/abuse.py on every run; edit the script, not this file. -->")
    w("")
    w("What hostile traffic costs one gateway (issue 10, item 5), measured by")
    w("`scripts/abuse.py`: a bounded run (about 3 minutes) that starts its own")
    w("redis-server, the demo upstream (`scripts/echo_upstream.py`) and the gateway")
    w("on loopback, creates an identity with an unlimited token, and measures a token")
    w("flood, idle and slow connections from one address, oversized input and the")
    w("management lockout. Figures are reported, not asserted; the script fails only")
    w("on correctness (a 5xx other than an expected 503, an oversized request")
    w("forwarded, valid clients never served, a lockout that does not engage).")
    w("")
    w("    python3 scripts/abuse.py --binary target/release/tokengate")
    w("")
    w("**The figures are noisy.** The machine is shared (2 cores, other builds and")
    w("tests running); the load generator, the Python upstream, Redis and the")
    w("gateway all share those cores, so a flood costs valid traffic CPU even where")
    w("the gateway spends little on it. Ratios between runs can differ by tens of")
    w("percent; the per-request counts (store commands, statuses, timeouts) do not.")
    w("")
    w("## This run")
    w("")
    w(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}")
    w(f"- machine: `nproc` {mach['nproc']}, {mach['cpu']}, Linux {mach['kernel']}; load average "
      f"{mach['load'][0]:.2f} at the start, {finished_load[0]:.2f} at the end")
    w(f"- gateway for parts 1 and 2 (speed): `{a.binary}` ({a.build} build, `{version}`, file dated"
      f" {file_date(a.binary)}), `server.threads: 2`, log level `{a.log_level}`, access and audit logs off")
    w(f"- gateway for parts 3 and 4 (correctness only): `{a.check_binary}` ({build_of(a.check_binary)} build,"
      f" file dated {file_date(a.check_binary)}), same config, same Redis")
    w(f"- store: redis-server {redis_version()} on loopback, near cache on (`max_age_seconds: 60`)")
    w(f"- load: {a.loadgen}" + (f" ({wrk_version()})" if a.loadgen == "wrk" else "") +
      f", {a.clients} valid keep-alive clients, {a.flood_clients} flood clients, {a.duration:g} s per phase, "
      f"{a.rounds} rounds")
    w(f"- limits set in the config: `server.header_timeout_seconds: {HEADER_TIMEOUT}`, "
      f"`server.keepalive_timeout_seconds: {KEEPALIVE_TIMEOUT}`, `server.max_connections: {MAX_CONNECTIONS}`, "
      f"`project.max_body_bytes: {PROJECT_BODY_LIMIT}`, `admin.lockout: {{threshold: {LOCKOUT['threshold']}, "
      f"window_seconds: {LOCKOUT['window_seconds']}, duration_seconds: {LOCKOUT['duration_seconds']}}}`; "
      f"built in: 32 KiB of request target and header fields, 1 MiB management bodies")
    w(f"- result: {'no correctness failure' if not run.failures else 'CORRECTNESS FAILURES: ' + '; '.join(run.failures)}")
    w("")

    f = r.get("flood")
    if f:
        w("## 1. Token flood")
        w("")
        w(f"Valid traffic: `GET {VALID_PATH}` with the unlimited token from {a.clients} keep-alive clients, through the")
        w("gateway to the Python demo upstream (which bounds the valid rate). Flood: "
          f"{a.flood_clients} keep-alive clients cycling")
        w(f"{len(f['kinds'])} kinds of invalid `Authorization` (table below), 40 of each, on the same path, at a fixed rate")
        w(f"(the valid clients' own rate, {f['rate']:.0f} req/s, unless `--flood-rate`; wrk paces each connection, so")
        w("the rate reached is lower) and unthrottled. The rounds interleave the three phases.")
        w("")
        w("| round | phase | valid req/s | vs alone | valid p50 ms | valid p99 ms | valid statuses | flood req/s "
          "| flood statuses | EVALSHA | cache hits / misses | gateway CPU s |")
        w("|---|---|---:|---:|---:|---:|---|---:|---|---:|---|---:|")
        ratios = {"rated": [], "unthrottled": []}
        names = {"alone": "valid alone", "rated": "+ flood, fixed rate", "unthrottled": "+ flood, unthrottled"}
        for i, row in enumerate(f["rounds"]):
            alone = row["alone"]["valid"]["rps"]
            for phase in ("alone", "rated", "unthrottled"):
                ph = row[phase]
                v, fl = ph["valid"], ph["flood"]
                ratio = v["rps"] / alone if alone else float("nan")
                if phase != "alone":
                    ratios[phase].append(ratio)
                w(f"| {i + 1} | {names[phase]} | {v['rps']:.0f} | {'' if phase == 'alone' else f'{ratio:.2f}'} "
                  f"| {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {fmt_statuses(v['statuses'])} "
                  f"| {'' if not fl else round(fl['rps'])} | {'' if not fl else fmt_statuses(fl['statuses'])} "
                  f"| {ph['evalsha']} | {ph['hits']:g} / {ph['misses']:g} | {ph['cpu']:.1f} |")
        w("")
        for phase, label in (("rated", "a fixed-rate"), ("unthrottled", "an unthrottled")):
            if ratios[phase]:
                w(f"- **Valid throughput under {label} flood: {statistics.median(ratios[phase]):.2f} of alone** "
                  f"(median of {len(ratios[phase])} rounds; the goal is a loss under 10%, 0.90 or more).")
        alone_cpu = [row["alone"]["cpu"] / max(1, row["alone"]["valid"]["requests"]) * 1e6 for row in f["rounds"]]
        fa = f["alone"]
        valid_cpu = statistics.median(alone_cpu)
        w(f"- Gateway CPU per request: {valid_cpu:.0f} µs for a valid one (valid alone; it includes the gateway's"
          f" new upstream connection per request, since the demo upstream speaks HTTP/1.0), {fa['cpu_us']:.0f} µs for"
          f" a flood one (the flood alone, unthrottled). Where the gateway's CPU is what bounds valid traffic,"
          f" about {valid_cpu / max(1e-9, fa['cpu_us']):.1f} flood requests take the CPU of one valid request, so a"
          f" flood at {0.1 * valid_cpu / max(1e-9, fa['cpu_us']):.1f} times the rate at which valid traffic saturates"
          " the gateway would take 10% of its CPU (an estimate from CPU time, not a measurement).")
        w("- Here the valid rate is bounded by the Python upstream and the wake-ups along the chain, not by the"
          " gateway's CPU, so the ratios above measure the shared machine more than the gateway.")
        if ratios["unthrottled"] and statistics.median(ratios["unthrottled"]) > 1:
            w("  Valid throughput rose under the unthrottled flood; CPU spinners at nice 19 beside the gateway did"
              " not do that when tried by hand, so a likely cause is that the gateway's worker threads never sleep"
              " under a flood and pick valid work up without a wake-up.")
        w(f"- The flood alone, unthrottled: {fa['rps']:.0f} req/s, {fmt_statuses(fa['statuses'])},"
          f" {fa['forwarded']:g} forwarded; Redis commands: {fmt_counts(fa['redis'])}"
          f" ({fa['evalsha'] / max(1, fa['requests']):.3f} `EVALSHA` per flood request).")
        per_flood = [row["unthrottled"]["evalsha"] / max(1, row["unthrottled"]["flood"]["requests"]) for row in f["rounds"]]
        w(f"- `EVALSHA` per flood request with valid traffic running (unthrottled phases, median):"
          f" {statistics.median(per_flood):.3f}, against {fa['evalsha'] / max(1, fa['requests']):.3f} for the flood alone:"
          " valid requests keep the identity in the near cache, so there a wrong secret for the real token is"
          " refused from the cache (see the kinds below).")
        q = f.get("quiet")
        w(f"- The process log at level `{a.log_level}` took {fa['log'] / max(1, fa['requests']):.0f} bytes per flood request"
          f" ({fa['log'] / 1e6:.1f} MB in {fa['seconds']:.0f} s): every refusal is one line."
          + (f" The same flood at level `warn` (changed by a reload): {q['rps']:.0f} req/s,"
             f" {q['cpu_us']:.0f} µs of gateway CPU and {q['log'] / max(1, q['requests']):.0f} log bytes per request."
             if q else ""))
        w(f"- With no traffic the gateway sends Redis {fmt_rates(f['background'])} per second (`PING` is the near")
        w("  cache's keep-alive); that background is subtracted from every count, and `PING` left out.")
        w("")
        w(f"Per kind: {a.per_kind} requests each from one keep-alive client, no valid traffic meanwhile. Redis")
        w("commands from `INFO commandstats` after `CONFIG RESETSTAT`; Redis counts the commands a script runs")
        w("as well, so an `HGET` next to an `EVALSHA` is inside it, not another round trip.")
        w("")
        w("| kind | statuses | Redis commands | EVALSHA per request | near-cache hits / misses | forwarded | log bytes per request |")
        w("|---|---|---|---:|---|---:|---:|")
        for k in f["per_kind"]:
            w(f"| {k['kind']} | {fmt_statuses(k['statuses'])} | {fmt_counts(k['redis'])} | "
              f"{k['evalsha'] / max(1, k['requests']):.2f} | {k['hits']:g} / {k['misses']:g} | {k['forwarded']:g} | "
              f"{k['log'] / max(1, k['requests']):.0f} |")
        w("")
        huge = next((k for k in f["per_kind"] if k["kind"].startswith("40 KiB")), None)
        if huge and set(huge["statuses"]) != {431}:
            w(f"The timed build answers the 40 KiB header {fmt_statuses(huge['statuses'])}: it predates the 431 limit"
              " on header size (part 3 checks that limit on the current build).")
            w("")
        free = [k["kind"] for k in f["per_kind"] if not k["redis"]]
        costly = [k["kind"] for k in f["per_kind"] if k["redis"]]
        w(f"No store command at all: {'; '.join(free) or 'none'}. One store call per request: {'; '.join(costly) or 'none'}")
        w("(a well-formed token, checksum right, is looked up unless the near cache decides it; a refusal is")
        w("never kept in the cache, and the gateway's own write of the token's uses, once a second, drops the")
        w("identity from it, so without valid traffic refilling it a wrong secret goes to Redis too).")
        w("")

    s = r.get("small")
    if s:
        rows = s["cache"]
        w("### The near cache under a flood of unknown identities")
        w("")
        w(f"A well-formed token naming an unknown identity is a cache miss that reserves a slot for the identity")
        w(f"until it is swept (about 2 s), and slots count towards `store.cache.max_identities`. On the second")
        w(f"gateway (`max_identities: {SMALL_CACHE}`), a fresh identity's valid token, 200 requests at about")
        w("100/s from one client, while another client sends unknown-identity tokens as fast as it can:")
        w("")
        w("| phase | valid statuses | cache hits | cache misses | flood requests meanwhile | EVALSHA |")
        w("|---|---|---:|---:|---:|---:|")
        for phase, row in rows.items():
            w(f"| {phase} | {fmt_statuses(row['statuses'])} | {row['hits']:g} | {row['misses']:g} | {row['flood']} | {row['evalsha']} |")
        w("")
        w("While the slots are full, identities not yet cached are not cached: each of their requests is")
        w("one `EVALSHA`, as with the cache off. It stays correct; it only costs Redis calls. With the")
        w("default `max_identities` (100,000) a gateway would need to refuse some 35,000 to 50,000 such tokens")
        w("per second to fill it (a slot lives 2 to 3 s).")
        w("")
    c = r.get("connections")
    if c:
        rq = c["requested"]
        w("## 2. Idle and slow connections from one address")
        w("")
        w(f"From 127.0.0.1, opened one after another in {c['opened_s']:.1f} s: {rq['silent']} silent (connect, send nothing),"
          f" {rq['slowloris']} slowloris (a request's first byte at once, then one header byte every {a.slow_interval:g} s,"
          f" never finishing), {rq['keep-alive idle']} idle keep-alive (one valid request, then nothing),"
          f" {rq['slow 2nd request']} slow second request (one valid request, then a second one trickled like"
          f" slowloris) and {rq['slow body']} slow body (a valid POST header with `Content-Length: 60000`, then one"
          f" body byte every {a.slow_interval:g} s). For the {c['during_s']:g} s valid clients were measured among them, every"
          " connection the gateway closed was opened again (a sustained attack); then the script stopped reopening"
          " and waited for the gateway to close the rest.")
        w("")
        w("| connections | opened (of them reopened) | closed by the gateway | left open at the end | closed after, min / p50 / max | the gateway sent before closing |")
        w("|---|---:|---:|---:|---|---|")
        for g in c["groups"]:
            w(f"| {g['kind']} | {g['opened']} ({g['reopened']}) | {g['closed']} | {g['still_open']} | "
              f"{fmt_s(g['life_min'])} / {fmt_s(g['life_p50'])} / {fmt_s(g['life_max'])} | "
              f"{', '.join(f'{k}: {v}' for k, v in g['sent'].items())} |")
        w("")
        w("\"Closed after\" counts from the accept, or from the answer to the first request for the kinds that send")
        w(f"one (idle keep-alive, slow second request). Expected from the config: {HEADER_TIMEOUT} s for a header"
          f" (from its first byte; from the accept on a new connection), {KEEPALIVE_TIMEOUT} s for an idle keep-alive"
          f" connection, and for a body as long again as the header timeout after the header (README).")
        w("")
        w("| valid clients | keep-alive req/s | p50 ms | p99 ms | statuses | errors | new connection per request: ok / failed | p50 ms | p99 ms |")
        w("|---|---:|---:|---:|---|---:|---|---:|---:|")
        for name, label in (("base", "baseline"), ("during", "among the connections above")):
            v = c[name]
            ka, fr = v["keepalive"], v["fresh"]
            w(f"| {label} | {ka['rps']:.0f} | {ka['p50_ms']:.2f} | {ka['p99_ms']:.2f} | {fmt_statuses(ka['statuses'])} | "
              f"{ka['errors']} | {fr['ok']} / {fr['failed']} {fmt_statuses(fr['other']) if fr['other'] else ''} | "
              f"{fr['p50_ms']:.2f} | {fr['p99_ms']:.2f} |")
        w("")
        w(f"Gateway RSS: {c['rss_before'] / 1024:.1f} MiB before, {c['rss_during'] / 1024:.1f} MiB at most while"
          f" the connections were held, {c['rss_after'] / 1024:.1f} MiB 3 s and {c['rss_after10'] / 1024:.1f} MiB"
          f" 10 s after the last closed"
          f" (`MIMALLOC_PURGE_DELAY=0`). `tokengate_open_connections` read {c['open_metric']:g} once all were open"
          f" ({c['fds']} open fds in the gateway), {c['after_open_metric']:g} after.")
        w("")
        n_err = sum(c["errors"].values())
        w(f"The gateway's process log got {n_err} lines at ERROR meanwhile"
          + (": " + ", ".join(f"{v} \"{k}\"" for k, v in sorted(c["errors"].items(), key=lambda kv: -kv[1])) if n_err else "")
          + " (Pingora's `Fail to proxy`: one per connection cut after part of a request header had arrived,"
          " none for silent ones, and one per request a load run left in flight when it stopped).")
        w("")
    s = r.get("small")
    if s:
        mc = s["maxconn"]
        w(f"**One address can take every connection slot.** There is no per-address limit: a second gateway")
        w(f"with `max_connections: {SMALL_MAX_CONNECTIONS}` (same Redis) held {mc['held']} silent connections from")
        w(f"127.0.0.1; a valid request then got {mc['statuses']['127.0.0.1']} from 127.0.0.1 and"
          f" {mc['statuses']['127.0.0.2']} from 127.0.0.2 (`tokengate_connections_refused_total` {mc['refused_metric']:g}),"
          f" and {mc['after']} once they were closed. The header timeout bounds how long one connection holds a slot,"
          " not how many one address holds.")
        w("")
    o = r.get("oversized")
    if o:
        w("## 3. Oversized input")
        w("")
        w("Each request on its own connection (`Connection: close`). \"Reached the upstream\" counts the")
        w("upstream's request log lines written meanwhile (nothing else was running); the controls show the")
        w("count works.")
        w("")
        w("| request | bytes sent | answer | expected | reached the upstream | ms |")
        w("|---|---:|---|---|---:|---:|")
        for row in o["rows"]:
            w(f"| {row['case']} | {row['bytes']} | {row['status']} {row['error']} | "
              f"{row['expected'] if row['expected'] is not None else 'reported'} | {row['forwarded']} | {row['ms']:.0f} |")
        w("")
        w(f"Identities named `abuse-big` afterwards: {o['big_identities']} (only the 900 KiB control could create one).")
        w("")
        d = o.get("declared")
        if d:
            w("**Bodies declared but not sent.** Connections that each send a request header with a `Content-Length`")
            w("and one byte of body, then nothing (held 4 s, the gateway's RSS sampled every 0.5 s):")
            w("")
            w("| request | connections | RSS before | RSS at most | per connection | 3 s after closing | answered before the body |")
            w("|---|---:|---:|---:|---:|---:|---|")
            for row in d:
                w(f"| {row['case']} | {row['connections']} | {row['rss0'] / 1024:.0f} MiB | {row['peak'] / 1024:.0f} MiB | "
                  f"{row['per_conn_kib']:.0f} KiB | {row['after'] / 1024:.0f} MiB | "
                  f"{', '.join(f'{k}: {v}' for k, v in row['answered'].items()) or 'none'} |")
            w("")
            big = d[0]
            if big["per_conn_kib"] > 256:
                w(f"A management request's body is read before its caller is authenticated, and the gateway sets aside"
                  f" what the `Content-Length` declares, up to the 1 MiB limit: about {big['per_conn_kib'] / 1024:.1f} MiB"
                  f" per connection here, from a client that sent some 150 bytes and no credentials. At the default"
                  f" `max_connections` (50,000) that is tens of GiB, held for the body timeout (as long as"
                  f" `header_timeout_seconds`) and renewed by reconnecting. Proxied routes refuse a request without a"
                  f" valid token before reading its body.")
                w("")
    lk = r.get("lockout")
    if lk:
        w("## 4. Failed management authentication lockout")
        w("")
        w(f"`admin.lockout: {{threshold: {LOCKOUT['threshold']}, window_seconds: {LOCKOUT['window_seconds']},"
          f" duration_seconds: {LOCKOUT['duration_seconds']}}}`. {LOCKOUT['threshold'] + 5} attempts per row"
          " from one keep-alive connection bound to the source address.")
        w("")
        w("| failures | from | answers in order | first 429 | right admin key from there | proxied request from there |")
        w("|---|---|---|---:|---:|---:|")
        for row in lk["rows"]:
            w(f"| {row['case']} | {row['source']} | {compress(row['statuses'])} | {row['first_429']} | "
              f"{row['right_key_same']} | {row['proxied_same']} |")
        w("")
        w(f"The right admin key from 127.0.0.2 meanwhile: {lk['other']}. `tokengate_management_lockouts_total`"
          f" rose by {lk['lockouts']:g}.")
        w("")
        w(f"Does a success with another credential, one any token holder has, clear the count? From one address,")
        w(f"{5 * (LOCKOUT['threshold'] - 1)} wrong admin keys with one such call after every {LOCKOUT['threshold'] - 1}:")
        w("")
        w("| interleaved call | from | its answers | wrong keys answered 401 | answered 429 |")
        w("|---|---|---|---:|---:|")
        for rs in lk["resets"]:
            w(f"| {rs['label']} | {rs['source']} | {rs['other_statuses']} | {rs['wrong_401']} | {rs['wrong_429']} |")
        w("")
        if any(rs["wrong_429"] == 0 for rs in lk["resets"]):
            w("Where no wrong key got a 429, a holder of any valid token can keep guessing the admin key from one")
            w("address at the gateway's speed, never locked out (README: \"a success clears the count\").")
            w("")
    if run.unexpected_5xx:
        w("## Unexpected 5xx")
        w("")
        for k, v in sorted(run.unexpected_5xx.items()):
            w(f"- {k}: {v}")
        w("")
    with open(path, "w") as fh:
        fh.write("\n".join(L))


def file_date(path):
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(path)))


def redis_version():
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
        return re.search(r"v=(\S+)", out).group(1)
    except (OSError, AttributeError, subprocess.SubprocessError):
        return "?"


def wrk_version():
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).splitlines()[0].split(" [")[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "wrk"


def main():
    args = parse_args()
    started = time.time()
    mach = machine()
    version = subprocess.run([args.binary, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    print(f"abuse: {args.binary} ({args.build}, {version}), nproc {mach['nproc']}, load {mach['load'][0]:.2f}, "
          f"loadgen {args.loadgen}, budget {args.budget:g} s", flush=True)
    run = Run(args)

    def on_alarm(signum, frame):
        raise Budget(f"hard budget of {args.budget + 60:g} s spent")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.budget) + 60)
    broken = None
    try:
        parts = set(args.parts.split(","))
        run.start()
        if "1" in parts:
            run.part_flood()
        if "2" in parts:
            run.part_connections()
            run.part_small_gateway()
        if parts & {"3", "4"}:
            run.start_check_gateway()
        if "3" in parts:
            run.part_oversized()
        if "4" in parts:
            run.part_lockout()
    except (Budget, Broken) as e:
        broken = str(e)
        run.fail(broken)
    finally:
        signal.alarm(0)
        run.stop()
    for k, v in sorted(run.unexpected_5xx.items()):
        run.fail(f"unexpected 5xx: {k} x{v}")
    if args.doc:
        write_doc(run, args.doc, started, mach, os.getloadavg(), version)
        print(f"wrote {os.path.relpath(args.doc, ROOT)}")
    print(f"work directory (gateway and upstream logs): {run.work}")
    print(f"took {time.time() - started:.0f} s")
    print("abuse: OK" if not run.failures else "abuse: FAILED\n  " + "\n  ".join(run.failures))
    return 0 if not run.failures else 1


if __name__ == "__main__":
    sys.exit(main())
