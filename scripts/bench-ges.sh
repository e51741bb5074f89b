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

./scripts/install-deps.sh >/dev/null
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  [ "$(id -u)" -eq 0 ] || { echo "bench-ges: needs redis-server and redis-tools (run as root to install)" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
fi
./scripts/build.sh "$B" >/dev/null

[ -f "$DIR/coral.conf" ] && "$B/tools/coral-node" -c "$DIR/coral.conf" stop all >/dev/null 2>&1 || true
rm -rf "$DIR"
mkdir -p "$DIR"
CONF=$DIR/coral.conf
sed -e "s#/tmp/coral#$DIR/coral#g" -e 's/^name = coral$/name = benchges/' \
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
