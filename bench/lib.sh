# bench/lib.sh — shared by bench/e2e.sh and bench/scale.sh (sourced, not run).
#
# Before sourcing, a script sets BENCH_DIR and REPO_DIR, and LOG_TAG (the prefix of its log lines).
# The functions read these settings from the caller: KEEP_TMP, LOAD_CORE, QUIET_WAIT, QUIET_POLL,
# QUIET_CPU, CELLGATE_BIN; `start_workdir` sets WORK and installs the cleanup trap.
# shellcheck shell=bash

# ---------------------------------------------------------------------------- logging ---
log() { printf '[%s %s] %s\n' "${LOG_TAG:-bench}" "$(date -u +%H:%M:%S)" "$*" >&2; }
note() { NOTES+=("$*"); log "NOTE: $*"; }
NOTES=()

# The command line as given, with the settings that came from the environment, for the record.
shq() { if [[ "$1" =~ ^[A-Za-z0-9_./,:=+-]+$ ]]; then printf '%s' "$1"; else printf '%q' "$1"; fi; }
command_line() {  # command_line "VAR VAR ..." "$0" "$@" — prints VAR=value ... script args
  local vars=$1 v out=""; shift
  for v in $vars; do
    if [[ -n "${!v+x}" ]]; then out+="$v=$(shq "${!v}") "; fi
  done
  out+="$(shq "$1")"; shift
  for v in "$@"; do out+=" $(shq "$v")"; done
  printf '%s' "$out"
}

