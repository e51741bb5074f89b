#!/usr/bin/env bash
# grdd's benchmark: each figure next to its peer, measured in the same run, alternating.
#  1. Master lookup from the SGA (goal under 100 ns) against a plain read of the bucket-owner
#     array (the floor) and a raw loopback TCP round trip (what asking a daemon would cost):
#     once on a map built in the process, once on node 1's SGA of a running cluster.
#  2. Remaster of one resource and of one bucket (coralctl grd remaster, end to end through
#     the control socket) against a put to raftd's store: a move is freeze + ship + one
#     consensus commit, so the put is its floor.
#  3. Rebalance on join: 100,000 held resources on three nodes, then a fourth node joins;
#     the time from `cluster add-node` to the committed join version, and the move's own
#     freeze-to-commit time, against a raw loopback TCP copy of the bytes the move shipped.
# A benchmark prints figures; it asserts nothing.
#
#   scripts/bench-grd.sh [RESOURCES (100000)] [REMASTERS (20)] [ROUNDS (5)]
#
# Works in ${BENCH_DIR:-/var/tmp/coral-bench-grd}; uses ports 18100-18499.
set -euo pipefail
cd "$(dirname "$0")/.."
NRES=${1:-100000}
NREM=${2:-20}
ROUNDS=${3:-5}
DIR=${BENCH_DIR:-/var/tmp/coral-bench-grd}
B=${BUILD_DIR:-build}

./scripts/install-deps.sh >/dev/null
./scripts/build.sh "$B" >/dev/null

rm -rf "$DIR"
mkdir -p "$DIR"
CONF=$DIR/coral.conf
# three founders and a fourth node that joins later; directories sized for the load
# (each master keeps about a third of the resources, each node holds a third)
per=$(( (NRES + 2) / 3 ))
ents=65536
while [ "$ents" -lt $(( NRES * 3 / 4 )) ]; do ents=$((ents * 2)); done
sed -e "s#/tmp/coral#$DIR/coral#g" -e 's/^name = coral$/name = benchgrd/' \
    -e 's/^base_port = 7\([123]\)00$/base_port = 18\100/' -e 's/^sga_size = 64M$/sga_size = 512M/' \
    -e 's/^founders =.*/founders = 1,2,3/' -e "s/^directory_entries = .*/directory_entries = $ents/" \
    -e "s/^held_entries = .*/held_entries = $ents/" etc/coral.conf > "$CONF"
python3 - "$CONF" "$DIR" <<'EOF'
import sys
path, d = sys.argv[1], sys.argv[2]
s = open(path).read()
n4 = ("[node.4]\nid = 4\nhost = 127.0.0.1\nbase_port = 18400\nrun_dir = %s/coral/node4\n"
      "sga_size = 512M\nsga_name =\ndata_dir =\n\n" % d)
s = s.replace("[storage]", n4 + "[storage]", 1)
open(path, "w").write(s)
EOF
node="$B/tools/coral-node -c $CONF"
ctl="$B/tools/coralctl -c $CONF"
bench="$B/tests/bench/grd-bench"

cleanup() { $node stop all >/dev/null 2>&1 || true; }
trap cleanup EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
now_ms() { date +%s%3N; }
jq_py() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
map_members() { # NODE: the number of members of its map, or 0
  $ctl -n "$1" --json grd status 2>/dev/null | jq_py 'len([n for n in d["nodes"] if n["buckets"] > 0])' 2>/dev/null || echo 0
}

echo "== 1. master lookup, a map built in this process"
$bench lookup "$ROUNDS"

echo
echo "== starting nodes 1-3 ($CONF)"
for i in 1 2 3; do $node start "$i" >/dev/null; done
for _ in $(seq 1 300); do
  [ "$(map_members 1)" = 3 ] && break
  sleep 0.1
