#!/usr/bin/env bash
# The loadtest driver (loadtest/main.rs, example `loadtest`): one scenario against a local cellgate.
# Usage: bash loadtest/run.sh <scenario> [flags]     bash loadtest/run.sh list
# Builds the proxy and the driver (release; honours CARGO_TARGET_DIR), starts a local
# DynamoDB-API server (moto, tests/dynamodb.sh) only when the scenario needs one, installs
# redis-server (tests/redis.sh) for `fleet`, which starts its own, and, for the
# scenarios that run the proxy as its own process, pins the proxy alone to PROXY_CORE (0) and
# the driver with its echo cells to LOAD_CORE (1) when the machine has two cores and taskset.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario="${1:-list}"
[ "$#" -gt 0 ] && shift
cargo build --quiet --release --bin cellgate --example loadtest
TARGET="${CARGO_TARGET_DIR:-target}/release"
DRIVER="$TARGET/examples/loadtest"
case "$scenario" in
  list | -h | --help | help) exec "$DRIVER" list ;;
  # Tools, not scenarios: the fast local DynamoDB-API server, the gRPC echo cell and the gRPC
  # load driver, in the foreground.
  dynamo-lite | grpc-cell | grpc-load) exec "$DRIVER" "$scenario" "$@" ;;
esac
plan=$("$DRIVER" plan "$scenario" "$@") || exit 2
moto=0 proxy_process=0
eval "$plan"
if [ "$moto" = 1 ]; then
  source tests/dynamodb.sh
  start_dynamodb
  trap 'kill "$DYNAMODB_PID" 2>/dev/null || true; rm -f "$DYNAMODB_LOG"' EXIT
  export CELLGATE_TEST_DYNAMODB="$DYNAMODB_URL"
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
  export AWS_EC2_METADATA_DISABLED=true
fi
if [ "$scenario" = fleet ]; then
  # The scenario starts (and kills, and restarts) its own redis-server; this only installs it.
  source tests/redis.sh
  install_redis || { echo "fleet: redis-server is missing and could not be installed" >&2; exit 2; }
fi
if [ "$proxy_process" != 1 ]; then
  # The proxy runs inside the driver: nothing to pin apart.
  "$DRIVER" "$scenario" "$@" && exit 0 || exit $?
fi
PROXY_CORE="${PROXY_CORE:-0}"
LOAD_CORE="${LOAD_CORE:-1}"
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  taskset -c "$LOAD_CORE" "$DRIVER" "$scenario" --proxy-bin "$TARGET/cellgate" \
    --proxy-cpu "$PROXY_CORE" "$@" && exit 0 || exit $?
fi
echo "$scenario: fewer than 2 cores or no taskset: proxy and load are not pinned" >&2
"$DRIVER" "$scenario" --proxy-bin "$TARGET/cellgate" "$@" && exit 0 || exit $?
