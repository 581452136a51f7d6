#!/usr/bin/env bash
# Probe (not part of the bench): a three-node cluster on 127.0.0.1 with a busy 3-partition
# RF=3 topic taking `latency_gen` at a fixed rate, beside an idle RF=3 topic of many
# partitions. Prints the nodes' CPU ticks over the run, the Fetches they served, CPU per
# Fetch, and latency_gen's JSON (produce-ack and end-to-end percentiles).
#
#   cluster-idle.sh BROKER_BIN [--idle N (1000)] [--rate R (2000)] [--seconds S (10)]
#
# Needs release builds of load_gen and latency_gen (cargo build --release -p
# sluice-compat-tests --bins). Uses ports 19091-19093, 19191-19193, 19291-19293 and a fresh
# data directory under ${TMPDIR:-/tmp}, removed afterwards.
set -euo pipefail
BIN=$(realpath "$1"); shift
IDLE=1000; RATE=2000; SECONDS_=10
while [ $# -gt 0 ]; do
    case "$1" in
        --idle) IDLE=$2; shift ;;
        --rate) RATE=$2; shift ;;
        --seconds) SECONDS_=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
R="${CARGO_TARGET_DIR:-$ROOT/target}/release"
D=$(mktemp -d "${TMPDIR:-/tmp}/sluice-cluster-idle.XXXXXX")
VOTERS=1@127.0.0.1:19191,2@127.0.0.1:19192,3@127.0.0.1:19193
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
for i in 1 2 3; do
    "$BIN" --node-id "$i" --listen "127.0.0.1:1909$i" --data-dir "$D/n$i" \
        --controller-listen "127.0.0.1:1919$i" --controller-voters "$VOTERS" \
        --metrics-listen "127.0.0.1:1929$i" --log-level warn > "$D/n$i.log" 2>&1 &
    PIDS+=($!)
done
B=127.0.0.1:19091,127.0.0.1:19092,127.0.0.1:19093
for _ in $(seq 30); do "$R/load_gen" create-topic --bootstrap "$B" --topic busy --partitions 3 \
    --replication-factor 3 --min-insync-replicas 2 > /dev/null 2>&1 && break; sleep 1; done
if [ "$IDLE" -gt 0 ]; then
    "$R/load_gen" create-topic --bootstrap "$B" --topic idle --partitions "$IDLE" \
        --replication-factor 3 --min-insync-replicas 2 > /dev/null
fi
sleep 5
ticks() { local t=0; for p in "${PIDS[@]}"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
fetches() {
    local t=0 c
    for i in 1 2 3; do
        c=$(curl -s "127.0.0.1:1929$i/metrics" | awk '/^sluice_request_duration_seconds_count\{api="Fetch"\}/{printf "%d", $2}')
        t=$((t + ${c:-0}))
    done
    echo $t
}
T0=$(ticks); F0=$(fetches)
"$R/latency_gen" --bootstrap "$B" --topic busy --rate "$RATE" --duration-s "$SECONDS_" --size 100 > "$D/latency.json"
T1=$(ticks); F1=$(fetches)
HZ=$(getconf CLK_TCK)
F=$((F1 - F0)); [ "$F" -gt 0 ] || F=1
echo "idle partitions $IDLE, rate $RATE/s: nodes' CPU $(( (T1 - T0) * 1000 / HZ )) ms, $((F1 - F0)) Fetches, $(( (T1 - T0) * 1000000 / HZ / F )) us of CPU per Fetch"
tail -n 1 "$D/latency.json"
