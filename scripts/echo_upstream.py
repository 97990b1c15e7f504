#!/usr/bin/env python3
"""A demo upstream for the README walkthrough: answers every request with the
method, path and headers it received, as JSON. Listens on 127.0.0.1:3000
(or the port given as the first argument, on the address given as the second:
0.0.0.0 in a container, deploy/docker-compose.yml)."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        out = json.dumps(
            {"method": self.command, "path": self.path, "headers": dict(self.headers.items()), "body": body},
            indent=2,
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    print(f"echo upstream on http://{host}:{port}", flush=True)
    # The standard library's listen backlog is 5: under load (scripts/soak.py)
    # new connections would wait out a connect timeout.
    ThreadingHTTPServer.request_queue_size = 1024
    ThreadingHTTPServer((host, port), Echo).serve_forever()
