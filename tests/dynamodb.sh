#!/usr/bin/env bash
# Starts a local DynamoDB-API server (moto_server, from the PyPI package moto[server], in a
# virtualenv it creates on first use) on a free 127.0.0.1 port, and prints the endpoint URL.
# Sourced by tests/run.sh, which exports CELLGATE_TEST_DYNAMODB and stops the server on exit.
# Usage: source tests/dynamodb.sh; start_dynamodb   (sets DYNAMODB_URL and DYNAMODB_PID)
venv="${CELLGATE_MOTO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cellgate/moto-venv}"

start_dynamodb() {
  if [ ! -x "$venv/bin/moto_server" ]; then
    echo "tests: installing moto[server] into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]>=5,<6"
  fi
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  DYNAMODB_LOG=$(mktemp)
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$DYNAMODB_LOG" 2>&1 &
  DYNAMODB_PID=$!
  DYNAMODB_URL="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "tests: moto_server did not start on port $port:" >&2
  cat "$DYNAMODB_LOG" >&2
  return 1
}
