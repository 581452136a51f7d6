#!/usr/bin/env bash
# librdkafka's own regression tests (the tests/ folder of the librdkafka that
# ships inside the rdkafka-sys crate) against a Sluice broker.
#
#   compat-tests/librdkafka/run.sh --allowlist     # the tests in tests.allow (CI)
#   compat-tests/librdkafka/run.sh --all           # every broker test (finds gaps)
#   compat-tests/librdkafka/run.sh --tests 0001,0045/noautocreate
#
# Options: --jobs N (tests at once, default 3), --timeout SECS (per test,
# default 300), --quick (test-runner's -Q:
# skips every sub-test not marked quick, so some tests pass having run
# nothing; for a fast look only), --keep (keep the brokers' data dirs),
# --cluster (run every selected test against a three-node cluster).
#
# 1. Builds librdkafka and its test-runner from the rdkafka-sys source in
#    Cargo.lock, copied to <target>/librdkafka-tests/<version>/ (never inside
#    ~/.cargo). Cached: skipped when the stamp (source digest + configure
#    flags) matches. Installs missing build packages with apt-get.
# 2. Runs each selected test on its own (TESTS=<number> ./test-runner -L -K),
#    against a fresh Sluice process (a new data dir and port per test), so a
#    failure, a hang or a broker crash cannot leak into the next test. Up to
#    --jobs tests run at once, each with its own broker (the tests mostly
#    wait: group rebalance delays, timeouts); a cluster test runs alone. The
#    broker is $SLUICE_BIN, default <target>/debug/sluice. Tests that need
#    several brokers (replication factor 3, followers: CLUSTER_IDS below, the
#    `cluster` marker in tests.allow, or --cluster) run against a fresh
#    three-node cluster instead: three sluice processes on loopback, each a
#    controller and a broker with its own data dir and broker.rack RACK<id>,
#    all three in bootstrap.servers, all three stopped after the test.
# 3. Prints one row per test (id, result, seconds, note) and a closing line
#    `N passed, N failed, N skipped`; exits 1 if a selected test failed.
#    Logs: <target>/librdkafka-tests/last-run/<id>.{test,broker}.log
#    (<id>.broker-<node>.log for a cluster).
#
# A test id is a test number ("0045"), which covers every broker test of that
# number in the default scenario, or "<number>/<scenario>" for tests of a
# non-default scenario ("0045/noautocreate": the broker runs with
# auto.create.topics.enable=false). Local tests (TEST_F_LOCAL: mock cluster or
# no broker) are filtered out with -L: they do not talk to Sluice. A line of
# tests.allow may add the word `cluster` after the id (`0101 cluster`); in
# --tests, `0101:cluster` does the same.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

# The Kafka version whose behaviour Sluice matches: tests gate features on it
# (>= 0.10.2 Admin API topic creation, >= 4.0 no message format v0/v1 and no
# api.version.request=false). Sluice advertises Kafka 4.x's API ranges.
TEST_KAFKA_VERSION="${TEST_KAFKA_VERSION:-4.0.0}"
# What to disable: only the Kerberos SASL plugin (needs a KDC; none of the
# tests here can use it). SSL, zstd, lz4, zlib and curl stay as librdkafka's
# defaults so the library is the one applications get. rapidjson-dev (headers
# only) lets 0053_stats check the statistics JSON against its schema.
CONFIGURE_FLAGS="--disable-gssapi --no-download"
# Tests that need several brokers: they run against a three-node cluster in
# every mode (FINDINGS.md, "Cluster mode").
CLUSTER_IDS="0101 0107/noautocreate 0111/noautocreate"
CLUSTER_NODES=3

mode=""
tests_arg=""
timeout_s=300
jobs=3
quick=0
keep=0
all_cluster=0
while [ $# -gt 0 ]; do
    case "$1" in
    --allowlist) mode=allowlist ;;
    --all) mode=all ;;
    --tests)
        mode=tests
        tests_arg="${2:?--tests needs a list, e.g. 0001,0002}"
        shift
        ;;
    --tests=*) mode=tests tests_arg="${1#--tests=}" ;;
    --jobs)
        jobs="${2:?--jobs needs a number}"
        shift
        ;;
    --timeout)
        timeout_s="${2:?--timeout needs seconds}"
        shift
        ;;
    --quick) quick=1 ;;
    --keep) keep=1 ;;
    --cluster) all_cluster=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "unknown argument: $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done
if [ -z "$mode" ]; then
    echo "choose --allowlist, --all or --tests LIST (see --help)" >&2
    exit 2
fi

