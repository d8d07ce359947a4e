#!/usr/bin/env bash
# The whole test suite: `bash tests/run.sh`. Installs what it needs; CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "tests/run.sh: cargo not found; install Rust first" >&2
  exit 1
fi
# Unit tests (beside the code), integration tests (tests/: real sockets, cells and keys),
# doc tests, and one quick pass over each criterion bench so benches cannot rot.
cargo test --all-targets "$@"
cargo test --doc "$@"
