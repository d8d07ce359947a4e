#!/usr/bin/env bash
# Kept for old habits: `bash loadtest/flip.sh [--flips 20] [--clients 8] [--poll-interval 250ms]` is `bash loadtest/run.sh flip ...`.
exec bash "$(dirname "$0")/run.sh" flip "$@"