log() { printf '[librdkafka-tests] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

install_build_packages() {
    local missing=() pkg
    for pkg in build-essential pkg-config python3 zlib1g-dev libssl-dev libsasl2-dev \
        libzstd-dev liblz4-dev libcurl4-openssl-dev rapidjson-dev; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return
    log "installing ${missing[*]}"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "apt-get not found: install ${missing[*]} by hand" >&2
        exit 1
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
SLUICE_BIN="${SLUICE_BIN:-$TARGET_DIR/debug/sluice}"
# Kafka's default; the suite's timings assume it (see start_broker).
GROUP_INITIAL_DELAY_MS="${GROUP_INITIAL_DELAY_MS:-3000}"
if [ ! -x "$SLUICE_BIN" ]; then
    echo "no broker at $SLUICE_BIN: cargo build -p sluice-broker --bin sluice, or set SLUICE_BIN" >&2
    exit 1
fi

# --- 1. librdkafka and test-runner -----------------------------------------

RDK_VERSION="$(awk '/^name = "rdkafka-sys"$/ {getline; gsub(/"/, "", $3); print $3; exit}' "$ROOT/Cargo.lock")"
if [ -z "$RDK_VERSION" ]; then
    echo "rdkafka-sys not found in Cargo.lock" >&2
    exit 1
fi

find_source() {
    local d
    for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"rdkafka-sys-$RDK_VERSION"/librdkafka; do
        if [ -f "$d/tests/test.c" ]; then
            echo "$d"
            return
        fi
    done
}
SRC="${LIBRDKAFKA_SRC:-$(find_source)}"
if [ -z "$SRC" ]; then
    log "rdkafka-sys $RDK_VERSION not in the cargo registry yet: cargo fetch"
    (cd "$ROOT" && cargo fetch --quiet)
    SRC="$(find_source)"
fi
if [ -z "$SRC" ] || [ ! -f "$SRC/tests/test.c" ]; then
    echo "librdkafka source of rdkafka-sys $RDK_VERSION not found" >&2
    exit 1
fi

BASE="$TARGET_DIR/librdkafka-tests"
BUILD="$BASE/$RDK_VERSION"
TESTS_DIR="$BUILD/tests"
mkdir -p "$BASE"

build_test_runner() {
    local stamp want
    install_build_packages
    stamp="$BUILD/.sluice-build-stamp"
    # The registry copy is immutable per version, but a digest of the files
    # also catches a LIBRDKAFKA_SRC checkout that changed.
    want="$( (cd "$SRC" && find . -type f ! -name '*.o' -print0 | sort -z | xargs -0 sha256sum) \
        | sha256sum | cut -d' ' -f1) $CONFIGURE_FLAGS with-rapidjson"
    if [ -x "$TESTS_DIR/test-runner" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
        log "librdkafka $RDK_VERSION and test-runner: up to date ($BUILD)"
        return
    fi
    log "building librdkafka $RDK_VERSION and test-runner in $BUILD"
    local t0=$SECONDS make_jobs="${BUILD_JOBS:-$(nproc)}"
    rm -rf "$BUILD"
    cp -a "$SRC" "$BUILD"
    chmod -R u+w "$BUILD"
    (
        cd "$BUILD"
        # shellcheck disable=SC2086
        ./configure $CONFIGURE_FLAGS >"$BASE/build.log" 2>&1
        make -j"$make_jobs" libs >>"$BASE/build.log" 2>&1
        make -j"$make_jobs" -C tests build >>"$BASE/build.log" 2>&1
    ) || {
        echo "librdkafka build failed; last lines of $BASE/build.log:" >&2
        tail -n 40 "$BASE/build.log" >&2
        exit 1
    }
    echo "$want" >"$stamp"
    log "built in $((SECONDS - t0))s"
}

# One build at a time when several runs start together.
exec 9>"$BASE/.lock"
flock 9
build_test_runner
flock -u 9

# --- 2. select the tests ---------------------------------------------------

UNITS="$(python3 "$HERE/suite.py" list "$TESTS_DIR/test.c")"
declare -A UNIT_NUMBER UNIT_SCENARIO UNIT_NAMES
ALL_IDS=()
while read -r id number scenario names; do
    UNIT_NUMBER[$id]=$number
    UNIT_SCENARIO[$id]=$scenario
    UNIT_NAMES[$id]=$names
    ALL_IDS+=("$id")
done <<<"$UNITS"

SELECTED=()
declare -A ON_CLUSTER
for id in $CLUSTER_IDS; do
    ON_CLUSTER[$id]=1
done
# select ENTRY: "<id>" or "<id> cluster" (tests.allow) / "<id>:cluster" (--tests)
select_entry() {
    local id marker
    read -r id marker <<<"${1//:/ }"
    [ -z "$id" ] && return
    case "$marker" in
    "") ;;
    cluster) ON_CLUSTER[$id]=1 ;;
    *)
        echo "unknown marker '$marker' for $id (the only one is 'cluster')" >&2
        exit 2
        ;;
    esac
    SELECTED+=("$id")
}
case "$mode" in
all) SELECTED=("${ALL_IDS[@]}") ;;
allowlist)
    while read -r line; do
        select_entry "${line%%#*}"
    done <"$HERE/tests.allow"
    ;;
