#!/usr/bin/env bash
# Builds Coral twice (plain, and with ASan+UBSan) and runs every test in both: criterion
# unit tests and the integration tests that start real three-node clusters; then builds the
# fuzz targets with clang and runs each for FUZZ_SECONDS (10), then (built in the background
# during the ASan run) installs the Debian packages, runs a cluster from them and removes them. Ends with one line
# "Total: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh || exit 1

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0; failed=0; status=0
# shared-memory segments already there (a run killed before its clean-up, another checkout's
# cluster) are named, not counted against this run: only what this run leaves behind fails it
shm_list() { ls /dev/shm 2>/dev/null | grep -E '^coral[.-]' | sort || true; }
shm_before=$(shm_list)
[ -z "$shm_before" ] || echo "== already in /dev/shm before the tests (not this run's): $(echo $shm_before)"
run_suite() { # BUILD_DIR LABEL MESON_OPTIONS...
  local dir=$1 label=$2; shift 2
  echo "== $label: building in $dir"
  if ! ./scripts/build.sh "$dir" "$@"; then
    echo "== $label: BUILD FAILED"; status=1; failed=$((failed + 1)); return
  fi
  echo "== $label: running the tests"
  local start=$SECONDS
  meson test -C "$dir" --print-errorlogs --num-processes 2 > "$dir/test-output.txt" 2>&1
  local rc=$?
  grep -E '^ *[0-9]+/[0-9]+ ' "$dir/test-output.txt" || true
  # every criterion program ends with "[====] Synthesis: Tested: N | Passing: N | Failing: N
  # | Crashing: N"; a program that died before it has no such line and counts as failed.
  local sub_ok sub_fail programs synth
  read -r sub_ok sub_fail synth < <(awk -F'|' '/Synthesis: Tested/ {
      split($2, p, ": "); split($3, f, ": "); split($4, c, ": ");
      ok += p[2]; bad += f[2] + c[2]; n++ } END { print ok + 0, bad + 0, n + 0 }' \
      "$dir/meson-logs/testlog.txt")
  programs=$(grep -oE '^ *[0-9]+/[0-9]+ [a-z]+:[a-z]+ / [a-z-]+' "$dir/test-output.txt" | sort -u | wc -l)
  sub_fail=$((sub_fail + programs - synth))
  echo "== $label: ${sub_ok} tests passed, ${sub_fail} failed, $programs programs, $((SECONDS - start)) s"
  passed=$((passed + sub_ok)); failed=$((failed + sub_fail))
  if [ $rc -ne 0 ]; then
    status=1
    # what the failing programs printed: criterion's failed assertions and the lines
    # around them, whether meson called it FAIL, ERROR (exit status) or TIMEOUT
    grep -E -B12 -A4 '\[(FAIL|----)\]|ERROR:|runtime error|TIMEOUT' "$dir/meson-logs/testlog.txt" | tail -120
  fi
}

ASAN_MESON=(-Db_sanitize=address,undefined -Db_lundef=false)
# While the plain build's tests run, the ASan+UBSan build and the fuzz targets are built
# beside them, two compilers at a time under SCHED_IDLE (it runs only on a CPU nothing else
# wants: the tests' daemons keep both); with one, the build outlasted the plain tests by two
# minutes. Their output is in prebuild.log; a failure there shows again when the stage
# builds for itself.
prebuild_pid=
idle=(nice -n 19)
command -v chrt >/dev/null && idle=(chrt --idle 0 nice -n 19)
if ./scripts/build.sh build > /dev/null 2>&1; then
  ( BUILD_JOBS=2 "${idle[@]}" ./scripts/build.sh build-asan "${ASAN_MESON[@]}"
    BUILD_JOBS=2 FUZZ_BUILD_ONLY=1 "${idle[@]}" ./scripts/fuzz.sh ) > prebuild.log 2>&1 &
  prebuild_pid=$!
fi
run_suite build "plain build"
[ -z "$prebuild_pid" ] || wait "$prebuild_pid"
# the Debian packages are built meanwhile, as the ASan build was during the plain run: one job
# at idle priority, while the ASan+UBSan tests (mostly waiting on their clusters) run
debs="$PWD/build-debs-ci"
rm -rf "$debs"
io_idle=()
command -v ionice >/dev/null && io_idle=(ionice -c 3)
( BUILD_JOBS=1 "${io_idle[@]}" "${idle[@]}" ./scripts/build-deb.sh "$debs" ) > deb-build.log 2>&1 &
debbuild_pid=$!
# (the model tests run half their seeds there: tests/sim/sim_scale.h)
CORAL_SIM_SCALE=50 run_suite build-asan "ASan+UBSan build" "${ASAN_MESON[@]}"

# A stage that is a script printing "PREFIX: ..." lines: a line ending in OK_RE counts as
# passed, one matching BAD_RE as failed, and a non-zero exit with no failed line as one.
run_stage() { # LABEL PREFIX OK_RE BAD_RE OUTPUT COMMAND...
  local label=$1 prefix=$2 okre=$3 badre=$4 out=$5; shift 5
  echo "== $label: $*"
  local start=$SECONDS
  "$@" > "$out" 2>&1
  local rc=$? ok bad
  grep -E "^$prefix: " "$out" | grep -vE ' checks passed, '
  ok=$(grep -cE "^$prefix: $okre" "$out")
  bad=$(grep -cE "^$prefix: $badre" "$out")
  if [ $rc -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; tail -20 "$out"; fi
  echo "== $label: $ok passed, $bad failed, $((SECONDS - start)) s"
  passed=$((passed + ok)); failed=$((failed + bad))
  [ "$bad" -eq 0 ] || status=1
}

# the fuzz targets (tests/fuzz, clang's libFuzzer), each for a short while from its seeds;
# scripts/fuzz.sh SECONDS runs them longer
run_stage fuzz fuzz '[a-z_]+: .* no crash$' '[a-z_]+ FAILED' fuzz-output.txt ./scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
# the Debian packages: built, installed, a cluster run from them, removed
if wait "$debbuild_pid"; then
  run_stage package deb '.*: ok$' '.* FAILED' deb-output.txt env CORAL_DEBS="$debs" ./scripts/test-deb.sh
else
  echo "== the packages' build in the background failed (deb-build.log): built again in the foreground"
  tail -20 deb-build.log
  run_stage package deb '.*: ok$' '.* FAILED' deb-output.txt ./scripts/test-deb.sh
fi
rm -rf "$debs"

leftover=$(comm -13 <(echo "$shm_before") <(shm_list) | grep . || true)
if [ -n "$leftover" ]; then
  echo "== left in /dev/shm after the tests: $leftover"; status=1
fi
# daemons of a test cluster name its configuration under /tmp/coral-PREFIX-XXXXXX
stray=$(pgrep -af -- '-c /tmp/coral-[a-z]+-[A-Za-z0-9]{6}/coral.conf' || true)
if [ -n "$stray" ]; then
  echo "== processes left running by the tests:"; echo "$stray"; status=1
fi
echo "Total: $passed passed, $failed failed"
exit $status
