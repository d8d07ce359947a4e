#!/usr/bin/env bash
# Starts a Redis server (Debian's redis-server, installed with apt-get when missing) on a free
# 127.0.0.1 port with no persistence, for the fleet-limits tests. Sourced by tests/run.sh,
# which exports CELLGATE_TEST_REDIS and stops the server on exit.
# Usage: source tests/redis.sh; start_redis   (sets REDIS_URL, REDIS_PORT and REDIS_PID)

install_redis() {
  command -v redis-server >/dev/null && return 0
  echo "tests: installing redis-server (Debian package)" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo -n"
  $sudo apt-get install -y -q redis-server >/dev/null 2>&1 ||
    { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q redis-server >/dev/null; }
}

start_redis() {
  install_redis || { echo "tests: redis-server is missing and could not be installed" >&2; return 1; }
  REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  REDIS_LOG=$(mktemp)
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --protected-mode yes --daemonize no >"$REDIS_LOG" 2>&1 &
  REDIS_PID=$!
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  for _ in $(seq 1 100); do
    if redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
      return 0
    fi
    sleep 0.05
  done
  echo "tests: redis-server did not start on port $REDIS_PORT:" >&2
  cat "$REDIS_LOG" >&2
  return 1
}
