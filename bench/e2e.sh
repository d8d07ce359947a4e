#!/usr/bin/env bash
# bench/e2e.sh — end-to-end throughput/latency comparison of cellgate against reference proxies.
#
# wrk and a fast nginx upstream share core 0; the proxy under test runs alone on core 1.
# Contestants are measured interleaved (round 1: all, round 2: all, ...) and the median over
# rounds is reported: req/s, latency, and each proxy's CPU per request (user and system µs, from
# /proc/PID/stat over the timed run; the figure that holds on a shared VM). See bench/README.md
# for what each contestant is and how to read the ratio and the CPU.
#
#   bench/e2e.sh                          # direct, nginx, haproxy, cellgate, cellgate-jwt, cellgate-key; 5 rounds x 10 s
#   BASELINES=1 bench/e2e.sh              # + hyper-minimal, pingora-minimal (pingora: 2-5 min cold build)
#   bench/e2e.sh --baselines --rounds 3 --duration 8
#   bench/e2e.sh --only direct,nginx,cellgate
#
# Results: a markdown table on stdout, and bench/results/e2e-<UTC>.md + .json (raw round values)
# + .svg; older e2e-* results are then removed (bench/results/ keeps the latest; git keeps the rest).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
LOG_TAG=e2e
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

CMDLINE="$(command_line "ROUNDS DURATION WARMUP CONNECTIONS WRK_THREADS BASELINES CONTESTANTS CELLGATE_BUILD
  CELLGATE_BIN PORT_BASE LOAD_CORE PROXY_CORE QUIET_WAIT QUIET_POLL QUIET_CPU RETRIES KEEP_TMP" "$0" "$@")"

# ---------------------------------------------------------------------------- settings ---
ROUNDS="${ROUNDS:-5}"               # interleaved rounds
DURATION="${DURATION:-10}"          # seconds measured per contestant per round
WARMUP="${WARMUP:-2}"               # seconds of unmeasured load before each measurement
CONNECTIONS="${CONNECTIONS:-64}"    # wrk connections
WRK_THREADS="${WRK_THREADS:-1}"     # wrk threads (1: see bench/README.md "Fairness")
BASELINES="${BASELINES:-0}"         # 1 = also build + run hyper-minimal and pingora-minimal
CONTESTANTS="${CONTESTANTS:-}"      # comma list to restrict the run (default: all available)
CELLGATE_BUILD="${CELLGATE_BUILD:-1}"   # 0 = don't run cargo for cellgate, use the binary as is
CELLGATE_BIN="${CELLGATE_BIN:-$REPO_DIR/target/release/cellgate}"
PORT_BASE="${PORT_BASE:-18080}"     # upstream = PORT_BASE, contestants on the next ports
LOAD_CORE="${LOAD_CORE:-0}"         # wrk + upstream
PROXY_CORE="${PROXY_CORE:-1}"       # the proxy under test, alone
QUIET_WAIT="${QUIET_WAIT:-900}"     # max total seconds spent waiting for a quiet machine; 0 = never wait
QUIET_POLL="${QUIET_POLL:-30}"      # seconds between quiet checks while waiting
QUIET_CPU="${QUIET_CPU:-10}"        # other processes above this % of one core = machine not quiet
RETRIES="${RETRIES:-3}"             # re-measure a disturbed measurement up to this many times
KEEP_TMP="${KEEP_TMP:-0}"           # 1 = keep the temp dir (configs, logs, raw wrk output)

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --baselines) BASELINES=1 ;;
    --rounds) ROUNDS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --warmup) WARMUP="$2"; shift ;;
    --connections) CONNECTIONS="$2"; shift ;;
    --threads) WRK_THREADS="$2"; shift ;;
    --only) CONTESTANTS="$2"; shift ;;
    --no-cellgate-build) CELLGATE_BUILD=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

UPSTREAM_PORT=$PORT_BASE
declare -A PORT=(
  [direct]=$PORT_BASE
  [nginx]=$((PORT_BASE + 1))
  [haproxy]=$((PORT_BASE + 2))
  [hyper-minimal]=$((PORT_BASE + 3))
  [pingora-minimal]=$((PORT_BASE + 4))
  [cellgate]=$((PORT_BASE + 5))
  [cellgate-jwt]=$((PORT_BASE + 7))
  [cellgate-key]=$((PORT_BASE + 9))
)
CELLGATE_ADMIN_PORT=$((PORT_BASE + 6))
CELLGATE_JWT_ADMIN_PORT=$((PORT_BASE + 8))
CELLGATE_KEY_ADMIN_PORT=$((PORT_BASE + 10))
ALL_CONTESTANTS=(direct nginx haproxy hyper-minimal pingora-minimal cellgate cellgate-jwt cellgate-key)
HOST_HEADER="bench.localhost"
TICK="$(getconf CLK_TCK)"            # the unit of /proc/PID/stat's CPU times

