#!/usr/bin/env python3
"""Draws docs/grafana/dashboard.png: the main panels of the Grafana dashboard
(docs/grafana/tokengate.json), from real data.

It starts, on loopback only, a throwaway redis-server, a small upstream (in
this process) and the tokengate binary with the Redis store and its near
cache; runs a bounded, mixed load (forwarded requests, denials of several
kinds, an upstream 5xx burst, a Redis stall, management calls); scrapes the
admin listener's /metrics once a second; and plots what the dashboard's
PromQL would show (rates over a sliding window, histogram quantiles). Every
process it starts is stopped by its own pid when it ends.

Not part of the test suite. Run from the repository root:

    cargo build
    python3 -m venv /tmp/tg-render && /tmp/tg-render/bin/pip install matplotlib
    /tmp/tg-render/bin/python scripts/render_dashboard.py

Options: --binary (default target/debug/tokengate), --seconds (load length,
default 45, at most 300), --max-requests (default 40000), --out (default
docs/grafana/dashboard.png), --base-port (ports base..base+3, default 47600,
inside 47600-47699).
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ADMIN_KEY = "render-dashboard-admin-key-0123456789"
HOST = "127.0.0.1"
RATE_WINDOW = 5  # seconds, the stand-in for $__rate_interval


# --------------------------------------------------------------------------
# The upstream: answers 200 after a short, varied delay, or the status the
# load asks for (so a 5xx burst is the upstream's own answer, passed through).


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        status = 200
        if "fail=1" in self.path:
            status = 503
        # A long-tailed delay, so the latency quantiles differ.
        time.sleep(min(random.expovariate(1 / 0.002), 0.05))
        body = b'{"ok":true}'
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


# --------------------------------------------------------------------------
# Processes


def wait_port(port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {HOST}:{port} after {timeout}s")


def port_free(port):
    with socket.socket() as s:
        # As the servers bind: a previous run's connections in TIME_WAIT do
        # not make the port taken.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


def stop(proc):
    """Stops one child this script started, by its pid."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# --------------------------------------------------------------------------
# HTTP


class Client:
    """One keep-alive connection to the gateway; reconnects after an error."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, method, path, token=None, body=None, admin=False):
        headers = {}
        if admin:
            headers["authorization"] = f"Bearer {ADMIN_KEY}"
        elif token is not None:
            headers["authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        for _ in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status, payload
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
        return 0, b""

    def admin(self, method, path, body=None):
        status, payload = self.request(method, path, body=body, admin=True)
        if not 200 <= status < 300:
            raise SystemExit(f"{method} {path}: {status} {payload[:200]!r}")
        return json.loads(payload)


def identity_with_token(c, name, config, project=None):
    ident = c.admin("POST", "/api/v1/identities",
                    {"name": name, "organizationId": "org-demo", "role": "member"})["identity"]["id"]
    c.admin("POST", f"/api/v1/auth/token-auth/identities/{ident}", config)
    tok = c.admin("POST", f"/api/v1/auth/token-auth/identities/{ident}/tokens", {"name": name})
    if project:
        c.admin("POST", f"/api/v1/projects/{project}/memberships/identities/{ident}", {"role": "viewer"})
    return ident, tok["accessToken"], tok["tokenData"]["id"]


# --------------------------------------------------------------------------
# /metrics


def parse_exposition(text):
    """{(name, frozenset(labels)): value} and {name: type}."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        labels = ()
        if "{" in series:
            name, rest = series.split("{", 1)
            pairs = []
            for part in rest.rstrip("}").split('",'):
                if "=" in part:
                    k, v = part.split("=", 1)
                    pairs.append((k.strip(","), v.strip('"')))
            labels = frozenset(pairs)
        else:
            name = series
        samples[(name, labels)] = float(value)
    return samples, types


def scrape(port):
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


# --------------------------------------------------------------------------
# The load. Time is split in phases, so each panel has something to show:
# steady traffic, a burst of denials, an upstream 5xx burst, a Redis stall,
# then steady again. Management calls run throughout at a low rate.