# bench/results/ keeps the latest run of each kind; older ones stay in git history.
prune_results() {  # prune_results KIND STAMP — removes results/KIND-<UTC>.{md,json,svg} older than STAMP
  local kind=$1 stamp=$2 f base old
  [[ $stamp =~ ^[0-9]{8}T[0-9]{6}Z$ ]] || return 0
  for f in "$BENCH_DIR/results/$kind"-*; do
    [[ -f $f ]] || continue
    base=${f##*/}
    [[ $base =~ ^$kind-([0-9]{8}T[0-9]{6}Z)\.(md|json|svg)$ ]] || continue
    old=${BASH_REMATCH[1]}
    if [[ $old < $stamp ]]; then
      rm -f -- "$f"
      log "removed older result ${f#"$REPO_DIR"/} (a committed one stays in git history)"
    fi
  done
}

# Machine lines of a results header (key=value, read by the report scripts). The core count is
# taken when this file is sourced, before a script pins itself to one core.
MACHINE_NPROC="$(nproc)"
machine_meta() {
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command=$CMDLINE"
  echo "nproc=$MACHINE_NPROC"
  echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "kernel=$(uname -r)"
}

# --------------------------------------------------------------------------- install ---
as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
have_cmd() { command -v "$1" >/dev/null || [[ -x "/usr/sbin/$1" || -x "/sbin/$1" ]]; }
install_missing() {  # install_missing COMMAND:PACKAGE ... — apt-get install the packages whose command is missing
  local pair pkgs=()
  for pair in "$@"; do have_cmd "${pair%%:*}" || pkgs+=("${pair#*:}"); done
  [[ ${#pkgs[@]} -eq 0 ]] && return 0
  log "installing: ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y "${pkgs[@]}" >/dev/null ||
    { as_root apt-get update >/dev/null && as_root apt-get install -y "${pkgs[@]}" >/dev/null; }
}

# ----------------------------------------------------------------- process handling ---
declare -A PID=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local p pids=("${PID[@]}")
  if [[ ${#pids[@]} -gt 0 ]]; then
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    local deadline=$((SECONDS + 5)) alive
    while :; do
      alive=0
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [[ $alive == 0 || $SECONDS -ge $deadline ]] && break
      sleep 0.1
    done
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  fi
  if [[ "$KEEP_TMP" == 1 ]]; then log "temp dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}

start_workdir() {  # start_workdir NAME — WORK=/tmp/NAME.XXXXXX, removed on exit unless KEEP_TMP=1
  WORK="$(mktemp -d -t "$1.XXXXXX")"
  chmod 755 "$WORK"   # nginx workers may run as an unprivileged user
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_bg() {  # start_bg NAME CORE CMD... — pinned, logs to $WORK/NAME.log
  local name=$1 core=$2; shift 2
  taskset -c "$core" "$@" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
}

wait_port() {  # wait_port NAME PORT — up to 15 s, while the process lives
  local name=$1 port=$2 i
  for ((i = 0; i < 150; i++)); do
    port_open "$port" && return 0
    kill -0 "${PID[$name]}" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

stop() {  # stop NAME
  local p=${PID[$1]:-} i
  [[ -z "$p" ]] && return 0
  kill -TERM "$p" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true   # reap it: its ports are free once this returns
  unset "PID[$1]"
}

fail_start() {  # fail_start NAME WHY — note it with the tail of its log and drop it
  note "$1 skipped: $2"
  [[ -s "$WORK/$1.log" ]] && tail -n 15 "$WORK/$1.log" | sed "s/^/    [$1] /" >&2
  stop "$1"
  return 1
}

# ------------------------------------------------------------------- quiet machine ---
# Other work on the machine (a compile, a test run) disturbs the numbers. Before each round, and
# before re-measuring a disturbed measurement, wait for a quiet moment: no compiler running and
# processes outside this benchmark using under QUIET_CPU % of a core (bench/cpu_watch.py).
busy_procs() {  # e.g. "cargo(1),rustc(2)"; empty when no compile is running
  # shellcheck disable=SC2009  # a count per command name, which pgrep does not give
  { ps -e -o comm= | grep -Ex 'rustc|cargo|cc1|cc1plus|clippy-driver|rustdoc|ld|ld\.lld|ld\.gold|rust-lld' || true; } |
    sort | uniq -c | awk '{printf "%s%s(%s)", sep, $2, $1; sep=","}'
}
other_cpu() {  # other_cpu SECONDS -> "PCT TOP" (sampled on the load core)
  local line
  line="$(taskset -c "$LOAD_CORE" python3 "$BENCH_DIR/cpu_watch.py" "$$" "$1")"
  echo "${line#OTHER_CPU }"
}
over() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
QUIET_SPENT=0
wait_quiet() {
  local b cpu
  while :; do
    b="$(busy_procs)"
    if [[ -z "$b" ]]; then
      cpu="$(other_cpu 1)"
      over "${cpu%% *}" "$QUIET_CPU" || return 0
      b="other processes at ${cpu%% *}% of a core: ${cpu#* }"
    fi
    if [[ $QUIET_SPENT -ge $QUIET_WAIT ]]; then
      log "not quiet ($b); quiet-wait budget (${QUIET_WAIT}s) used up, measuring anyway"
      return 0
    fi
    log "not quiet ($b); waiting ${QUIET_POLL}s (${QUIET_SPENT}/${QUIET_WAIT}s of the budget used)"
    sleep "$QUIET_POLL"
    QUIET_SPENT=$((QUIET_SPENT + QUIET_POLL))
  done
}

# While a measurement runs: cpu_watch_start FILE SECONDS ... cpu_watch_stop FILE; then
# CPU_OTHER="PCT TOP" (the CPU that processes outside the benchmark used meanwhile).
cpu_watch_start() {
  taskset -c "$LOAD_CORE" python3 "$BENCH_DIR/cpu_watch.py" "$$" "$2" >"$1" &
  PID[cpu_watch]=$!
}
cpu_watch_stop() {
  kill -TERM "${PID[cpu_watch]}" 2>/dev/null || true
  wait "${PID[cpu_watch]}" || true
  unset "PID[cpu_watch]"
  CPU_OTHER="$(sed -n 's/^OTHER_CPU //p' "$1")"; CPU_OTHER="${CPU_OTHER:-0 -}"
}

# ---------------------------------------------------------------- CPU of a process tree ---
# The CPU a proxy spent, for CPU per request: read before and after a timed run, the delta over
# the requests counted. nginx is a master and its worker(s), so the count covers the process
# and all its descendants. Per process, utime and stime (fields 14 and 15 of /proc/PID/stat)
# hold all its threads, and cutime and cstime (16 and 17) its children that exited and were
# reaped, so the sum over the live tree stays whole when a worker exits between two reads. The
# tree is found from the parent pid (field 4) of every process: /proc/PID/task/TID/children
# needs a kernel option. `read` rather than $(<file): no fork per process.
proc_tree_ticks() {  # proc_tree_ticks PID -> "USER SYS NPROCS" (ticks of getconf CLK_TCK), or nothing if PID is gone
  local root=$1 f line pid ppid k i
  local -a v
  local -A parent=() user=() sys=()
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue   # a process may end between the glob and the read
    pid=${f#/proc/}; pid=${pid%/stat}
    read -ra v <<<"${line##*) }"   # after the "(comm) ": v[0] is field 3
    parent[$pid]=${v[1]}
    user[$pid]=$((v[11] + v[13]))
    sys[$pid]=$((v[12] + v[14]))
  done
  [[ -n "${user[$root]+x}" ]] || return 0
  local -a todo=("$root")
  local us=0 ss=0 n=0
  local -A kids=()
  for pid in "${!parent[@]}"; do
    ppid=${parent[$pid]}
    kids[$ppid]+="$pid "
  done
  for ((i = 0; i < ${#todo[@]}; i++)); do
    k=${todo[$i]}
    us=$((us + user[$k])); ss=$((ss + sys[$k])); n=$((n + 1))
    for pid in ${kids[$k]:-}; do todo+=("$pid"); done
  done
  echo "$us $ss $n"
}

# ------------------------------------------------------------------------------ build ---
build_cellgate() {  # cargo build --release --bin cellgate in the repo root; notes a failure
  if command -v cargo >/dev/null; then
    log "building cellgate (cargo build --release --bin cellgate)"
    local t0=$SECONDS
    if (cd "$REPO_DIR" && cargo build --release --bin cellgate) >"$WORK/build-cellgate.log" 2>&1; then
      log "built cellgate in $((SECONDS - t0)) s"
    else
      note "cellgate build failed (last lines below); using an existing binary if there is one"
      tail -n 20 "$WORK/build-cellgate.log" | sed 's/^/    [build cellgate] /' >&2
    fi
  else
    note "cargo not found; cellgate not built"
  fi
}

# ---------------------------------------------------------------------------- upstream ---
UPSTREAM_BODY="cellgate-bench-upstream-ok"

write_nginx_conf() {  # write_nginx_conf DIR SERVER_BLOCK_AND_UPSTREAMS
  mkdir -p "$1/tmp"
  cat >"$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_timeout 120s;
    keepalive_requests 10000000;
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
$2
}
EOF
}

write_upstream_conf() {  # write_upstream_conf PORT — the fast upstream: 200 UPSTREAM_BODY, keep-alive
  write_nginx_conf "$WORK/upstream" "
    server {
        listen 127.0.0.1:$1;
        location / { default_type text/plain; return 200 \"$UPSTREAM_BODY\n\"; }
    }"
}

start_upstream() {  # start_upstream PORT — nginx, 1 worker, on LOAD_CORE; exits the script if it fails
  log "workdir $WORK; upstream nginx on 127.0.0.1:$1 (core $LOAD_CORE)"
  start_bg upstream "$LOAD_CORE" nginx -p "$WORK/upstream" -e "$WORK/upstream/error.log" -c "$WORK/upstream/nginx.conf"
  wait_port upstream "$1" || { tail "$WORK/upstream.log" "$WORK/upstream/error.log" >&2 || true; echo "upstream nginx did not start" >&2; exit 1; }
}

# with_jwt_auth DIR: turns the cellgate config in DIR into cellgate-jwt's: the tenant comes
# from a verified bearer token (EdDSA, the demo key; `cellgate token --tenant bench --kid
# demo-ed25519` mints one), checked against the subdomain.
with_jwt_auth() {
  local dir=$1
  cp "$REPO_DIR/config/demo/jwt-ed25519.pub.pem" "$dir/key.pub.pem"
  sed -i 's/^sources = \["subdomain"\]/sources = ["jwt", "subdomain"]/' "$dir/cellgate.toml"
  cat >>"$dir/cellgate.toml" <<EOF
[auth]
required = true
[[auth.issuers]]
issuer = "cellgate-demo"
audiences = ["cellgate-demo"]
[[auth.issuers.keys]]
kid = "demo-ed25519"
algorithm = "EdDSA"
public_key_file = "key.pub.pem"
EOF
}

# with_api_key DIR BIN [REGISTRY]: turns the cellgate config in DIR into cellgate-key's: the
# tenant comes from an API key (sources `subdomain` then `api_key`: the key's tenant is checked
# against the subdomain), the key minted by BIN (`apikey create --print-record`) and its record
# appended to DIR/registry.toml (or to REGISTRY). Prints the key.
with_api_key() {
  local dir=$1 bin=$2 registry=${3:-$1/registry.toml} out
  sed -i 's/^sources = \["subdomain"\]/sources = ["subdomain", "api_key"]/' "$dir/cellgate.toml"
  out="$("$bin" apikey create --print-record --tenant bench)" || return 1
  python3 -c '
import json, sys
doc = json.loads(sys.argv[2])
lines = ["[[apikeys]]"] + [f"{k} = {json.dumps(v)}" for k, v in doc["record"].items()]
with open(sys.argv[1], "a") as f:
    f.write("\n".join(lines) + "\n")
print(doc["key"])
' "$registry" "$out"
}

# ------------------------------------------------------------------ cellgate config ---
# The bench's cellgate config: 1 worker, tenant from the subdomain of `localhost`, a file
# registry next to the config, rate limiting on far above what the bench can send (every
# request pays the admit stage: tier lookup, GCRA charge, in-flight places; none is refused),
# access log off, log level warn.
write_cellgate_conf() {  # write_cellgate_conf FILE LISTEN_PORT ADMIN_PORT [REGISTRY_FILE]
  cat >"$1" <<EOF
[server]
workers = 1
[[listeners]]
address = "127.0.0.1:$2"
[admin]
address = "127.0.0.1:$3"
[tenant]
sources = ["subdomain"]
base_domains = ["localhost"]
[registry]
source = "file"
path = "${4:-registry.toml}"     # relative to the config file's directory
[limits]
cell_max_in_flight = 100000
[limits.tiers.standard]
rate = 1000000
burst = 1000000
concurrency = 100000
[access_log]
enabled = false
[log]
level = "warn"
EOF
}
