#!/usr/bin/env bash
# raftd against etcd, in one run on this machine: the same HTTP load generator (hey, from
# Debian) drives raftd's HTTP put (PUT /v1/kv/KEY) on a three-node Coral cluster and etcd's
# JSON gateway (POST /v3/kv/put) on a three-member etcd (Debian's etcd-server), both on
# loopback, both fsyncing to the same disk, both with a 100 ms heartbeat and a 500 ms
# election timeout. Runs alternate A/B (the order flips every round) at 1 and 256 clients
# and print writes/s, p50 and p99 and the ratio raftd/etcd. Then leader failover: kill -9
# of the leader, timed until the first successful put through a surviving member, the same
# curl loop for both. A benchmark prints figures; it asserts nothing.
#
#   scripts/bench-raftd.sh [SECONDS_PER_RUN (5)] [ROUNDS (3)] [FAILOVERS (5)]
#
# Installs hey, etcd-server and etcd-client with apt-get if missing. Works in
# ${BENCH_DIR:-/var/tmp/coral-bench} (on disk, not tmpfs, so that fsync costs what it costs)
# and uses ports 17100-17399 (Coral) and 23701-23716 (etcd).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
ROUNDS=${2:-3}
FAILOVERS=${3:-5}
DIR=${BENCH_DIR:-/var/tmp/coral-bench}
B=${BUILD_DIR:-build}

need=()
for c in hey:hey etcd:etcd-server etcdctl:etcd-client curl:curl; do
  command -v "${c%%:*}" >/dev/null || need+=("${c##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bench: installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
./scripts/install-deps.sh >/dev/null
./scripts/build.sh "$B" >/dev/null

rm -rf "$DIR"
mkdir -p "$DIR"
CONF=$DIR/coral.conf
# HTTP writes carry the admin token of [raft] http_token_file
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077; echo "$TOKEN" > "$DIR/http.token")
sed -e "s#/tmp/coral#$DIR/coral#g" -e 's/^name = coral$/name = bench/' \
    -e 's/^base_port = 7\([123]\)00$/base_port = 17\100/' \
    -e "s#^http_token_file =\$#http_token_file = $DIR/http.token#" etc/coral.conf > "$CONF"
node="$B/tools/coral-node -c $CONF"
ctl="$B/tools/coralctl -c $CONF"

