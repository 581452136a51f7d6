#!/usr/bin/env bash
# Builds librdkafka's rdkafka_performance for the benchmark, from the same
# librdkafka source the `rdkafka` crate uses (rdkafka-sys in the cargo
# registry), with librdkafka's own ./configure && make so the client is the
# one Kafka users benchmark with.
#
# Output: <target>/librdkafka-bench/examples/rdkafka_performance (printed on
# stdout). Cached: a second run does nothing when the binary exists and the
# source version has not changed. Features that only cost build time (SSL,
# GSSAPI, curl, syslog) are disabled; zlib, lz4 (bundled) and zstd are kept.
#
# Usage: build-librdkafka.sh [TARGET_DIR]   (default: <workspace>/target)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET_DIR="${1:-$ROOT/target}"
VERSION="rdkafka-sys-4.10.0+2.12.1"
OUT="$TARGET_DIR/librdkafka-bench"
BIN="$OUT/examples/rdkafka_performance"
STAMP="$OUT/.bench-built"

if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null || true)" = "$VERSION" ]; then
    echo "$BIN"
    exit 0
fi

SRC=""
for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$VERSION"/librdkafka; do
    [ -d "$d" ] && SRC="$d" && break
done
if [ -z "$SRC" ]; then
    echo "librdkafka source ($VERSION) not in the cargo registry: run 'cargo fetch' first" >&2
    exit 1
fi

# The C toolchain and the headers configure probes for (zstd, zlib). curl's
# header is needed even without curl (librdkafka issue #5135).
missing=()
for pkg in build-essential pkg-config zlib1g-dev libzstd-dev libcurl4-openssl-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "building librdkafka's rdkafka_performance in $OUT (once; about 1-3 minutes)" >&2
rm -rf "$OUT"
mkdir -p "$OUT"
cp -r "$SRC/." "$OUT/"
cd "$OUT"
start=$(date +%s)
./configure --disable-ssl --disable-gssapi --disable-curl --disable-syslog \
    --disable-lz4-ext --enable-zstd --enable-zlib >"$OUT/bench-configure.log" 2>&1 \
    || { tail -30 "$OUT/bench-configure.log" >&2; exit 1; }
JOBS="${CARGO_BUILD_JOBS:-$(nproc)}"
make -j"$JOBS" libs >"$OUT/bench-make.log" 2>&1 || { tail -30 "$OUT/bench-make.log" >&2; exit 1; }
make -C examples rdkafka_performance >>"$OUT/bench-make.log" 2>&1 || { tail -30 "$OUT/bench-make.log" >&2; exit 1; }
echo "librdkafka build took $(( $(date +%s) - start )) s" >&2
echo "$VERSION" >"$STAMP"
echo "$BIN"
