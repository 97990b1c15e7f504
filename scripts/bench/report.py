#!/usr/bin/env python3
"""Turns the raw figures of scripts/bench.sh into BENCHMARKS.md and an SVG chart.

usage: report.py RESULTS BENCHMARKS.md CHART.svg

RESULTS has one record per line (written by bench.sh):
  load VARIANT ROUND RPS REQUESTS PROXY_TICKS UPSTREAM_TICKS CLK_TCK RSS_KIB EV0 ALL0 EV1 ALL1 [AUTH_TICKS AUTH_RSS_KIB]
  lat VARIANT P50_MS P99_MS P999_MS ACHIEVED_RPS NON_200
  idle VARIANT N OPENED FAILED BEFORE_KIB DURING_KIB AFTER_KIB
  revoke N P50_MS P99_MS MAX_MS SLOW
  tokenmem N BYTES
  logs FILE LINES
  meta KEY VALUE...
AUTH_* are the tokengate that nginx asks in the forward-auth variants (H,
H-lim); their proxy figures in the main table are nginx's and tokengate's
together, split in the forward-auth section.
Only the standard library: the chart is SVG written by hand.

BENCHMARKS.md keeps everything below the KEEP marker line across runs, so
notes written by people (profiles, what was tried) survive a rerun.
"""
import html
import os
import statistics
import sys
import textwrap

KEEP = "<!-- Everything below this line is kept by scripts/bench.sh across runs. -->"

DESCRIPTIONS = {
    "A": "upstream direct (nginx answering 200 JSON)",
    "B": "tokengate, every route public",
    "C": "tokengate, Redis store, unlimited token (near cache on, the default)",
    "C0": "tokengate, Redis store, unlimited token, near cache off",
    "D": "tokengate, Redis store, limited token (large limit)",
    "E": "tokengate, embedded store, unlimited token",
    "E-lim": "tokengate, embedded store, limited token",
    "F": "nginx, plain reverse proxy",
    "G": "nginx + Lua, one Redis EVALSHA per request",
    "G2": "nginx + Lua, shared-dict cache, uses flushed every second",
    "H": "nginx + auth_request to tokengate (forward-auth, Redis, unlimited token, near cache); proxy = both",
    "H-lim": "H with a limited token (large limit); proxy = both",
    "H-auth": "tokengate's forward-auth endpoint alone, asked directly (no nginx, no upstream)",
    "C-bad": "tokengate, Redis store, malformed token (401)",
}
ORDER = ["A", "B", "C", "C0", "D", "E", "E-lim", "F", "G", "G2", "H", "H-lim", "H-auth", "C-bad"]
# Where nginx asks tokengate: two processes per request, counted apart.
PAIRED = ("H", "H-lim")


def parse(path):
    loads, lat, idle, meta, logs = {}, {}, {}, {}, {}
    revoke = tokenmem = None
    for line in open(path):
        f = line.split()
        if not f:
            continue
        kind = f[0]
        if kind == "load":
            v = f[1]
            rps, requests = float(f[3]), int(f[4])
            ptick, utick, clk, rss = int(f[5]), int(f[6]), int(f[7]), int(f[8])
            ev0, all0, ev1, all1 = (int(x) for x in f[9:13])
            # Older results files have no auth fields.
            atick, arss = (int(f[13]), int(f[14])) if len(f) > 14 else (0, 0)
            per = (lambda ticks: ticks / clk * 1e6 / requests) if requests else (lambda ticks: 0.0)
            loads.setdefault(v, []).append({
                "rps": rps,
                "cpu_us": per(ptick + atick),
                "proxy_cpu_us": per(ptick),
                "auth_cpu_us": per(atick),
                "up_cpu_us": utick / clk * 1e6 / requests if requests else 0.0,
                "rss_kib": rss + arss,
                "proxy_rss_kib": rss,
                "auth_rss_kib": arss,
                "evals": (ev1 - ev0) / requests if requests else 0.0,
                "cmds": (all1 - all0) / requests if requests else 0.0,
            })
        elif kind == "lat":
            lat[f[1]] = {"p50": float(f[2]), "p99": float(f[3]), "p999": float(f[4]), "rps": float(f[5]), "bad": int(f[6])}
        elif kind == "idle":
            idle[f[1]] = {"n": int(f[2]), "opened": int(f[3]), "failed": int(f[4]),
                          "before": int(f[5]), "during": int(f[6]), "after": int(f[7])}
        elif kind == "revoke":
            revoke = {"n": int(f[1]), "p50": float(f[2]), "p99": float(f[3]), "max": float(f[4]), "slow": int(f[5])}
        elif kind == "tokenmem":
            tokenmem = {"n": int(f[1]), "bytes": int(f[2])}
        elif kind == "logs":
            logs[f[1]] = int(f[2])
        elif kind == "meta":
            meta[f[1]] = " ".join(f[2:])
    return loads, lat, idle, revoke, tokenmem, meta, logs


