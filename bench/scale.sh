#!/usr/bin/env bash
# bench/scale.sh — how cellgate scales with the number of tenants in its placement snapshot.
#
# For each N (default 1, 10k, 1M) it writes a file registry (TOML, or JSON Lines with --format
# jsonl) with tenants t0..t{N-1} over 3 cells (all on one fast nginx upstream) and measures:
# startup to ready (exec to /readyz 200), RSS at ready and after load, and throughput with every
# request naming a random tenant of the N.
# Same pinning as e2e.sh: wrk + upstream on core 0, cellgate alone on core 1, one worker.
#
#   bench/scale.sh                              # N = 1, 10000, 1000000; 3 starts, 3 rounds x 10 s
#   bench/scale.sh --tenants 1,100000 --rounds 5
#   bench/scale.sh --tenants 1,1000000 --format jsonl   # the registry as JSON Lines (streamed)
#   TENANTS=1,10000 ROUNDS=1 DURATION=3 bench/scale.sh
#
# Results: a markdown table on stdout, and bench/results/scale-<UTC>.md + .json (raw values);
# older scale-* results are then removed (bench/results/ keeps the latest; git keeps the rest).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
LOG_TAG=scale
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

CMDLINE="$(command_line "TENANTS FORMAT STARTS ROUNDS DURATION WARMUP CONNECTIONS WRK_THREADS CELLGATE_BUILD
  CELLGATE_BIN PORT_BASE LOAD_CORE PROXY_CORE READY_TIMEOUT QUIET_WAIT QUIET_POLL QUIET_CPU RETRIES
  KEEP_TMP" "$0" "$@")"

# ---------------------------------------------------------------------------- settings ---
TENANTS="${TENANTS:-1,10000,1000000}"  # tenant counts in the snapshot, comma list
FORMAT="${FORMAT:-toml}"            # registry file format: toml or jsonl
STARTS="${STARTS:-3}"               # timed starts per N (startup to ready, RSS at ready)
ROUNDS="${ROUNDS:-3}"               # interleaved throughput rounds
DURATION="${DURATION:-10}"          # seconds measured per N per round
WARMUP="${WARMUP:-2}"               # seconds of unmeasured load before each measurement
CONNECTIONS="${CONNECTIONS:-64}"    # wrk connections
WRK_THREADS="${WRK_THREADS:-1}"     # wrk threads (1: see bench/README.md "Fairness")
CELLGATE_BUILD="${CELLGATE_BUILD:-1}"   # 0 = don't run cargo, use the binary as is
CELLGATE_BIN="${CELLGATE_BIN:-${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/cellgate}"
PORT_BASE="${PORT_BASE:-18180}"     # upstream = PORT_BASE; the i-th N: proxy +1+2i, admin +2+2i
LOAD_CORE="${LOAD_CORE:-0}"         # wrk + upstream (and this script)
PROXY_CORE="${PROXY_CORE:-1}"       # cellgate, alone
READY_TIMEOUT="${READY_TIMEOUT:-300}"   # seconds a start may take to turn ready
QUIET_WAIT="${QUIET_WAIT:-900}"     # max total seconds spent waiting for a quiet machine; 0 = never wait
QUIET_POLL="${QUIET_POLL:-30}"      # seconds between quiet checks while waiting
QUIET_CPU="${QUIET_CPU:-10}"        # other processes above this % of one core = machine not quiet
RETRIES="${RETRIES:-3}"             # re-measure a disturbed measurement up to this many times
KEEP_TMP="${KEEP_TMP:-0}"           # 1 = keep the temp dir (registries, configs, logs, raw output)

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tenants) TENANTS="$2"; shift ;;
    --format) FORMAT="$2"; shift ;;
    --starts) STARTS="$2"; shift ;;
    --rounds) ROUNDS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --warmup) WARMUP="$2"; shift ;;
    --connections) CONNECTIONS="$2"; shift ;;
    --threads) WRK_THREADS="$2"; shift ;;
    --no-cellgate-build) CELLGATE_BUILD=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

