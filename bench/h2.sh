#!/usr/bin/env bash
# bench/h2.sh — HTTP/2 and gRPC through cellgate against the same traffic sent direct.
#
# Decision it supports: is the HTTP/2 path to cells (issue 22: `protocol = "http2"`, shared
# multiplexed upstream connections, gRPC with trailers) cheap enough to put in front of h2 and
# gRPC cells, and what does it cost next to an HTTP/1.1 cell?
#
# The load tools and the upstreams share core 0; cellgate runs alone on core 1. Contestants are
# measured interleaved (the order rotates each round) and the median over rounds is reported,
# with the proxy's CPU per request (utime+stime of /proc/PID/stat over the measured run).
#
#   bench/h2.sh                              # all five contestants, 5 rounds x 10 s
#   bench/h2.sh --rounds 3 --duration 8
#   bench/h2.sh --only direct-h2,cellgate-h2
#   CELLGATE_BUILD=0 CELLGATE_BIN=... LOADTEST_BIN=... bench/h2.sh
#
# Contestants: direct-h2 (h2load -> nginx h2c), cellgate-h2 (h2load -> cellgate -> nginx h2c,
# cell protocol http2), cellgate-h1cell (h2load -> cellgate -> nginx HTTP/1.1, cell protocol
# http1), grpc-direct (loadtest grpc-load -> the tonic echo cell), grpc-cellgate (grpc-load ->
# cellgate -> the echo cell, protocol http2).
# Needs h2load (Debian: nghttp2-client), nginx, curl, python3, taskset; installs nothing.
# Results: markdown on stdout and bench/results/h2-<UTC>.md + .json (older h2-* files removed).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
LOG_TAG=h2
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

CMDLINE="$(command_line "ROUNDS DURATION WARMUP CONNECTIONS STREAMS GRPC_CONCURRENCY GRPC_CONNECTIONS
  GRPC_MODE CONTESTANTS CELLGATE_BUILD CELLGATE_BIN LOADTEST_BIN PORT_BASE LOAD_CORE PROXY_CORE
  QUIET_WAIT QUIET_POLL QUIET_CPU RETRIES KEEP_TMP" "$0" "$@")"

# ---------------------------------------------------------------------------- settings ---
ROUNDS="${ROUNDS:-5}"               # interleaved rounds
DURATION="${DURATION:-10}"          # seconds measured per contestant per round
WARMUP="${WARMUP:-2}"               # seconds of unmeasured load before each measurement
CONNECTIONS="${CONNECTIONS:-4}"     # h2load connections (-c)
STREAMS="${STREAMS:-16}"            # h2load streams per connection (-m): CONNECTIONS x STREAMS in flight
GRPC_CONCURRENCY="${GRPC_CONCURRENCY:-64}"   # gRPC calls in flight
GRPC_CONNECTIONS="${GRPC_CONNECTIONS:-4}"    # gRPC client connections
GRPC_MODE="${GRPC_MODE:-unary}"     # unary, or stream (ServerStream, 10 replies per call)
CONTESTANTS="${CONTESTANTS:-}"      # comma list to restrict the run (default: all)
CELLGATE_BUILD="${CELLGATE_BUILD:-1}"   # 0 = use the binaries as they are
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
CELLGATE_BIN="${CELLGATE_BIN:-$TARGET_DIR/release/cellgate}"
LOADTEST_BIN="${LOADTEST_BIN:-$TARGET_DIR/release/examples/loadtest}"
PORT_BASE="${PORT_BASE:-18380}"     # nginx h2c; +1 nginx HTTP/1.1; +2 cellgate; +3 its admin
LOAD_CORE="${LOAD_CORE:-0}"         # load tools + upstreams (+ this script)
PROXY_CORE="${PROXY_CORE:-1}"       # cellgate, alone
QUIET_WAIT="${QUIET_WAIT:-900}"     # max total seconds spent waiting for a quiet machine; 0 = never wait
QUIET_POLL="${QUIET_POLL:-30}"      # seconds between quiet checks while waiting
QUIET_CPU="${QUIET_CPU:-10}"        # other processes above this % of one core = not quiet
RETRIES="${RETRIES:-3}"             # re-measure a disturbed measurement up to this many times
KEEP_TMP="${KEEP_TMP:-0}"           # 1 = keep the temp dir (configs, logs, raw outputs)

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --warmup) WARMUP="$2"; shift ;;
    --only) CONTESTANTS="$2"; shift ;;
    --no-cellgate-build) CELLGATE_BUILD=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
