# syntax=docker/dockerfile:1
# The flagger-rs image: one static `flagger` binary (controller, loadtester, local, demo, crd,
# validate) on distroless/static, running as a non-root user.
#
#   docker build -t flagger-rs/flagger:0.1.0 .
#   docker run --rm flagger-rs/flagger:0.1.0 --version   # or: crd, validate FILE, controller ...
#
# The install manifests (deploy/flagger, deploy/charts/flagger) run it with
# `args: [controller, -log-level=info, ...]`; Flagger's own manifests (`command: [./flagger,
# -log-level=info, ...]`) work too. The load tester has its
# own image with bash, curl and kubectl: deploy/loadtester/Dockerfile.
#
# Static binary: the build targets musl (`<arch>-unknown-linux-musl`, arch from `uname -m`, so
# a multi-platform build compiles natively on each platform). The TLS stack is rustls with
# ring, whose C parts are compiled with musl-gcc (Debian's musl-tools). The same build outside
# Docker, on Debian or Ubuntu:
#
#   sudo apt-get install musl-tools
#   rustup target add x86_64-unknown-linux-musl
#   CC_x86_64_unknown_linux_musl=musl-gcc \
#     cargo build --release --locked -p flagger-cli --bin flagger --target x86_64-unknown-linux-musl
#   # -> target/x86_64-unknown-linux-musl/release/flagger (`file` says "statically linked")

ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eu; \
    target="$(uname -m)-unknown-linux-musl"; \
    export "CC_$(uname -m)_unknown_linux_musl=musl-gcc"; \
    cargo build --release --locked -p flagger-cli --bin flagger --target "$target"; \
    install -D -m 0755 "target/$target/release/flagger" /out/flagger

# distroless/static: CA certificates, tzdata, /etc/passwd with `nonroot` (65532); no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/flagger /usr/local/bin/flagger
# Flagger's chart and kustomize files run `./flagger <flags>` from the working directory (its
# image keeps the binary there); flags alone imply `flagger controller`.
WORKDIR /usr/local/bin
# The uid the manifests run as (runAsUser: 10001, as Flagger's); any non-root uid works, the
# binary writes nothing to the filesystem.
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/flagger"]
CMD ["controller", "-log-level=info"]