tests)
    IFS=',' read -r -a entries <<<"$tests_arg"
    for entry in "${entries[@]}"; do
        select_entry "$entry"
    done
    ;;
esac
for id in "${SELECTED[@]}"; do
    if [ -z "${UNIT_NUMBER[$id]:-}" ]; then
        echo "unknown broker test id: $id (ids: a test number, or <number>/<scenario>; see suite.py list)" >&2
        exit 2
    fi
    [ "$all_cluster" = 1 ] && ON_CLUSTER[$id]=1
done

# --- 3. run them -----------------------------------------------------------

# Tests that shell out to $KAFKA_PATH/bin/kafka-topics.sh get kafka-path/, a
# stand-in that does the same through the Admin API with confluent-kafka
# (scripts/test.sh puts it in .venv). Without it they fail with "KAFKA_PATH
# must be set".
KAFKA_TOPICS_PYTHON="${KAFKA_TOPICS_PYTHON:-$ROOT/.venv/bin/python}"
KAFKA_PATH_SHIM=""
if "$KAFKA_TOPICS_PYTHON" -c 'import confluent_kafka' >/dev/null 2>&1; then
    KAFKA_PATH_SHIM="$HERE/kafka-path"
else
    log "no confluent-kafka at $KAFKA_TOPICS_PYTHON: tests using kafka-topics.sh will fail"
fi

RUN_DIR="$BASE/last-run"
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

BROKER_PIDS=()
# stop_broker: stops every broker process of the current test (one node or a
# cluster): SIGTERM to all, up to 5 s to exit, then SIGKILL.
stop_broker() {
    local pid
    [ "${#BROKER_PIDS[@]}" -eq 0 ] && return 0
    for pid in "${BROKER_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 1 50); do
        local alive=0
        for pid in "${BROKER_PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${BROKER_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    BROKER_PIDS=()
}

# brokers_alive: 0 if every broker process of the current test still runs.
brokers_alive() {
    local pid
    for pid in "${BROKER_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || return 1
    done
}

# The broker settings of a scenario, as --set arguments, in BROKER_SETTINGS.
# tests/scenarios/*.json: auto_create_topics, num_partitions 4 (and
# replication_factor 3, which needs the cluster).
# group.initial.rebalance.delay.ms stays at Kafka's default (3000), as on the
# trivup clusters the suite is written for: with 0, the first consumer of a
# group gets a generation of its own and the second one starts a rebalance
# seconds later, which 0089 and 0118 do not expect.
scenario_settings() {
    local scenario="$1" autocreate=true
    [ "$scenario" = noautocreate ] && autocreate=false
    BROKER_SETTINGS=(
        --set "auto.create.topics.enable=$autocreate"
        --set "group.initial.rebalance.delay.ms=$GROUP_INITIAL_DELAY_MS"
        --set num.partitions=4
    )
}

# start_broker SCENARIO DATA_DIR LOG -> sets BROKER_PIDS and BROKER_ADDR
start_broker() {
    local scenario="$1" data_dir="$2" log_file="$3" port
    scenario_settings "$scenario"
    for _attempt in 1 2 3; do
        port="$(free_port)"
        "$SLUICE_BIN" --listen "127.0.0.1:$port" --data-dir "$data_dir" \
            "${BROKER_SETTINGS[@]}" >"$log_file" 2>&1 &
        BROKER_PIDS=($!)
        BROKER_ADDR="127.0.0.1:$port"
        for _ in $(seq 1 100); do
            brokers_alive || break
            if "$SLUICE_BIN" healthcheck --bootstrap "$BROKER_ADDR" >/dev/null 2>&1; then
                return 0
            fi
            sleep 0.1
        done
        stop_broker
    done
    echo "sluice did not start; see $log_file" >&2
    tail -n 20 "$log_file" >&2
    return 1
}

