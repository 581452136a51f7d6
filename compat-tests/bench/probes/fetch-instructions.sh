#!/usr/bin/env bash
# Probe (not part of the bench): broker instructions per Fetch over N idle partitions,
# counted by callgrind, so two builds compare exactly.
# --client kafka-python (the default): a kafka-python consumer (which uses KIP-227 fetch
# sessions, so its Fetches are incremental) is assigned every partition of an idle topic at
# its end and polls with fetch_max_wait_ms=0; callgrind's counters are zeroed after its
# warm-up and dumped after POLLS polls.
# --client rdkafka: a librdkafka consumer (confluent-kafka; no fetch sessions, so each Fetch
# names every partition) does the same with fetch.wait.max.ms=0, fetching on its own; the
# counters are zeroed after its first 5 Fetches and dumped SECONDS later (the metrics, which
# count the Fetches, are not read meanwhile: rendering them costs more than the Fetches).
#
#   fetch-instructions.sh BROKER_BIN [--partitions N (1000)] [--polls P (100)]
#       [--client kafka-python|rdkafka] [--seconds S (10; rdkafka)]
#
# With CG_OUT=FILE set, the callgrind dump of the counted Fetches is copied to FILE (for
# callgrind_annotate).
#
# Needs valgrind, release load_gen and the test venv (.venv, from scripts/test.sh). Uses
# ports 19192 and 19199.
set -euo pipefail
BIN=$(realpath "$1"); shift
N=1000; POLLS=100; CLIENT=kafka-python; SECS=10
while [ $# -gt 0 ]; do
    case "$1" in
        --partitions) N=$2; shift ;;
        --polls) POLLS=$2; shift ;;
        --client) CLIENT=$2; shift ;;
        --seconds) SECS=$2; shift ;;
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
case "$CLIENT" in
    kafka-python)
        coproc PY { "$ROOT/.venv/bin/python" "$HERE/idle_consumer.py" 127.0.0.1:19192 idle "$N" "$POLLS"; }
        read -r _ <&"${PY[0]}"
        F0=$(fetches); callgrind_control -z "$VP" > /dev/null 2>&1
        echo go >&"${PY[1]}"
        read -r _ <&"${PY[0]}"
        callgrind_control -d "$VP" > /dev/null 2>&1; F1=$(fetches)
        echo bye >&"${PY[1]}" ;;
    rdkafka)
        coproc PY { "$ROOT/.venv/bin/python" "$HERE/idle_consumer_rdk.py" 127.0.0.1:19192 idle "$N"; }
        for _ in $(seq 3000); do [ "$(fetches)" -ge 5 ] 2>/dev/null && break; sleep 0.2; done
        F0=$(fetches); callgrind_control -z "$VP" > /dev/null 2>&1
        sleep "$SECS"
        callgrind_control -d "$VP" > /dev/null 2>&1; F1=$(fetches)
        eval "exec ${PY[1]}>&-" ;;
    *) echo "unknown client $CLIENT" >&2; exit 2 ;;
esac
DUMP=$(ls -t "$D"/cg.out.* | head -n 1)
[ -n "${CG_OUT:-}" ] && cp "$DUMP" "$CG_OUT"
IR=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",", "", $1); print $1; exit}')
F=$((F1 - F0)); [ "$F" -gt 0 ] || F=1
echo "$N idle partitions, $CLIENT: $F Fetches, $IR instructions, $((IR / F)) per Fetch"