for n in "$ROUNDS" "$DURATION" "$WARMUP" "$CONNECTIONS" "$STREAMS" "$GRPC_CONCURRENCY" "$GRPC_CONNECTIONS"; do
  [[ $n =~ ^[0-9]+$ ]] || { echo "rounds, duration, warm-up and the load settings are whole numbers" >&2; exit 2; }
done
[[ $ROUNDS -ge 1 && $DURATION -ge 1 ]] || { echo "need --rounds >= 1 and --duration >= 1" >&2; exit 2; }
[[ $GRPC_MODE == unary || $GRPC_MODE == stream ]] || { echo "GRPC_MODE: unary or stream" >&2; exit 2; }

ALL_CONTESTANTS=(direct-h2 cellgate-h2 cellgate-h1cell grpc-direct grpc-cellgate)
want() { [[ -z "$CONTESTANTS" || ",$CONTESTANTS," == *",$1,"* ]]; }
for c in ${CONTESTANTS//,/ }; do
  [[ " ${ALL_CONTESTANTS[*]} " == *" $c "* ]] || { echo "unknown contestant: $c (have: ${ALL_CONTESTANTS[*]})" >&2; exit 2; }
done
H2_PORT=$PORT_BASE
H1_PORT=$((PORT_BASE + 1))
PROXY_PORT=$((PORT_BASE + 2))
ADMIN_PORT=$((PORT_BASE + 3))
# The tenant (and so the cell) each contestant names in its :authority.
declare -A AUTHORITY=([direct-h2]=bench.localhost [cellgate-h2]=bench.localhost
  [cellgate-h1cell]=bench-h1.localhost [grpc-direct]=grpc.localhost [grpc-cellgate]=grpc.localhost)
TICK="$(getconf CLK_TCK)"

# ----------------------------------------------------------------------- what it needs ---
export PATH="$PATH:/usr/sbin:/sbin"
missing=()
for cmd in h2load nginx curl python3 taskset; do have_cmd "$cmd" || missing+=("$cmd"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "missing: ${missing[*]} (Debian: apt-get install -y nghttp2-client nginx-light curl python3 util-linux)" >&2
  exit 2
fi
start_workdir cellgate-h2

if [[ "$CELLGATE_BUILD" == 1 ]]; then
  if command -v cargo >/dev/null; then
    log "building cellgate and the loadtest driver (cargo build --release --bin cellgate --example loadtest)"
    t0=$SECONDS
    (cd "$REPO_DIR" && cargo build --release --bin cellgate --example loadtest) >"$WORK/build.log" 2>&1 ||
      { tail -n 20 "$WORK/build.log" >&2; echo "build failed" >&2; exit 1; }
    log "built in $((SECONDS - t0)) s"
  else
    note "cargo not found; using the binaries as they are"
  fi
fi
[[ -x "$CELLGATE_BIN" ]] || { echo "no cellgate binary at $CELLGATE_BIN" >&2; exit 2; }
if want grpc-direct || want grpc-cellgate; then
  [[ -x "$LOADTEST_BIN" ]] || { echo "no loadtest driver at $LOADTEST_BIN (cargo build --release --example loadtest)" >&2; exit 2; }
fi
taskset -pc "$LOAD_CORE" $$ >/dev/null   # this script's polls and reads stay off the proxy's core

for p in "$H2_PORT" "$H1_PORT" "$PROXY_PORT" "$ADMIN_PORT"; do
  if port_open "$p"; then echo "port 127.0.0.1:$p is already in use (set PORT_BASE)" >&2; exit 1; fi
done

# ---------------------------------------------------------------------------- upstreams ---
# One nginx (1 worker, core 0) with two servers answering the same small body: HTTP/2 by prior
# knowledge (nginx 1.22's cleartext `http2` listener) and HTTP/1.1. keepalive_requests (from
# lib.sh) also bounds the requests per HTTP/2 connection in nginx >= 1.19.7: raised, so nginx
# never sends GOAWAY during a run.
write_nginx_conf "$WORK/upstream" "
    server {
        listen 127.0.0.1:$H2_PORT http2;
        location / { default_type text/plain; return 200 \"$UPSTREAM_BODY\n\"; }
    }
    server {
        listen 127.0.0.1:$H1_PORT;
        location / { default_type text/plain; return 200 \"$UPSTREAM_BODY\n\"; }
    }"
start_upstream "$H2_PORT"
wait_port upstream "$H1_PORT" || { echo "upstream nginx: no HTTP/1.1 listener" >&2; exit 1; }
code="$(curl -s -o /dev/null -w '%{http_code}' --http2-prior-knowledge "http://127.0.0.1:$H2_PORT/" || true)"
[[ $code == 200 ]] || { echo "upstream nginx does not answer HTTP/2 by prior knowledge (got '$code')" >&2; exit 1; }

GRPC_ADDR=""
if want grpc-direct || want grpc-cellgate; then
  start_bg grpc-cell "$LOAD_CORE" "$LOADTEST_BIN" grpc-cell --name grpc-cell --secs $((ROUNDS * 5 * (DURATION + WARMUP + 40) + 600))
  for ((i = 0; i < 100; i++)); do
    GRPC_ADDR="$(sed -n 's/^listening //p' "$WORK/grpc-cell.log")"
    [[ -n $GRPC_ADDR ]] && break
    sleep 0.1
  done
  [[ -n $GRPC_ADDR ]] || { tail "$WORK/grpc-cell.log" >&2; echo "the gRPC echo cell did not start" >&2; exit 1; }
  log "gRPC echo cell on $GRPC_ADDR (core $LOAD_CORE)"
fi

# ----------------------------------------------------------------------------- cellgate ---
# e2e.sh's cellgate config (1 worker, subdomain routing, rate limiting on far above the load,
# access log off); three cells, one tenant each.
mkdir -p "$WORK/cellgate"
write_cellgate_conf "$WORK/cellgate/cellgate.toml" "$PROXY_PORT" "$ADMIN_PORT"
cat >"$WORK/cellgate/registry.toml" <<EOF
[[cells]]
id = "cell-h2"
protocol = "http2"
targets = ["http://127.0.0.1:$H2_PORT"]
[[cells]]
id = "cell-h1"
protocol = "http1"
targets = ["http://127.0.0.1:$H1_PORT"]
[[tenants]]
id = "bench"
cell = "cell-h2"
[[tenants]]
id = "bench-h1"
cell = "cell-h1"
EOF
if [[ -n $GRPC_ADDR ]]; then
  printf '[[cells]]\nid = "cell-grpc"\nprotocol = "http2"\ntargets = ["http://%s"]\n[[tenants]]\nid = "grpc"\ncell = "cell-grpc"\n' \
    "$GRPC_ADDR" >>"$WORK/cellgate/registry.toml"
fi
start_bg cellgate "$PROXY_CORE" "$CELLGATE_BIN" serve --config "$WORK/cellgate/cellgate.toml"
for ((i = 0; i < 300; i++)); do
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$ADMIN_PORT/readyz" || true)"
  [[ $code == 200 ]] && break
  kill -0 "${PID[cellgate]}" 2>/dev/null || { tail "$WORK/cellgate.log" >&2; echo "cellgate exited during start-up" >&2; exit 1; }
  sleep 0.1
done
[[ $code == 200 ]] || { tail "$WORK/cellgate.log" >&2; echo "cellgate: /readyz not 200 within 30 s" >&2; exit 1; }
log "cellgate on 127.0.0.1:$PROXY_PORT (core $PROXY_CORE): $CELLGATE_BIN"

port_of() {  # port_of NAME — where the contestant's load goes
  case "$1" in
    direct-h2) echo "$H2_PORT" ;;
    grpc-direct) echo "${GRPC_ADDR##*:}" ;;
    *) echo "$PROXY_PORT" ;;
  esac
}

# Each HTTP contestant must answer one HTTP/2 request with 200 and the upstream's body.
RUN=()
for c in "${ALL_CONTESTANTS[@]}"; do
  want "$c" || continue
  case "$c" in
    grpc-*)
      if ! out="$(taskset -c "$LOAD_CORE" "$LOADTEST_BIN" grpc-load --addr "127.0.0.1:$(port_of "$c")" \
                  --authority "${AUTHORITY[$c]}" --concurrency 1 --secs 0.2 2>&1)"; then
        note "$c skipped: the probe calls failed: $(tail -n 3 <<<"$out" | paste -sd' ')"; continue
      fi ;;
    *)
      body="$(curl -s --http2-prior-knowledge --max-time 5 -H "Host: ${AUTHORITY[$c]}" "http://127.0.0.1:$(port_of "$c")/" || true)"
      [[ $body == "$UPSTREAM_BODY" ]] || { note "$c skipped: the probe answered '${body:0:80}'"; continue; } ;;
  esac
  RUN+=("$c")
