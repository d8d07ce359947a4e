#!/usr/bin/env python3
"""Summarise the raw wrk outputs of bench/e2e.sh into a markdown table and a JSON file.

Input: --meta (key=value lines, clk_tck among them), --index (TSV: round, contestant, wrk
output file, attempt, CPU used meanwhile by processes outside the benchmark in % of one core, the
top such processes, 1 if kept or 0 if discarded as disturbed and measured again, then the
proxy's user and system CPU ticks over the run and the number of processes summed, "-" for
direct). Output: OUT.md, OUT.json and OUT.svg (bar charts of req/s, added p99 and CPU per
request); the markdown is also printed.
Medians are over rounds; the ratio is median req/s over nginx's median req/s from the same run;
"added" latency is the contestant's median percentile minus direct's (wrk straight to upstream);
CPU per request is the proxy's ticks x 1e6 / CLK_TCK / the requests wrk completed, and its ratio
is the median over nginx's median.
"""
import argparse
import json
import re
import statistics
import sys

ORDER = ["direct", "nginx", "haproxy", "hyper-minimal", "pingora-minimal", "cellgate", "cellgate-jwt", "cellgate-key"]
UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def parse_wrk(path):
    """Values from one wrk run: the WRK_JSON line of wrk-report.lua, else wrk's text output."""
    text = open(path, encoding="utf-8", errors="replace").read()
    rec = {"rps": None, "requests": None, "latency_us": {}, "errors": {}, "non2xx": 0}
    for line in text.splitlines():
        if line.startswith("WRK_JSON "):
            j = json.loads(line[len("WRK_JSON "):])
            rec.update(rps=j["rps"], requests=j["requests"], latency_us=j["latency_us"],
                       errors=j["errors"])
    if rec["rps"] is None:  # fall back to the text report
        m = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.M)
        rec["rps"] = float(m.group(1)) if m else None
        for pct, key in (("50", "p50"), ("99", "p99")):
            m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
            if m:
                rec["latency_us"][key] = float(m.group(1)) * UNITS_US[m.group(2)]
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
        if m:
            rec["errors"] = dict(zip(["connect", "read", "write", "timeout"], map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    rec["non2xx"] = int(m.group(1)) if m else 0
    if rec["rps"] is None:
        rec["wrk_output"] = text[-2000:]
    return rec


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_int(v):
    return "n/a" if v is None else f"{v:,.0f}"


def fmt_k(v):
    return "n/a" if v is None else f"{v / 1000:.1f}k"


def fmt_signed(v):
    return "n/a" if v is None else f"{v:+,.0f}"


def fmt_us(v, name=""):
    """CPU µs per request: two decimals; a dash for direct, which has no proxy to measure."""
    if name == "direct":
        return "—"
    return "n/a" if v is None else f"{v:.2f}"


def ticks(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def add_cpu(rec, user_ticks, sys_ticks, procs, clk_tck):
    """The proxy's CPU over one run, per request completed (None without a reading or a count)."""
    u, sy = ticks(user_ticks), ticks(sys_ticks)
    rec.update(cpu_user_ticks=u, cpu_sys_ticks=sy, cpu_procs=ticks(procs) or 0,
               user_us_per_req=None, sys_us_per_req=None, cpu_us_per_req=None)
    n = rec.get("requests")
    if u is None or sy is None or not n:
        return
    per = 1e6 / clk_tck / n
    rec.update(user_us_per_req=u * per, sys_us_per_req=sy * per, cpu_us_per_req=(u + sy) * per)


def svg_chart(names, summary, title):
    """Horizontal bar panels, readable at a glance: median req/s (ratio to nginx on each bar),
    added p99 latency over direct, and the proxy's CPU µs per request when measured. Plain SVG,
    no plotting library."""
    rows = [n for n in names if summary[n]["rps"] is not None]
    cpu = {n: summary[n]["cpu_us_per_req"] for n in rows if summary[n].get("cpu_us_per_req") is not None}
    bar_h, gap, left, width = 22, 8, 150, 360
    panel_h = len(rows) * (bar_h + gap) + 30
    height = 40 + (3 if cpu else 2) * panel_h + 20
    total_w = left + width + 110
    esc = lambda t: str(t).replace("&", "&amp;").replace("<", "&lt;")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{total_w}" height="{height}" fill="white"/>',
           f'<text x="10" y="22" font-size="14" font-weight="bold">{esc(title)}</text>']

    def panel(y0, label, values, fmt, highlight):
        out.append(f'<text x="10" y="{y0 + 14}" font-weight="bold">{esc(label)}</text>')
        vmax = max([v for v in values.values() if v is not None] + [1e-9])
        for i, n in enumerate(rows):
            y = y0 + 24 + i * (bar_h + gap)
            v = values.get(n)
            out.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{esc(n)}</text>')
            if v is None:
                out.append(f'<text x="{left + 4}" y="{y + 15}" fill="#888">n/a</text>')
                continue
            w = max(1.0, width * max(v, 0) / vmax)
            colour = "#d9534f" if n.startswith("cellgate") else ("#5b8def" if n == highlight else "#9aa5b1")
            out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>')
            out.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}">{esc(fmt(n, v))}</text>')

    rps = {n: summary[n]["rps"] for n in rows}
    panel(34, "requests/s (median; ratio to nginx)", rps,
          lambda n, v: f"{v:,.0f}" + (f"  ({summary[n]['ratio_to_nginx']:.2f}x)"
                                      if summary[n]["ratio_to_nginx"] else ""), "nginx")
    added = {n: summary[n]["added_p99_us"] for n in rows if n != "direct"}
    panel(34 + panel_h, "added p99 latency over direct (µs, median; lower is better)", added,
          lambda n, v: f"{v:+,.0f} µs", "nginx")
    if cpu:
        panel(34 + 2 * panel_h, "proxy CPU per request (µs, user + sys, median; lower is better)",
              {n: cpu.get(n) for n in rows if n != "direct"},
              lambda n, v: f"{v:.2f} µs" + (f"  ({summary[n]['cpu_ratio_to_nginx']:.2f}x)"
                                             if summary[n]["cpu_ratio_to_nginx"] else ""), "nginx")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def read_meta(path):
    """The key=value header lines written by the bench script: (meta dict, list of notes)."""
    meta, notes = {}, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            if key == "note":
                notes.append(value)
            else:
                meta[key] = value
    return meta, notes


def write_results(out, md, doc, errors):
    """Writes OUT.md and OUT.json, prints the table, and warns about any errors wrk counted."""
    with open(out + ".md", "w", encoding="utf-8") as f:
        f.write(md)
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    sys.stdout.write("\n" + md)
    errors = {k: v for k, v in errors.items() if v}
    if errors:
        sys.stderr.write(f"WARNING: wrk reported non-2xx responses or socket errors: {errors}\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meta", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    meta, notes = read_meta(args.meta)

    runs = {}
    quiet_cpu = float(meta.get("quiet_cpu_pct", "10"))
    clk_tck = float(meta.get("clk_tck") or 100)
    busy_runs = 0
    total_runs = 0
    discarded = []
    for line in open(args.index, encoding="utf-8"):
        fields = line.rstrip("\n").split("\t")
        fields += ["-", "-", "0"][max(0, len(fields) - 7):]  # an index without the CPU columns
        rnd, name, path, attempt, other_cpu, other_top, kept, user_t, sys_t, procs = fields[:10]
        rec = parse_wrk(path)
        add_cpu(rec, user_t, sys_t, procs, clk_tck)
        rec["round"] = int(rnd)
        rec["attempt"] = int(attempt)
        rec["other_cpu_pct"] = float(other_cpu)
        rec["other_top"] = other_top
        if kept != "1":
            discarded.append({"contestant": name, **rec})
            continue
        total_runs += 1
        busy_runs += rec["other_cpu_pct"] > quiet_cpu
        runs.setdefault(name, []).append(rec)

    names = [n for n in ORDER if n in runs] + sorted(n for n in runs if n not in ORDER)
    summary = {}
    for n in names:
        rs = runs[n]
        summary[n] = {
            "rps": med(r["rps"] for r in rs),
            "p50_us": med(r["latency_us"].get("p50") for r in rs),
            "p99_us": med(r["latency_us"].get("p99") for r in rs),
            "p999_us": med(r["latency_us"].get("p999") for r in rs),
            "errors": sum(r["non2xx"] + sum(v for k, v in r["errors"].items() if k != "status")
                          for r in rs),
            "rounds_rps": [r["rps"] for r in sorted(rs, key=lambda r: r["round"])],
            "max_other_cpu_pct": max(r["other_cpu_pct"] for r in rs),
            "remeasured": sum(r["attempt"] > 1 for r in rs),
            # each its own median over rounds, so user + sys need not equal the total exactly
            "user_us_per_req": med(r["user_us_per_req"] for r in rs),
            "sys_us_per_req": med(r["sys_us_per_req"] for r in rs),
            "cpu_us_per_req": med(r["cpu_us_per_req"] for r in rs),
            "rounds_cpu_us_per_req": [r["cpu_us_per_req"] for r in sorted(rs, key=lambda r: r["round"])],
            "cpu_procs": max(r["cpu_procs"] for r in rs),
        }
    base = summary.get("nginx", {}).get("rps")
    cpu_base = summary.get("nginx", {}).get("cpu_us_per_req")
    direct = summary.get("direct", {})
    for n, s in summary.items():
        s["ratio_to_nginx"] = (s["rps"] / base) if base and s["rps"] else None
        s["cpu_ratio_to_nginx"] = (s["cpu_us_per_req"] / cpu_base) if cpu_base and s["cpu_us_per_req"] else None
        for k in ("p50_us", "p99_us", "p999_us"):
            d = direct.get(k)
            s[f"added_{k}"] = (s[k] - d) if (s[k] is not None and d is not None) else None

    remeasured = sum(s["remeasured"] for s in summary.values())
    if busy_runs == 0:
        quiet = f"yes: other processes under {quiet_cpu:g} % of a core in every measurement"
    else:
        quiet = (f"NO, numbers disturbed: other processes over {quiet_cpu:g} % of a core in "
                 f"{busy_runs} of {total_runs} measurements")
    quiet += f" ({remeasured} measurement(s) repeated after a disturbance)"
    lines = [
        f"# cellgate e2e proxy benchmark, {meta.get('date', '')}",
        "",
        f"- command: `{meta.get('command', '')}`",
        f"- machine: {meta.get('nproc')} cores, {meta.get('cpu')}, kernel {meta.get('kernel')}",
        f"- method: wrk ({meta.get('wrk_threads')} thread, {meta.get('connections')} connections, "
        f"`--latency`) + upstream nginx (1 worker) on core {meta.get('load_core')}; each proxy alone "
        f"on core {meta.get('proxy_core')}, one worker/thread; {meta.get('rounds')} interleaved rounds "
        f"x {meta.get('duration_s')} s after a {meta.get('warmup_s')} s warm-up; medians over rounds",
        f"- versions: wrk {meta.get('wrk')}, nginx {meta.get('nginx')}, HAProxy {meta.get('haproxy')}, "
        f"pingora {meta.get('pingora')}, {meta.get('rustc')}, cellgate git {meta.get('cellgate_git')}"
        + (f" (binary {meta['cellgate_bin']})" if "cellgate_bin" in meta else ""),
        f"- quiet machine: {quiet}",
        "",
        "| contestant | req/s (median) | ratio to nginx | p50 µs | p99 µs | p99.9 µs "
        "| +p50 vs direct | +p99 vs direct | user µs/req | sys µs/req | CPU µs/req | CPU ratio to nginx "
        "| req/s per round | CPU µs/req per round | errors | max other CPU % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for n in names:
        s = summary[n]
        ratio = "n/a" if s["ratio_to_nginx"] is None else f"{s['ratio_to_nginx']:.2f}"
        cpu_ratio = "—" if n == "direct" else (
            "n/a" if s["cpu_ratio_to_nginx"] is None else f"{s['cpu_ratio_to_nginx']:.2f}")
        per_round = " / ".join(fmt_k(v) for v in s["rounds_rps"])
        cpu_per_round = "—" if n == "direct" else " / ".join(fmt_us(v) for v in s["rounds_cpu_us_per_req"])
        lines.append(
            f"| {n} | {fmt_int(s['rps'])} | {ratio} | {fmt_int(s['p50_us'])} | {fmt_int(s['p99_us'])} "
            f"| {fmt_int(s['p999_us'])} | {fmt_signed(s['added_p50_us'])} | {fmt_signed(s['added_p99_us'])} "
            f"| {fmt_us(s['user_us_per_req'], n)} | {fmt_us(s['sys_us_per_req'], n)} "
            f"| {fmt_us(s['cpu_us_per_req'], n)} | {cpu_ratio} "
            f"| {per_round} | {cpu_per_round} | {s['errors']} | {s['max_other_cpu_pct']:.0f} |")
    kept = [r for n in names if n != "direct" for r in runs[n]
            if r["cpu_user_ticks"] is not None and r["cpu_sys_ticks"] is not None]
    fewest = min((r["cpu_user_ticks"] + r["cpu_sys_ticks"] for r in kept), default=None)
    procs = ", ".join(f"{n} {summary[n]['cpu_procs']}" for n in names
                      if n != "direct" and summary[n]["cpu_procs"])
    lines += [
        "",
        "`direct` is wrk straight to the upstream: the ceiling of core 0, not a proxy. Latencies are "
        "under full closed-loop load, so they are mostly queueing (about connections / req/s). 'max other "
        "CPU %' is the CPU that processes outside the benchmark used during the worst measurement "
        "(100 = one core).",
        "",
        "CPU µs/req is the CPU the proxy itself spent per request: its user and system time "
        "(`/proc/PID/stat`, summed over the proxy's process and its descendants) over the timed run "
        f"x 1e6 / CLK_TCK ({clk_tck:g}) / the requests wrk completed; each column is its own median over "
        "rounds. It moves much less with the VM than req/s does (see bench/README.md), so it is the "
        "figure to compare; 'CPU ratio to nginx' is over nginx's median from the same run (above 1 = "
        "more CPU per request than nginx). Processes counted: "
        f"{procs or 'none'}."
        + (f" Fewest ticks in one measurement: {fewest} (one tick = {100.0 / fewest:.2f} % of it)."
           if fewest else ""),
    ]
    if fewest is not None and fewest < 200:
        lines += ["", f"**Coarse CPU figures:** a measurement counted only {fewest} ticks; run longer "
                  "(`--duration`) for CPU per request to better than 1 %."]

    # Every kept measurement, round by round: the per-round values beside each other.
    lines += ["", "### Per round", "",
              "| round | contestant | req/s | p99 µs | user µs/req | sys µs/req | CPU µs/req | other CPU % |",
              "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r, n, rec in sorted(((r["round"], n, r) for n in names for r in runs[n]),
                            key=lambda t: (t[0], names.index(t[1]))):
        lines.append(
            f"| {r} | {n} | {fmt_int(rec['rps'])} | {fmt_int(rec['latency_us'].get('p99'))} "
            f"| {fmt_us(rec['user_us_per_req'], n)} | {fmt_us(rec['sys_us_per_req'], n)} "
            f"| {fmt_us(rec['cpu_us_per_req'], n)} | {rec['other_cpu_pct']:.1f} |")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {x}" for x in notes]
    md = "\n".join(lines) + "\n"

    doc = {
        "meta": meta,
        "notes": notes,
        "quiet": busy_runs == 0,
        "summary": [{"contestant": n, **summary[n]} for n in names],
        "rounds": [{"contestant": n, **r} for n in names for r in sorted(runs[n], key=lambda r: r["round"])],
        "discarded_disturbed": discarded,
    }
    svg = svg_chart(names, summary, f"cellgate e2e, {meta.get('date', '')}, "
                    f"{meta.get('nproc')} cores: proxy alone on one core")
    with open(args.out + ".svg", "w", encoding="utf-8") as f:
        f.write(svg)
    md += f"\n![chart](./{args.out.rsplit('/', 1)[-1]}.svg)\n"
    write_results(args.out, md, doc, {n: summary[n]["errors"] for n in names})


if __name__ == "__main__":
    main()
