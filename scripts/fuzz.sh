#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (ASan+UBSan) in build-fuzz/ and runs
# each for SECONDS (default 60) from a seed corpus fuzz-seeds writes (the configuration target
# from etc/ and the unit tests' configuration files), keeping what each finds in
# build-fuzz/corpus/TARGET, as many at once as there are CPUs (FUZZ_JOBS). Usage:
# scripts/fuzz.sh [SECONDS [TARGET...]]; FUZZ_BUILD_ONLY=1 builds and runs nothing. A crash, leak or sanitizer report stops that target
# with the input that caused it (crash-* in build-fuzz/), and the script exits 1.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
pkgs=(clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "fuzz: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || exit 1
fi
B=build-fuzz
if [ ! -f "$B/build.ninja" ]; then
  CC=clang meson setup "$B" -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined -Db_lundef=false >/dev/null || exit 1
fi
ninja -C "$B" ${BUILD_JOBS:+-j "$BUILD_JOBS"} >/dev/null || { echo "fuzz: build failed"; exit 1; }
[ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && exit 0
C=$B/corpus
"$B/tests/fuzz/fuzz-seeds" "$C" || exit 1
mkdir -p "$C/fuzz_conf"
cp etc/*.conf tests/unit/conf/*.conf "$C/fuzz_conf/" 2>/dev/null
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_frame fuzz_ctl fuzz_grd fuzz_gcs fuzz_ges fuzz_raft fuzz_conf fuzz_files fuzz_http fuzz_recovery)
# the targets' own files, removed at the end whatever happens
CORAL_FUZZ_TMP=$(mktemp -d /tmp/coral-fuzz-run-XXXXXX) || exit 1
export CORAL_FUZZ_TMP
trap 'rm -rf "$CORAL_FUZZ_TMP"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# one target: its summary line (and the first lines of a report) in $B/$t.result
run_one() {
  local t=$1 out=$B/$1.log rc runs cov
  mkdir -p "$C/$t"
  (cd "$B" && "./tests/fuzz/$t" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 "corpus/$t") > "$out" 2>&1
  rc=$?
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$out" | grep -oE '[0-9]+$' || echo "?")
  cov=$(grep -oE 'cov: [0-9]+' "$out" | tail -1 | grep -oE '[0-9]+' || echo "?")
  if [ $rc -eq 0 ]; then
    echo "fuzz: $t: $runs inputs in ${secs}s, coverage $cov edges, no crash" > "$B/$t.result"
  else
    { echo "fuzz: $t FAILED (exit $rc): see $out"
      grep -E 'ERROR|SUMMARY|Test unit written' "$out" | head -5; } > "$B/$t.result"
  fi
}
# as many targets at once as there are CPUs (FUZZ_JOBS): each is one busy thread, so the
# stage takes SECONDS times the targets over the CPUs, each target still a whole CPU
jobs=${FUZZ_JOBS:-$(nproc)}
running=0
for t in "${targets[@]}"; do
  rm -f "$B/$t.result"
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait
status=0
for t in "${targets[@]}"; do
  if [ -f "$B/$t.result" ]; then cat "$B/$t.result"; else echo "fuzz: $t FAILED (no result)"; fi
  grep -q ' FAILED' "$B/$t.result" 2>/dev/null && status=1
done
exit $status
