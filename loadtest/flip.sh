#!/usr/bin/env bash
# Loadtest scenario `flip`: placement flips under load, against a local DynamoDB-API server.
# Usage: bash loadtest/flip.sh [--flips 20] [--clients 8] [--poll-interval 250ms]
# Starts moto (tests/dynamodb.sh) on a free loopback port, runs the driver (release build), stops.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/dynamodb.sh
start_dynamodb
trap 'kill "$DYNAMODB_PID" 2>/dev/null || true; rm -f "$DYNAMODB_LOG"' EXIT
export CELLGATE_TEST_DYNAMODB="$DYNAMODB_URL"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
cargo run --quiet --release --example flip -- "$@"
