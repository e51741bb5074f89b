#!/usr/bin/env bash
# Configures (once) and builds Coral. Usage: scripts/build.sh [BUILD_DIR [MESON_OPTION...]]
# Default BUILD_DIR: build. Example: scripts/build.sh build-asan -Dsanitize=true
# BUILD_JOBS=N builds with N jobs at once (default: ninja's).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" "$@" >/dev/null
elif [ $# -gt 0 ]; then
  meson configure "$dir" "$@" >/dev/null
fi
ninja -C "$dir" ${BUILD_JOBS:+-j "$BUILD_JOBS"} >/dev/null
echo "build: $dir is up to date"
