#!/usr/bin/env bash
# lmsd's benchmark (cache fusion), each figure next to its peer in the same run, alternating
# (tests/bench/gcs-bench.c says what each part does):
#  1. block ping-pong in X between two nodes, 2-way and 3-way, clean and dirty, against a raw
#     loopback TCP round trip with an 8 KiB reply (goals: 2-way p50 <= 3x, 3-way p50 <= 4.5x);
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

./scripts/install-deps.sh >/dev/null
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  [ "$(id -u)" -eq 0 ] || { echo "bench-gcs: needs redis-server and redis-tools (run as root to install)" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
fi
./scripts/build.sh "$B" >/dev/null

# a cluster left running by an interrupted run goes first
[ -f "$DIR/coral.conf" ] && "$B/tools/coral-node" -c "$DIR/coral.conf" stop all >/dev/null 2>&1 || true
rm -rf "$DIR"
mkdir -p "$DIR"
CONF=$DIR/coral.conf
sed -e "s#/tmp/coral#$DIR/coral#g" -e 's/^name = coral$/name = benchgcs/' \
    -e 's/^base_port = 7100$/base_port = 18500/' -e 's/^base_port = 7200$/base_port = 18600/' \
    -e 's/^base_port = 7300$/base_port = 18700/' etc/coral.conf > "$CONF"
node="$B/tools/coral-node -c $CONF"
ctl="$B/tools/coralctl -c $CONF"

redis_pid=""
cleanup() {
  $node stop all >/dev/null 2>&1 || true
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
}
trap cleanup EXIT

jq_py() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
map_version() { $ctl -n "$1" --json grd status 2>/dev/null | jq_py 'd["map_version"]' 2>/dev/null || echo 0; }

echo "== starting nodes 1-3 ($CONF) and redis-server on port $RPORT"
for i in 1 2 3; do $node start "$i" >/dev/null; done
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --dir "$DIR" --logfile "$DIR/redis.log" &
redis_pid=$!
for _ in $(seq 1 300); do
  ok=1
  for i in 1 2 3; do [ "$(map_version "$i")" != 0 ] || ok=0; done
  redis-cli -p "$RPORT" ping >/dev/null 2>&1 || ok=0
  [ "$ok" = 1 ] && break
  sleep 0.1
done
[ "$ok" = 1 ] || { echo "the cluster (a bucket map on every node) or redis did not come up within 30 s"; exit 1; }
echo "$(nproc) CPUs: the three nodes, redis and the load generators share them"

echo
"$B/tests/bench/gcs-bench" -c "$CONF" --rounds "$ROUNDS" --seconds "$SECS" --transfers "$TRANSFERS" \
  --redis-port "$RPORT" "$@"

echo
for i in 1 2 3; do echo "== node $i: coralctl gcs stats"; $ctl -n "$i" gcs stats; done
echo "== node 1: coralctl redo"
$ctl -n 1 redo