NS=()
for n in ${TENANTS//,/ }; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "TENANTS: '$n' is not a positive integer" >&2; exit 2; }
  [[ " ${NS[*]} " == *" $n "* ]] || NS+=("$n")
done
[[ ${#NS[@]} -gt 0 ]] || { echo "TENANTS is empty" >&2; exit 2; }
[[ "$FORMAT" == toml || "$FORMAT" == jsonl ]] || { echo "FORMAT must be toml or jsonl" >&2; exit 2; }
REGISTRY="registry.$FORMAT"
for v in STARTS ROUNDS DURATION; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive integer" >&2; exit 2; }
done

UPSTREAM_PORT=$PORT_BASE
declare -A PORT=() ADMIN=()
for ((i = 0; i < ${#NS[@]}; i++)); do
  PORT[${NS[$i]}]=$((PORT_BASE + 1 + 2 * i))
  ADMIN[${NS[$i]}]=$((PORT_BASE + 2 + 2 * i))
done

# --------------------------------------------------------------------------- install ---
install_missing wrk:wrk nginx:nginx-light curl:curl python3:python3 taskset:util-linux
export PATH="$PATH:/usr/sbin:/sbin"

start_workdir cellgate-scale

# ------------------------------------------------------------------------------ build ---
if [[ "$CELLGATE_BUILD" == 1 ]]; then build_cellgate; fi
[[ -x "$CELLGATE_BIN" ]] || { echo "no cellgate binary at $CELLGATE_BIN" >&2; exit 1; }

# From here on this script (the readiness polls, the generator) stays on the load core, off the
# proxy's core; everything it starts is pinned explicitly anyway.
taskset -pc "$LOAD_CORE" $$ >/dev/null

# ---------------------------------------------------------------------------- configs ---
write_upstream_conf "$UPSTREAM_PORT"

gen_registry() {  # gen_registry N FILE — 3 cells on the upstream, tenants t0..t{N-1} round robin
  awk -v n="$1" -v port="$UPSTREAM_PORT" -v format="$FORMAT" 'BEGIN {
    for (c = 1; c <= 3; c++)
      if (format == "jsonl")
        printf "{\"cell\": {\"id\": \"cell-%d\", \"targets\": [\"http://127.0.0.1:%d\"]}}\n", c, port
      else
        printf "[[cells]]\nid = \"cell-%d\"\ntargets = [\"http://127.0.0.1:%d\"]\n\n", c, port
    for (k = 0; k < n; k++)
      if (format == "jsonl")
        printf "{\"tenant\": {\"id\": \"t%d\", \"cell\": \"cell-%d\", \"tier\": \"standard\"}}\n", k, k % 3 + 1
      else
        printf "[[tenants]]\nid = \"t%d\"\ncell = \"cell-%d\"\ntier = \"standard\"\n\n", k, k % 3 + 1
  }' >"$2"
}


for n in "${NS[@]}"; do
  mkdir -p "$WORK/n$n"
  t0=$SECONDS
  gen_registry "$n" "$WORK/n$n/$REGISTRY"
  write_cellgate_conf "$WORK/n$n/cellgate.toml" "${PORT[$n]}" "${ADMIN[$n]}" "$REGISTRY"
  log "registry for N=$n: $(du -h "$WORK/n$n/$REGISTRY" | cut -f1) in $((SECONDS - t0)) s"
done

# ------------------------------------------------------------------------------ start ---
for p in "$UPSTREAM_PORT" "${PORT[@]}" "${ADMIN[@]}"; do
  if port_open "$p"; then echo "port 127.0.0.1:$p is already in use (set PORT_BASE)" >&2; exit 1; fi
done

usec() { local t=${EPOCHREALTIME//[.,]/}; echo "$((10#$t))"; }

ready() {  # ready PORT — admin /readyz answers 200 (bash's /dev/tcp in a subshell: no exec per poll)
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
    IFS= read -r -t 2 line <&3 || exit 1
    [[ "$line" == "HTTP/1."?" 200"* ]]
  ) 2>/dev/null
}

proc_kib() {  # proc_kib PID FIELD — VmRSS / VmHWM in KiB
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || true
}

metric() {  # metric N NAME — a sample's value from the admin /metrics
  curl -s --max-time 5 "http://127.0.0.1:${ADMIN[$1]}/metrics" |
    awk -v m="$2" '$1 == m { print $2; exit }' || true
}

# start_cellgate N: exec `cellgate serve` on PROXY_CORE and poll /readyz every ~10 ms (READY_TIMEOUT
# at most). Sets READY_MS (exec to the first 200), RSS_READY and HWM_READY (KiB, read at once).
start_cellgate() {
  local n=$1 name="cg-$1" t0 now
  t0=$(usec)
  start_bg "$name" "$PROXY_CORE" "$CELLGATE_BIN" serve --config "$WORK/n$n/cellgate.toml"
  while :; do
    if ready "${ADMIN[$n]}"; then now=$(usec); break; fi
    kill -0 "${PID[$name]}" 2>/dev/null || { fail_start "$name" "exited during start-up"; return 1; }
    if (($(usec) - t0 > READY_TIMEOUT * 1000000)); then
      fail_start "$name" "admin /readyz did not return 200 within $READY_TIMEOUT s"; return 1
    fi
    sleep 0.01
  done
  READY_MS=$(awk -v d="$((now - t0))" 'BEGIN { printf "%.1f", d / 1000 }')
  RSS_READY=$(proc_kib "${PID[$name]}" VmRSS)
  HWM_READY=$(proc_kib "${PID[$name]}" VmHWM)
}

probe() {  # probe N — t0, t{N-1} and 3 random tenants must get 200 with the upstream's body
  local n=$1 k code body
  for k in 0 $((n - 1)) $(((RANDOM << 15 | RANDOM) % n)) $(((RANDOM << 15 | RANDOM) % n)) $(((RANDOM << 15 | RANDOM) % n)); do
    code="$(curl -s -o "$WORK/probe.body" -w '%{http_code}' --max-time 5 \
            -H "Host: t$k.localhost" "http://127.0.0.1:${PORT[$n]}/" || true)"
    body="$(cat "$WORK/probe.body" 2>/dev/null || true)"
    if [[ "$code" != 200 || "$body" != "$UPSTREAM_BODY" ]]; then
      fail_start "cg-$n" "probe of tenant t$k returned HTTP '$code' body '${body:0:80}' (want 200 '$UPSTREAM_BODY')"
      return 1
    fi
  done
}

start_upstream "$UPSTREAM_PORT"

# --------------------------------------------------------------------- startup phase ---
# STARTS timed starts per N, interleaved (rotated order), each alone on the proxy core and
# stopped at once: startup to ready and RSS at ready. A start disturbed by other processes is
# repeated after a quiet moment, as in e2e.sh.
mkdir -p "$WORK/raw"
STARTS_TSV="$WORK/raw/starts.tsv"   # phase, round, N, ready ms, RSS KiB, HWM KiB, attempt, other CPU %, top, kept
ROUNDS_TSV="$WORK/raw/rounds.tsv"   # round, N, wrk output, attempt, other CPU %, top, kept, ready ms,
                                    # RSS at ready, HWM at ready, RSS after, HWM after, tracked keys, reloads
: >"$STARTS_TSV"
: >"$ROUNDS_TSV"
declare -A BROKEN=()   # N whose start or probe failed: not measured again

timed_start() {  # timed_start ROUND N
  local s=$1 n=$2 attempt cpu kept
  for ((attempt = 1; ; attempt++)); do
    cpu_watch_start "$WORK/raw/start-s$s-n$n-a$attempt.cpu" "$((READY_TIMEOUT + 30))"
    if ! start_cellgate "$n"; then cpu_watch_stop "$WORK/raw/start-s$s-n$n-a$attempt.cpu"; BROKEN[$n]=1; return 0; fi
    cpu_watch_stop "$WORK/raw/start-s$s-n$n-a$attempt.cpu"
    cpu=$CPU_OTHER
    stop "cg-$n"
    log "start $s/$STARTS  N=$(printf '%-8s' "$n") ready in ${READY_MS} ms, RSS $((RSS_READY / 1024)) MiB (HWM $((HWM_READY / 1024)) MiB)  (other CPU ${cpu%% *}%)"
    kept=1
    if over "${cpu%% *}" "$QUIET_CPU" && [[ $attempt -le $RETRIES && $QUIET_SPENT -lt $QUIET_WAIT ]]; then kept=0; fi
    printf 'start\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$n" "$READY_MS" "$RSS_READY" "$HWM_READY" \
      "$attempt" "${cpu%% *}" "${cpu#* }" "$kept" >>"$STARTS_TSV"
    [[ $kept == 1 ]] && return 0
    log "  disturbed by other processes (${cpu#* }); starting again after a quiet moment"
    wait_quiet
  done
}

T_START=$SECONDS
nn=${#NS[@]}
log "startup: $STARTS starts of each N in ${NS[*]} (cellgate on core $PROXY_CORE, /readyz polled every ~10 ms)"
for ((s = 1; s <= STARTS; s++)); do
  wait_quiet
  for ((k = 0; k < nn; k++)); do
    n=${NS[$(((k + s - 1) % nn))]}   # rotate the order each round
    [[ -n "${BROKEN[$n]:-}" ]] && continue
    timed_start "$s" "$n"
  done
done

# ------------------------------------------------------------------ throughput phase ---
# One cellgate at a time: started fresh for every measurement (on its own ports), probed, warmed
# up, measured, read (RSS, limiter keys, reloads) and stopped. See bench/README.md "scale.sh" for why.
run_wrk() {  # run_wrk N SECONDS OUTFILE (in the background so that a signal ends the run at once)
  local rc=0
  taskset -c "$LOAD_CORE" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${2}s" --timeout 5s --latency \
    -s "$BENCH_DIR/wrk-tenants.lua" "http://127.0.0.1:${PORT[$1]}/" -- "$1" >"$3" 2>&1 &
  PID[wrk]=$!
  wait "${PID[wrk]}" || rc=$?
  unset "PID[wrk]"
  return "$rc"
}

measure() {  # measure ROUND N — start, probe, warm up, measure, re-measure if disturbed
  local r=$1 n=$2 attempt out cpu rps errs rss hwm keys reloads0 reloads1 kept
  for ((attempt = 1; ; attempt++)); do
    out="$WORK/raw/r$r-n$n-a$attempt.txt"
    start_cellgate "$n" || { BROKEN[$n]=1; return 0; }
    probe "$n" || { BROKEN[$n]=1; return 0; }
    if [[ "$WARMUP" -gt 0 ]]; then run_wrk "$n" "$WARMUP" "$WORK/raw/warmup.txt" || true; fi
    reloads0="$(metric "$n" cellgate_placement_reloads_total)"
    cpu_watch_start "$out.cpu" "$((DURATION + 30))"
    run_wrk "$n" "$DURATION" "$out" || note "wrk exited non-zero for N=$n in round $r"
    cpu_watch_stop "$out.cpu"
    cpu=$CPU_OTHER
    rss=$(proc_kib "${PID[cg-$n]}" VmRSS)
    hwm=$(proc_kib "${PID[cg-$n]}" VmHWM)
    keys="$(metric "$n" cellgate_ratelimit_tracked_keys)"
    reloads1="$(metric "$n" cellgate_placement_reloads_total)"
    stop "cg-$n"
    rps="$(sed -n 's/^Requests\/sec: *//p' "$out")"
    errs="$(grep -E '^ *(Non-2xx|Socket errors)' "$out" | tr -s ' ' | paste -sd';' || true)"
    log "round $r/$ROUNDS  N=$(printf '%-8s' "$n") ${rps:-?} req/s  RSS after $((${rss:-0} / 1024)) MiB  (other CPU ${cpu%% *}%)${errs:+  ERRORS: $errs}"
    kept=1
    if over "${cpu%% *}" "$QUIET_CPU" && [[ $attempt -le $RETRIES && $QUIET_SPENT -lt $QUIET_WAIT ]]; then kept=0; fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$n" "$out" "$attempt" \
      "${cpu%% *}" "${cpu#* }" "$kept" "$READY_MS" "$RSS_READY" "$HWM_READY" "${rss:-}" "${hwm:-}" \
      "${keys:-}" "$(awk -v a="${reloads0:-0}" -v b="${reloads1:-0}" 'BEGIN { print b - a }')" >>"$ROUNDS_TSV"
    [[ $kept == 1 ]] && return 0
    log "  disturbed by other processes (${cpu#* }); re-measuring after a quiet moment"
    wait_quiet
  done
}

log "throughput: ${NS[*]}: $ROUNDS rounds x ${DURATION}s (+${WARMUP}s warm-up), $CONNECTIONS connections, $WRK_THREADS wrk thread(s), a random tenant of N per request"
for ((r = 1; r <= ROUNDS; r++)); do
  wait_quiet
  for ((k = 0; k < nn; k++)); do
    n=${NS[$(((k + r - 1) % nn))]}   # rotate the order each round
    [[ -n "${BROKEN[$n]:-}" ]] && continue
    measure "$r" "$n"
  done
done
log "measurement took $((SECONDS - T_START)) s"

# ----------------------------------------------------------------------------- report ---
mkdir -p "$BENCH_DIR/results"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$BENCH_DIR/results/scale-$STAMP"
{
  machine_meta
  echo "tenants=$(IFS=,; echo "${NS[*]}")"
  echo "starts=$STARTS"; echo "rounds=$ROUNDS"; echo "duration_s=$DURATION"; echo "warmup_s=$WARMUP"
  echo "connections=$CONNECTIONS"; echo "wrk_threads=$WRK_THREADS"
  echo "load_core=$LOAD_CORE"; echo "proxy_core=$PROXY_CORE"
  echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
  echo "nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///')"
  echo "rustc=$(rustc --version 2>/dev/null || echo n/a)"
  echo "cellgate_git=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$REPO_DIR" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo '+dirty')"
  echo "cellgate_bin=$CELLGATE_BIN built $(date -u -r "$CELLGATE_BIN" +%Y-%m-%dT%H:%M:%SZ)"
  echo "registry_format=$FORMAT"
  for n in "${NS[@]}"; do echo "registry_bytes_$n=$(stat -c %s "$WORK/n$n/$REGISTRY")"; done
  echo "quiet_wait_spent_s=$QUIET_SPENT"
  echo "quiet_cpu_pct=$QUIET_CPU"
  for x in "${NOTES[@]}"; do echo "note=$x"; done
} >"$WORK/meta.txt"

python3 "$BENCH_DIR/scale_report.py" --meta "$WORK/meta.txt" --starts "$STARTS_TSV" --rounds "$ROUNDS_TSV" --out "$OUT"
log "wrote ${OUT#"$REPO_DIR"/}.md and .json"
prune_results scale "$STAMP"
