#!/usr/bin/env bash
# Kept for old habits: `bash loadtest/noisy.sh [--rounds 3] [--phase-secs 10] [--warmup-secs 3]` is `bash loadtest/run.sh noisy ...`.
exec bash "$(dirname "$0")/run.sh" noisy "$@"
