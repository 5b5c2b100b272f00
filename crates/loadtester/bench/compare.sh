#!/usr/bin/env bash
# Compares the requests/s of the built-in hey with wrk and with Debian's hey, in one run, against
# the same local HTTP server (examples/bench_server.rs, on 127.0.0.1 only) with the same number
# of connections. Every tool sends the same request headers, so the server does the same work.
#
# Usage: crates/loadtester/bench/compare.sh [DURATION_SECONDS (3)] [CONNECTIONS (50)]
# Env:   ROUNDS (default 5)          rounds; the tools' order rotates from round to round
#        PIN (default 1)             1: server on CPU 0, each generator alone on CPU 1 with one
#                                    thread (wrk -t1, hey -cpus 1, built-in -cpus 1), so no tool
#                                    takes CPU from the server or gets more cores than another.
#                                    0: no pinning; SERVER_THREADS and GEN_THREADS apply.
#        SERVER_THREADS (default 1)  server worker threads
#        GEN_THREADS (default 1)     generator threads when PIN=0
#        CARGO_TARGET_DIR (default: target)
#
# The server is the same for all tools, so when it is the bottleneck every tool shows the same
# rate: the table then says "the generators keep up with the server", not which one is faster.
# The "srv-cpu%" column (CPU time the server used per wall second) shows how busy it was. The
# "gen-cpu us/req" column is the generator's own CPU time (user + system) per request: it does
# not depend on how the machine's CPUs were shared during the run, so it compares the
# generators' efficiency even on a loaded machine. The last rows are the mean of the rounds and
# the best round of each tool (highest req/s, lowest CPU per request).
set -euo pipefail

DURATION="${1:-3}"
CONNECTIONS="${2:-50}"
ROUNDS="${ROUNDS:-5}"
PIN="${PIN:-1}"
SERVER_THREADS="${SERVER_THREADS:-1}"
GEN_THREADS="${GEN_THREADS:-1}"
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

# wrk and hey come from Debian.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v hey >/dev/null || missing+=(hey)
command -v bc >/dev/null || missing+=(bc)
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing ${missing[*]}: install them with apt-get" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -q -p flagger-loadtester \
    --bin flagger-loadtester --example bench_server)
BUILTIN="$TARGET_DIR/release/flagger-loadtester"
SERVER_BIN="$TARGET_DIR/release/examples/bench_server"

if [[ "$PIN" == 1 ]]; then
    if [[ "$(nproc)" -lt 2 ]] || ! command -v taskset >/dev/null; then
        echo "PIN=1 needs 2 CPUs and taskset; use PIN=0" >&2
        exit 1
    fi
    SERVER_THREADS=1
    GEN_THREADS=1
    ON_SERVER_CPU=(taskset -c 0)
    ON_GEN_CPU=(taskset -c 1)
else
    ON_SERVER_CPU=()
    ON_GEN_CPU=()
fi

LOG="$(mktemp)"
"${ON_SERVER_CPU[@]}" "$SERVER_BIN" 0 "$SERVER_THREADS" >"$LOG" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true; rm -f "$LOG" "${TIMEF:-}"' EXIT
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

# CPU ticks (user+system) the server has used so far.
server_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
TICK_HZ="$(getconf CLK_TCK)"

# Each generator runs under /usr/bin/time, which writes its CPU seconds (user, system) to $TIMEF.
TIMEF="$(mktemp)"
TIMED=(/usr/bin/time -f "%U %S" -o "$TIMEF")

rps_builtin() {
    "${TIMED[@]}" "${ON_GEN_CPU[@]}" "$BUILTIN" hey -z "${DURATION}s" -c "$CONNECTIONS" -cpus "$GEN_THREADS" "$URL" |
        awk '/Requests\/sec/ {print $2}'
}
rps_hey() {
    "${TIMED[@]}" "${ON_GEN_CPU[@]}" hey -z "${DURATION}s" -c "$CONNECTIONS" -cpus "$GEN_THREADS" "$URL" |
        awk '/Requests\/sec/ {print $2}'
}
rps_wrk() {
    "${TIMED[@]}" "${ON_GEN_CPU[@]}" wrk -t"$GEN_THREADS" -c "$CONNECTIONS" -d "${DURATION}s" \
        -H "$HDR_UA" -H "$HDR_CT" "$URL" | awk '/Requests\/sec/ {print $2}'
}
# Runs one tool and prints "RPS SERVER_CPU_PERCENT GENERATOR_CPU_MICROSECONDS_PER_REQUEST".
measure() {
    local t0 t1 rps user sys
    t0="$(server_ticks)"
    rps="$("rps_$1")"
    t1="$(server_ticks)"
    read -r user sys <"$TIMEF"
    echo "$rps $(echo "($t1 - $t0) * 100 / $TICK_HZ / $DURATION" | bc -l)" \
        "$(echo "($user + $sys) * 1000000 / ($rps * $DURATION)" | bc -l)"
}

