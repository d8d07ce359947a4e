#!/usr/bin/env bash
# The whole test suite: `bash tests/run.sh`. Installs what it needs; CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "tests/run.sh: cargo not found; install Rust first" >&2
  exit 1
fi
log=$(mktemp)
# The servers below are stopped on exit, whatever happens after they start.
trap 'kill ${DYNAMODB_PID:-} ${REDIS_PID:-} 2>/dev/null || true; rm -f "$log" ${DYNAMODB_LOG:-} ${REDIS_LOG:-}' EXIT
# A real DynamoDB-API server (moto) on loopback for the registry tests; stopped on exit.
source tests/dynamodb.sh
start_dynamodb
export CELLGATE_TEST_DYNAMODB="$DYNAMODB_URL"
# A real Redis (Debian's redis-server) on loopback for the fleet-limits tests; stopped on exit.
source tests/redis.sh
start_redis
export CELLGATE_TEST_REDIS="$REDIS_URL"
# The SDK's standard chain, pointed at nothing real: fixed test credentials, no instance metadata.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
# Unit tests (beside the code), integration tests (tests/: real sockets, cells and keys), and
# one quick pass over each criterion bench so benches cannot rot.
status=0
cargo test --all-targets "$@" 2>&1 | tee "$log" || status=$?
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
