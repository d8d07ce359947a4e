#!/usr/bin/env bash
# Loadtest scenario `noisy`: one tenant floods at 10x its limit while ten others send within theirs.
# Usage: bash loadtest/noisy.sh [--rounds 3] [--phase-secs 10] [--warmup-secs 3]
# Builds the proxy and the driver (release), runs the proxy alone on PROXY_CORE (0) and the driver
# with its echo cells on LOAD_CORE (1) when the machine has two cores and taskset; about 75 s.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --bin cellgate --example noisy
PROXY_CORE="${PROXY_CORE:-0}"
LOAD_CORE="${LOAD_CORE:-1}"
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  exec taskset -c "$LOAD_CORE" target/release/examples/noisy --proxy-cpu "$PROXY_CORE" "$@"
fi
echo "noisy: fewer than 2 cores or no taskset: proxy and load are not pinned" >&2
exec target/release/examples/noisy "$@"
