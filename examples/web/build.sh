#!/bin/sh
# Builds web:v1 and web:v2 from ./Containerfile. Usage: build.sh [SKIFF] (default: skiff on PATH).
set -eu
skiff=${1:-skiff}
here=$(cd "$(dirname "$0")" && pwd)
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "busybox not found: apt-get install busybox-static" >&2; exit 1; }
# The build context must hold the binary; copy it only when it changed so the cache stays warm.
cmp -s "$busybox" "$here/busybox" 2>/dev/null || cp "$busybox" "$here/busybox"
"$skiff" image build -t web:v1 --build-arg VERSION=v1 "$here"
"$skiff" image build -t web:v2 --build-arg VERSION=v2 "$here"