# broker_count BOOTSTRAP: how many brokers Metadata lists (kcat, else
# confluent-kafka), or 0.
broker_count() {
    if command -v kcat >/dev/null 2>&1; then
        timeout 5 kcat -b "$1" -L -m 3 2>/dev/null |
            awk '/^ *[0-9]+ brokers:/ { print $1; found = 1; exit } END { if (!found) print 0 }'
    else
        timeout 10 "$KAFKA_TOPICS_PYTHON" -c '
import sys
from confluent_kafka.admin import AdminClient
md = AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=3)
print(len(md.brokers))' "$1" 2>/dev/null || echo 0
    fi
}

# start_cluster SCENARIO DATA_DIR LOG_PREFIX -> sets BROKER_PIDS and
# BROKER_ADDR (every node, comma separated). Node i (1-based) gets node id i,
# broker.rack RACK<i> and Kafka's RackAwareReplicaSelector (as librdkafka's
# trivup clusters: 0101 checks for exactly these racks), its own data dir
# and its own log <LOG_PREFIX>-<i>.log. Ready when Metadata lists all the
# brokers (each registered with the controller quorum and unfenced).
start_cluster() {
    local scenario="$1" data_dir="$2" log_prefix="$3" i voters addrs
    local -a kafka_ports controller_ports
    scenario_settings "$scenario"
    for _attempt in 1 2 3; do
        kafka_ports=() controller_ports=() voters="" addrs=""
        for i in $(seq 1 "$CLUSTER_NODES"); do
            kafka_ports+=("$(free_port)")
            controller_ports+=("$(free_port)")
            voters="${voters:+$voters,}$i@127.0.0.1:${controller_ports[$((i - 1))]}"
            addrs="${addrs:+$addrs,}127.0.0.1:${kafka_ports[$((i - 1))]}"
        done
        BROKER_PIDS=()
        BROKER_ADDR="$addrs"
        for i in $(seq 1 "$CLUSTER_NODES"); do
            local kp="${kafka_ports[$((i - 1))]}" cp="${controller_ports[$((i - 1))]}"
            "$SLUICE_BIN" --node-id "$i" --listen "127.0.0.1:$kp" \
                --advertised-listener "127.0.0.1:$kp" --data-dir "$data_dir/node-$i" \
                --controller-listen "127.0.0.1:$cp" --controller-voters "$voters" \
                --broker-rack "RACK$i" "${BROKER_SETTINGS[@]}" \
                --set replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector \
                >"$log_prefix-$i.log" 2>&1 &
            BROKER_PIDS+=($!)
        done
        for _ in $(seq 1 120); do
            brokers_alive || break
            if [ "$(broker_count "$BROKER_ADDR")" -ge "$CLUSTER_NODES" ]; then
                return 0
            fi
            sleep 0.5
        done
        stop_broker
        rm -rf "$data_dir"
    done
    echo "the sluice cluster did not start; see $log_prefix-*.log" >&2
    tail -n 20 "$log_prefix"-*.log >&2
    return 1
}

# format_row SHOWN RESULT SECONDS NOTE: one row of the results table.
format_row() {
    printf '%-30s %-5s %7s  %s' "$1" "$2" "$3" "${4:0:200}"
}

