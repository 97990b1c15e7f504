#!/usr/bin/env python3
"""Soak: steady load through one gateway on a Redis that is restarted every
minute, for a bounded time (not part of the test suite).

Starts its own redis-server (AOF, fsync always, so data survives each
restart), the demo upstream (scripts/echo_upstream.py) and the gateway
binary, all on loopback ports from PORT_BASE, creates an identity with an
unlimited token, then runs CLIENTS keep-alive clients for DURATION seconds.
Every RESTART_EVERY seconds Redis is stopped and started again on the same
port. Prints, every SAMPLE seconds, the gateway's RSS and the answers by
status; at the end checks that the only errors are 503s inside the restart
windows (from the stop to a few seconds after the start) and that the RSS at
the end is within RSS_SLACK of its median over the run, and exits non-zero
if not.

    python3 scripts/soak.py                        # about 10 minutes
    DURATION=300 python3 scripts/soak.py           # shorter
Environment: DURATION (600), CLIENTS (8), RESTART_EVERY (60), SAMPLE (10),
PORT_BASE (47300), RSS_SLACK (0.25), TOKENGATE_BIN (target/debug/tokengate).
Every process it starts is stopped by its PID at the end.
"""

import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DURATION = int(os.environ.get("DURATION", "600"))
CLIENTS = int(os.environ.get("CLIENTS", "8"))
RESTART_EVERY = int(os.environ.get("RESTART_EVERY", "60"))
SAMPLE = int(os.environ.get("SAMPLE", "10"))
BASE = int(os.environ.get("PORT_BASE", "47300"))
RSS_SLACK = float(os.environ.get("RSS_SLACK", "0.25"))
BIN = os.environ.get("TOKENGATE_BIN", os.path.join(ROOT, "target/debug/tokengate"))
ADMIN_KEY = "soak-admin-key-0123456789abcdef"
PROXY, ADMIN, UPSTREAM, REDIS = BASE, BASE + 1, BASE + 2, BASE + 3
# A window's errors may go on this long after Redis is back (reconnects).
RECOVERY = 10.0


def wait_port(port, timeout=20.0):
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout} s")


def call(port, method, path, body=None, token=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, (json.loads(data) if data else None)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Redis:
    def __init__(self, workdir):
        self.workdir = workdir
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(REDIS), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", self.workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(REDIS)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)


def main():
    work = tempfile.mkdtemp(prefix="tg-soak-")
    procs = []
    redis = Redis(work)
    status_counts = {}
    errors = []  # (time, status)
    windows = []  # (stopped_at, started_at)
    stop = threading.Event()
    lock = threading.Lock()
    try:
        redis.start()
        up = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts/echo_upstream.py"), str(UPSTREAM)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(up)
        wait_port(UPSTREAM)
        cfg = os.path.join(work, "gw.yaml")
        with open(cfg, "w") as f:
            f.write(
                f"server: {{listen: ['127.0.0.1:{PROXY}'], threads: 2}}\n"
                f"admin: {{listen: '127.0.0.1:{ADMIN}', lockout: {{threshold: 0}}}}\n"
                f"upstream: {{url: 'http://127.0.0.1:{UPSTREAM}'}}\n"
                f"store: {{kind: redis, url: 'redis://127.0.0.1:{REDIS}/0', response_timeout_ms: 500, connect_timeout_ms: 500}}\n"
                "audit: {destination: off}\n")
        env = dict(os.environ, TOKENGATE_ADMIN_KEY=ADMIN_KEY, RUST_LOG="warn", MIMALLOC_PURGE_DELAY="0")
        gw = subprocess.Popen([BIN, "serve", "--config", cfg], cwd=work, env=env,
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "gw.log"), "w"))
        procs.append(gw)
        wait_port(PROXY)
        wait_port(ADMIN)
        _, ident = call(PROXY, "POST", "/api/v1/identities",
                        {"name": "soak", "organizationId": "org-soak", "role": "member"}, ADMIN_KEY)
        iid = ident["identity"]["id"]
        call(PROXY, "POST", f"/api/v1/auth/token-auth/identities/{iid}", {}, ADMIN_KEY)
        _, tok = call(PROXY, "POST", f"/api/v1/auth/token-auth/identities/{iid}/tokens", {"name": "t"}, ADMIN_KEY)
        token = tok["accessToken"]

        def client():
            conn = None
            last = 200
            while not stop.is_set():
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", PROXY, timeout=10)
                    conn.request("GET", "/v1/things", headers={"Authorization": f"Bearer {token}"})
                    resp = conn.getresponse()
                    resp.read()
                    status = resp.status
                    if resp.getheader("connection", "").lower() == "close":
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException):
                    # The gateway closes a connection after an upstream
                    # failure: the next request on it fails here.
                    status = "closed after upstream error" if last in (502, 504) else 0
                    conn = None
                last = status
                with lock:
                    status_counts[status] = status_counts.get(status, 0) + 1
                    if status != 200:
                        errors.append((time.time(), status))

        threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        started = time.time()
        next_restart = started + RESTART_EVERY
        next_sample = started + SAMPLE
        rss = []
        print(f"soak: {DURATION} s, {CLIENTS} clients, Redis restarted every {RESTART_EVERY} s")
        while time.time() - started < DURATION:
            time.sleep(0.2)
            now = time.time()
            if now >= next_restart:
                stopped_at = time.time()
                redis.stop()
                time.sleep(1.0)
                redis.start()
                windows.append((stopped_at, time.time()))
                next_restart = now + RESTART_EVERY
            if now >= next_sample:
                kib = rss_kib(gw.pid)
                rss.append(kib)
                with lock:
                    counts = {str(k): v for k, v in status_counts.items()}
                print(f"  t={now - started:6.0f}s  rss={kib / 1024:7.1f} MiB  answers={counts}", flush=True)
                next_sample = now + SAMPLE
        stop.set()
        for t in threads:
            t.join(timeout=15)

        def in_window(at):
            return any(s <= at <= e + RECOVERY for s, e in windows)

        # The upstream's own failures (502, 504) are reported, not judged:
        # the soak is about the gateway and its store.
        upstream_side = (502, 504, "closed after upstream error")
        unexpected = [(at, s) for at, s in errors
                      if s not in upstream_side and not (s == 503 and in_window(at))]
        total = sum(status_counts.values())
        shown = {str(k): v for k, v in status_counts.items()}
        print(f"answers: {shown} of {total}; Redis restarts: {len(windows)}")
        print(f"upstream-side failures (reported, not judged): "
              f"{sum(v for k, v in status_counts.items() if k in upstream_side)}")
        print(f"unexpected errors (not a 503 inside a restart window): {len(unexpected)}")
        ok = not unexpected and status_counts.get(200, 0) > 0
        if rss:
            median = statistics.median(rss)
            last = rss[-1]
            print(f"rss: first {rss[0] / 1024:.1f} MiB, median {median / 1024:.1f} MiB, "
                  f"last {last / 1024:.1f} MiB, max {max(rss) / 1024:.1f} MiB")
            if last > median * (1 + RSS_SLACK):
                print(f"RSS grew: last {last} KiB > median {median} KiB + {RSS_SLACK:.0%}")
                ok = False
        for at, s in unexpected[:10]:
            print(f"  unexpected {s} at t={at - started:.1f}s")
        print("soak: OK" if ok else "soak: FAILED")
        return 0 if ok else 1
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
        redis.stop()


if __name__ == "__main__":
    sys.exit(main())
