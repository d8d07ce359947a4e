#!/usr/bin/env bash
# Loadtest scenario `canary`: canary weights 5 -> 10 -> 50 under load; stickiness, leaks, moves.
# Usage: bash loadtest/canary.sh [--phase-secs 8] [--weights 5,10,50] [--tenants 3000] [--clients 16]
# Builds the proxy and the driver (release), runs the proxy alone on PROXY_CORE (0) and the driver
# with its echo cells on LOAD_CORE (1) when the machine has two cores and taskset; about 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --bin cellgate --example canary
TARGET="${CARGO_TARGET_DIR:-target}/release"
PROXY_CORE="${PROXY_CORE:-0}"
LOAD_CORE="${LOAD_CORE:-1}"
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  exec taskset -c "$LOAD_CORE" "$TARGET/examples/canary" --proxy-bin "$TARGET/cellgate" \
    --proxy-cpu "$PROXY_CORE" "$@"
fi
echo "canary: fewer than 2 cores or no taskset: proxy and load are not pinned" >&2
exec "$TARGET/examples/canary" --proxy-bin "$TARGET/cellgate" "$@"
