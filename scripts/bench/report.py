#!/usr/bin/env python3
"""Turns the raw figures of scripts/bench.sh into BENCHMARKS.md and an SVG chart.

usage: report.py RESULTS BENCHMARKS.md CHART.svg

RESULTS has one record per line (written by bench.sh):
  load VARIANT ROUND RPS REQUESTS PROXY_TICKS UPSTREAM_TICKS CLK_TCK RSS_KIB EV0 ALL0 EV1 ALL1
  lat VARIANT P50_MS P99_MS P999_MS ACHIEVED_RPS NON_200
  idle VARIANT N OPENED FAILED BEFORE_KIB DURING_KIB AFTER_KIB
  revoke N P50_MS P99_MS MAX_MS SLOW
  tokenmem N BYTES
  meta KEY VALUE...
Only the standard library: the chart is SVG written by hand.

BENCHMARKS.md keeps everything below the KEEP marker line across runs, so
notes written by people (profiles, what was tried) survive a rerun.
"""
import html
import os
import statistics
import sys

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
    "C-bad": "tokengate, Redis store, malformed token (401)",
}
ORDER = ["A", "B", "C", "C0", "D", "E", "E-lim", "F", "G", "G2", "C-bad"]


def parse(path):
    loads, lat, idle, meta = {}, {}, {}, {}
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
            loads.setdefault(v, []).append({
                "rps": rps,
                "cpu_us": ptick / clk * 1e6 / requests if requests else 0.0,
                "up_cpu_us": utick / clk * 1e6 / requests if requests else 0.0,
                "rss_kib": rss,
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
        elif kind == "meta":
            meta[f[1]] = " ".join(f[2:])
    return loads, lat, idle, revoke, tokenmem, meta


def median(rounds, key):
    return statistics.median(r[key] for r in rounds)


def mib(kib):
    return kib / 1024.0


def chart(rows, path):
    """Two panels of horizontal bars: req/s and proxy CPU per request."""
    bar_h, gap, label_w, panel_w, top = 22, 8, 70, 330, 50
    height = top + len(rows) * (bar_h + gap) + 30
    width = 2 * (label_w + panel_w) + 60
    colors = {"tokengate": "#2b6cb0", "nginx": "#9c4221", "upstream": "#718096"}

    def family(v):
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
            out.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (x0 + label_w, y, w, bar_h, colors[family(r["variant"])]))
            out.append('<text x="%.1f" y="%d">%s</text>' % (x0 + label_w + w + 4, y + bar_h - 6, fmt % r[key]))
    legend_y = height - 10
    for k, (name, color) in enumerate(colors.items()):
        out.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (20 + k * 120, legend_y - 11, color))
        out.append('<text x="%d" y="%d">%s</text>' % (38 + k * 120, legend_y, name))
    out.append("</svg>")
    open(path, "w").write("\n".join(out) + "\n")


def main():
    results, md_path, svg_path = sys.argv[1:4]
    loads, lat, idle, revoke, tokenmem, meta = parse(results)
    settings = dict(kv.split("=", 1) for kv in meta.get("settings", "").split())
    quick = settings.get("QUICK") == "1"
    agg = {}
    for v in ORDER:
        if v not in loads:
            continue
        rounds = loads[v]
        agg[v] = {k: median(rounds, k) for k in ("rps", "cpu_us", "up_cpu_us", "evals", "cmds")}
        agg[v]["rss"] = rounds[-1]["rss_kib"]
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
            "requests wrk completed; for A it is the upstream's. Redis calls per request come from",
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

    rows = [{"variant": v, "rps": agg[v]["rps"], "cpu": agg[v]["cpu_us"]} for v in ORDER if v in agg and v != "C-bad"]
    chart(rows, svg_path)


if __name__ == "__main__":
    main()