def run_load(port, tokens, seconds, max_requests, redis_proc, stop_at):
    sent = [0]
    lock = threading.Lock()
    start = time.monotonic()

    def phase(t):
        f = t / seconds
        if f < 0.25:
            return "steady"
        if f < 0.4:
            return "denials"
        if f < 0.55:
            return "upstream_5xx"
        if f < 0.6:
            return "steady"
        if f < 0.7:
            return "redis_stall"
        return "steady"

    def worker(seed):
        rnd = random.Random(seed)
        c = Client(port)
        while time.monotonic() < stop_at:
            with lock:
                if sent[0] >= max_requests:
                    return
                sent[0] += 1
            p = phase(time.monotonic() - start)
            roll = rnd.random()
            good = f"/v1/things?projectId=project-a&n={rnd.randrange(1000)}"
            if p == "denials" and roll < 0.5:
                kind = rnd.choice(["revoked", "unknown", "project", "garbage", "ip"])
                if kind == "revoked":
                    c.request("GET", good, tokens["revoked"])
                elif kind == "unknown":
                    c.request("GET", good, tokens["deleted"])
                elif kind == "project":
                    c.request("GET", "/v1/things?projectId=project-z", tokens["member"])
                elif kind == "garbage":
                    c.request("GET", good, "not-a-token")
                else:
                    c.request("GET", good, tokens["elsewhere"])
            elif p == "upstream_5xx" and roll < 0.3:
                c.request("GET", good + "&fail=1", tokens["member"])
            elif roll < 0.02:
                c.request("GET", "/v1/%2e%2e/things", tokens["member"])
            elif roll < 0.05:
                c.request("GET", f"/api/v1/identities/{tokens['member_id']}", admin=True)
            elif roll < 0.06:
                c.request("GET", "/api/v1/identities/00000000-0000-4000-8000-000000000000", admin=True)
            elif roll < 0.2:
                c.request("GET", good, tokens["limited"])
            else:
                c.request("GET", good, tokens["member"])
            # Keep the gateway busy but not saturated: a few hundred per second.
            time.sleep(0.004)

    def redis_staller():
        # A stalled Redis (SIGSTOP on the redis-server this script started):
        # checks time out, the near cache turns itself off, then recovers.
        stall_from, stall_to = 0.6 * seconds, 0.7 * seconds
        while time.monotonic() - start < stall_from:
            if time.monotonic() >= stop_at:
                return
            time.sleep(0.05)
        os.kill(redis_proc.pid, signal.SIGSTOP)
        try:
            while time.monotonic() - start < stall_to and time.monotonic() < stop_at:
                time.sleep(0.05)
        finally:
            os.kill(redis_proc.pid, signal.SIGCONT)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(6)]
    threads.append(threading.Thread(target=redis_staller, daemon=True))
    for t in threads:
        t.start()
    return threads, sent


# --------------------------------------------------------------------------
# What the dashboard's PromQL computes, over the scraped samples.


def series_of(snaps, name, by=None, where=None):
    """{label value (or "") -> [value per snapshot]}, summed over other labels."""
    out = {}
    for i, (_, samples) in enumerate(snaps):
        for (n, labels), v in samples.items():
            if n != name:
                continue
            d = dict(labels)
            if where and any(d.get(k) != val for k, val in where.items()):
                continue
            key = d.get(by, "") if by else ""
            out.setdefault(key, [0.0] * len(snaps))[i] += v
    return out


def rate(times, values):
    r = []
    for i in range(len(values)):
        j = max(0, i - RATE_WINDOW)
        dt = times[i] - times[j]
        r.append(max(values[i] - values[j], 0) / dt if dt > 0 else 0.0)
    return r