done
[ "$(map_members 1)" = 3 ] || { echo "no three-node map after 30 s"; $ctl -n 1 grd status || true; exit 1; }
$ctl -n 1 grd status | head -4

echo
echo "== 1. master lookup, node 1's SGA"
$bench lookup -c "$CONF" -n 1 "$ROUNDS"

echo
echo "== 2. manual remasters, $NREM of each kind, each alternating with a raftd put"
$bench remaster -c "$CONF" -n 1 "$NREM"

echo
echo "== 3. rebalance on join: $NRES resources held from three nodes, then node 4 joins"
t0=$(now_ms)
pids=()
for i in 1 2 3; do
  $bench load -c "$CONF" -n "$i" "$per" "$((100 + i))" PR 256 > "$DIR/load$i.out" 2>&1 &
  pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
cat "$DIR"/load[123].out
[ "$fail" = 0 ] || { echo "loading failed"; exit 1; }
echo "loaded in $(( $(now_ms) - t0 )) ms"
for i in 1 2 3; do
  $ctl -n "$i" --json grd status | jq_py '"node %d: %d resources mastered (capacity %d), %d held" % (d["node"], d["resources"], d["capacity"], d["held"])'
done
before=$($ctl -n 1 --json grd status | jq_py 'd["map_version"]')
$node start 4 >/dev/null
t0=$(now_ms)
$ctl -n 1 cluster add-node 4 127.0.0.1:18400 >/dev/null
joined=""
active=""
for _ in $(seq 1 1200); do
  if [ -z "$active" ] && [ "$($ctl -n 1 --json cluster members 2>/dev/null |
      jq_py 'next((m["state"] for m in d["members"] if m["id"] == 4), "")' 2>/dev/null)" = active ]; then
    active=$(now_ms)
  fi
  joined=$($ctl -n 1 --json grd history 2>/dev/null |
    jq_py 'next((json.dumps(h) for h in d if h["version"] > '"$before"' and h["cause"] == "join"), "")' 2>/dev/null || true)
  [ -n "$joined" ] && break
  sleep 0.05
done
t1=$(now_ms)
[ -n "$joined" ] || { echo "node 4's join was not committed within 60 s"; $ctl -n 1 grd history | tail -5; exit 1; }
echo "$joined" | jq_py '"join committed at map version %d: %d buckets, %d entries, %d bytes moved; frozen %d ms from the first freeze to the commit" % (d["version"], d["moved_buckets"], d["moved_entries"], d["moved_bytes"], d["freeze_ms"])'
bytes=$(echo "$joined" | jq_py 'd["moved_bytes"]')
freeze=$(echo "$joined" | jq_py 'd["freeze_ms"]')
bw=$($B/tools/coral-node -c "$CONF" -nv 2>/dev/null | awk -F' = ' '/^remaster_bandwidth/ {print $2}')
bwb=$(python3 -c "s='${bw:-32M}'; m={'K':1<<10,'M':1<<20,'G':1<<30}; print(int(s[:-1])*m[s[-1]] if s[-1] in m else int(s))")
copy=$($bench copy "$((bytes > 0 ? bytes : 1))" "$ROUNDS")
echo "from add-node to node 4 active in raftd's membership: $(( ${active:-$t1} - t0 )) ms; to the committed join version: $((t1 - t0)) ms"
echo "raw loopback TCP copy of the same $bytes bytes: $copy ms; remaster_bandwidth ($bw) alone allows no less than $(awk -v b="$bytes" -v r="$bwb" 'BEGIN {printf "%.0f", b * 1000 / r}') ms"
awk -v f="$freeze" -v c="$copy" -v b="$bytes" -v r="$bwb" 'BEGIN {
  printf "ratio move (freeze to commit) / raw copy: %.1fx; / the bandwidth budget'"'"'s floor: %.2fx\n", f / c, f / (b * 1000 / r) }'
$ctl -n 4 --json grd status | jq_py '"node 4 now masters %d resources" % d["resources"]'
