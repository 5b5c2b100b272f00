#!/usr/bin/env bash
# The test command: everything a fresh machine needs, then formatting, lints and every test.
# `.ci/run` calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the end-to-end suites use, from the distribution's packages (kubectl ships with the
# machine image). Installed only when missing; nothing is fetched outside the package registries.
need_pkgs=()
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v hey >/dev/null 2>&1 || need_pkgs+=(hey)
command -v prometheus >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
if [ ${#need_pkgs[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing ${need_pkgs[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}") >/dev/null 2>&1 \
    || echo "warning: could not install ${need_pkgs[*]}; the tests that compare against them say so"
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> cargo test"
cargo test --workspace
