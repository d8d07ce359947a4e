#!/usr/bin/env bash
# Kept for old habits: `bash loadtest/canary.sh [--phase-secs 8] [--weights 5,10,50] [--tenants 3000] [--clients 16]` is `bash loadtest/run.sh canary ...`.
exec bash "$(dirname "$0")/run.sh" canary "$@"
