#!/usr/bin/env bash
# bench/ab.sh — A/B of CPU per request between two cellgate binaries (e.g. before/after a change).
#
# The proxy runs alone on core 1, wrk and the nginx upstream share core 0 (as in bench/e2e.sh).
# Each round starts A and B in turn (A B, then B A, ...), each a fresh process with e2e.sh's
# config, warms it up, runs wrk and reads the proxy's utime+stime from /proc/PID/stat before and
# after: CPU µs per request = tick delta / requests counted by wrk. Medians over rounds and B/A.
#
#   bench/ab.sh A_BINARY B_BINARY [--rounds N] [--duration S] [--warmup S] [--mode M] [--mode-b M]
#   bench/ab.sh /work/bench-bins/cellgate-before target/release/cellgate     # 6 rounds x 10 s
#   bench/ab.sh old new --rounds 8 --duration 6 --mode jwt
#   bench/ab.sh bin bin --mode jwt --mode-b key      # one binary, two tenant paths side by side
#   bench/ab.sh bin bin --mode subdomain --mode-b metered   # the cost of usage metering
#   bench/ab.sh bin bin --mode subdomain --mode-b traced    # the cost of [tracing] at 0.01
# Modes: subdomain (e2e.sh's cellgate), jwt (its cellgate-jwt), key (its cellgate-key), metered
# (subdomain with [metering] on, to a JSON Lines file), traced and traced-all (subdomain with
# [tracing] at sample_ratio TRACE_RATIO, default 0.01, or 1.0, exporting to bench/otlp_sink.py
# on the load core); --mode-b gives B its own mode (default: --mode).
#
# Results: markdown on stdout and in bench/results/ab-<UTC>.md (older ab-* files are removed).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
LOG_TAG=ab
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

CMDLINE="$(command_line "ROUNDS DURATION WARMUP MODE TRACE_RATIO CONNECTIONS WRK_THREADS PORT_BASE LOAD_CORE
  PROXY_CORE QUIET_WAIT QUIET_POLL QUIET_CPU RETRIES KEEP_TMP" "$0" "$@")"

# ---------------------------------------------------------------------------- settings ---
ROUNDS="${ROUNDS:-6}"               # rounds; each measures A and B once, the order alternating (even: balanced)
DURATION="${DURATION:-10}"          # seconds measured per contestant per round
WARMUP="${WARMUP:-2}"               # seconds of unmeasured load before each measurement
MODE="${MODE:-subdomain}"           # subdomain = e2e.sh's cellgate, jwt = its cellgate-jwt, key = its cellgate-key, metered = subdomain + [metering], traced/traced-all = subdomain + [tracing]
TRACE_RATIO="${TRACE_RATIO:-0.01}"  # sample_ratio of the traced mode (traced-all: 1.0)
MODE_B="${MODE_B:-}"                # B's mode when it differs from A's (empty: MODE)
CONNECTIONS="${CONNECTIONS:-64}"    # wrk connections
WRK_THREADS="${WRK_THREADS:-1}"     # wrk threads
PORT_BASE="${PORT_BASE:-18280}"     # upstream; A on +1 (admin +2), B on +3 (admin +4)
LOAD_CORE="${LOAD_CORE:-0}"         # wrk + upstream (+ this script)
PROXY_CORE="${PROXY_CORE:-1}"       # the proxy under test, alone
QUIET_WAIT="${QUIET_WAIT:-300}"     # max total seconds spent waiting for a quiet machine; 0 = never wait
QUIET_POLL="${QUIET_POLL:-15}"      # seconds between quiet checks while waiting
QUIET_CPU="${QUIET_CPU:-10}"        # other processes above this % of one core = not quiet
RETRIES="${RETRIES:-3}"             # measure a disturbed one again up to this many times (then: marked *)
KEEP_TMP="${KEEP_TMP:-0}"           # 1 = keep the temp dir (configs, logs, raw wrk output)

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --warmup) WARMUP="$2"; shift ;;
    --mode) MODE="$2"; shift ;;
    --mode-b) MODE_B="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
