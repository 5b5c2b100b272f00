#!/usr/bin/env bash
# The long chaos soak (not part of scripts/test.sh): the scenarios of docs/robustness.md with
# more rounds per canary.
#   scripts/chaos-soak.sh [ROUNDS] [SEED]
# ROUNDS defaults to 10: the fault mix (crates/controller/tests/chaos_e2e.rs, 8 canaries: 80
# rollouts), kill -9 of the controller (crates/cli/tests/controller_kill.rs, 4 canaries x
# 3*ROUNDS: 120 rollouts), the paused leader under the fault mix
# (crates/cli/tests/leader_pause_faults.rs, 4 canaries: 40 rollouts). SEED defaults to a fresh
# one per scenario (printed: pass it back to replay).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-10}"
export FLAGGER_CHAOS_ROUNDS="$rounds"
export FLAGGER_KILL_ROUNDS="$((rounds * 3))"
export FLAGGER_PAUSE_ROUNDS="$rounds"
if [ -n "${2:-}" ]; then export FLAGGER_CHAOS_SEED="$2"; fi
cargo test -p flagger-controller --test chaos_e2e -- --nocapture
cargo test -p flagger-cli --test controller_kill --test leader_pause_faults -- --nocapture
