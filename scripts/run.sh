#!/usr/bin/env bash
# The run command: builds flagger-rs and runs the demo (`flagger demo`) on localkube.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p flagger-cli
if ! ./target/release/flagger demo --help >/dev/null 2>&1; then
  echo "flagger demo is not built yet: it lands with the issue \"The main job on a fresh machine\"." >&2
  echo "Meanwhile: ./target/release/flagger crd | validate FILE... (see README.md)." >&2
  exit 1
fi
exec ./target/release/flagger demo "$@"
