#!/usr/bin/env python3
"""Summarise bench/scale.sh's raw records into a markdown table and a JSON file.

Input: --meta (key=value lines), --starts (TSV: phase, round, N, ready ms, VmRSS KiB, VmHWM KiB,
attempt, other CPU %, top other processes, kept), --rounds (TSV: round, N, wrk output, attempt,
other CPU %, top others, kept, ready ms, VmRSS and VmHWM at ready, VmRSS and VmHWM after the
measurement, limiter keys tracked after it, full registry reloads during it). Output: OUT.md and
OUT.json; the markdown is also printed. Medians are over the kept starts / rounds; the ratio is
median req/s over the smallest N's median req/s from the same run; "per million tenants" is the
slope between the smallest and the largest N.
"""
import argparse
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_report import fmt_int, fmt_k, med, parse_wrk, read_meta, write_results  # noqa: E402

MIB = 1024.0  # the records are in KiB


def num(v, kind=float):
    try:
        return kind(v)
    except (TypeError, ValueError):
        return None


def mib(kib):
    return None if kib is None else kib / MIB


def fmt_mib(v):
    return "n/a" if v is None else f"{v:,.1f}"


def fmt_ms(v):
    return "n/a" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.1f}")


def slope(summary, key, ns):
    """(value(Nmax) - value(Nmin)) / (Nmax - Nmin), per tenant; None if not measurable."""
    lo, hi = ns[0], ns[-1]
    a, b = summary[lo][key], summary[hi][key]
    if hi == lo or a is None or b is None:
        return None
    return (b - a) / (hi - lo)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meta", required=True)
    ap.add_argument("--starts", required=True)
    ap.add_argument("--rounds", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    meta, notes = read_meta(args.meta)
    quiet_cpu = float(meta.get("quiet_cpu_pct", "10"))
    ns = sorted({int(n) for n in meta.get("tenants", "").split(",") if n})

    starts, discarded = {}, []
    for line in open(args.starts, encoding="utf-8"):
        _phase, rnd, n, ms, rss, hwm, attempt, cpu, top, kept = line.rstrip("\n").split("\t")
        rec = {"start": int(rnd), "ready_ms": num(ms), "rss_kib": num(rss, int),
               "hwm_kib": num(hwm, int), "attempt": int(attempt), "other_cpu_pct": float(cpu),
               "other_top": top}
        if kept != "1":
            discarded.append({"kind": "start", "tenants": int(n), **rec})
            continue
        starts.setdefault(int(n), []).append(rec)

    runs = {}
    for line in open(args.rounds, encoding="utf-8"):
        (rnd, n, path, attempt, cpu, top, kept, ms, rss0, hwm0, rss1, hwm1, keys,
         reloads) = line.rstrip("\n").split("\t")
        rec = parse_wrk(path)
        rec.update({"round": int(rnd), "attempt": int(attempt), "other_cpu_pct": float(cpu),
                    "other_top": top, "ready_ms": num(ms), "rss_ready_kib": num(rss0, int),
                    "hwm_ready_kib": num(hwm0, int), "rss_after_kib": num(rss1, int),
                    "hwm_after_kib": num(hwm1, int), "limiter_keys_after": num(keys, float),
                    "full_reloads_during": num(reloads, float)})
        if kept != "1":
            discarded.append({"kind": "round", "tenants": int(n), **rec})
            continue
        runs.setdefault(int(n), []).append(rec)

    ns = [n for n in ns if n in starts or n in runs]
    summary = {}
    busy = total = 0
    for n in ns:
        st = sorted(starts.get(n, []), key=lambda r: r["start"])
        rs = sorted(runs.get(n, []), key=lambda r: r["round"])
        for r in st + rs:
            total += 1
            busy += r["other_cpu_pct"] > quiet_cpu
        summary[n] = {
            "registry_bytes": num(meta.get(f"registry_bytes_{n}"), int),
            "startup_ms": med(r["ready_ms"] for r in st),
            "startup_ms_each": [r["ready_ms"] for r in st],
            "startup_ms_in_rounds": [r["ready_ms"] for r in rs],
            "rss_ready_mib": mib(med(r["rss_kib"] for r in st)),
            "hwm_ready_mib": mib(med(r["hwm_kib"] for r in st)),
            "rss_after_mib": mib(med(r["rss_after_kib"] for r in rs)),
            "hwm_after_mib": mib(med(r["hwm_after_kib"] for r in rs)),
            "limiter_keys_after": med(r["limiter_keys_after"] for r in rs),
            "full_reloads_during": sum(r["full_reloads_during"] or 0 for r in rs),
            "rps": med(r["rps"] for r in rs),
            "rounds_rps": [r["rps"] for r in rs],
            "p50_us": med(r["latency_us"].get("p50") for r in rs),
            "p99_us": med(r["latency_us"].get("p99") for r in rs),
            "p999_us": med(r["latency_us"].get("p999") for r in rs),
            "requests": sum(r["requests"] or 0 for r in rs),
            "errors": sum(r["non2xx"] + sum(v for k, v in r["errors"].items() if k != "status")
                          for r in rs),
            "max_other_cpu_pct": max([r["other_cpu_pct"] for r in st + rs] or [0.0]),
            "remeasured": sum(r["attempt"] > 1 for r in st + rs),
        }
    base_n = ns[0] if ns else None
    base = summary[base_n]["rps"] if ns else None
    for s in summary.values():
        s["ratio"] = (s["rps"] / base) if base and s["rps"] else None

    remeasured = sum(s["remeasured"] for s in summary.values())
    if busy == 0:
        quiet = f"yes: other processes under {quiet_cpu:g} % of a core in every start and measurement"
    else:
        quiet = (f"NO, numbers disturbed: other processes over {quiet_cpu:g} % of a core in "
                 f"{busy} of {total} starts and measurements")
    quiet += f" ({remeasured} repeated after a disturbance)"

    lines = [
        f"# cellgate scale benchmark (tenants in the snapshot), {meta.get('date', '')}",
        "",
        f"- command: `{meta.get('command', '')}`",
        f"- machine: {meta.get('nproc')} cores, {meta.get('cpu')}, kernel {meta.get('kernel')}",
        f"- method: file registry ({meta.get('registry_format', 'toml')}) of N tenants "
        f"`t0..t{{N-1}}` over 3 cells (one nginx upstream, 1 "
        f"worker, core {meta.get('load_core')}); cellgate alone on core {meta.get('proxy_core')}, 1 "
        f"worker, subdomain routing, rate limiting on (far above the load), access log off. "
        f"Startup: {meta.get('starts')} timed starts per N (exec to admin `/readyz` 200, polled "
        f"every ~10 ms), RSS read at ready. Throughput: wrk ({meta.get('wrk_threads')} thread, "
        f"{meta.get('connections')} connections, core {meta.get('load_core')}), `Host: t<k>.localhost` "
        f"with k uniform in [0, N) per request; {meta.get('rounds')} interleaved rounds x "
        f"{meta.get('duration_s')} s after a {meta.get('warmup_s')} s warm-up, a fresh cellgate "
        f"per measurement; medians",
        f"- versions: wrk {meta.get('wrk')}, nginx {meta.get('nginx')}, {meta.get('rustc')}, "
        f"cellgate git {meta.get('cellgate_git')} (binary {meta.get('cellgate_bin')})",
        f"- quiet machine: {quiet}",
        "",
        f"| N tenants | registry MB | startup ms (median) | startup ms each | RSS at ready MiB "
        f"| peak RSS at ready MiB | RSS after load MiB | limiter keys after load | req/s (median) "
        f"| req/s per round | ratio to N={base_n} | p50 µs | p99 µs | errors | max other CPU % |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n in ns:
        s = summary[n]
        reg = "n/a" if s["registry_bytes"] is None else f"{s['registry_bytes'] / 1e6:,.1f}"
        ratio = "n/a" if s["ratio"] is None else f"{s['ratio']:.3f}"
        each = " / ".join(fmt_ms(v) for v in s["startup_ms_each"]) or "n/a"
        per_round = " / ".join(fmt_k(v) for v in s["rounds_rps"]) or "n/a"
        lines.append(
            f"| {n:,} | {reg} | {fmt_ms(s['startup_ms'])} | {each} | {fmt_mib(s['rss_ready_mib'])} "
            f"| {fmt_mib(s['hwm_ready_mib'])} | {fmt_mib(s['rss_after_mib'])} "
            f"| {fmt_int(s['limiter_keys_after'])} | {fmt_int(s['rps'])} | {per_round} | {ratio} "
            f"| {fmt_int(s['p50_us'])} | {fmt_int(s['p99_us'])} | {s['errors']} "
            f"| {s['max_other_cpu_pct']:.0f} |")

    derived = {}
    if len(ns) >= 2:
        lo, hi = ns[0], ns[-1]
        span = f"from N={lo:,} to N={hi:,}"
        for key, label, v in (("rss_ready_mib", "RSS per million tenants (at ready)", "RSS"),
                              ("rss_after_mib", "RSS per million tenants (after load)", "RSS"),
                              ("hwm_ready_mib", "peak RSS during start-up per million tenants", "VmHWM")):
            per = slope(summary, key, ns)
            derived[key + "_per_million"] = None if per is None else per * 1e6
            if per is not None:
                lines.append("")
                lines.append(f"{label} = ({v}(N={hi:,}) - {v}(N={lo:,})) / {hi - lo:,} x 1e6 = "
                             f"**{per * 1e6:,.0f} MiB** ({per * MIB * MIB:,.0f} bytes per tenant, {span})")
        per = slope(summary, "startup_ms", ns)
        derived["startup_ms_per_million"] = None if per is None else per * 1e6
        if per is not None:
            lines.append("")
            lines.append(f"startup to ready per million tenants = **{per * 1e6 / 1000:,.1f} s** ({span})")
    lines += [
        "",
        "RSS is VmRSS from /proc (read at the first `/readyz` 200, and after the measurement); "
        "'peak RSS at ready' is VmHWM then (the high-water mark of the load). 'limiter keys after "
        "load' is `cellgate_ratelimit_tracked_keys` right after the measurement (idle keys are "
        "swept every 10 s). Latencies are under full closed-loop load (mostly queueing). 'max "
        "other CPU %' is the CPU that processes outside the benchmark used during the worst start "
        "or measurement (100 = one core).",
    ]
    reloads = {n: summary[n]["full_reloads_during"] for n in ns if summary[n]["full_reloads_during"]}
    if reloads:
        notes.append(f"full registry reloads happened during measurements (N: count): {reloads}")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {x}" for x in notes]
    md = "\n".join(lines) + "\n"

    doc = {
        "meta": meta,
        "notes": notes,
        "quiet": busy == 0,
        "summary": [{"tenants": n, **summary[n]} for n in ns],
        "derived": derived,
        "starts": [{"tenants": n, **r} for n in ns for r in starts.get(n, [])],
        "rounds": [{"tenants": n, **r} for n in ns for r in runs.get(n, [])],
        "discarded_disturbed": discarded,
    }
    write_results(args.out, md, doc, {n: summary[n]["errors"] for n in ns})


if __name__ == "__main__":
    main()
