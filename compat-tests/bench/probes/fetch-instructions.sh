#!/usr/bin/env bash
# Probe (not part of the bench): broker instructions per incremental Fetch (KIP-227
# session) over N idle partitions, counted by callgrind, so two builds compare exactly.
# A kafka-python consumer (which uses fetch sessions) is assigned every partition of an idle
# topic at its end and polls with fetch_max_wait_ms=0; callgrind's counters are zeroed after
# its warm-up and dumped after POLLS polls.
#
#   fetch-instructions.sh BROKER_BIN [--partitions N (1000)] [--polls P (100)]
#
# Needs valgrind, release load_gen and the test venv (.venv, from scripts/test.sh). Uses
# ports 19192 and 19199.
set -euo pipefail
BIN=$(realpath "$1"); shift
N=1000; POLLS=100
while [ $# -gt 0 ]; do
    case "$1" in
        --partitions) N=$2; shift ;;
        --polls) POLLS=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
R="${CARGO_TARGET_DIR:-$ROOT/target}/release"
D=$(mktemp -d "${TMPDIR:-/tmp}/sluice-fetch-ir.XXXXXX")
valgrind --tool=callgrind --callgrind-out-file="$D/cg.out" "$BIN" --listen 127.0.0.1:19192 \
    --data-dir "$D/data" --metrics-listen 127.0.0.1:19199 --log-level warn > "$D/broker.log" 2>&1 &
VP=$!
trap 'kill $VP 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$D"' EXIT
for _ in $(seq 120); do curl -sf 127.0.0.1:19199/metrics > /dev/null && break; sleep 1; done
"$R/load_gen" create-topic --bootstrap 127.0.0.1:19192 --topic idle --partitions "$N" > /dev/null
fetches() { curl -s 127.0.0.1:19199/metrics | awk '/^sluice_request_duration_seconds_count\{api="Fetch"\}/{printf "%d", $2}'; }
coproc PY { "$ROOT/.venv/bin/python" "$HERE/idle_consumer.py" 127.0.0.1:19192 idle "$N" "$POLLS"; }
read -r _ <&"${PY[0]}"
F0=$(fetches); callgrind_control -z "$VP" > /dev/null 2>&1
echo go >&"${PY[1]}"
read -r _ <&"${PY[0]}"
callgrind_control -d "$VP" > /dev/null 2>&1; F1=$(fetches)
echo bye >&"${PY[1]}"
DUMP=$(ls -t "$D"/cg.out.* | head -n 1)
IR=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",", "", $1); print $1; exit}')
F=$((F1 - F0)); [ "$F" -gt 0 ] || F=1
echo "$N idle partitions: $F incremental Fetches, $IR instructions, $((IR / F)) per Fetch"
