#!/usr/bin/env python3
"""Measures what an idle keep-alive client connection costs the gateway in RSS.

Starts, on loopback and free ports, the echo upstream (scripts/echo_upstream.py)
and the gateway (target/release/tokengate unless --binary) with every path
public, so no store lookup is involved. Then it opens client connections one
by one; each sends one complete GET, reads the whole answer and stays open and
idle. The gateway's VmRSS (from /proc) is read before the first connection, at
each count in --counts, and --after seconds after every connection is closed.
It prints one table and per-connection figures, then stops what it started.

Bounded: every wait has a deadline and the whole run stops after --budget
seconds (default 240). The soft open-file limit of this process is raised to
its hard limit so that it can hold the connections; the gateway raises its own.

  scripts/conn_cost.py                        # 1000, 5000, 10000 connections
  scripts/conn_cost.py --counts 200,1000      # smaller
  scripts/conn_cost.py --env MIMALLOC_PURGE_DELAY=0 --yaml 'server: {threads: 1}'
  scripts/conn_cost.py --tls                  # over TLS (a throwaway certificate, openssl)
  scripts/conn_cost.py --tls --alpn h2        # the handshake only: no h2 client here, so
                                              # with --silent (idle after the handshake)

--yaml merges extra top-level YAML sections into the generated config (it is
appended, so use keys the base config does not set: the base sets server.listen
and server.threads only through --threads).
"""
import argparse
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUEST = b"GET /conn-cost HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: conn-cost\r\n\r\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def read_answer(sock, deadline):
    """Reads one whole HTTP/1.1 answer (Content-Length framed); returns the status."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline:
            raise TimeoutError("answer header")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the answer")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        if time.monotonic() > deadline:
            raise TimeoutError("answer body")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the answer body")
        body += chunk
    return status


def one_connection(port, deadline, silent=False, tls=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls is not None:
        s = tls.wrap_socket(s, server_hostname="localhost")
    if silent:
        return s
    s.sendall(REQUEST)
    status = read_answer(s, deadline)
    if status != 200:
        s.close()
        raise RuntimeError(f"status {status}")
    return s


def wait_ready(port, proc, deadline, probe):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            probe(port)
            return
        except (OSError, RuntimeError):
            time.sleep(0.2)
    raise TimeoutError(f"port {port} not ready")


def stop(proc):
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/tokengate"))
    ap.add_argument("--counts", default="1000,5000,10000")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--after", type=float, default=10.0, help="seconds to wait after closing")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait before each reading")
    ap.add_argument("--budget", type=float, default=240.0, help="hard limit on the whole run")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the gateway")
    ap.add_argument("--yaml", default="", help="extra YAML appended to the config")
    ap.add_argument("--silent", action="store_true",
                    help="connections send nothing (isolates the cost of accepting from serving)")
    ap.add_argument("--tls", action="store_true",
                    help="connect to a TLS listener (server.tls) with a throwaway certificate")
    ap.add_argument("--alpn", default="http/1.1", help="ALPN offered with --tls")
    ap.add_argument("--port-base", type=int, default=0,
                    help="use this port and the next two (upstream, gateway, TLS) instead of free ones")
    args = ap.parse_args()
    counts = sorted(int(c) for c in args.counts.split(","))
    end = time.monotonic() + args.budget

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < counts[-1] + 100:
        sys.exit(f"open-file hard limit {hard} is below {counts[-1] + 100}")

    work = tempfile.mkdtemp(prefix="conn-cost-")
    pick = (lambda i: args.port_base + i) if args.port_base else (lambda i: free_port())
    up_port, gw_port = pick(0), pick(1)
    cfg = os.path.join(work, "tokengate.yaml")
    tls_yaml, tls, port = "", None, gw_port
    if args.tls:
        port = pick(2)
        subprocess.run(
            ["openssl", "req", "-x509", "-nodes", "-days", "1", "-newkey", "ec",
             "-pkeyopt", "ec_paramgen_curve:prime256v1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost", "-keyout", "key.pem", "-out", "cert.pem"],
            cwd=work, check=True, capture_output=True, timeout=30,
        )
        tls_yaml = (f"  tls:\n    listen: [\"127.0.0.1:{port}\"]\n"
                    f"    certificates: [{{cert: {work}/cert.pem, key: {work}/key.pem}}]\n")
        tls = ssl.create_default_context(cafile=os.path.join(work, "cert.pem"))
        tls.set_alpn_protocols([args.alpn])
    with open(cfg, "w") as f:
        f.write(
            f"server:\n  listen: [\"127.0.0.1:{gw_port}\"]\n  threads: {args.threads}\n"
            f"  grace_period_seconds: 0\n" + tls_yaml +
            f"upstream:\n  url: \"http://127.0.0.1:{up_port}\"\n"
            f"store:\n  kind: embedded\n  path: {work}/store.redb\n"
            f"public_routes: [\"/\"]\nroutes: []\nproject:\n  sources: []\n"
            + (args.yaml + "\n" if args.yaml else "")
        )
    env = dict(os.environ, RUST_LOG="warn")
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v

    upstream = gateway = None
    conns = []
    rows = []
    try:
        upstream = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "scripts/echo_upstream.py"), str(up_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_ready(up_port, upstream, min(end, time.monotonic() + 30),
                   lambda p: socket.create_connection(("127.0.0.1", p), timeout=2).close())
        gateway = subprocess.Popen(
            [args.binary, "serve", "--config", cfg], env=env, cwd=work,
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "gateway.log"), "w"),
        )
        wait_ready(port, gateway, min(end, time.monotonic() + 60),
                   lambda p: one_connection(p, time.monotonic() + 5, args.silent, tls).close())
        time.sleep(args.settle)
        base = rss_kib(gateway.pid)
        rows.append(("start", 0, base, open_fds(gateway.pid)))
        for target in counts:
            while len(conns) < target:
                if time.monotonic() > end:
                    raise TimeoutError(f"budget spent at {len(conns)} connections")
                conns.append(one_connection(port, time.monotonic() + 10, args.silent, tls))
            time.sleep(args.settle)
            rows.append((f"{target} idle", target, rss_kib(gateway.pid), open_fds(gateway.pid)))
        for s in conns:
            s.close()
        conns = []
        time.sleep(min(args.after, max(0.0, end - time.monotonic())))
        rows.append((f"closed +{args.after:g}s", 0, rss_kib(gateway.pid), open_fds(gateway.pid)))
    finally:
        for s in conns:
            s.close()
        stop(gateway)
        stop(upstream)

    print(f"gateway {args.binary} threads={args.threads} env={args.env} yaml={args.yaml!r}"
          + (" silent" if args.silent else "") + (f" tls alpn={args.alpn}" if args.tls else ""))
    print(f"{'point':<16}{'conns':>7}{'RSS MiB':>10}{'KiB/conn':>10}{'fds':>7}")
    for name, n, rss, fds in rows:
        per = f"{(rss - base) / n:.1f}" if n else "-"
        print(f"{name:<16}{n:>7}{rss / 1024:>10.1f}{per:>10}{fds:>7}")


if __name__ == "__main__":
    main()
