#!/usr/bin/env bash
# lmsd's benchmark (cache fusion), each figure next to its peer in the same run, alternating
# (tests/bench/gcs-bench.c says what each part does):
#  1. block ping-pong in X between two nodes, 2-way and 3-way, clean and dirty, against a raw
#     loopback TCP round trip with an 8 KiB reply (goals: 2-way p50 <= 3x, 3-way p50 <= 4.5x),
#     and the CPU time per transfer of every process involved against the round trip's (goals
#     2-way <= 3x, 3-way <= 4.5x);
#  2. a local hit (goal under 1 us) against a mutex lock + unlock and the raw round trip;
#  3. block serving to 50 concurrent requesters against redis-benchmark GET of 8 KiB values
#     at 50 clients on a redis-server started here (goal >= 0.8x);
#  4. commits/s from 1 and 32 sessions against fdatasync/s on the same disk.
# Then each node's `coralctl gcs stats` and node 1's `coralctl redo`.
# A benchmark prints figures; it asserts nothing.
#
#   scripts/bench-gcs.sh [ROUNDS (5)] [SECONDS (2)] [TRANSFERS (300)] [WHAT...]
#
# WHAT picks parts (pingpong local serve commit; default all).
# Installs redis-server and redis-tools with apt-get if missing. Works in
# ${BENCH_DIR:-/var/tmp/coral-bench-gcs} (on disk: the commit figures need a real fdatasync);
# uses ports 18500-18799 (Coral) and 18899 (Redis).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECS=${2:-2}
TRANSFERS=${3:-300}
shift $(( $# < 3 ? $# : 3 ))
DIR=${BENCH_DIR:-/var/tmp/coral-bench-gcs}
B=${BUILD_DIR:-build}
RPORT=18899

NAME=benchgcs
. scripts/bench-cluster.sh

echo
"$B/tests/bench/gcs-bench" -c "$CONF" --rounds "$ROUNDS" --seconds "$SECS" --transfers "$TRANSFERS" \
  --redis-port "$RPORT" "$@"

echo
for i in 1 2 3; do echo "== node $i: coralctl gcs stats"; $ctl -n "$i" gcs stats; done
echo "== node 1: coralctl redo"
$ctl -n 1 redo
