#!/usr/bin/env python3
"""Management-side probes for scripts/bench.sh, over the Infisical-compatible API.

  mgmt_probe.py revoke PORT_A PORT_B IDENTITY N DEADLINE
      N times: create a token through gateway A, use it on gateway B (so a
      gateway with a cache holds it), revoke it through A, then ask B until B
      refuses it. Prints "revoke N_DONE P50_MS P99_MS MAX_MS SLOW" where the
      times run from A's answer to the revoke to B's first refusal, and SLOW
      counts revocations B still allowed after 1 s (then the probe moves on).

  mgmt_probe.py tokens PORT IDENTITY N DEADLINE
      Creates N tokens for IDENTITY through the gateway; prints "tokens N_DONE".

The admin key comes from TOKENGATE_ADMIN_KEY. Every loop is bounded by
DEADLINE seconds from the start.
"""
import http.client
import json
import os
import sys
import time

KEY = os.environ["TOKENGATE_ADMIN_KEY"]


def call(conn, method, path, body=None, token=None):
    headers = {"Host": "127.0.0.1"}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def create_token(conn, identity):
    status, body = call(conn, "POST", "/api/v1/auth/token-auth/identities/%s/tokens" % identity, {}, KEY)
    if status != 200:
        raise SystemExit("token create: %d %s" % (status, body[:200]))
    return json.loads(body)["accessToken"]


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def revoke(port_a, port_b, identity, n, deadline):
    end = time.monotonic() + deadline
    a = http.client.HTTPConnection("127.0.0.1", int(port_a), timeout=5)
    b = http.client.HTTPConnection("127.0.0.1", int(port_b), timeout=5)
    times, slow = [], 0
    for _ in range(n):
        if time.monotonic() >= end:
            break
        token = create_token(a, identity)
        # Twice: the first fills B's near cache, the second is served from it.
        for _ in range(2):
            status, _ = call(b, "GET", "/bench", token=token)
            if status != 200:
                raise SystemExit("fresh token refused by gateway B: %d" % status)
        status, body = call(a, "POST", "/api/v1/auth/token/revoke", {"accessToken": token})
        if status != 200:
            raise SystemExit("revoke: %d %s" % (status, body[:200]))
        revoked_at = time.monotonic()
        while True:
            status, _ = call(b, "GET", "/bench", token=token)
            now = time.monotonic()
            if status == 401:
                times.append((now - revoked_at) * 1000.0)
                break
            if now - revoked_at > 1.0:
                slow += 1
                break
    if not times:
        print("revoke 0 0 0 0 %d" % slow)
        return
    print("revoke %d %.3f %.3f %.3f %d" % (len(times), percentile(times, 50), percentile(times, 99), max(times), slow))


def tokens(port, identity, n, deadline):
    end = time.monotonic() + deadline
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
    done = 0
    while done < n and time.monotonic() < end:
        create_token(conn, identity)
        done += 1
    print("tokens %d" % done)


if __name__ == "__main__":
    if sys.argv[1] == "revoke":
        revoke(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6]))
    elif sys.argv[1] == "tokens":
        tokens(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    else:
        raise SystemExit(__doc__)