# ------------------------------------------------------------------------- selection ---
want() {  # is contestant $1 requested?
  if [[ -n "$CONTESTANTS" ]]; then [[ ",$CONTESTANTS," == *",$1,"* ]]; return; fi
  case "$1" in hyper-minimal|pingora-minimal) [[ "$BASELINES" == 1 ]] ;; *) true ;; esac
}
if [[ -n "$CONTESTANTS" ]]; then
  for c in ${CONTESTANTS//,/ }; do
    [[ -n "${PORT[$c]+x}" ]] || { echo "unknown contestant: $c (have: ${ALL_CONTESTANTS[*]})" >&2; exit 2; }
  done
  if want hyper-minimal || want pingora-minimal; then BASELINES=1; fi
fi

# --------------------------------------------------------------------------- install ---
pkgs=(wrk:wrk nginx:nginx-light haproxy:haproxy curl:curl python3:python3 taskset:util-linux)
if [[ "$BASELINES" == 1 ]]; then pkgs+=(cmake:cmake); fi  # pingora-core -> libz-ng-sys
install_missing "${pkgs[@]}"
export PATH="$PATH:/usr/sbin:/sbin"

start_workdir cellgate-e2e

# ------------------------------------------------------------------------------ build ---
HYPER_BIN="$BENCH_DIR/baselines/target/release/hyper-minimal"
PINGORA_BIN="$BENCH_DIR/baselines/target/release-lto/pingora-minimal"
declare -A AVAILABLE=()
for c in direct nginx haproxy; do want "$c" && AVAILABLE[$c]=1; done

if [[ "$BASELINES" == 1 ]]; then
  if ! command -v cargo >/dev/null; then
    note "baselines skipped: cargo not found"
  else
    for b in hyper-minimal pingora-minimal; do
      want "$b" || continue
      profile=release; [[ $b == pingora-minimal ]] && profile=release-lto
      log "building $b (cargo --profile $profile in bench/baselines; pingora: 2-5 min when cold)"
      t0=$SECONDS
      if (cd "$BENCH_DIR/baselines" && cargo build --locked --profile "$profile" -p "$b") \
          >"$WORK/build-$b.log" 2>&1; then
        log "built $b in $((SECONDS - t0)) s"
        AVAILABLE[$b]=1
      else
        note "$b skipped: build failed (last lines below)"
        tail -n 20 "$WORK/build-$b.log" | sed "s/^/    [build $b] /" >&2
      fi
    done
  fi
fi

if want cellgate; then
  if [[ "$CELLGATE_BUILD" == 1 ]]; then build_cellgate; fi
  if [[ -x "$CELLGATE_BIN" ]]; then AVAILABLE[cellgate]=1; else note "cellgate skipped: no binary at $CELLGATE_BIN"; fi
fi
if want cellgate-jwt; then
  if [[ -x "$CELLGATE_BIN" ]]; then AVAILABLE[cellgate-jwt]=1; else note "cellgate-jwt skipped: no binary at $CELLGATE_BIN"; fi
fi
if want cellgate-key; then
  if [[ -x "$CELLGATE_BIN" ]]; then AVAILABLE[cellgate-key]=1; else note "cellgate-key skipped: no binary at $CELLGATE_BIN"; fi
fi

# From here on the script, its probes and its reads of /proc stay off the proxy's core (the
# builds above use both cores; each proxy is pinned to PROXY_CORE when started).
taskset -pc "$LOAD_CORE" $$ >/dev/null

# ---------------------------------------------------------------------------- configs ---
write_upstream_conf "$UPSTREAM_PORT"

write_nginx_conf "$WORK/nginx" "
    upstream backend {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 256;
        keepalive_requests 10000000;
        keepalive_timeout 120s;
    }
    server {
        listen 127.0.0.1:${PORT[nginx]};
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"

mkdir -p "$WORK/haproxy"
cat >"$WORK/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
    # no "log" line: logging off

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s

frontend fe
    bind 127.0.0.1:${PORT[haproxy]}
    default_backend be

backend be
    http-reuse always
    server up1 127.0.0.1:$UPSTREAM_PORT
EOF

mkdir -p "$WORK/cellgate"
write_cellgate_conf "$WORK/cellgate/cellgate.toml" "${PORT[cellgate]}" "$CELLGATE_ADMIN_PORT"
# cellgate-jwt: the tenant comes from a verified bearer token (EdDSA, the demo key; cached after
# the first verification, as in production where a client reuses its token), checked against
# the subdomain, with the same rate limiting.
mkdir -p "$WORK/cellgate-jwt"
sed -e "s/127.0.0.1:${PORT[cellgate]}/127.0.0.1:${PORT[cellgate-jwt]}/" \
    -e "s/127.0.0.1:$CELLGATE_ADMIN_PORT/127.0.0.1:$CELLGATE_JWT_ADMIN_PORT/" \
    -e 's|^path = "registry.toml".*|path = "../cellgate/registry.toml"|' \
    "$WORK/cellgate/cellgate.toml" >"$WORK/cellgate-jwt/cellgate.toml"
with_jwt_auth "$WORK/cellgate-jwt"
JWT_TOKEN=""
if [[ -n "${AVAILABLE[cellgate-jwt]:-}" ]]; then
  JWT_TOKEN="$("$CELLGATE_BIN" token --tenant bench --ttl 6h --kid demo-ed25519)" ||
    { note "cellgate-jwt skipped: could not mint a token"; unset "AVAILABLE[cellgate-jwt]"; }
fi
auth_args() {  # auth_args NAME — extra client header arguments for a contestant
  if [[ $1 == cellgate-jwt ]]; then printf '%s\n' -H "Authorization: Bearer $JWT_TOKEN"; fi
  if [[ $1 == cellgate-key ]]; then printf '%s\n' -H "x-api-key: $API_KEY"; fi
}

cat >"$WORK/cellgate/registry.toml" <<EOF
[[cells]]
id = "cell-1"
targets = ["http://127.0.0.1:$UPSTREAM_PORT"]
[[tenants]]
id = "bench"
cell = "cell-1"
EOF
# cellgate-key: the tenant comes from an API key (`x-api-key`; its record in the shared registry:
# a lookup by id and a SHA-256 per request), checked against the subdomain, with the same rate
# limiting.
mkdir -p "$WORK/cellgate-key"
sed -e "s/127.0.0.1:${PORT[cellgate]}/127.0.0.1:${PORT[cellgate-key]}/" \
    -e "s/127.0.0.1:$CELLGATE_ADMIN_PORT/127.0.0.1:$CELLGATE_KEY_ADMIN_PORT/" \
    -e 's|^path = "registry.toml".*|path = "../cellgate/registry.toml"|' \
    "$WORK/cellgate/cellgate.toml" >"$WORK/cellgate-key/cellgate.toml"
API_KEY=""
if [[ -n "${AVAILABLE[cellgate-key]:-}" ]]; then
  API_KEY="$(with_api_key "$WORK/cellgate-key" "$CELLGATE_BIN" "$WORK/cellgate/registry.toml")" ||
    { note "cellgate-key skipped: could not mint an API key"; unset "AVAILABLE[cellgate-key]"; }
fi

# ------------------------------------------------------------------------------ start ---
for p in "$UPSTREAM_PORT" "${PORT[@]}" "$CELLGATE_ADMIN_PORT" "$CELLGATE_JWT_ADMIN_PORT" "$CELLGATE_KEY_ADMIN_PORT"; do
  if port_open "$p"; then echo "port 127.0.0.1:$p is already in use (set PORT_BASE)" >&2; exit 1; fi
done

probe() {  # probe NAME — one request must give 200 with the upstream's body
  local code body
  local extra=()
  mapfile -t extra < <(auth_args "$1")
  code="$(curl -s -o "$WORK/probe-$1.body" -w '%{http_code}' --max-time 5 "${extra[@]}" \
          -H "Host: $HOST_HEADER" "http://127.0.0.1:${PORT[$1]}/" || true)"
  body="$(cat "$WORK/probe-$1.body" 2>/dev/null || true)"
  if [[ "$code" != 200 || "$body" != "$UPSTREAM_BODY" ]]; then
    fail_start "$1" "probe returned HTTP '$code' body '${body:0:80}' (want 200 '$UPSTREAM_BODY')"
    return 1
  fi
}

start_contestant() {  # start_contestant NAME — start (pinned to PROXY_CORE), wait, probe
  local c=$1 port=${PORT[$1]} i code
  case "$c" in
    direct) ;;  # the upstream itself
    nginx) start_bg nginx "$PROXY_CORE" nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" ;;
    haproxy) start_bg haproxy "$PROXY_CORE" haproxy -db -f "$WORK/haproxy/haproxy.cfg" ;;
    hyper-minimal) start_bg "$c" "$PROXY_CORE" "$HYPER_BIN" "127.0.0.1:$port" "127.0.0.1:$UPSTREAM_PORT" ;;
    pingora-minimal) start_bg "$c" "$PROXY_CORE" "$PINGORA_BIN" "127.0.0.1:$port" "127.0.0.1:$UPSTREAM_PORT" ;;
    cellgate|cellgate-jwt|cellgate-key)
      local admin=$CELLGATE_ADMIN_PORT
      [[ $c == cellgate-jwt ]] && admin=$CELLGATE_JWT_ADMIN_PORT
      [[ $c == cellgate-key ]] && admin=$CELLGATE_KEY_ADMIN_PORT
      start_bg "$c" "$PROXY_CORE" "$CELLGATE_BIN" serve --config "$WORK/$c/cellgate.toml"
      for ((i = 0; i < 300; i++)); do
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$admin/readyz" || true)"
        [[ "$code" == 200 ]] && break
        kill -0 "${PID[$c]}" 2>/dev/null || { fail_start "$c" "exited during start-up"; return 1; }
        sleep 0.1
      done
      [[ "$code" == 200 ]] || { fail_start "$c" "admin /readyz did not return 200 within 30 s (last: '$code')"; return 1; }
      ;;
  esac
  if [[ $c != direct ]] && ! wait_port "$c" "$port"; then
    fail_start "$c" "not listening on 127.0.0.1:$port"; return 1
  fi
  probe "$c"
}

