#!/usr/bin/env python3
"""Hold N idle keep-alive connections to a proxy (used by scripts/bench.sh).

Opens N connections to 127.0.0.1:PORT, sends one GET on each and reads its
whole answer (so each connection has been through the proxy's request path
and sits in keep-alive), then writes "ready OPEN FAILED" to stdout and keeps
them idle until stdin is closed or HOLD seconds pass, then closes them all.
Every step is bounded by DEADLINE seconds from the start.

usage: idle_conns.py PORT PATH N HOLD DEADLINE [HEADER]
"""
import selectors
import socket
import sys
import time


def main():
    port, path, n, hold, deadline = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    header = sys.argv[6] if len(sys.argv) > 6 else ""
    request = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (path, header + "\r\n" if header else "")
    request = request.encode()
    end = time.monotonic() + deadline
    sel = selectors.DefaultSelector()
    socks, pending, failed = [], {}, 0
    # Opened in batches so the listen backlog never overflows; each batch is
    # connected, sent and answered before the next one starts.
    batch = 500
    for start in range(0, n, batch):
        for _ in range(min(batch, n - start)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", int(port)))
            socks.append(s)
            pending[s] = b""
            sel.register(s, selectors.EVENT_WRITE)
        while pending and time.monotonic() < end:
            for key, events in sel.select(timeout=0.5):
                s = key.fileobj
                if events & selectors.EVENT_WRITE:
                    try:
                        s.send(request)
                    except OSError:
                        failed += 1
                        sel.unregister(s)
                        del pending[s]
                        continue
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    failed += 1
                    sel.unregister(s)
                    del pending[s]
                    continue
                got = pending[s] + data
                head, sep, body = got.partition(b"\r\n\r\n")
                if sep:
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value.strip())
                    if len(body) >= length:
                        if not head.startswith(b"HTTP/1.1 200"):
                            failed += 1
                        sel.unregister(s)
                        del pending[s]
                        continue
                pending[s] = got
        if time.monotonic() >= end:
            break
    failed += len(pending)
    open_count = len(socks) - failed
    print("ready %d %d" % (open_count, failed), flush=True)
    # Idle until the caller closes our stdin, or HOLD seconds, or the deadline.
    stop = min(end, time.monotonic() + hold)
    stdin = selectors.DefaultSelector()
    stdin.register(sys.stdin, selectors.EVENT_READ)
    while time.monotonic() < stop:
        if stdin.select(timeout=min(1.0, max(0.0, stop - time.monotonic()))):
            if not sys.stdin.readline():
                break
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
