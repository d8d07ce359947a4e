#!/usr/bin/env python3
"""How much CPU did processes OUTSIDE the benchmark use? (helper of bench/e2e.sh)

    cpu_watch.py ROOT_PID [SECONDS]

Samples /proc every 0.25 s for SECONDS (or until SIGTERM/SIGINT) and prints one line:

    OTHER_CPU <percent of one core> <top other processes, e.g. rustc:85,cargo:3>

"Ours" is ROOT_PID and every process descending from it (the script, the upstream, the proxies,
wrk); everything else, kernel threads included, is "other". On an otherwise idle machine this
stays around 0-3 %; a compile or a test run on the same machine shows up as tens of percent.
"""
import os
import signal
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def snapshot():
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        procs[int(name)] = (comm, int(fields[1]), int(fields[11]) + int(fields[12]))  # comm, ppid, ticks
    return procs


def ours(pid, procs, root, cache):
    chain = []
    result = False
    while pid > 1 and pid in procs:
        if pid in cache:
            result = cache[pid]
            break
        if pid == root:
            result = True
            break
        chain.append(pid)
        pid = procs[pid][1]
    for p in chain:
        cache[p] = result
    return result


def main():
    root = int(sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3600.0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    start = time.monotonic()
    prev = snapshot()
    other = {}  # comm -> ticks
    while not stop and time.monotonic() - start < seconds:
        time.sleep(min(0.25, max(0.0, seconds - (time.monotonic() - start))))
        cur = snapshot()
        cache = {}
        for pid, (comm, _ppid, ticks) in cur.items():
            if ours(pid, cur, root, cache):
                continue
            delta = ticks - prev[pid][2] if pid in prev else ticks  # new process: all of it
            if delta > 0:
                other[comm] = other.get(comm, 0) + delta
        prev = cur
    elapsed = max(time.monotonic() - start, 1e-3)
    pct = 100.0 * sum(other.values()) / TICK / elapsed
    top = sorted(other.items(), key=lambda kv: -kv[1])[:4]
    desc = ",".join(f"{c.replace(' ', '_')}:{100.0 * t / TICK / elapsed:.0f}" for c, t in top) or "-"
    print(f"OTHER_CPU {pct:.1f} {desc}", flush=True)


if __name__ == "__main__":
    main()