def histogram_quantile(q, buckets):
    """Prometheus's linear interpolation inside the bucket holding rank q."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def quantiles(snaps, base, qs, by=None):
    """{(q, label value): [quantile per snapshot]} over RATE_WINDOW."""
    out = {}
    for i in range(len(snaps)):
        j = max(0, i - RATE_WINDOW)
        groups = {}
        for (n, labels), v in snaps[i][1].items():
            if n != base + "_bucket":
                continue
            d = dict(labels)
            key = d.get(by, "") if by else ""
            le = float(d["le"].replace("+Inf", "inf"))
            before = sum(
                pv for (pn, pl), pv in snaps[j][1].items()
                if pn == n and dict(pl).get("le") == d["le"]
                and (dict(pl).get(by, "") if by else "") == key
            )
            groups.setdefault(key, {}).setdefault(le, 0.0)
            groups[key][le] += v - before
        for key, b in groups.items():
            for q in qs:
                out.setdefault((q, key), [None] * len(snaps))[i] = histogram_quantile(q, list(b.items()))
    return out


# --------------------------------------------------------------------------
# Drawing


def draw(snaps, types, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bg, panel_bg, fg, grid = "#111217", "#181b1f", "#ccccdc", "#2c3235"
    palette = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#96d98d", "#fade2a"]
    plt.rcParams.update({
        "figure.facecolor": bg, "axes.facecolor": panel_bg, "axes.edgecolor": grid,
        "axes.labelcolor": fg, "text.color": fg, "xtick.color": fg, "ytick.color": fg,
        "grid.color": grid, "axes.prop_cycle": matplotlib.cycler(color=palette),
        "font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7,
    })
    t0 = snaps[0][0]
    times = [t - t0 for t, _ in snaps]
    panels = []

    def add(title, lines, unit="", stacked=False, ylim=None, log=False):
        panels.append((title, lines, unit, stacked, ylim, log))

    def rates(name, by=None, where=None):
        return {k or name: rate(times, v) for k, v in sorted(series_of(snaps, name, by, where).items())}

    add("Requests by outcome", rates("tokengate_requests_total", "outcome"), "req/s", True)
    add("Denials by reason", rates("tokengate_auth_denied_total", "reason"), "req/s", True)
    add("Auth check latency", {f"p{int(q * 100)}": v for (q, _), v in sorted(
        quantiles(snaps, "tokengate_auth_duration_seconds", (0.5, 0.9, 0.99)).items())}, "s", log=True)
    add("Upstream latency", {f"p{int(q * 100)}": v for (q, _), v in sorted(
        quantiles(snaps, "tokengate_upstream_duration_seconds", (0.5, 0.9, 0.99)).items())}, "s", log=True)
    if types.get("tokengate_store_duration_seconds") == "histogram":
        add("Store call latency (p99) by operation", {op: v for (_, op), v in sorted(
            quantiles(snaps, "tokengate_store_duration_seconds", (0.99,), by="operation").items())}, "s", log=True)
    else:
        add("Upstream answers by class", rates("tokengate_upstream_responses_total", "class"), "req/s", True)
    hits = rate(times, series_of(snaps, "tokengate_store_cache_hits_total").get("", [0] * len(snaps)))
    misses = rate(times, series_of(snaps, "tokengate_store_cache_misses_total").get("", [0] * len(snaps)))
    ratio = [h / (h + m) if h + m > 0 else None for h, m in zip(hits, misses)]
    coherent = series_of(snaps, "tokengate_store_cache_coherent").get("", [])
    add("Near cache: hit ratio and coherent", {"hit ratio": ratio, "coherent": coherent}, "", ylim=(-0.05, 1.1))
    store = {"requests refused (503)": rate(times, series_of(snaps, "tokengate_store_errors_total").get("", [0] * len(snaps)))}
    store.update(rates("tokengate_store_operation_errors_total", "operation"))
    add("Store errors", store, "/s")
    upstream = {"failed": rate(times, series_of(snaps, "tokengate_upstream_errors_total").get("", [0] * len(snaps)))}
    upstream["5xx answers"] = rate(times, series_of(snaps, "tokengate_upstream_responses_total", where={"class": "5xx"}).get("", [0] * len(snaps)))
    add("Upstream failures and 5xx", upstream, "req/s")
    mgmt = {}
    for (name, labels) in {k for _, s in snaps for k in s}:
        if name == "tokengate_management_requests_total":
            d = dict(labels)
            key = f"{d['method']} {d['route']} {d['status']}"
            mgmt[key] = rate(times, series_of(snaps, name, where=d).get("", [0] * len(snaps)))
    add("Management API calls", dict(sorted(mgmt.items())), "req/s")

    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(15, 3.2 * rows), dpi=80)
    fig.suptitle("tokengate  (docs/grafana/tokengate.json, from a live gateway under a scripted load)", x=0.01, ha="left", fontsize=11)
    for ax, (title, lines, unit, stacked, ylim, log) in zip(axes.flat, panels):
        ax.set_title(title, loc="left")
        ax.grid(True, linewidth=0.5)
        ax.set_xlabel("seconds")
        if unit:
            ax.set_ylabel(unit)
        plotted = {k: [float("nan") if v is None else v for v in vals] for k, vals in lines.items() if any(vals)}
        if stacked and plotted:
            ax.stackplot(times, *plotted.values(), labels=list(plotted), alpha=0.75)
        else:
            for k, vals in plotted.items():
                ax.plot(times, vals, label=k, linewidth=1.2)
        if ylim:
            ax.set_ylim(*ylim)
        if log and plotted:
            # p50 and p99 of the auth check are orders of magnitude apart.
            ax.set_yscale("log")
            ax.set_ylabel(f"{unit} (log scale)")
        if plotted:
            ax.legend(loc="best", frameon=False, ncol=2 if len(plotted) > 4 else 1)
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", alpha=0.6)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    tmp = out + ".tmp.png"
    fig.savefig(tmp, facecolor=bg)
    plt.close(fig)
    # A palette PNG is a fraction of the size, and these flat colours lose nothing.
    from PIL import Image

    Image.open(tmp).convert("RGB").quantize(colors=128).save(out, optimize=True)
    os.remove(tmp)


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default="target/debug/tokengate")
    ap.add_argument("--seconds", type=float, default=45)
    ap.add_argument("--max-requests", type=int, default=40000)
    ap.add_argument("--out", default="docs/grafana/dashboard.png")
    ap.add_argument("--base-port", type=int, default=47600)
    args = ap.parse_args()
    seconds = min(max(args.seconds, 10), 300)
    if not 47600 <= args.base_port <= 47696:
        raise SystemExit("--base-port must leave base..base+3 inside 47600-47699")
    redis_port, upstream_port, proxy_port, admin_port = range(args.base_port, args.base_port + 4)
    for p in (redis_port, upstream_port, proxy_port, admin_port):
        if not port_free(p):
            raise SystemExit(f"port {p} is taken; pick another --base-port")
    redis_server = shutil.which("redis-server")
    if not redis_server:
        raise SystemExit("redis-server is not installed")
    if not os.access(args.binary, os.X_OK):
        raise SystemExit(f"{args.binary} is not there: run cargo build first")

    work = tempfile.mkdtemp(prefix="tg-render-")
    children = []
    upstream = ThreadingHTTPServer((HOST, upstream_port), Upstream)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        redis = subprocess.Popen(
            [redis_server, "--bind", HOST, "--port", str(redis_port), "--save", "",
             "--appendonly", "no", "--dir", work],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        children.append(redis)
        wait_port(redis_port, 10)
        config = os.path.join(work, "tokengate.yaml")
        with open(config, "w") as f:
            f.write(
                f'server:\n  listen: ["{HOST}:{proxy_port}"]\n  threads: 2\n  grace_period_seconds: 0\n'
                f'admin:\n  listen: "{HOST}:{admin_port}"\n  api_key_env: TOKENGATE_ADMIN_KEY\n'
                f'upstream:\n  url: "http://{HOST}:{upstream_port}"\n'
                f'store:\n  kind: redis\n  url: "redis://{HOST}:{redis_port}/0"\n'
                f"  connect_timeout_ms: 200\n  response_timeout_ms: 200\n  retries: 0\n"
                f"  cache: {{enabled: true}}\n"
            )
        log = open(os.path.join(work, "tokengate.log"), "w")
        gateway = subprocess.Popen(
            [os.path.abspath(args.binary), "serve", "--config", config],
            env={**os.environ, "TOKENGATE_ADMIN_KEY": ADMIN_KEY, "RUST_LOG": "warn"},
            stdout=log, stderr=subprocess.STDOUT, cwd=work)
        children.append(gateway)
        wait_port(admin_port, 30)
        wait_port(proxy_port, 30)

        c = Client(proxy_port)
        tokens = {}
        tokens["member_id"], tokens["member"], _ = identity_with_token(c, "steady", {}, "project-a")
        _, tokens["limited"], _ = identity_with_token(c, "limited", {"accessTokenNumUsesLimit": 1000000}, "project-a")
        _, tokens["revoked"], revoked_id = identity_with_token(c, "revoked", {}, "project-a")
        c.admin("POST", f"/api/v1/auth/token-auth/tokens/{revoked_id}/revoke")
        deleted, tokens["deleted"], _ = identity_with_token(c, "deleted", {}, "project-a")
        c.admin("DELETE", f"/api/v1/identities/{deleted}")
        _, tokens["elsewhere"], _ = identity_with_token(
            c, "elsewhere", {"accessTokenTrustedIps": [{"ipAddress": "10.0.0.0/8"}]}, "project-a")

        snaps, types = [], {}
        stop_at = time.monotonic() + seconds
        threads, sent = run_load(proxy_port, tokens, seconds, args.max_requests, redis, stop_at)
        next_tick = time.monotonic()
        while time.monotonic() < stop_at + 2:
            samples, t = parse_exposition(scrape(admin_port))
            types.update(t)
            snaps.append((time.monotonic(), samples))
            next_tick += 1
            time.sleep(max(0.0, next_tick - time.monotonic()))
        for t in threads:
            t.join(timeout=15)
        print(f"{sent[0]} requests, {len(snaps)} scrapes", file=sys.stderr)
        draw(snaps, types, args.out)
        print(f"wrote {args.out} ({os.path.getsize(args.out) // 1024} KiB)", file=sys.stderr)
    finally:
        for proc in reversed(children):
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            stop(proc)
        upstream.shutdown()
        upstream.server_close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
