#!/usr/bin/env bash
# Starts cellgate, or replaces the running one with no refused or failed request.
#
#   deploy/upgrade.sh CONFIG [BINARY]
#
# The config must set server.handover_socket. If the process in the pid file is alive, the new
# one is started with --takeover: it takes the listening sockets over, serves, and the old one
# drains and exits; this script waits for that and then records the new pid. If the new process
# fails (bad config, registry unreachable for 60 s), the old one keeps serving and this script
# exits non-zero. Environment: CELLGATE_RUN_DIR (pid file and log; default /run/cellgate),
# CELLGATE_WAIT_SECS (how long the old process may take to drain; default 120).
set -euo pipefail

config=${1:?usage: deploy/upgrade.sh CONFIG [BINARY]}
bin=${2:-cellgate}
run_dir=${CELLGATE_RUN_DIR:-/run/cellgate}
wait_secs=${CELLGATE_WAIT_SECS:-120}
pidfile="$run_dir/cellgate.pid"
log="$run_dir/cellgate.log"
mkdir -p "$run_dir"

# A config that does not load never replaces a running process.
"$bin" validate --config "$config" >/dev/null

old=""
if [[ -s $pidfile ]]; then
  old=$(cat "$pidfile")
  kill -0 "$old" 2>/dev/null || old=""
fi

if [[ -z $old ]]; then
  nohup "$bin" serve --config "$config" >>"$log" 2>&1 &
  new=$!
  sleep 1
  if ! kill -0 "$new" 2>/dev/null; then
    echo "upgrade.sh: cellgate did not start; see $log" >&2
    exit 1
  fi
  echo "$new" >"$pidfile"
  echo "upgrade.sh: started cellgate (pid $new)"
  exit 0
fi

nohup "$bin" serve --config "$config" --takeover >>"$log" 2>&1 &
new=$!
for ((i = 0; i < wait_secs * 10; i++)); do
  if ! kill -0 "$new" 2>/dev/null; then
    echo "upgrade.sh: the new cellgate exited; pid $old goes on serving; see $log" >&2
    exit 1
  fi
  if ! kill -0 "$old" 2>/dev/null; then
    echo "$new" >"$pidfile"
    echo "upgrade.sh: pid $new took over from pid $old"
    exit 0
  fi
  sleep 0.1
done
echo "upgrade.sh: pid $old still running after ${wait_secs}s; pid $new serves beside it" >&2
echo "$new" >"$pidfile"
exit 1
