#!/usr/bin/env bash
# Compares the requests/s of the built-in hey with wrk and with Debian's hey, in one run, against
# the same local HTTP server (examples/bench_server.rs, on 127.0.0.1 only) with the same number
# of connections. Every tool sends the same request headers, so the server does the same work.
#
# Usage: crates/loadtester/bench/compare.sh [DURATION_SECONDS] [CONNECTIONS]
# Env:   CARGO_TARGET_DIR (default: target), SERVER_THREADS (default: 1), ROUNDS (default: 3)
set -euo pipefail

DURATION="${1:-5}"
CONNECTIONS="${2:-50}"
SERVER_THREADS="${SERVER_THREADS:-1}"
ROUNDS="${ROUNDS:-3}"
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

# wrk and hey come from Debian.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v hey >/dev/null || missing+=(hey)
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing ${missing[*]}: install them with apt-get" >&2
        exit 1
    fi
    apt-get update -qq
    for p in "${missing[@]}"; do
        apt-cache policy "$p" | grep -q 'Candidate: (none)' && { echo "$p is not packaged here" >&2; exit 1; }
    done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -q -p flagger-loadtester \
    --bin flagger-loadtester --example bench_server)
BUILTIN="$TARGET_DIR/release/flagger-loadtester"
SERVER_BIN="$TARGET_DIR/release/examples/bench_server"

LOG="$(mktemp)"
"$SERVER_BIN" 0 "$SERVER_THREADS" >"$LOG" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 100); do
    grep -q 'listening on' "$LOG" && break
    sleep 0.05
done
ADDR="$(sed -n 's/^listening on //p' "$LOG")"
case "$ADDR" in 127.0.0.1:*) ;; *) echo "the bench server did not start: $(cat "$LOG")" >&2; exit 1 ;; esac
URL="http://$ADDR/"

# The headers the built-in hey (and Debian's hey, give or take Accept-Encoding) sends.
HDR_UA="User-Agent: hey/0.0.1"
HDR_CT="Content-Type: text/html"

rps_builtin() { "$BUILTIN" hey -z "${DURATION}s" -c "$CONNECTIONS" "$URL" | awk '/Requests\/sec/ {print $2}'; }
rps_hey() { hey -z "${DURATION}s" -c "$CONNECTIONS" "$URL" | awk '/Requests\/sec/ {print $2}'; }
rps_wrk() {
    wrk -t2 -c "$CONNECTIONS" -d "${DURATION}s" -H "$HDR_UA" -H "$HDR_CT" "$URL" |
        awk '/Requests\/sec/ {print $2}'
}

# Warm up the server once.
"$BUILTIN" hey -n 2000 -c "$CONNECTIONS" "$URL" >/dev/null

echo "target: $URL (server threads: $SERVER_THREADS), $CONNECTIONS connections, ${DURATION}s per run, $ROUNDS rounds"
echo "nproc: $(nproc); wrk -t2; built-in hey and Debian hey use their default thread counts"
printf '%-7s %14s %14s %14s %10s %10s\n' round built-in wrk hey-debian vs-wrk vs-hey
sum_b=0; sum_w=0; sum_h=0
for r in $(seq "$ROUNDS"); do
    b="$(rps_builtin)"; w="$(rps_wrk)"; h="$(rps_hey)"
    printf '%-7s %14.0f %14.0f %14.0f %9.2fx %9.2fx\n' "$r" "$b" "$w" "$h" \
        "$(echo "$b / $w" | bc -l)" "$(echo "$b / $h" | bc -l)"
    sum_b="$(echo "$sum_b + $b" | bc -l)"; sum_w="$(echo "$sum_w + $w" | bc -l)"; sum_h="$(echo "$sum_h + $h" | bc -l)"
done
printf '%-7s %14.0f %14.0f %14.0f %9.2fx %9.2fx\n' mean \
    "$(echo "$sum_b / $ROUNDS" | bc -l)" "$(echo "$sum_w / $ROUNDS" | bc -l)" "$(echo "$sum_h / $ROUNDS" | bc -l)" \
    "$(echo "$sum_b / $sum_w" | bc -l)" "$(echo "$sum_b / $sum_h" | bc -l)"
