#!/usr/bin/env bash
# The long chaos soak (not part of scripts/test.sh): the fault-mix scenario of
# crates/controller/tests/chaos_e2e.rs with more rounds per canary.
#   scripts/chaos-soak.sh [ROUNDS] [SEED]
# ROUNDS defaults to 10 (80 rollouts); SEED to a fresh one (printed: pass it back to replay).
set -euo pipefail
cd "$(dirname "$0")/.."
export FLAGGER_CHAOS_ROUNDS="${1:-10}"
if [ -n "${2:-}" ]; then export FLAGGER_CHAOS_SEED="$2"; fi
exec cargo test -p flagger-controller --test chaos_e2e -- --nocapture
