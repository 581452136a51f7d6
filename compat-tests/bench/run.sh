#!/usr/bin/env bash
# Sluice benchmark: fixed scenarios, each figure next to this machine's limits
# measured in the same run. See the "Performance" section of the README.
#
#   compat-tests/bench/run.sh                 full run: 3 interleaved runs, release builds
#   compat-tests/bench/run.sh --smoke         tiny counts, 1 run, debug builds (CI; asserts
#                                             nothing about speed, only that it all works)
#   compat-tests/bench/run.sh --runs 5 --scenario produce-1k --scenario consume
#
# Options: --smoke, --runs N (default 3), --scenario NAME (repeatable:
# produce-100b produce-1k compression consume latency many-partitions fanout),
# --no-groups (fan-out with manual assignment instead of 4 consumer groups),
# --client rust (use only our rdkafka-crate generators, not librdkafka's
# rdkafka_performance), --keep-data, --broker-set k=v.
#
# Environment: CARGO_TARGET_DIR (default <workspace>/target) for every build;
# SLUICE_BIN to benchmark an already built broker instead of building one.
# Results: compat-tests/bench/results/<timestamp>.{json,md} (gitignored).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$BENCH_DIR/../.." && pwd)"
cd "$ROOT"

SMOKE=0
CLIENT=""
PASS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1; PASS+=("$1") ;;
        --client) CLIENT="$2"; shift ;;
        --runs|--scenario|--broker-set) PASS+=("$1" "$2"); shift ;;
        --no-groups|--keep-data) PASS+=("$1") ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

# A fresh machine needs the C toolchain librdkafka's build uses: the test
# command's setup step installs it (idempotent; quick when all is present).
if [ "$SMOKE" = 0 ] && [ -z "${SKIP_SETUP:-}" ]; then
    SETUP_ONLY=1 "$ROOT/scripts/test.sh" >&2
fi

if [ "$SMOKE" = 1 ]; then
    # The smoke reuses what scripts/test.sh has just built (debug profile):
    # it checks that the benchmark works, not how fast anything is.
    PROFILE_FLAG=()
    PROFILE_DIR="$TARGET_DIR/debug"
    CLIENT="${CLIENT:-rdkafka_performance}"
else
    PROFILE_FLAG=(--release)
    PROFILE_DIR="$TARGET_DIR/release"
    CLIENT="${CLIENT:-rdkafka_performance}"
fi

if [ -n "${SLUICE_BIN:-}" ]; then
    SLUICE="$SLUICE_BIN"
    cargo build --quiet "${PROFILE_FLAG[@]}" -p sluice-compat-tests --bins
else
    SLUICE="$PROFILE_DIR/sluice"
    cargo build --quiet "${PROFILE_FLAG[@]}" -p sluice-broker --bin sluice -p sluice-compat-tests --bins
fi

RDPERF_ARGS=()
if [ "$CLIENT" = rdkafka_performance ]; then
    RDPERF="$("$BENCH_DIR/build-librdkafka.sh" "$TARGET_DIR")"
    RDPERF_ARGS=(--rdkafka-performance "$RDPERF")
    if ! command -v iperf3 >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        echo "installing iperf3 (loopback limit)" >&2
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends iperf3 >/dev/null \
            || echo "iperf3 not installed: using our own loopback blaster" >&2
    fi
fi
if ! command -v callgrind_control >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "installing valgrind (instruction counts of the compression rows)" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends valgrind >/dev/null \
        || echo "valgrind not installed: no instruction counts" >&2
fi

GIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    GIT="$GIT (working tree with uncommitted changes)"
fi
[ -n "${SLUICE_BIN:-}" ] && GIT="$GIT, broker $SLUICE_BIN"

exec python3 "$BENCH_DIR/bench.py" \
    --sluice "$SLUICE" --bin-dir "$PROFILE_DIR" \
    --work-dir "$TARGET_DIR/bench-work" --results-dir "$BENCH_DIR/results" \
    --client "$([ "$CLIENT" = rust ] && echo rust || echo rdkafka_performance)" \
    --git "$GIT" "${RDPERF_ARGS[@]}" "${PASS[@]}"