[[ ${#ARGS[@]} -eq 2 ]] || { usage >&2; exit 2; }
MODE_B="${MODE_B:-$MODE}"
for m in "$MODE" "$MODE_B"; do
  [[ $m == subdomain || $m == jwt || $m == key || $m == metered || $m == traced || $m == traced-all ]] ||
    { echo "--mode: subdomain, jwt, key, metered, traced or traced-all, not '$m'" >&2; exit 2; }
done
declare -A MODE_OF=([A]="$MODE" [B]="$MODE_B")
for n in "$ROUNDS" "$DURATION" "$WARMUP"; do
  [[ $n =~ ^[0-9]+$ ]] || { echo "rounds, duration and warm-up are whole numbers" >&2; exit 2; }
done
[[ $ROUNDS -ge 1 && $DURATION -ge 1 ]] || { echo "need --rounds >= 1 and --duration >= 1" >&2; exit 2; }
declare -A BIN=() PORT=() ADMIN=() TOKEN=() KEY=()
for i in 0 1; do
  c=$([[ $i == 0 ]] && echo A || echo B)
  [[ -x "${ARGS[$i]}" ]] || { echo "$c: not an executable: ${ARGS[$i]}" >&2; exit 2; }
  BIN[$c]="$(cd "$(dirname "${ARGS[$i]}")" && pwd)/$(basename "${ARGS[$i]}")"
  PORT[$c]=$((PORT_BASE + 1 + 2 * i)); ADMIN[$c]=$((PORT_BASE + 2 + 2 * i))
done
UPSTREAM_PORT=$PORT_BASE
SINK_PORT=$((PORT_BASE + 5))        # the OTLP sink of the traced modes
HOST_HEADER="bench.localhost"
TICK="$(getconf CLK_TCK)"

install_missing wrk:wrk nginx:nginx-light curl:curl python3:python3 taskset:util-linux
export PATH="$PATH:/usr/sbin:/sbin"
start_workdir cellgate-ab
taskset -pc "$LOAD_CORE" $$ >/dev/null   # this script's polls and reads stay off the proxy's core

# ---------------------------------------------------------------------------- configs ---
# The same files as e2e.sh writes for its `cellgate` / `cellgate-jwt` contestants, per contestant
# (own ports, so a stopped proxy's sockets never meet the next one's).
write_upstream_conf "$UPSTREAM_PORT"
for c in A B; do
  mkdir -p "$WORK/$c"
  write_cellgate_conf "$WORK/$c/cellgate.toml" "${PORT[$c]}" "${ADMIN[$c]}"
  cat >"$WORK/$c/registry.toml" <<EOF
[[cells]]
id = "cell-1"
targets = ["http://127.0.0.1:$UPSTREAM_PORT"]
[[tenants]]
id = "bench"
cell = "cell-1"
EOF
  if [[ ${MODE_OF[$c]} == jwt ]]; then
    with_jwt_auth "$WORK/$c"
    TOKEN[$c]="$("${BIN[$c]}" token --tenant bench --ttl 6h --kid demo-ed25519)" ||
      { echo "$c: could not mint a token with ${BIN[$c]}" >&2; exit 1; }
  fi
  if [[ ${MODE_OF[$c]} == metered ]]; then
    # Every request metered, a window every 10 s, to a file on local disk.
    printf '\n[metering]\nwindow = "10s"\nspool_dir = "%s"\n\n[metering.file]\npath = "%s"\n' \
      "$WORK/$c/spool" "$WORK/$c/usage.jsonl" >>"$WORK/$c/cellgate.toml"
  fi
  if [[ ${MODE_OF[$c]} == traced || ${MODE_OF[$c]} == traced-all ]]; then
    # Spans to the sink (started below, on the load core); traced-all samples every request.
    ratio=$([[ ${MODE_OF[$c]} == traced-all ]] && echo 1.0 || echo "$TRACE_RATIO")
    printf '\n[tracing]\notlp_endpoint = "http://127.0.0.1:%s/v1/traces"\nsample_ratio = %s\n' \
      "$SINK_PORT" "$ratio" >>"$WORK/$c/cellgate.toml"
  fi
  if [[ ${MODE_OF[$c]} == key ]]; then
    KEY[$c]="$(with_api_key "$WORK/$c" "${BIN[$c]}")" ||
      { echo "$c: could not mint an API key with ${BIN[$c]}" >&2; exit 1; }
  fi
done
client_headers() {  # client_headers NAME — curl/wrk header arguments
  printf '%s\n' -H "Host: $HOST_HEADER"
  if [[ ${MODE_OF[$1]} == jwt ]]; then printf '%s\n' -H "Authorization: Bearer ${TOKEN[$1]}"; fi
  if [[ ${MODE_OF[$1]} == key ]]; then printf '%s\n' -H "x-api-key: ${KEY[$1]}"; fi
}

for p in "$UPSTREAM_PORT" "$SINK_PORT" "${PORT[@]}" "${ADMIN[@]}"; do
  if port_open "$p"; then echo "port 127.0.0.1:$p is already in use (set PORT_BASE)" >&2; exit 1; fi
done

# ---------------------------------------------------------------------------- proxies ---
start_proxy() {  # start_proxy NAME — start pinned, wait for /readyz (30 s), probe one request
  local c=$1 i code body hdr=()
  start_bg "$c" "$PROXY_CORE" "${BIN[$c]}" serve --config "$WORK/$c/cellgate.toml"
  for ((i = 0; i < 300; i++)); do
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:${ADMIN[$c]}/readyz" || true)"
    [[ $code == 200 ]] && break
    kill -0 "${PID[$c]}" 2>/dev/null || { fail_start "$c" "exited during start-up"; return 1; }
    sleep 0.1
  done
  [[ $code == 200 ]] || { fail_start "$c" "admin /readyz not 200 within 30 s (last: '$code')"; return 1; }
  mapfile -t hdr < <(client_headers "$c")
  code="$(curl -s -o "$WORK/probe-$c.body" -w '%{http_code}' --max-time 5 "${hdr[@]}" \
          "http://127.0.0.1:${PORT[$c]}/" || true)"
  body="$(cat "$WORK/probe-$c.body" 2>/dev/null || true)"
  [[ $code == 200 && $body == "$UPSTREAM_BODY" ]] ||
    { fail_start "$c" "probe returned HTTP '$code' body '${body:0:80}'"; return 1; }
}

cpu_ticks() {  # cpu_ticks PID -> "UTIME STIME" (fields 14 and 15 of /proc/PID/stat, all threads)
  local s f
  s="$(<"/proc/$1/stat")"
  read -ra f <<<"${s##*) }"   # after the "(comm) ": f[0] is field 3
  echo "${f[11]} ${f[12]}"
}

run_wrk() {  # run_wrk NAME SECONDS OUTFILE — pinned to LOAD_CORE, killed if it overruns by 30 s
  local rc=0 hdr=()
  mapfile -t hdr < <(client_headers "$1")
  taskset -c "$LOAD_CORE" timeout -k 5 "$(($2 + 30))" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${2}s" \
    --timeout 5s --latency -s "$BENCH_DIR/wrk-report.lua" "${hdr[@]}" "http://127.0.0.1:${PORT[$1]}/" >"$3" 2>&1 &
  PID[wrk]=$!
  wait "${PID[wrk]}" || rc=$?
  unset "PID[wrk]"
  return "$rc"
}

measure_once() {  # measure_once ROUND POSITION NAME — sets ROW (a TSV line) and CPU_OTHER
  local r=$1 pos=$2 c=$3 out="$WORK/raw/r$1-$3.txt" u0 s0 u1 s1 cpu reqs rps errs
  start_proxy "$c" || { note "$c: round $r not measured"; return 1; }
  if [[ $WARMUP -gt 0 ]]; then run_wrk "$c" "$WARMUP" "$WORK/raw/warmup.txt" || true; sleep 0.2; fi
  read -r u0 s0 < <(cpu_ticks "${PID[$c]}")
  cpu_watch_start "$out.cpu" "$((DURATION + 30))"
  run_wrk "$c" "$DURATION" "$out" || note "wrk exited non-zero for $c in round $r"
  sleep 0.2   # the proxy finishes closing wrk's connections
  cpu_watch_stop "$out.cpu"; cpu=$CPU_OTHER
  kill -0 "${PID[$c]}" 2>/dev/null || { fail_start "$c" "died during round $r" || true; return 1; }
  read -r u1 s1 < <(cpu_ticks "${PID[$c]}")
  stop "$c"
  reqs="$(sed -n 's/^WRK_JSON .*"requests":\([0-9]*\),.*/\1/p' "$out")"
  rps="$(sed -n 's/^WRK_JSON .*"rps":\([0-9.]*\),.*/\1/p' "$out")"
  errs="$(grep -E '^ *(Non-2xx|Socket errors)' "$out" | tr -s ' ' | paste -sd';' || true)"
  [[ -n $reqs && $reqs -gt 0 ]] || { note "$c: round $r: no request count from wrk"; tail -n 5 "$out" >&2; return 1; }
  log "round $r/$ROUNDS  $c  $rps req/s  user+sys $((u1 - u0))+$((s1 - s0)) ticks  (other CPU ${cpu%% *}%)${errs:+  ERRORS: $errs}"
  ROW="$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$r" "$pos" "$c" "$reqs" "$rps" \
    "$((u1 - u0))" "$((s1 - s0))" "${errs:-0}" "${cpu%% *}" "${cpu#* }")"
}
measure() {  # measure ROUND POSITION NAME — appends to ROWS; a disturbed one is measured again
  local attempt
  for ((attempt = 1; ; attempt++)); do
    measure_once "$@" || return 0
    if over "${CPU_OTHER%% *}" "$QUIET_CPU" && [[ $attempt -le $RETRIES && $QUIET_SPENT -lt $QUIET_WAIT ]]; then
      log "  disturbed by other processes (${CPU_OTHER#* }); measuring $3 again after a quiet moment"
      wait_quiet; continue
    fi
    echo "$ROW" >>"$ROWS"; return 0
  done
}

# ---------------------------------------------------------------------------- measure ---
start_upstream "$UPSTREAM_PORT"
if [[ $MODE == traced* || $MODE_B == traced* ]]; then
  start_bg sink "$LOAD_CORE" python3 "$BENCH_DIR/otlp_sink.py" "$SINK_PORT"
  wait_port sink "$SINK_PORT" || { echo "the OTLP sink did not start" >&2; exit 1; }
fi
mkdir -p "$WORK/raw"
ROWS="$WORK/raw/rows.tsv"; : >"$ROWS"
log "A = ${BIN[A]}"; log "B = ${BIN[B]}"
log "mode A $MODE, B $MODE_B: $ROUNDS rounds x 2 x ${DURATION}s (+${WARMUP}s warm-up), $CONNECTIONS connections, proxy on core $PROXY_CORE"
T_START=$SECONDS
for ((r = 1; r <= ROUNDS; r++)); do
  wait_quiet
  if ((r % 2)); then order=(A B); else order=(B A); fi
  measure "$r" 1 "${order[0]}"
  measure "$r" 2 "${order[1]}"
done
log "measurement took $((SECONDS - T_START)) s"

# ----------------------------------------------------------------------------- report ---
binary_meta() {  # binary_meta NAME
  local b=${BIN[$1]}
  echo "$1=$b"
  echo "$1_sha256=$(sha256sum "$b" | cut -c1-16), built $(date -u -r "$b" +%Y-%m-%dT%H:%M:%SZ)"
  echo "$1_version=$("$b" --version 2>/dev/null | head -1 || echo n/a)"
}
{
  machine_meta
  echo "mode=$MODE"; echo "mode_b=$MODE_B"; echo "rounds=$ROUNDS"; echo "duration_s=$DURATION"; echo "warmup_s=$WARMUP"
  echo "connections=$CONNECTIONS"; echo "wrk_threads=$WRK_THREADS"
  echo "load_core=$LOAD_CORE"; echo "proxy_core=$PROXY_CORE"; echo "clk_tck=$TICK"
  binary_meta A; binary_meta B
  echo "quiet_wait_spent_s=$QUIET_SPENT"; echo "quiet_cpu_pct=$QUIET_CPU"
  for x in "${NOTES[@]}"; do echo "note=$x"; done
} >"$WORK/meta.txt"

mkdir -p "$BENCH_DIR/results"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$BENCH_DIR/results/ab-$STAMP.md"
python3 - "$WORK/meta.txt" "$ROWS" "$TICK" "$QUIET_CPU" >"$OUT" <<'PY'
import statistics as st, sys
meta_path, rows_path, tick, quiet = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
rows = []
for line in open(rows_path):
    r, pos, c, reqs, rps, du, ds, errs, other, top = line.rstrip("\n").split("\t")
    us = lambda t: float(t) * 1e6 / tick / int(reqs)
    rows.append(dict(r=int(r), pos=int(pos), c=c, reqs=int(reqs), rps=float(rps), user=us(du),
                     sys=us(ds), total=us(int(du) + int(ds)), errs=errs, other=float(other), top=top))
print("# cellgate A/B: CPU per request\n")
for line in open(meta_path):
    k, _, v = line.rstrip("\n").partition("=")
    print(f"- {k}: {v}")
print("\nµs per request = CPU ticks of the proxy process (utime, stime of /proc/PID/stat) over the "
      "measured wrk run x 1e6 / CLK_TCK / requests wrk completed. * = other processes used more "
      f"than {quiet:g} % of a core meanwhile.")
def ratio(b, a):
    return f"{b / a:.3f}" if a and b is not None else "n/a"
for r in sorted({x["r"] for x in rows}):
    print(f"\n## Round {r}\n")
    print("| order | binary | requests | req/s | user µs/req | sys µs/req | total µs/req | errors | other CPU % |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|")
    got = {}
    for x in sorted((x for x in rows if x["r"] == r), key=lambda x: x["pos"]):
        got[x["c"]] = x
        mark = " *" if x["other"] > quiet else ""
        print(f"| {x['pos']} | {x['c']} | {x['reqs']:,} | {x['rps']:,.0f} | {x['user']:.2f} | "
              f"{x['sys']:.2f} | {x['total']:.2f} | {x['errs']} | {x['other']:.1f}{mark} |")
    if "A" in got and "B" in got:
        print(f"\nB/A total µs/req this round: {ratio(got['B']['total'], got['A']['total'])}")
print(f"\n## Summary: median over rounds\n")
print("| | A | B | B/A | B/A per round (total: min-max) |")
print("|---|---:|---:|---:|---|")
med = {c: {k: st.median([x[k] for x in rows if x["c"] == c]) if any(x["c"] == c for x in rows) else None
           for k in ("user", "sys", "total", "rps")} for c in "AB"}
paired = [b["total"] / a["total"] for a in rows for b in rows
          if a["c"] == "A" and b["c"] == "B" and a["r"] == b["r"]]
spread = f"{min(paired):.3f}-{max(paired):.3f} (median {st.median(paired):.3f})" if paired else "n/a"
for k, label, fmt in (("user", "user µs/req", "{:.2f}"), ("sys", "sys µs/req", "{:.2f}"),
                      ("total", "total µs/req", "{:.2f}"), ("rps", "req/s", "{:,.0f}")):
    a, b = med["A"][k], med["B"][k]
    cells = [fmt.format(v) if v is not None else "n/a" for v in (a, b)]
    print(f"| {label} | {cells[0]} | {cells[1]} | {ratio(b, a)} | {spread if k == 'total' else ''} |")
PY
cat "$OUT"
log "wrote ${OUT#"$REPO_DIR"/}"
prune_results ab "$STAMP"