def median(rounds, key):
    return statistics.median(r[key] for r in rounds)


def mib(kib):
    return kib / 1024.0


def chart(rows, path):
    """Two panels of horizontal bars: req/s and proxy CPU per request; a
    forward-auth variant's CPU bar is nginx's part then tokengate's."""
    bar_h, gap, label_w, panel_w, top = 22, 8, 70, 330, 50
    height = top + len(rows) * (bar_h + gap) + 30
    width = 2 * (label_w + panel_w) + 60
    colors = {"tokengate": "#2b6cb0", "nginx": "#9c4221", "upstream": "#718096", "nginx + tokengate": "#6b46c1"}

    def family(v):
        if v in PAIRED:
            return "nginx + tokengate"
        return "upstream" if v == "A" else ("nginx" if v[0] in "FG" else "tokengate")

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (width, height),
           '<rect width="100%" height="100%" fill="white"/>']
    panels = [("req/s (wrk, median)", "rps", "%.0f"), ("proxy CPU per request (us)", "cpu", "%.1f")]
    for i, (title, key, fmt) in enumerate(panels):
        x0 = 20 + i * (label_w + panel_w + 20)
        out.append('<text x="%d" y="25" font-size="14" font-weight="bold">%s</text>' % (x0, html.escape(title)))
        values = [r[key] for r in rows if r[key] is not None]
        top_value = max(values) if values else 1.0
        for j, r in enumerate(rows):
            y = top + j * (bar_h + gap)
            out.append('<text x="%d" y="%d">%s</text>' % (x0, y + bar_h - 6, html.escape(r["variant"])))
            if r[key] is None:
                out.append('<text x="%d" y="%d" fill="#718096">n/a</text>' % (x0 + label_w, y + bar_h - 6))
                continue
            w = max(1.0, (panel_w - 70) * r[key] / top_value) if top_value else 1.0
            if key == "cpu" and r.get("split") and r[key]:
                first = w * r["split"][0] / r[key]
                out.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (x0 + label_w, y, first, bar_h, colors["nginx"]))
                out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>' % (
                    x0 + label_w + first, y, w - first, bar_h, colors["tokengate"]))
            else:
                out.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (x0 + label_w, y, w, bar_h, colors[family(r["variant"])]))
            out.append('<text x="%.1f" y="%d">%s</text>' % (x0 + label_w + w + 4, y + bar_h - 6, fmt % r[key]))
    legend_y = height - 10
    for k, (name, color) in enumerate(colors.items()):
        out.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (20 + k * 140, legend_y - 11, color))
        out.append('<text x="%d" y="%d">%s</text>' % (38 + k * 140, legend_y, name))
    if any(r.get("split") for r in rows):
        out.append('<text x="%d" y="%d" fill="#4a5568">CPU of %s: nginx, then tokengate</text>' % (
            20 + len(colors) * 140, legend_y, html.escape(", ".join(r["variant"] for r in rows if r.get("split")))))
    out.append("</svg>")
    open(path, "w").write("\n".join(out) + "\n")


