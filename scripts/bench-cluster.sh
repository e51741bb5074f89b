# Sourced by the benchmarks that run a three-node cluster next to a redis-server
# (bench-gcs.sh, bench-ges.sh): with DIR, B (the build), RPORT and NAME (the cluster's name)
# set, it installs redis if missing and builds, writes $DIR/coral.conf from etc/coral.conf
# (ports 18500-18799, run directories under $DIR), starts nodes 1-3 and redis-server, waits
# for a bucket map on every node, and stops both on exit. Sets CONF, node, ctl, and the
# helper jq_py.
./scripts/install-deps.sh >/dev/null
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  [ "$(id -u)" -eq 0 ] || { echo "$NAME: needs redis-server and redis-tools (run as root to install)" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
fi
./scripts/build.sh "$B" >/dev/null

# a cluster left running by an interrupted run goes first
[ -f "$DIR/coral.conf" ] && "$B/tools/coral-node" -c "$DIR/coral.conf" stop all >/dev/null 2>&1 || true
rm -rf "$DIR"
mkdir -p "$DIR"
CONF=$DIR/coral.conf
sed -e "s#/tmp/coral#$DIR/coral#g" -e "s/^name = coral\$/name = $NAME/" \
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