# run_test ID: runs one selected test against a broker (or cluster) of its
# own, in a subshell of its own (BROKER_PIDS is the subshell's), and leaves
# "<result>\t<row>" in <id>.row for the summary. A broker that does not start
# leaves no row file: the summary counts that test as failed.
run_test() {
    local id="$1" number scenario safe data_dir test_log broker_log conf
    local t0 rc secs broker_alive result note shown row
    BROKER_PIDS=()
    trap stop_broker EXIT
    trap 'exit 143' TERM INT
    number="${UNIT_NUMBER[$id]}"
    scenario="${UNIT_SCENARIO[$id]}"
    safe="${id//\//-}"
    data_dir="$RUN_DIR/$safe.data"
    test_log="$RUN_DIR/$safe.test.log"
    broker_log="$RUN_DIR/$safe.broker.log"
    conf="$RUN_DIR/$safe.test.conf"

    if [ -n "${ON_CLUSTER[$id]:-}" ]; then
        broker_log="$RUN_DIR/$safe.broker-*.log"
        start_cluster "$scenario" "$data_dir" "$RUN_DIR/$safe.broker" || return 1
    else
        start_broker "$scenario" "$data_dir" "$broker_log" || return 1
    fi
    cat >"$conf" <<EOF
bootstrap.servers=$BROKER_ADDR
# Two shared cores: give the tests' own timeouts room.
test.timeout.multiplier=2
EOF

    # -L: no local tests; -K: no tests upstream marks as known issues;
    # -p1: one test number at a time within this test-runner (run.sh's
    # --jobs runs several test-runners, each against its own broker).
    args=(-L -K -p1)
    [ "$quick" = 1 ] && args+=(-Q)
    t0=$(date +%s.%N)
    set +e
    (
        cd "$TESTS_DIR"
        # test-runner links librdkafka dynamically: make sure it loads the one
        # built here, not a system copy (kcat's librdkafka1).
        export LD_LIBRARY_PATH="$BUILD/src:$BUILD/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        export TESTS="$number" TEST_SCENARIO="$scenario" TEST_KAFKA_VERSION \
            RDKAFKA_TEST_CONF="$conf" BROKERS="$BROKER_ADDR" \
            TEST_REPORT="$RUN_DIR/$safe.report.json" RDKAFKA_GITVER="$RDK_VERSION"
        unset KAFKA_PATH ZK_ADDRESS CI
        if [ -n "$KAFKA_PATH_SHIM" ]; then
            export KAFKA_PATH="$KAFKA_PATH_SHIM" KAFKA_TOPICS_PYTHON
        fi
        # Not exec: a failing test ends test-runner with abort(), and bash
        # would print a job notice for a child killed by a signal.
        timeout -k 10 "$timeout_s" ./test-runner "${args[@]}"
        exit $?
    ) >"$test_log" 2>&1
    rc=$?
    set -e
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

    broker_alive=1
    brokers_alive || broker_alive=0
    stop_broker
    [ "$keep" = 1 ] || rm -rf "$data_dir"

    IFS=$'\t' read -r result note < <(python3 "$HERE/suite.py" result "$test_log" "${UNIT_NAMES[$id]}")
    if { [ "$rc" = 124 ] || [ "$rc" = 137 ]; } && [ "${secs%.*}" -ge "$timeout_s" ]; then
        result=fail note="killed by run.sh after ${timeout_s}s (--timeout)"
    elif [ "$rc" != 0 ] && [ "$result" != fail ]; then
        result=fail note="test-runner exited $rc; $note"
    fi
    if [ "$broker_alive" = 0 ]; then
        result=fail note="a broker exited during the test (see $broker_log); $note"
    fi
    shown="$id"
    [ -n "${ON_CLUSTER[$id]:-}" ] && shown="$id (cluster)"
    row="$(format_row "$shown" "$result" "$secs" "$note")"
    printf '%s\t%s\n' "$result" "$row" >"$RUN_DIR/$safe.row"
    printf '%s\n' "$row" >&2
}

# Stop the tests still running if run.sh itself ends early.
trap 'kill -TERM $(jobs -pr) 2>/dev/null || true' EXIT

t_start=$SECONDS
log "broker: $SLUICE_BIN; librdkafka $RDK_VERSION; TEST_KAFKA_VERSION=$TEST_KAFKA_VERSION; ${#SELECTED[@]} test(s), up to $jobs at a time"
# Up to --jobs tests at once, in the selected order; a cluster test (three
# brokers) waits for the others and runs alone.
for id in "${SELECTED[@]}"; do
    if [ -n "${ON_CLUSTER[$id]:-}" ]; then
        wait || true
        (run_test "$id") || true
        continue
    fi
    while [ "$(jobs -pr | wc -l)" -ge "$jobs" ]; do
        wait -n || true
    done
    (run_test "$id") &
done
wait || true

passed=0
failed=0
skipped=0
FAILED_IDS=()
ROWS=()
for id in "${SELECTED[@]}"; do
    safe="${id//\//-}"
    if [ -f "$RUN_DIR/$safe.row" ]; then
        IFS=$'\t' read -r result row <"$RUN_DIR/$safe.row"
    else
        result=fail
        row="$(format_row "$id" fail "-" "no result: the broker did not start? (see $RUN_DIR/$safe.broker*.log)")"
    fi
    case "$result" in
    pass) passed=$((passed + 1)) ;;
    skip) skipped=$((skipped + 1)) ;;
    *)
        failed=$((failed + 1))
        FAILED_IDS+=("$id")
        ;;
    esac
    ROWS+=("$row")
done

echo
printf '%-30s %-5s %7s  %s\n' "test" "result" "seconds" "note"
for row in "${ROWS[@]}"; do
    echo "$row"
done
echo
if [ "${#FAILED_IDS[@]}" -gt 0 ]; then
    echo "failed: ${FAILED_IDS[*]} (logs in $RUN_DIR)"
    if [ "$mode" = allowlist ]; then
        for id in "${FAILED_IDS[@]}"; do
            echo "--- last lines of ${id//\//-}.test.log"
            tail -n 25 "$RUN_DIR/${id//\//-}.test.log"
        done
    fi
fi
echo "total time: $((SECONDS - t_start))s"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
