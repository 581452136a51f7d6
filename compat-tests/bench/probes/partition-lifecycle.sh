#!/usr/bin/env bash
# Probe (not part of the bench): how long a single broker takes to create many partitions,
# to restart with them and to stop. Starts BROKER_BIN on a fresh data directory, creates
# TOPICS topics of PARTITIONS partitions each with `load_gen create-topic` (each timed), then
# times a restart until the listener accepts, and a SIGTERM shutdown until the process exits.
#
#   partition-lifecycle.sh BROKER_BIN [--dir PARENT (${TMPDIR:-/tmp})] [--topics T (4)]
#                          [--partitions P (1000)]
#
# The figures depend on the filesystem under PARENT: to measure on journaled ext4 where the
# machine's own disk is something else, loop-mount a file formatted with mkfs.ext4 and pass
# its mount point. Needs a release build of load_gen (cargo build --release -p
# sluice-compat-tests --bins). Uses port 19092; the data directory is removed afterwards.
set -euo pipefail
BIN=$(realpath "$1"); shift
PARENT=${TMPDIR:-/tmp}; TOPICS=4; PARTITIONS=1000
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) PARENT=$2; shift ;;
        --topics) TOPICS=$2; shift ;;
        --partitions) PARTITIONS=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
R="${CARGO_TARGET_DIR:-$ROOT/target}/release"
D=$(mktemp -d "$PARENT/sluice-lifecycle.XXXXXX")
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
start_broker() {
    "$BIN" --listen 127.0.0.1:19092 --data-dir "$D" --log-level warn >>"$D.log" 2>&1 &
    PID=$!
    until (echo >/dev/tcp/127.0.0.1/19092) 2>/dev/null; do
        kill -0 "$PID" 2>/dev/null || { echo "broker exited; see $D.log" >&2; exit 1; }
        sleep 0.02
    done
}
stop_broker() { kill "$PID"; wait "$PID" || true; PID=; }

start_broker
for i in $(seq 1 "$TOPICS"); do
    t0=$(now_ms)
    "$R/load_gen" create-topic --bootstrap 127.0.0.1:19092 --topic "lifecycle-$i" \
        --partitions "$PARTITIONS" >/dev/null
    echo "create $PARTITIONS partitions ($(( (i - 1) * PARTITIONS )) already there): $(( $(now_ms) - t0 )) ms"
done
stop_broker
t0=$(now_ms)
start_broker
echo "restart with $(( TOPICS * PARTITIONS )) partitions, until the listener accepts: $(( $(now_ms) - t0 )) ms"
sleep 1
t0=$(now_ms)
stop_broker
echo "shutdown with $(( TOPICS * PARTITIONS )) partitions (SIGTERM to exit): $(( $(now_ms) - t0 )) ms"
rm -f "$D.log"