start_upstream "$UPSTREAM_PORT"

RUN=()
for c in "${ALL_CONTESTANTS[@]}"; do
  [[ -n "${AVAILABLE[$c]:-}" ]] || continue
  if start_contestant "$c"; then RUN+=("$c"); log "$c ready on 127.0.0.1:${PORT[$c]}"; fi
done
[[ ${#RUN[@]} -gt 0 ]] || { echo "no contestant could be started" >&2; exit 1; }

# ---------------------------------------------------------------------------- measure ---
run_wrk() {  # run_wrk NAME SECONDS OUTFILE (in the background so that a signal ends the run at once)
  local rc=0 extra=()
  mapfile -t extra < <(auth_args "$1")
  taskset -c "$LOAD_CORE" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${2}s" --timeout 5s --latency \
    -s "$BENCH_DIR/wrk-report.lua" -H "Host: $HOST_HEADER" "${extra[@]}" "http://127.0.0.1:${PORT[$1]}/" >"$3" 2>&1 &
  PID[wrk]=$!
  wait "${PID[wrk]}" || rc=$?
  unset "PID[wrk]"
  return "$rc"
}

proxy_ticks() {  # proxy_ticks NAME -> "USER SYS NPROCS": the proxy's process tree ("- - 0" for direct or a dead proxy)
  local t=""
  if [[ $1 != direct ]]; then t="$(proc_tree_ticks "${PID[$1]:-0}")"; fi
  echo "${t:-- - 0}"
}

measure() {  # measure ROUND NAME — warm up, measure, re-measure if disturbed; append to INDEX
  local r=$1 c=$2 attempt out cpu rps errs u0 s0 u1 s1 np du ds shown
  for ((attempt = 1; ; attempt++)); do
    out="$WORK/raw/r$r-$c-a$attempt.txt"
    if [[ "$WARMUP" -gt 0 ]]; then run_wrk "$c" "$WARMUP" "$WORK/raw/warmup.txt" || true; fi
    sleep 0.2   # the proxy finishes closing the warm-up's connections before its CPU is read
    read -r u0 s0 np < <(proxy_ticks "$c")
    cpu_watch_start "$out.cpu" "$((DURATION + 30))"
    run_wrk "$c" "$DURATION" "$out" || note "wrk exited non-zero for $c in round $r"
    sleep 0.2   # ... and those of the measured run: that work belongs to it
    read -r u1 s1 np < <(proxy_ticks "$c")
    cpu_watch_stop "$out.cpu"
    cpu=$CPU_OTHER
    du=-; ds=-; shown=""
    if [[ $u0 != - && $u1 != - ]]; then
      du=$((u1 - u0)); ds=$((s1 - s0)); shown="  proxy CPU $du+$ds ticks over $np process(es)"
    elif [[ $c != direct ]]; then
      note "$c: no CPU reading in round $r (the process is gone)"; np=0
    fi
    rps="$(sed -n 's/^Requests\/sec: *//p' "$out")"
    errs="$(grep -E '^ *(Non-2xx|Socket errors)' "$out" | tr -s ' ' | paste -sd';' || true)"
    log "round $r/$ROUNDS  $(printf '%-16s' "$c") ${rps:-?} req/s$shown  (other CPU ${cpu%% *}%)${errs:+  ERRORS: $errs}"
    if over "${cpu%% *}" "$QUIET_CPU" && [[ $attempt -le $RETRIES && $QUIET_SPENT -lt $QUIET_WAIT ]]; then
      log "  disturbed by other processes (${cpu#* }); re-measuring after a quiet moment"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t0\t%s\t%s\t%s\n' "$r" "$c" "$out" "$attempt" "${cpu%% *}" "${cpu#* }" \
        "$du" "$ds" "$np" >>"$INDEX"
      wait_quiet
      continue
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t1\t%s\t%s\t%s\n' "$r" "$c" "$out" "$attempt" "${cpu%% *}" "${cpu#* }" \
      "$du" "$ds" "$np" >>"$INDEX"
    return 0
  done
}

mkdir -p "$WORK/raw"
# round, contestant, wrk output, attempt, other CPU %, top others, kept, and the proxy's user
# and system ticks over the run and the number of processes they were summed over
INDEX="$WORK/raw/index.tsv"
: >"$INDEX"
n=${#RUN[@]}
log "measuring ${RUN[*]}: $ROUNDS rounds x ${DURATION}s (+${WARMUP}s warm-up), $CONNECTIONS connections, $WRK_THREADS wrk thread(s)"
T_START=$SECONDS
for ((r = 1; r <= ROUNDS; r++)); do
  wait_quiet
  for ((k = 0; k < n; k++)); do
    c=${RUN[$(((k + r - 1) % n))]}   # rotate the order each round
    if [[ $c != direct ]] && ! kill -0 "${PID[$c]:-0}" 2>/dev/null; then
      note "$c died before round $r"; continue
    fi
    measure "$r" "$c"
  done
done
log "measurement took $((SECONDS - T_START)) s"

# ----------------------------------------------------------------------------- report ---
mkdir -p "$BENCH_DIR/results"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$BENCH_DIR/results/e2e-$STAMP"
{
  machine_meta
  echo "rounds=$ROUNDS"; echo "duration_s=$DURATION"; echo "warmup_s=$WARMUP"
  echo "connections=$CONNECTIONS"; echo "wrk_threads=$WRK_THREADS"
  echo "load_core=$LOAD_CORE"; echo "proxy_core=$PROXY_CORE"; echo "clk_tck=$TICK"
  echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
  echo "nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///')"
  echo "haproxy=$(haproxy -v 2>&1 | head -1 | awk '{print $3}')"
  echo "rustc=$(rustc --version 2>/dev/null || echo n/a)"
  echo "pingora=$(grep -A1 '^name = "pingora"$' "$BENCH_DIR/baselines/Cargo.lock" | sed -n 's/version = "\(.*\)"/\1/p')"
  echo "cellgate_git=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo none)"
  if [[ -n "${AVAILABLE[cellgate]:-}" ]]; then
    echo "cellgate_bin=$CELLGATE_BIN built $(date -u -r "$CELLGATE_BIN" +%Y-%m-%dT%H:%M:%SZ)"
  fi
  echo "quiet_wait_spent_s=$QUIET_SPENT"
  echo "quiet_cpu_pct=$QUIET_CPU"
  for x in "${NOTES[@]}"; do echo "note=$x"; done
} >"$WORK/meta.txt"

python3 "$BENCH_DIR/e2e_report.py" --meta "$WORK/meta.txt" --index "$INDEX" --out "$OUT"
log "wrote ${OUT#"$REPO_DIR"/}.md, .json and .svg"
prune_results e2e "$STAMP"