def forward_auth_section(agg, logs):
    """Issue 11: tokengate as nginx's auth_request plugin (H, H-lim, H-auth)
    beside tokengate as the proxy (C, D) and nginx alone or with Lua (F, G,
    G2), every ratio from this run."""
    if not all(v in agg for v in ("H", "C", "G")):
        return []
    out = ["## Forward-auth: tokengate as nginx's auth_request plugin", "",
           "H: nginx (one worker) proxies to the upstream and, for every request, first asks tokengate",
           "(`forward_auth`, one thread, Redis store, near cache on) with an `auth_request` subrequest",
           "to `/_tokengate/auth$request_uri` over a keep-alive pool, without the body, and copies the",
           "identity headers tokengate answers with onto the proxied request",
           "(deploy/forward-auth/nginx.conf's approach; before measuring, the script checks that the",
           "upstream receives the token's identity, the client's address and no token, and that a",
           "malformed token is refused with 401). H-lim: the same with a limited token, so every",
           "subrequest spends its use in Redis. H-auth: wrk asks the endpoint directly",
           "(`GET /_tokengate/auth/bench` with the token), the decision without nginx or an upstream.",
           "A request through H costs CPU in two processes, which can run on both cores at once while",
           "C and G each have one worker: CPU per request is the comparable cost, req/s is what this",
           "machine delivered.", "",
           "| variant | req/s | nginx CPU/req | tokengate CPU/req | total CPU/req | nginx RSS | tokengate RSS | EVALSHA/req |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def cell(us): return "%.1f us" % us
    for v in ("C", "D", "F", "G", "G2", "H", "H-lim", "H-auth"):
        if v not in agg:
            continue
        a = agg[v]
        if v in PAIRED:
            n_cpu, t_cpu, n_rss, t_rss = cell(a["proxy_cpu_us"]), cell(a["auth_cpu_us"]), a["proxy_rss"], a["auth_rss"]
        elif v[0] in "FG":
            n_cpu, t_cpu, n_rss, t_rss = cell(a["cpu_us"]), "-", a["rss"], None
        else:
            n_cpu, t_cpu, n_rss, t_rss = "-", cell(a["cpu_us"]), None, a["rss"]
        out.append("| %s | %.0f | %s | %s | %s | %s | %s | %.3f |" % (
            v, a["rps"], n_cpu, t_cpu, cell(a["cpu_us"]),
            "-" if n_rss is None else "%.1f MiB" % mib(n_rss),
            "-" if t_rss is None else "%.1f MiB" % mib(t_rss), a["evals"]))
    out.append("")

    h, c, g = agg["H"], agg["C"], agg["G"]

    def times(a, b): return "%.2fx" % (a / b) if b else "n/a"
    text = ("**H against C and G, this run.** A request through H costs %.1f us of CPU: %.1f in nginx and"
            " %.1f in tokengate; that is %s C's %.1f us (tokengate as the proxy, the same store and cache)"
            " and %s G's %.1f us (nginx + Lua, one EVALSHA per request). H served %.0f req/s, %s C's and"
            " %s G's." % (h["cpu_us"], h["proxy_cpu_us"], h["auth_cpu_us"], times(h["cpu_us"], c["cpu_us"]),
                          c["cpu_us"], times(h["cpu_us"], g["cpu_us"]), g["cpu_us"], h["rps"],
                          times(h["rps"], c["rps"]), times(h["rps"], g["rps"])))
    if "F" in agg:
        f = agg["F"]
        text += (" nginx's own share of H (%.1f us) is %s F's %.1f us (nginx proxying with no check): the"
                 " difference is the subrequest and the copied headers." % (h["proxy_cpu_us"], times(h["proxy_cpu_us"], f["cpu_us"]), f["cpu_us"]))
    if "G2" in agg:
        text += " Against G2 (nginx + Lua with a shared-dict cache, %.1f us), H costs %s." % (
            agg["G2"]["cpu_us"], times(h["cpu_us"], agg["G2"]["cpu_us"]))
    if "H-lim" in agg:
        hl = agg["H-lim"]
        parts = ["%s G's" % times(hl["cpu_us"], g["cpu_us"])]
        if "D" in agg:
            parts.insert(0, "%s D's %.1f us" % (times(hl["cpu_us"], agg["D"]["cpu_us"]), agg["D"]["cpu_us"]))
        text += (" With a limited token (%.3f EVALSHA per request), H-lim costs %.1f us (nginx %.1f, tokengate"
                 " %.1f), %s (each also one EVALSHA per request)." % (
                     hl["evals"], hl["cpu_us"], hl["proxy_cpu_us"], hl["auth_cpu_us"], " and ".join(parts)))
    if "H-auth" in agg:
        ha = agg["H-auth"]
        text += (" The decision alone (H-auth) costs tokengate %.1f us per request at %.0f req/s, against its"
                 " %.1f us per subrequest inside H and C's %.1f us to check and proxy." % (
                     ha["cpu_us"], ha["rps"], h["auth_cpu_us"], c["cpu_us"]))
    out += textwrap.wrap(text, 95) + [""]
    if logs:
        out += textwrap.wrap("Lines written to the logs of H's tokengate (`RUST_LOG=warn`) and nginx (error log"
                             " at `warn`) from the first measured request to the end of the latency runs: %s." % ", ".join(
                                 "`%s` %d" % (k, n) for k, n in sorted(logs.items())), 95) + [""]
    return out


def main():
    results, md_path, svg_path = sys.argv[1:4]
    loads, lat, idle, revoke, tokenmem, meta, logs = parse(results)
    settings = dict(kv.split("=", 1) for kv in meta.get("settings", "").split())
    quick = settings.get("QUICK") == "1"
    agg = {}
    for v in ORDER:
        if v not in loads:
            continue
        rounds = loads[v]
        agg[v] = {k: median(rounds, k) for k in ("rps", "cpu_us", "proxy_cpu_us", "auth_cpu_us", "up_cpu_us", "evals", "cmds")}
        agg[v]["rss"] = rounds[-1]["rss_kib"]
        agg[v]["proxy_rss"] = rounds[-1]["proxy_rss_kib"]
        agg[v]["auth_rss"] = rounds[-1]["auth_rss_kib"]
        if v in PAIRED:
            # Both parts from one round, the one whose total is the median
            # (the lower one for an even count), so that they add up to it.
            mid = sorted(rounds, key=lambda r: r["cpu_us"])[(len(rounds) - 1) // 2]
            for k in ("cpu_us", "proxy_cpu_us", "auth_cpu_us"):
                agg[v][k] = mid[k]
        agg[v]["every"] = ", ".join("%.0f" % r["rps"] for r in rounds)

    def rps(v): return agg[v]["rps"]
    def cpu(v): return agg[v]["cpu_us"]

    out = ["# Benchmarks", ""]
    if quick:
        out += ["> **Quick smoke run (`QUICK=1`).** Short cases, one round, fewer revocations and tokens",
                "> than a full run (settings below): these figures only show that the benchmark runs end",
                "> to end. They are not a measurement; run `scripts/bench.sh` without QUICK on a quiet machine.", ""]
    if meta.get("note"):
        out += ["> **Note from the person who ran it:** %s" % meta["note"], ""]
    out += ["Written by `scripts/bench.sh`, one run on one machine, everything on loopback. The load",
            "generator, the proxies, the upstream and Redis share the machine's cores, so compare the",
            "ratios (measured in the same run) rather than the absolute numbers.", "",
            "| | |", "| --- | --- |",
            "| date | %s |" % meta.get("date", "?"),
            "| machine | %s cores, %s, %s |" % (meta.get("cores", "?"), meta.get("cpu", "?"), meta.get("kernel", "?")),
            "| load average at the end | %s |" % meta.get("load", "?"),
            "| tokengate | %s |" % meta.get("tokengate", "?"),
            "| nginx | %s, Lua module %s (Debian) |" % (meta.get("nginx", "?"), meta.get("lua-module", "?")),
            "| Redis | %s |" % meta.get("redis", "?"),
            "| tools | wrk %s, oha %s |" % (meta.get("wrk", "?"), meta.get("oha", "?")),
            "| settings | `%s` |" % meta.get("settings", ""),
            "",
            "Every proxy has one worker (tokengate `server.threads: 1`, nginx `worker_processes 1`) and the",
            "same nginx upstream behind it. Throughput: `wrk -t1 -c%s -d%ss`, %s round(s) with the variants" % (
                settings.get("CONNECTIONS", "?"), settings.get("DURATION", "?"), settings.get("ROUNDS", "?")),
            "interleaved, medians (every round's req/s in the last column). CPU per request is utime+stime of",
            "the proxy's processes (nginx: master and worker) from /proc around each run, divided by the",
            "requests wrk completed; for A it is the upstream's; for H and H-lim it is nginx's and the",
            "tokengate's it asks, together (and so is their RSS), split in the forward-auth section below.",
            "Redis calls per request come from",
            "`INFO commandstats` deltas: EVALSHA alone, and every command including those a script runs",
            "(PING left out: the near cache's invalidation connections send five a second per gateway,",
            "whatever the traffic). Gateways run with `MIMALLOC_PURGE_DELAY=0`, as scripts/run.sh and the",
            "Dockerfile run them.",
            "",
            "![req/s and CPU per request per variant](BENCHMARKS.svg)", "",
            "## Throughput, CPU, memory, Redis", "",
            "| variant | what | req/s | proxy CPU/req | upstream CPU/req | proxy RSS | EVALSHA/req | Redis cmds/req | every round |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for v in ORDER:
        if v not in agg:
            continue
        a = agg[v]
        up = "-" if v == "A" else "%.1f us" % a["up_cpu_us"]
        out.append("| %s | %s | %.0f | %.1f us | %s | %.1f MiB | %.3f | %.3f | %s |" % (
            v, DESCRIPTIONS[v], a["rps"], a["cpu_us"], up, mib(a["rss"]), a["evals"], a["cmds"], a["every"]))
    out.append("")

    out += forward_auth_section(agg, logs)

    rate = settings.get("RATE", "?")

    def saturated(v):
        try:
            return lat[v]["rps"] < 0.95 * float(rate)
        except (KeyError, ValueError):
            return False
    out += ["## Latency at a fixed rate", "",
            "`oha -q %s -c %s -z %ss --latency-correction` (%s req/s is half of F's median saturation rate" % (
                rate, settings.get("CONNECTIONS", "?"), settings.get("LAT_DURATION", "?"), rate),
            "unless RATE was set; latency correction counts from when each request was due, so a stall is",
            "not hidden by the requests that were not sent during it). A variant marked *saturated*",
            "could not keep up with the rate (achieved under 95% of it, oha itself taking CPU from the",
            "same cores): its figures are queueing time, not the latency of a request.", "",
            "| variant | p50 | p99 | p99.9 | achieved req/s | non-200 |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for v in ORDER:
        if v in lat:
            l = lat[v]
            mark = " (*saturated*)" if saturated(v) else ""
            out.append("| %s%s | %.3f ms | %.3f ms | %.3f ms | %.0f | %d |" % (v, mark, l["p50"], l["p99"], l["p999"], l["rps"], l["bad"]))
    out.append("")

    if idle:
        out += ["## Idle keep-alive connections", "",
                "Each connection sends one request, reads the answer and stays open, idle",
                "(`scripts/bench/idle_conns.py`); RSS of the proxy's processes before, with them open (1 s",
                "after the last opened) and 2 s after they are all closed. nginx is configured for",
                "`worker_connections` = IDLE_CONNECTIONS + 2048 and allocates those connection structures",
                "at start, so its RSS before already holds part of what the connections cost.", "",
                "| variant | connections open (failed) | RSS before | RSS with them open | per connection | RSS after close |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for v in ORDER:
            if v in idle:
                d = idle[v]
                per = (d["during"] - d["before"]) / d["opened"] if d["opened"] else 0.0
                out.append("| %s | %d (%d) | %.1f MiB | %.1f MiB | %.1f KiB | %.1f MiB |" % (
                    v, d["opened"], d["failed"], mib(d["before"]), mib(d["during"]), per, mib(d["after"])))
        out.append("")

    if revoke or tokenmem:
        out += ["## Revocation and Redis memory", ""]
        if revoke:
            out.append("- Revocation through one Redis gateway, asked of a second one on the same Redis until it")
            out.append("  refuses (`scripts/bench/mgmt_probe.py revoke`): %d revocations, p50 %.3f ms, p99 %.3f ms," % (
                revoke["n"], revoke["p50"], revoke["p99"]))
            out.append("  max %.3f ms; %d still allowed after 1 s." % (revoke["max"], revoke["slow"]))
        if tokenmem and tokenmem["n"]:
            out.append("- Redis `used_memory` grew by %d bytes over %d tokens with a use limit and two trusted" % (
                tokenmem["bytes"], tokenmem["n"]))
            out.append("  CIDRs: **%.0f bytes per token**, indexes included." % (tokenmem["bytes"] / tokenmem["n"]))
        out.append("")

    # Issue 7's targets, each with the figure it is judged on.
    targets = []

    def target(name, figure, met):
        mark = "n/a" if met is None else ("**met**" if met else "**missed**")
        targets.append("| %s | %s | %s |" % (name, figure, mark))

    def have(*vs): return all(v in agg for v in vs)
    if have("B", "C"):
        target("C/B >= 0.95 (req/s)", "%.2f" % (rps("C") / rps("B")), rps("C") / rps("B") >= 0.95)
    if have("B", "E"):
        target("E/B >= 0.95", "%.2f" % (rps("E") / rps("B")), rps("E") / rps("B") >= 0.95)
    if have("B", "D"):
        target("D/B >= 0.75", "%.2f" % (rps("D") / rps("B")), rps("D") / rps("B") >= 0.75)
    if have("C", "G"):
        r = rps("C") / rps("G")
        target("C/G >= 1.3 (aim 1.5)", "%.2f" % r, r >= 1.3)
        target("C's CPU/req below G's", "%.1f us vs %.1f us" % (cpu("C"), cpu("G")), cpu("C") < cpu("G"))
    if have("B", "F"):
        r = cpu("B") / cpu("F")
        target("B's CPU/req <= 1.5x F's", "%.2fx (%.1f us vs %.1f us)" % (r, cpu("B"), cpu("F")), r <= 1.5)
    if "B" in lat and "C" in lat:
        d = lat["C"]["p99"] - lat["B"]["p99"]
        sat = [v for v in ("B", "C") if saturated(v)]
        note = " (%s saturated)" % " and ".join(sat) if sat else ""
        target("p99 at %s req/s: C <= B + 0.3 ms" % rate,
               "C %.3f ms, B %.3f ms (%+.3f ms)%s" % (lat["C"]["p99"], lat["B"]["p99"], d, note), d <= 0.3)
    if "C" in agg:
        target("Redis commands/req, hot unlimited token (C) < 0.01", "%.3f" % agg["C"]["cmds"], agg["C"]["cmds"] < 0.01)
    if "D" in agg:
        e = agg["D"]["evals"]
        target("EVALSHA/req, limited token (D) exactly 1", "%.3f" % e, abs(e - 1.0) < 0.005)
    if "C-bad" in agg:
        target("Redis commands/req, malformed token: none", "%.4f" % agg["C-bad"]["cmds"], agg["C-bad"]["cmds"] == 0)
    if revoke:
        target("revocation seen by another gateway: p99 <= 10 ms over 1,000", "p99 %.3f ms over %d" % (revoke["p99"], revoke["n"]),
               (revoke["p99"] <= 10.0 and revoke["slow"] == 0) if revoke["n"] >= 1000 else None)
    for v in ("B", "C"):
        if v in idle:
            d = idle[v]
            judged = d["n"] >= 10000 and d["opened"] >= 10000
            target("%s's RSS at 10,000 idle connections <= 128 MiB" % v,
                   "%.1f MiB at %d" % (mib(d["during"]), d["opened"]), (mib(d["during"]) <= 128) if judged else None)
            # "Back near the start": within 16 MiB of the RSS before they were opened.
            target("%s's RSS back near the start after they close (+16 MiB at most)" % v,
                   "%.1f -> %.1f MiB" % (mib(d["before"]), mib(d["after"])), (mib(d["after"] - d["before"]) <= 16) if judged else None)
    if tokenmem and tokenmem["n"]:
        per = tokenmem["bytes"] / tokenmem["n"]
        target("Redis memory per token <= 256 bytes", "%.0f bytes over %d tokens" % (per, tokenmem["n"]), per <= 256)

    out += ["## Targets of issue 7", "",
            "n/a: not judged in this run (fewer idle connections or revocations than the target names).", "",
            "| target | measured | |", "| --- | --- | --- |"] + targets + [""]

    kept = ""
    if os.path.exists(md_path):
        old = open(md_path).read()
        if KEEP in old:
            kept = old.split(KEEP, 1)[1].lstrip("\n")
    if not kept:
        kept = "## Notes\n\nProfiles, attempts and their effect, written by hand; scripts/bench.sh keeps this part.\n"
    open(md_path, "w").write("\n".join(out) + "\n" + KEEP + "\n\n" + kept)

    rows = [{"variant": v, "rps": agg[v]["rps"], "cpu": agg[v]["cpu_us"],
             "split": (agg[v]["proxy_cpu_us"], agg[v]["auth_cpu_us"]) if v in PAIRED else None}
            for v in ORDER if v in agg and v != "C-bad"]
    chart(rows, svg_path)


if __name__ == "__main__":
    main()
