#!/usr/bin/env bash
# Builds everything images/ holds, from a checkout, with Docker and the
# package registries only:
#   1. the static baseinit binary (images/build-binary.sh → images/dist/),
#   2. the local Debian base, with debootstrap, if it is missing
#      (images/local-base.sh; skipped when BASE_IMAGE is set),
#   3. baseinit/debian:test (images/debian) and baseinit/example:test
#      (images/example), with --network host so `RUN apt-get` works,
#   4. baseinit/scratch:test (images/scratch): FROM scratch, busybox and
#      baseinit supervising one service.
# Idempotent: Docker's build cache makes a second run take seconds.
#
# Environment: BASE_IMAGE (e.g. debian:bookworm-slim, with registry access)
# replaces the local base; BUSYBOX is the static busybox to copy (default:
# the one on PATH, from Debian's busybox-static).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
dist="$root/images/dist"
logs="$dist/logs"
mkdir -p "$logs"

step() { echo "build.sh: $*"; }

# docker build with its output in a log file, shown when it fails.
build() {
    local tag="$1" log="$logs/${1//[:\/]/_}.log"
    shift
    local start=$SECONDS
    if ! timeout 1200 docker build "$@" -t "$tag" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "build.sh: building $tag failed (full log: $log)" >&2
        exit 1
    fi
    step "$tag built in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
}

docker info >/dev/null 2>&1 || {
    echo "build.sh: no Docker engine answers (docker info failed)" >&2
    exit 1
}

step "static binary"
images/build-binary.sh "$dist/baseinit"

busybox="${BUSYBOX:-$(command -v busybox || true)}"
if [ -n "$busybox" ] && file -L "$busybox" | grep -q 'statically linked'; then
    cmp -s "$busybox" "$dist/busybox" || cp "$busybox" "$dist/busybox"
elif [ ! -f "$dist/busybox" ]; then
    echo "build.sh: a static busybox is needed for the scratch image (apt-get install busybox-static)" >&2
    exit 1
fi

if [ -z "${BASE_IMAGE:-}" ]; then
    BASE_IMAGE=baseinit-local/debian:bookworm
    images/local-base.sh "$BASE_IMAGE"
fi

build baseinit/debian:test --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -f images/debian/Dockerfile .
build baseinit/example:test --network host --build-arg BASE_IMAGE=baseinit/debian:test images/example
build baseinit/scratch:test --network none -f images/scratch/Dockerfile .
step "done: $BASE_IMAGE $(docker image inspect -f '{{.Size}}' "$BASE_IMAGE") bytes; baseinit $(stat -c %s "$dist/baseinit") bytes"
