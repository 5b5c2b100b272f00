#!/usr/bin/env bash
# The run command: builds flagger-rs and runs the demo (`flagger demo`) on localkube.
# Extra arguments go to `flagger demo` (e.g. `--keep`).
set -euo pipefail
cd "$(dirname "$0")/.."

# The demo analyses real request metrics with Prometheus (Debian's package); curl and bash run
# the acceptance test through the load tester. Installed only when missing.
need_pkgs=()
command -v prometheus >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing ${need_pkgs[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}") >/dev/null
  else
    echo "please install: ${need_pkgs[*]} (e.g. sudo apt-get install ${need_pkgs[*]})" >&2
    exit 1
  fi
fi

echo "==> cargo build --release -p flagger-cli"
started=$(date +%s)
cargo build --release -p flagger-cli
echo "==> built in $(( $(date +%s) - started ))s; running flagger demo"
exec "${CARGO_TARGET_DIR:-target}/release/flagger" demo "$@"
