#!/usr/bin/env bash
# lmdd's benchmark (global enqueues), each figure next to its peer in the same run,
# alternating (tests/bench/ges-bench.c says what each part does):
#  1. one client: EX lock + unlock of a remote-mastered resource against Redis SET NX PX +
#     compare-and-delete, and a raw loopback round trip (goal: p50 at most 1.2x Redis's pair);
#  2. 50 clients: pairs per second against 50 Redis connections (goal: at least 0.7x);
#  3. a locally mastered lock against a remote one (goal: 20x faster);
#  4. deadlock detection: from a cycle's closing to its victim's refusal.
# Then node 1's `coralctl ges stats`. A benchmark prints figures; it asserts nothing.
#
#   scripts/bench-ges.sh [ROUNDS (5)] [SECONDS (2)] [CLIENTS (50)]
#
# Installs redis-server and redis-tools with apt-get if missing. Works in
# ${BENCH_DIR:-/var/tmp/coral-bench-ges}; uses ports 18500-18799 (Coral) and 18898 (Redis).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECS=${2:-2}
CLIENTS=${3:-50}
DIR=${BENCH_DIR:-/var/tmp/coral-bench-ges}
B=${BUILD_DIR:-build}
RPORT=18898

NAME=benchges
. scripts/bench-cluster.sh

echo "== resource names mastered on node 2 (remote to the sessions on node 1) and on node 1"
: > "$DIR/remote.txt"; : > "$DIR/local.txt"
for i in $(seq 0 400); do
  m=$($ctl -n 1 --json ges resource "bench-row-$i" | jq_py 'd["master"]')
  case "$m" in
    2) echo "bench-row-$i" >> "$DIR/remote.txt" ;;
    1) echo "bench-row-$i" >> "$DIR/local.txt" ;;
  esac
  [ "$(wc -l < "$DIR/remote.txt")" -ge "$CLIENTS" ] && [ "$(wc -l < "$DIR/local.txt")" -ge 1 ] && break
done
echo "$(wc -l < "$DIR/remote.txt") remote, $(wc -l < "$DIR/local.txt") local"

echo
"$B/tests/bench/ges-bench" -c "$CONF" --remote "$DIR/remote.txt" --local "$DIR/local.txt" --rounds "$ROUNDS" \
  --seconds "$SECS" --clients "$CLIENTS" --redis-port "$RPORT"

echo
echo "== node 1: coralctl ges stats"
$ctl -n 1 ges stats
