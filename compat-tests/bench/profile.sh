#!/usr/bin/env bash
# Profiles the release broker with `perf` under one sustained benchmark load
# and prints the hot spots (self time per function, and inclusive time).
#
#   compat-tests/bench/profile.sh [produce-1k|produce-lz4|produce-zstd|consume-1k|latency|many-partitions] [SECONDS]
#
# produce-1k: rdkafka_performance, 1 KiB messages, acks=all, 3 partitions,
#             linger 5 ms (scenario 2, longer: up to 3,000,000 messages).
# consume-1k: produces 1,000,000 x 1 KiB unprofiled, then profiles reading
#             them back from the earliest offset, repeated.
# produce-lz4, produce-zstd: load_gen, 1 KiB JSON-like messages compressed
#             by the client (scenario 3).
# latency:    latency_gen at 10,000 msg/s x 100 B, acks=all (scenario 5).
# many-partitions: 1 KiB acks=all to 1,000 partitions, a random partition
#             per message (scenario 6).
# Needs: perf (apt-get install linux-perf), the builds run.sh makes. Uses
# the software cpu-clock event, so it works in VMs without PMU access.
# Honours CARGO_TARGET_DIR and SLUICE_BIN like run.sh.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$BENCH_DIR/../.." && pwd)"
cd "$ROOT"
LOAD="${1:-produce-1k}"
SECONDS_LIMIT="${2:-10}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }

if [ -n "${SLUICE_BIN:-}" ]; then
    SLUICE="$SLUICE_BIN"
    cargo build --quiet --release -p sluice-compat-tests --bins
else
    SLUICE="$TARGET_DIR/release/sluice"
    cargo build --quiet --release -p sluice-broker --bin sluice -p sluice-compat-tests --bins
fi
BIN="$TARGET_DIR/release"
RDPERF="$("$BENCH_DIR/build-librdkafka.sh" "$TARGET_DIR")"

WORK="$TARGET_DIR/bench-profile"
rm -rf "$WORK"; mkdir -p "$WORK"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$SLUICE" --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --log-level warn \
    --set num.partitions=3 >"$WORK/sluice.log" 2>&1 &
BROKER=$!
PERF=""
cleanup() {
    [ -n "$PERF" ] && kill -INT "$PERF" 2>/dev/null || true
    kill "$BROKER" 2>/dev/null || true
    wait "$BROKER" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done
B="127.0.0.1:$PORT"

if [ "$LOAD" = consume-1k ]; then
    timeout 300 "$RDPERF" -P -t prof -b "$B" -s 1024 -c 1000000 -a -1 -X linger.ms=5 >/dev/null
fi

perf record -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$BROKER" -o "$WORK/perf.data" \
    2>"$WORK/perf-record.log" &
PERF=$!
sleep 1
start=$(date +%s)
case "$LOAD" in
    produce-1k)
        timeout "$((SECONDS_LIMIT + 60))" "$RDPERF" -P -t prof -b "$B" -s 1024 -c 3000000 -a -1 \
            -X linger.ms=5 -x 3000000 2>/dev/null | tail -1 &
        LOADPID=$!
        sleep "$SECONDS_LIMIT"; kill "$LOADPID" 2>/dev/null || true; wait "$LOADPID" 2>/dev/null || true ;;
    consume-1k)
        while [ $(( $(date +%s) - start )) -lt "$SECONDS_LIMIT" ]; do
            timeout 60 "$RDPERF" -C -t prof -b "$B" -p 0 -p 1 -p 2 -o beginning -c 1000000 2>/dev/null | tail -1
        done ;;
    produce-lz4|produce-zstd)
        "$BIN/load_gen" produce --bootstrap "$B" --topic prof --count 3000000 --size 1024 \
            --payload json --compression "${LOAD#produce-}" --max-s "$SECONDS_LIMIT" >/dev/null || true ;;
    many-partitions)
        "$BIN/load_gen" create-topic --bootstrap "$B" --topic prof --partitions 1000 >/dev/null
        timeout "$((SECONDS_LIMIT + 60))" "$RDPERF" -P -t prof -b "$B" -s 1024 -c 3000000 -a -1 \
            -X linger.ms=5 -X sticky.partitioning.linger.ms=0 -x 3000000 2>/dev/null | tail -1 &
        LOADPID=$!
        sleep "$SECONDS_LIMIT"; kill "$LOADPID" 2>/dev/null || true; wait "$LOADPID" 2>/dev/null || true ;;
    latency)
        "$BIN/load_gen" create-topic --bootstrap "$B" --topic prof --partitions 3 >/dev/null
        "$BIN/latency_gen" --bootstrap "$B" --topic prof --rate 10000 --duration-s "$SECONDS_LIMIT" --size 100 ;;
    *) echo "unknown load $LOAD" >&2; exit 2 ;;
esac
kill -INT "$PERF"; wait "$PERF" || true; PERF=""
echo "== $LOAD: self time (top functions, % of broker CPU samples) =="
perf report -i "$WORK/perf.data" --no-children --sort symbol --percent-limit 1.5 --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -40
echo "== $LOAD: inclusive time (functions and their callees) =="
perf report -i "$WORK/perf.data" --children --sort symbol --percent-limit 5 --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -50
echo "perf data: $WORK/perf.data"