done
[[ ${#RUN[@]} -gt 0 ]] || { echo "no contestant could be probed" >&2; exit 1; }

# ---------------------------------------------------------------------------- measure ---
cpu_ticks() {  # cpu_ticks PID -> "UTIME STIME" (fields 14 and 15 of /proc/PID/stat, all threads)
  local s f
  s="$(<"/proc/$1/stat")"
  read -ra f <<<"${s##*) }"   # after the "(comm) ": f[0] is field 3
  echo "${f[11]} ${f[12]}"
}

run_load() {  # run_load NAME SECONDS OUTFILE [LOGFILE] — pinned to LOAD_CORE, in the background
  local c=$1 secs=$2 out=$3 logf=${4:-} rc=0 cmd
  if [[ $c == grpc-* ]]; then
    cmd=("$LOADTEST_BIN" grpc-load --addr "127.0.0.1:$(port_of "$c")" --authority "${AUTHORITY[$c]}"
      --concurrency "$GRPC_CONCURRENCY" --connections "$GRPC_CONNECTIONS" --secs "$secs" --mode "$GRPC_MODE")
  else
    cmd=(h2load -t 1 -c "$CONNECTIONS" -m "$STREAMS" -D "$secs" -H ":authority: ${AUTHORITY[$c]}")
    [[ -n $logf ]] && cmd+=(--log-file "$logf")
    cmd+=("http://127.0.0.1:$(port_of "$c")/")
  fi
  taskset -c "$LOAD_CORE" timeout -k 5 "$((secs + 30))" "${cmd[@]}" >"$out" 2>&1 &
  PID[load]=$!
  wait "${PID[load]}" || rc=$?
  unset "PID[load]"
  return "$rc"
}

# h2load prints min/max/mean per request, no percentiles: those come from its --log-file (one
# line per request: start µs, status, µs to the end of the response), reduced here to a line
# so the file need not stay.
h2load_row() {  # h2load_row OUT LOGFILE -> "requests rps p50 p99 max mean errors"
  python3 - "$1" "$2" <<'PY'
import math, re, sys
out = open(sys.argv[1]).read()
m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
f = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
if not (m and s and f):
    print("0 0 0 0 0 0 no-h2load-summary"); sys.exit()
lat = sorted(int(l.split("\t")[2]) for l in open(sys.argv[2]) if l.count("\t") == 2)
pct = lambda q: lat[max(1, min(len(lat), math.ceil(len(lat) * q))) - 1] if lat else 0  # nearest rank
ok = int(s.group(1))
bad = int(m.group(5)) + int(m.group(6)) + int(m.group(7)) + int(s.group(3)) + int(s.group(4))
mean = sum(lat) / len(lat) if lat else 0
print(ok, f.group(3), int(pct(0.5)), int(pct(0.99)), lat[-1] if lat else 0, int(mean), bad)
PY
}
grpc_row() {  # grpc_row OUT -> "calls rate p50 p99 max mean errors"
  python3 - "$1" <<'PY'
import json, sys
line = next((l for l in open(sys.argv[1]) if l.startswith("GRPC_JSON ")), None)
if line is None:
    print("0 0 0 0 0 0 no-grpc-summary"); sys.exit()
j = json.loads(line[len("GRPC_JSON "):])
errs = ";".join(f"{k}={v}" for k, v in j["errors"].items()) or "0"
print(j["calls"], f'{j["rate"]:.1f}', j["p50_us"], j["p99_us"], j["max_us"], int(j["mean_us"]), errs)
PY
}

measure_once() {  # measure_once ROUND NAME ATTEMPT — sets ROW (TSV) and CPU_OTHER
  local r=$1 c=$2 a=$3 out="$WORK/raw/r$1-$2-a$3.txt" logf="$WORK/raw/r$1-$2-a$3.log" u0=0 s0=0 u1=0 s1=0 row
  local reqs rps p50 p99 max mean errs shown=""
  if [[ $WARMUP -gt 0 ]]; then run_load "$c" "$WARMUP" "$WORK/raw/warmup.txt" || true; sleep 0.2; fi
  if [[ $c == cellgate-* || $c == grpc-cellgate ]]; then read -r u0 s0 < <(cpu_ticks "${PID[cellgate]}"); fi
  cpu_watch_start "$out.cpu" "$((DURATION + 30))"
  run_load "$c" "$DURATION" "$out" "$logf" || note "the load tool exited non-zero for $c in round $r"
  cpu_watch_stop "$out.cpu"
  if [[ $c == cellgate-* || $c == grpc-cellgate ]]; then
    kill -0 "${PID[cellgate]}" 2>/dev/null || { echo "cellgate died during round $r" >&2; exit 1; }
    read -r u1 s1 < <(cpu_ticks "${PID[cellgate]}")
  fi
  if [[ $c == grpc-* ]]; then row="$(grpc_row "$out")"; else row="$(h2load_row "$out" "$logf")"; fi
  [[ $KEEP_TMP == 1 ]] || rm -f "$logf"
  read -r reqs rps p50 p99 max mean errs <<<"$row"
  [[ $errs == 0 ]] || shown="  ERRORS: $errs"
  log "round $r/$ROUNDS  $(printf '%-16s' "$c") $rps req/s  p99 ${p99} µs  proxy ticks $((u1 - u0))+$((s1 - s0))  (other CPU ${CPU_OTHER%% *}%)$shown"
  ROW="$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$r" "$c" "$a" "$reqs" "$rps" "$p50" "$p99" \
    "$max" "$mean" "$errs" "$((u1 - u0))" "$((s1 - s0))" "${CPU_OTHER%% *}" "${CPU_OTHER#* }")"
}
measure() {  # measure ROUND NAME — appends to ROWS; a disturbed measurement is repeated
  local attempt
  for ((attempt = 1; ; attempt++)); do
    measure_once "$1" "$2" "$attempt"
    if over "${CPU_OTHER%% *}" "$QUIET_CPU" && [[ $attempt -le $RETRIES && $QUIET_SPENT -lt $QUIET_WAIT ]]; then
      log "  disturbed by other processes (${CPU_OTHER#* }); measuring $2 again after a quiet moment"
      wait_quiet; continue
    fi
    echo "$ROW" >>"$ROWS"; return 0
  done
}

mkdir -p "$WORK/raw"
ROWS="$WORK/raw/rows.tsv"; : >"$ROWS"
n=${#RUN[@]}
log "measuring ${RUN[*]}: $ROUNDS rounds x ${DURATION}s (+${WARMUP}s warm-up); h2load -c $CONNECTIONS -m $STREAMS; gRPC $GRPC_MODE, $GRPC_CONCURRENCY in flight on $GRPC_CONNECTIONS connections"
T_START=$SECONDS
for ((r = 1; r <= ROUNDS; r++)); do
  wait_quiet
  for ((k = 0; k < n; k++)); do
    measure "$r" "${RUN[$(((k + r - 1) % n))]}"   # the order rotates each round
  done
done
log "measurement took $((SECONDS - T_START)) s"

# ----------------------------------------------------------------------------- report ---
{
  machine_meta
  echo "rounds=$ROUNDS"; echo "duration_s=$DURATION"; echo "warmup_s=$WARMUP"
  echo "h2load=-t 1 -c $CONNECTIONS -m $STREAMS ($(h2load --version 2>&1 | head -1))"
  echo "grpc_load=$GRPC_MODE, --concurrency $GRPC_CONCURRENCY --connections $GRPC_CONNECTIONS"
  echo "nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///')"
  echo "load_core=$LOAD_CORE"; echo "proxy_core=$PROXY_CORE"; echo "clk_tck=$TICK"
  echo "cellgate_git=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo none)"
  echo "cellgate_bin=$CELLGATE_BIN built $(date -u -r "$CELLGATE_BIN" +%Y-%m-%dT%H:%M:%SZ)"
  echo "quiet_wait_spent_s=$QUIET_SPENT"; echo "quiet_cpu_pct=$QUIET_CPU"
  for x in "${NOTES[@]}"; do echo "note=$x"; done
} >"$WORK/meta.txt"

mkdir -p "$BENCH_DIR/results"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$BENCH_DIR/results/h2-$STAMP"
python3 - "$WORK/meta.txt" "$ROWS" "$TICK" "$QUIET_CPU" "$OUT" <<'PY'
import json, statistics as st, sys
meta_path, rows_path, tick, quiet, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
meta = [l.rstrip("\n").partition("=")[::2] for l in open(meta_path)]
rows = []
for line in open(rows_path):
    r, c, a, reqs, rps, p50, p99, mx, mean, errs, du, ds, other, top = line.rstrip("\n").split("\t")
    reqs = int(reqs)
    us = lambda t: float(t) * 1e6 / tick / reqs if reqs else 0.0
    rows.append(dict(round=int(r), contestant=c, attempt=int(a), requests=reqs, rps=float(rps),
                     p50_us=int(p50), p99_us=int(p99), max_us=int(mx), mean_us=int(mean), errors=errs,
                     user_us=us(du), sys_us=us(ds), cpu_us=us(int(du) + int(ds)),
                     other_cpu=float(other), other_top=top))
order = [c for c in ("direct-h2", "cellgate-h2", "cellgate-h1cell", "grpc-direct", "grpc-cellgate")
         if any(x["contestant"] == c for x in rows)]
direct_of = {"cellgate-h2": "direct-h2", "cellgate-h1cell": "direct-h2", "grpc-cellgate": "grpc-direct"}
med = {c: {k: st.median([x[k] for x in rows if x["contestant"] == c])
           for k in ("rps", "p50_us", "p99_us", "user_us", "sys_us", "cpu_us")} for c in order}
proxied = lambda c: c in direct_of
L = ["# cellgate HTTP/2 and gRPC: through the proxy and direct\n"]
L += [f"- {k}: {v}" for k, v in meta]
L.append("\nreq/s (calls/s for gRPC), p50 and p99 over the measured run, medians over rounds. "
         "Ratio and +p99 against the same traffic sent direct (HTTP: direct-h2; gRPC: grpc-direct). "
         "Proxy CPU µs/req = cellgate's utime+stime over the measured run x 1e6 / CLK_TCK / requests "
         "(user + sys). h2load latencies are from its --log-file; gRPC latencies from the driver.\n")
L.append("| contestant | req/s | ratio to direct | p50 µs | p99 µs | +p99 over direct | proxy CPU µs/req (user + sys) | errors | max other CPU % |")
L.append("|---|---:|---:|---:|---:|---:|---:|---|---:|")
for c in order:
    m = med[c]; d = med.get(direct_of.get(c, ""), None)
    ratio = f"{m['rps'] / d['rps']:.2f}" if d and d["rps"] else ("1.00" if not proxied(c) else "n/a")
    dp99 = f"{m['p99_us'] - d['p99_us']:+,.0f}" if d else "—"
    cpu = f"{m['cpu_us']:.2f} ({m['user_us']:.2f} + {m['sys_us']:.2f})" if proxied(c) else "—"
    errs = ",".join(sorted({x["errors"] for x in rows if x["contestant"] == c}))
    worst = max(x["other_cpu"] for x in rows if x["contestant"] == c)
    L.append(f"| {c} | {m['rps']:,.0f} | {ratio} | {m['p50_us']:,.0f} | {m['p99_us']:,.0f} | {dp99} | {cpu} | {errs} | {worst:.1f} |")
L.append("\n## Every round\n")
L.append("| round | contestant | requests | req/s | p50 µs | p99 µs | max µs | proxy CPU µs/req | errors | other CPU % |")
L.append("|---:|---|---:|---:|---:|---:|---:|---:|---|---:|")
for x in sorted(rows, key=lambda x: (x["round"], order.index(x["contestant"]))):
    mark = " *" if x["other_cpu"] > quiet else ""
    cpu = f"{x['cpu_us']:.2f}" if proxied(x["contestant"]) else "—"
    L.append(f"| {x['round']} | {x['contestant']} | {x['requests']:,} | {x['rps']:,.0f} | {x['p50_us']:,} | {x['p99_us']:,} | "
             f"{x['max_us']:,} | {cpu} | {x['errors']} | {x['other_cpu']:.1f}{mark} |")
L.append(f"\n* = other processes used more than {quiet:g} % of a core during the measurement.")
open(out + ".md", "w").write("\n".join(L) + "\n")
json.dump({"meta": dict(meta), "medians": med, "rounds": rows}, open(out + ".json", "w"), indent=1)
print("\n".join(L))
PY
log "wrote ${OUT#"$REPO_DIR"/}.md and .json"
prune_results h2 "$STAMP"