declare -A etcd_pid=()
cleanup() {
  $node stop all >/dev/null 2>&1 || true
  for i in "${!etcd_pid[@]}"; do kill -9 "${etcd_pid[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT

ecluster="e1=http://127.0.0.1:23702,e2=http://127.0.0.1:23712,e3=http://127.0.0.1:23722"
# etcd member i: client port 237i1, peer port 237i2 (i = 0, 1, 2)
etcd_start() { # I STATE
  local i=$1 cp=$((23701 + ($1 - 1) * 10)) pp=$((23702 + ($1 - 1) * 10))
  etcd --name "e$i" --data-dir "$DIR/etcd$i" \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "$ecluster" --initial-cluster-state "$2" --initial-cluster-token coral-bench \
    --heartbeat-interval 100 --election-timeout 500 --log-level error \
    > "$DIR/etcd$i.log" 2>&1 &
  etcd_pid[$i]=$!
  disown "$!" # no "Killed" notice from the shell when the failover test kills it
}
etcd_url() { echo "http://127.0.0.1:$((23701 + ($1 - 1) * 10))"; }
etcd_leader() { # prints the member number (1-3) of the leader, or nothing
  local i
  for i in 1 2 3; do
    if etcdctl --endpoints "$(etcd_url "$i")" --command-timeout=300ms endpoint status -w json 2>/dev/null |
        python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["Status"]; sys.exit(0 if s["leader"]==s["header"]["member_id"] else 1)' 2>/dev/null; then
      echo "$i"; return
    fi
  done
}
raftd_leader() {
  $ctl -n 1 --json raft status 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"] or "")' 2>/dev/null || true
}
raftd_url() { echo "http://127.0.0.1:$((17101 + ($1 - 1) * 100))"; }
wait_for() { # CMD... until it prints something, 20 s at most
  local out
  for _ in $(seq 1 200); do
    out=$("$@")
    if [ -n "$out" ]; then echo "$out"; return 0; fi
    sleep 0.1
  done
  return 1
}

echo "== starting a three-node Coral cluster ($CONF) and a three-member etcd $(etcd --version | head -1 | awk '{print $3}')"
$node start all >/dev/null
for i in 1 2 3; do etcd_start "$i" new; done
rl=$(wait_for raftd_leader) || { echo "raftd elected no leader"; exit 1; }
el=$(wait_for etcd_leader) || { echo "etcd elected no leader"; exit 1; }
echo "raftd leader: node $rl; etcd leader: e$el"

# hey against one system; prints "writes/s p50_ms p99_ms errors"
hey_raftd() { # CLIENTS
  hey -z "${SECS}s" -c "$1" -m PUT -H "Authorization: Bearer $TOKEN" -d 'v' "$(raftd_url "$(raftd_leader)")/v1/kv/bench" > "$DIR/hey.out" 2>&1
  hey_parse
}
hey_etcd() { # CLIENTS; key "bench", value "v" in base64
  hey -z "${SECS}s" -c "$1" -m POST -T application/json -d '{"key":"YmVuY2g=","value":"dg=="}' \
    "$(etcd_url "$(etcd_leader)")/v3/kv/put" > "$DIR/hey.out" 2>&1
  hey_parse
}
hey_parse() {
  awk '/Requests\/sec:/ {rps=$2}
       /^  50% in/ {p50=$3*1000} /^  99% in/ {p99=$3*1000}
       /^  \[[0-9]+\]/ {code=substr($1,2,3); n=$2; if (code != "200") bad += n}
       /Error distribution/ {err=1} err && /^  \[[0-9]+\]/ {bad += $1}
       END {printf "%.0f %.2f %.2f %d\n", rps, p50, p99, bad + 0}' "$DIR/hey.out"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo
echo "== writes through the leader's HTTP API, ${SECS}s per run, $ROUNDS rounds, alternating"
printf '%-8s %-6s %-6s %10s %9s %9s %7s\n' clients round system writes/s p50_ms p99_ms errors
declare -A rps p50 p99
for c in 1 256; do
  for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order="raftd etcd"; else order="etcd raftd"; fi
    for s in $order; do
      read -r w a b e < <("hey_$s" "$c")
      printf '%-8s %-6s %-6s %10s %9s %9s %7s\n' "$c" "$r" "$s" "$w" "$a" "$b" "$e"
      rps[$s.$c]+="$w "; p50[$s.$c]+="$a "; p99[$s.$c]+="$b "
    done
  done
done
echo
echo "== medians over the rounds"
printf '%-8s %-6s %10s %9s %9s\n' clients system writes/s p50_ms p99_ms
for c in 1 256; do
  for s in raftd etcd; do
    printf '%-8s %-6s %10s %9s %9s\n' "$c" "$s" \
      "$(echo ${rps[$s.$c]} | tr ' ' '\n' | median)" "$(echo ${p50[$s.$c]} | tr ' ' '\n' | median)" \
      "$(echo ${p99[$s.$c]} | tr ' ' '\n' | median)"
  done
  awk -v a="$(echo ${rps[raftd.$c]} | tr ' ' '\n' | median)" -v b="$(echo ${rps[etcd.$c]} | tr ' ' '\n' | median)" \
      -v c="$c" 'BEGIN {printf "ratio raftd/etcd writes/s at %s client(s): %.2fx\n", c, a / b}'
done

# Failover: kill -9 the leader, then put through a surviving member until one succeeds.
now_ms() { date +%s%3N; }
put_raftd() { curl -s -o /dev/null -w '%{http_code}' --max-time 1 -H "Authorization: Bearer $TOKEN" -X PUT -d v "$(raftd_url "$1")/v1/kv/failover" | grep -q 200; }
put_etcd() { curl -s --max-time 1 -X POST -d '{"key":"ZmFpbG92ZXI=","value":"dg=="}' "$(etcd_url "$1")/v3/kv/put" | grep -q '"revision"'; }
# Each sets ms; not run in $(...), which would lose etcd_pid of a restarted member.
failover_raftd() {
  local l pid t0 other
  l=$(wait_for raftd_leader); other=$(( l % 3 + 1 ))
  pid=$(cat "$DIR/coral/node$l/raftd.pid")
  t0=$(now_ms); kill -9 "$pid"
  until put_raftd "$other"; do sleep 0.01; done
  ms=$(( $(now_ms) - t0 ))
  # the supervisor restarts it; wait until all three agree again
  for _ in $(seq 1 100); do
    [ "$($ctl -n "$l" --json raft status 2>/dev/null | python3 -c 'import json,sys; s=json.load(sys.stdin); print(int(s["leader"] > 0 and not s["fenced"]))' 2>/dev/null)" = 1 ] && break
    sleep 0.1
  done
}
failover_etcd() {
  local l t0 other
  l=$(wait_for etcd_leader); other=$(( l % 3 + 1 ))
  t0=$(now_ms); kill -9 "${etcd_pid[$l]}"
  until put_etcd "$other"; do sleep 0.01; done
  ms=$(( $(now_ms) - t0 ))
  while kill -0 "${etcd_pid[$l]}" 2>/dev/null; do sleep 0.01; done
  etcd_start "$l" existing
  for _ in $(seq 1 100); do
    etcdctl --endpoints "$(etcd_url "$l")" --command-timeout=300ms endpoint health >/dev/null 2>&1 && break
    sleep 0.1
  done
  sleep 1
}
echo
echo "== leader failover: kill -9 of the leader until the first successful put, $FAILOVERS times each, alternating"
fr=""; fe=""
for r in $(seq 1 "$FAILOVERS"); do
  if [ $((r % 2)) = 1 ]; then order="raftd etcd"; else order="etcd raftd"; fi
  for s in $order; do
    "failover_$s"
    printf 'round %s %-6s %6s ms\n' "$r" "$s" "$ms"
    if [ "$s" = raftd ]; then fr+="$ms "; else fe+="$ms "; fi
    sleep 2
  done
done
mr=$(echo $fr | tr ' ' '\n' | median); me=$(echo $fe | tr ' ' '\n' | median)
echo "median failover: raftd $mr ms, etcd $me ms"
awk -v a="$mr" -v b="$me" 'BEGIN {printf "ratio raftd/etcd failover time: %.2fx\n", a / b}'