# Warm up the server once.
"${ON_GEN_CPU[@]}" "$BUILTIN" hey -n 2000 -c "$CONNECTIONS" "$URL" >/dev/null

echo "target: $URL, $CONNECTIONS connections, ${DURATION}s per run, $ROUNDS rounds, nproc $(nproc), load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ "$PIN" == 1 ]]; then
    echo "pinned: server (1 thread) on CPU 0; each generator alone on CPU 1 with 1 thread (wrk -t1, hey -cpus 1, built-in -cpus 1)"
else
    echo "not pinned: server $SERVER_THREADS thread(s); generators $GEN_THREADS thread(s) (wrk -t$GEN_THREADS, hey/built-in -cpus $GEN_THREADS)"
fi
printf '%-6s %10s %10s %10s %7s %7s   %-19s %s\n' round built-in wrk hey-debian vs-wrk vs-hey \
    "gen-cpu us/req" "srv-cpu%"
printf '%-6s %10s %10s %10s %7s %7s   %-19s %s\n' "" req/s req/s req/s "" "" "(built-in/wrk/hey)" "(built-in/wrk/hey)"
declare -A sum=([builtin]=0 [wrk]=0 [hey]=0) sumc=([builtin]=0 [wrk]=0 [hey]=0)
declare -A best=([builtin]=0 [wrk]=0 [hey]=0) bestc=([builtin]=1000000 [wrk]=1000000 [hey]=1000000)
tools=(builtin wrk hey)
for r in $(seq "$ROUNDS"); do
    declare -A rps=() cpu=() gen=()
    for i in 0 1 2; do
        t="${tools[$(( (i + r - 1) % 3 ))]}"
        read -r rps[$t] cpu[$t] gen[$t] < <(measure "$t")
        sum[$t]="$(echo "${sum[$t]} + ${rps[$t]}" | bc -l)"
        sumc[$t]="$(echo "${sumc[$t]} + ${gen[$t]}" | bc -l)"
        if (( $(echo "${rps[$t]} > ${best[$t]}" | bc -l) )); then best[$t]="${rps[$t]}"; fi
        if (( $(echo "${gen[$t]} < ${bestc[$t]}" | bc -l) )); then bestc[$t]="${gen[$t]}"; fi
    done
    printf '%-6s %10.0f %10.0f %10.0f %6.2fx %6.2fx   %-19s %s\n' "$r" \
        "${rps[builtin]}" "${rps[wrk]}" "${rps[hey]}" \
        "$(echo "${rps[builtin]} / ${rps[wrk]}" | bc -l)" "$(echo "${rps[builtin]} / ${rps[hey]}" | bc -l)" \
        "$(printf '%.1f/%.1f/%.1f' "${gen[builtin]}" "${gen[wrk]}" "${gen[hey]}")" \
        "$(printf '%.0f/%.0f/%.0f' "${cpu[builtin]}" "${cpu[wrk]}" "${cpu[hey]}")"
done
printf '%-6s %10.0f %10.0f %10.0f %6.2fx %6.2fx   %s\n' mean \
    "$(echo "${sum[builtin]} / $ROUNDS" | bc -l)" "$(echo "${sum[wrk]} / $ROUNDS" | bc -l)" \
    "$(echo "${sum[hey]} / $ROUNDS" | bc -l)" \
    "$(echo "${sum[builtin]} / ${sum[wrk]}" | bc -l)" "$(echo "${sum[builtin]} / ${sum[hey]}" | bc -l)" \
    "$(printf '%.1f/%.1f/%.1f' "$(echo "${sumc[builtin]} / $ROUNDS" | bc -l)" \
        "$(echo "${sumc[wrk]} / $ROUNDS" | bc -l)" "$(echo "${sumc[hey]} / $ROUNDS" | bc -l)")"
# Interference from other processes (or a hypervisor) only ever slows a run down, so the best
# round of each tool is the closest to what it can do on a quiet machine.
printf '%-6s %10.0f %10.0f %10.0f %6.2fx %6.2fx   %s\n' best \
    "${best[builtin]}" "${best[wrk]}" "${best[hey]}" \
    "$(echo "${best[builtin]} / ${best[wrk]}" | bc -l)" "$(echo "${best[builtin]} / ${best[hey]}" | bc -l)" \
    "$(printf '%.1f/%.1f/%.1f' "${bestc[builtin]}" "${bestc[wrk]}" "${bestc[hey]}")"
