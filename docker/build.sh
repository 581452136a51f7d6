#!/usr/bin/env bash
# Builds the Sluice container image (default tag sluice:latest) without pulling anything.
#
#   docker/build.sh                      # cargo build --release, then the image
#   docker/build.sh --binary PATH        # image from an existing binary (e.g. target/debug/sluice)
#   docker/build.sh --tag NAME:TAG       # another tag
#
# The image is FROM scratch. This script stages its root filesystem as one tar (so owners and
# modes do not depend on who runs it):
#   /usr/local/bin/sluice        the binary, debug info stripped (symbols kept for backtraces)
#   the shared libraries         exactly what `ldd` lists, at the paths it lists, plus the loader
#   NSS modules                  only on glibc < 2.34 (libnss_files, libnss_dns, libresolv);
#                                from 2.34 on, files and dns are built into libc, so
#                                getaddrinfo resolves other containers through Docker's DNS
#                                with nothing but /etc/nsswitch.conf
#   /etc/passwd, /etc/group      root and the user sluice (uid/gid 10001)
#   /etc/nsswitch.conf           hosts: files dns
#   /var/lib/sluice              the data volume, owned by 10001, mode 0750
#   /tmp                         mode 1777
# A statically linked binary (ldd: "not a dynamic executable") gets no libraries.
#
# The binary must be built for the machine's glibc (the libraries come from this machine).
# Honours CARGO_TARGET_DIR. Prints the image size at the end.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"

TAG="sluice:latest"
BINARY=""
SLUICE_UID=10001

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) BINARY="${2:?--binary needs a path}"; shift 2 ;;
        --binary=*) BINARY="${1#--binary=}"; shift ;;
        --tag) TAG="${2:?--tag needs a name}"; shift 2 ;;
        --tag=*) TAG="${1#--tag=}"; shift ;;
        -h|--help) usage ;;
        *) echo "build.sh: unknown argument $1" >&2; usage ;;
    esac
done

step() { printf '==> %s\n' "$*" >&2; }

if [ -z "$BINARY" ]; then
    step "cargo build --release -p sluice-broker --bin sluice"
    cargo build --release -p sluice-broker --bin sluice
    BINARY="${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice"
fi
if [ ! -x "$BINARY" ]; then
    echo "build.sh: $BINARY is not an executable file" >&2
    exit 1
fi

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/sluice-image.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
ROOTFS="$STAGE/rootfs"
CONTEXT="$STAGE/context"
mkdir -p "$CONTEXT"
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/etc" "$ROOTFS/var/lib/sluice" "$ROOTFS/tmp"
chmod 0755 "$ROOTFS" "$ROOTFS/usr" "$ROOTFS/usr/local" "$ROOTFS/usr/local/bin" "$ROOTFS/etc" \
    "$ROOTFS/var" "$ROOTFS/var/lib"
chmod 0750 "$ROOTFS/var/lib/sluice"
chmod 1777 "$ROOTFS/tmp"

step "staging $BINARY"
if command -v strip >/dev/null 2>&1; then
    strip --strip-debug -o "$ROOTFS/usr/local/bin/sluice" "$BINARY"
else
    cp "$BINARY" "$ROOTFS/usr/local/bin/sluice"
fi
chmod 0755 "$ROOTFS/usr/local/bin/sluice"

# Copies a file (following symlinks) to the same absolute path inside the rootfs.
stage_file() {
    local src="$1"
    local dest="$ROOTFS$src"
    mkdir -p "$(dirname "$dest")"
    cp -L "$src" "$dest"
    chmod 0755 "$dest"
    echo "    $src" >&2
}

# ldd lines look like "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
# "/lib64/ld-linux-x86-64.so.2 (0x...)" or "linux-vdso.so.1 (0x...)" (in the kernel, skipped).
LDD_OUT="$(ldd "$BINARY" 2>&1 || true)"
LIBC_DIR=""
if grep -q 'not a dynamic executable\|statically linked' <<<"$LDD_OUT"; then
    step "static binary: no shared libraries"
else
    if grep -q 'not found' <<<"$LDD_OUT"; then
        echo "build.sh: ldd cannot find every library of $BINARY:" >&2
        printf '%s\n' "$LDD_OUT" >&2
        exit 1
    fi
    step "shared libraries (ldd)"
    while read -r lib; do
        stage_file "$lib"
        case "$lib" in */libc.so.*) LIBC_DIR="$(dirname "$lib")" ;; esac
    done < <(awk '
        $2 == "=>" && $3 ~ /^\// { print $3; next }
        $1 ~ /^\// { print $1 }' <<<"$LDD_OUT")

    # glibc before 2.34 loads "files" and "dns" lookups from NSS modules; 2.34 moved both into
    # libc (the .so.2 files left behind are empty stubs), so copying them would only add bytes.
    GLIBC_VERSION="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')"
    GLIBC_MAJOR="${GLIBC_VERSION%%.*}"
    GLIBC_MINOR="${GLIBC_VERSION#*.}"
    GLIBC_MINOR="${GLIBC_MINOR%%.*}"
    if [ -z "$GLIBC_VERSION" ]; then
        echo "build.sh: cannot tell the glibc version (getconf GNU_LIBC_VERSION)" >&2
        exit 1
    elif [ "$GLIBC_MAJOR" -lt 2 ] || { [ "$GLIBC_MAJOR" -eq 2 ] && [ "$GLIBC_MINOR" -lt 34 ]; }; then
        step "glibc $GLIBC_VERSION: NSS modules for files and dns"
        for lib in libnss_files.so.2 libnss_dns.so.2 libresolv.so.2; do
            stage_file "${LIBC_DIR:?libc not among the libraries}/$lib"
        done
    else
        step "glibc $GLIBC_VERSION: files and dns lookups are built into libc"
    fi
fi

cat >"$ROOTFS/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
sluice:x:$SLUICE_UID:$SLUICE_UID:Sluice broker:/var/lib/sluice:/sbin/nologin
EOF
cat >"$ROOTFS/etc/group" <<EOF
root:x:0:
sluice:x:$SLUICE_UID:
EOF
cat >"$ROOTFS/etc/nsswitch.conf" <<EOF
passwd: files
group: files
hosts: files dns
EOF
chmod 0644 "$ROOTFS/etc/passwd" "$ROOTFS/etc/group" "$ROOTFS/etc/nsswitch.conf"

# Everything root-owned except the data directory, whose entry is appended with the user as
# owner (a named volume mounted there starts as a copy of it, owner included).
tar -cf "$CONTEXT/rootfs.tar" --numeric-owner --owner=0 --group=0 \
    --exclude=./var/lib/sluice -C "$ROOTFS" .
tar -rf "$CONTEXT/rootfs.tar" --numeric-owner --owner="$SLUICE_UID" --group="$SLUICE_UID" \
    --no-recursion -C "$ROOTFS" ./var/lib/sluice
cp "$ROOT/docker/Dockerfile" "$CONTEXT/Dockerfile"

# Without the buildx plugin, a recent docker CLI falls back to the legacy builder with a
# warning; ask for it directly then. FROM scratch needs neither BuildKit nor a registry.
if ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi
REVISION="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
step "docker build -t $TAG"
docker build --quiet -t "$TAG" \
    --label "org.opencontainers.image.revision=$REVISION" \
    "$CONTEXT" >/dev/null

SIZE_BYTES="$(docker image inspect -f '{{.Size}}' "$TAG")"
echo "built $TAG: $SIZE_BYTES bytes ($(( (SIZE_BYTES + 524288) / 1048576 )) MiB)" >&2
