#!/usr/bin/env bash
# The resource manager's benchmark (issue 21), each figure next to its peer in the same run:
#  1. the cost of coral_call_begin/end through a session of a running node, with no limit
#     and under a pool never full, against an uncontended mutex pair (goal: the bracket under
#     1 us) (tests/bench/rsrc-bench.c);
#  2. the time from `coralctl rsrc activate` returning on node 1 to the plan being in force
#     on every node (each node's rsrcmgrd reads raftd's store), against a raftd commit seen on
#     every node (a kv put, then a get from each node), alternating;
#  3. CPU share accuracy under saturation: integration-rsrc measures it (two groups at 3:1
#     with four spinning sessions each on this machine's CPUs) and prints the split.
# A benchmark prints figures; it asserts nothing.
#
#   scripts/bench-rsrc.sh [ROUNDS (5)]
#
# Works in ${BENCH_DIR:-/var/tmp/coral-bench-rsrc}; ports 18500-18799 (and a redis it does
# not use, started by bench-cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
DIR=${BENCH_DIR:-/var/tmp/coral-bench-rsrc}
B=${BUILD_DIR:-build}
RPORT=18897
NAME=benchrsrc
. scripts/bench-cluster.sh

$ctl -n 1 rsrc load etc/rsrc-catalog >/dev/null
$ctl -n 1 rsrc activate DAYTIME >/dev/null

echo
echo "== 1. the call bracket through a session of node 1 (plan DAYTIME: its group OTHER has no pool)"
"$B/tests/bench/rsrc-bench" -c "$CONF" -n 1 9 1000000
echo "== ... and on a section of the SGA's layout in memory (no limit, and a pool never full)"
"$B/tests/bench/rsrc-bench" 9 1000000

now_ms() { date +%s%3N; }
in_force_everywhere() {
  for n in 1 2 3; do
    until $ctl -n "$n" rsrc stats | grep -q "plan $1 in force"; do :; done
  done
}
# the latest of the nodes' own clock readings of the switch (plan_since_ms)
switched_at() {
  for n in 1 2 3; do $ctl -n "$n" --json rsrc stats | jq_py "d['plan_since_ms']"; done | sort -n | tail -1
}
seen_everywhere() {
  for n in 1 2 3; do
    until [ "$($ctl -n "$n" kv get bench/switch --stale 2>/dev/null | tail -1)" = "$1" ]; do :; done
  done
}

echo
echo "== 2. a plan switch in force on every node, against a kv put seen on every node ($ROUNDS rounds, alternating)"
plans=(NIGHT DAYTIME)
sw=(); kv=(); at=()
for r in $(seq 1 "$ROUNDS"); do
  p=${plans[$(((r + 1) % 2))]}
  t0=$(now_ms); $ctl -n 1 rsrc activate "$p" >/dev/null; in_force_everywhere "$p"; t1=$(now_ms)
  sw+=($((t1 - t0)))
  at+=($(( $(switched_at) - t0 )))
  t0=$(now_ms); $ctl -n 1 kv put bench/switch "v$r" >/dev/null; seen_everywhere "v$r"; t1=$(now_ms)
  kv+=($((t1 - t0)))
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms=$(med "${sw[@]}"); mk=$(med "${kv[@]}")
echo "plan switch in force on 3 nodes: median $ms ms (${sw[*]})"
echo "  by the nodes' own clocks, the last node's switch came $(med "${at[@]}") ms after coralctl began (${at[*]})"
echo "kv put seen on 3 nodes:          median $mk ms (${kv[*]})"
python3 -c "print('ratio switch/kv: %.2f (each includes coralctl calls polling every node)' % ($ms / max($mk, 1)))"

echo
echo "== node 1: coralctl rsrc stats"
$ctl -n 1 rsrc stats
