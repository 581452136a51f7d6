#!/usr/bin/env bash
# The one test command for Sluice (CI runs it through .ci/run).
#
# 1. Installs what is missing (Debian/Ubuntu, apt-get): kcat, the C toolchain
#    and headers librdkafka's cmake build needs, python3-venv if required.
# 2. Creates/updates .venv at the workspace root with the Python Kafka clients
#    pinned in compat-tests/python/requirements.txt.
# 3. Runs the read-only gate: rustfmt check, clippy -D warnings, the
#    dependency-direction check, then builds the broker and runs every test
#    (the compat tests start target/debug/sluice).
#
# Idempotent: a second run installs nothing and skips pip when the
# requirements have not changed. Set CARGO_BUILD_JOBS to change build
# parallelism (default 2), SKIP_SETUP=1 to skip steps 1 and 2, SETUP_ONLY=1
# to run only them. Honours CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"

step() { printf '\n==> %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

install_system_packages() {
    local missing=()
    command -v kcat >/dev/null 2>&1 || missing+=(kcat)
    command -v cmake >/dev/null 2>&1 || missing+=(cmake)
    # libcurl4-openssl-dev: librdkafka 2.12's rdkafka_conf.c includes
    # <curl/curl.h> even when built without curl (librdkafka issue #5135).
    local pkg
    for pkg in build-essential pkg-config zlib1g-dev libssl-dev libsasl2-dev \
        libzstd-dev libcurl4-openssl-dev; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "system packages: all present" >&2
        return
    fi
    step "installing ${missing[*]}"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "apt-get not found: install ${missing[*]} by hand" >&2
        exit 1
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

setup_venv() {
    local venv="$ROOT/.venv"
    local requirements="$ROOT/compat-tests/python/requirements.txt"
    local stamp="$venv/.requirements.sha256"
    if [ ! -x "$venv/bin/python" ]; then
        step "creating $venv"
        python3 -m venv "$venv"
    fi
    local want
    want="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
        step "pip install -r compat-tests/python/requirements.txt"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
        echo "$want" >"$stamp"
    else
        echo "python venv: up to date" >&2
    fi
}

ensure_rust_components() {
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            step "rustup component add rustfmt clippy"
            rustup component add rustfmt clippy
        fi
    fi
}

# storage knows neither tokio nor kafka-protocol; protocol-shim never touches
# sockets (no tokio). See /work/shared/style.md, "A proposed shape".
check_dependency_direction() {
    local crate forbidden deps bad=0
    for rule in "sluice-storage:tokio kafka-protocol" "sluice-protocol-shim:tokio"; do
        crate="${rule%%:*}"
        deps="$(cargo tree -q -p "$crate" -e normal --prefix none | awk '{print $1}' | sort -u)"
        for forbidden in ${rule#*:}; do
            if grep -qx "$forbidden" <<<"$deps"; then
                echo "dependency direction: $crate must not depend on $forbidden" >&2
                cargo tree -q -p "$crate" -e normal -i "$forbidden" >&2 || true
                bad=1
            fi
        done
    done
    return "$bad"
}

if [ "${SKIP_SETUP:-0}" != "1" ]; then
    step "setup"
    install_system_packages
    setup_venv
fi
if [ "${SETUP_ONLY:-0}" = "1" ]; then
    exit 0
fi
ensure_rust_components

export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "dependency direction"
check_dependency_direction

step "cargo build -p sluice-broker --bin sluice"
cargo build --quiet -p sluice-broker --bin sluice

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac

step "cargo test --workspace"
SLUICE_BIN="$TARGET_DIR/debug/sluice" cargo test --workspace

# The benchmark keeps working (tiny counts, debug builds from above; asserts
# nothing about speed). See the README, "Performance".
step "compat-tests/bench/run.sh --smoke"
compat-tests/bench/run.sh --smoke

step "librdkafka's test suite (compat-tests/librdkafka/tests.allow)"
SLUICE_BIN="$TARGET_DIR/debug/sluice" compat-tests/librdkafka/run.sh --allowlist

step "all checks passed"
