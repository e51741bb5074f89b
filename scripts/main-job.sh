#!/usr/bin/env bash
# The main job: starts a fresh three-node cluster of etc/coral.conf on this machine, shows
# raftd forming the cluster and electing a leader, writes and reads the replicated config
# store through different nodes, kills the leader with kill -9 and times the first commit
# under the new one, shows the history that explains it, exercises every daemon over its
# socket, runs coral-bank (money moved between accounts in shared blocks by sessions on all
# three nodes, through cache fusion, with its invariant checked) and shows lmsd's, the
# cache's and the redo thread's figures, and stops the cluster cleanly, checking that
# then kills node 3 under the bank's load (the survivors recover it while the bank goes on,
# and it comes back), kills every node under the bank's load (a power loss), starts them
# again (smond recovers every redo thread first) and checks the bank's total. Between, the
# bank with row locks (lmdd's global enqueues, their deadlocks found and broken). Before the
# first bank run the resource manager's example catalog is loaded and a plan activated: the
# bank's sessions and its readers run in two consumer groups, the readers' pool queues them.
# A one-node standby cluster
# (etc/coral-standby.conf) receives every node's redo from the start; it is seeded from the
# primary's shared storage once the bank's files exist, applies the primary's transactions
# through the node loss and the power loss, and at the end its copy of the accounts is
# checked.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build}
SCONF=etc/coral-standby.conf
# the primary: etc/coral.conf shipping its redo to the standby (with the standby's token)
mkdir -p /tmp/coral-standby
printf 'main-job-replication-token-%s\n' "$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')" > /tmp/coral-standby/repl.token
chmod 600 /tmp/coral-standby/repl.token
if [ -z "${CORAL_CONF:-}" ]; then
  awk '/^\[/ { sec = $0 }
       sec == "[replication]" && /^standby =/ { print "standby = 127.0.0.1:7407"; next }
       sec == "[replication]" && /^token_file =/ { print "token_file = /tmp/coral-standby/repl.token"; next }
       { print }' etc/coral.conf > /tmp/coral-standby/primary.conf
fi
CONF=${CORAL_CONF:-/tmp/coral-standby/primary.conf}
node="$B/tools/coral-node -c $CONF"
ctl="$B/tools/coralctl -c $CONF"
snode="$B/tools/coral-node -c $SCONF"
sctl="$B/tools/coralctl -c $SCONF"

say() { printf '\n== %s\n' "$*"; }

say "checking $CONF (etc/coral.conf shipping its redo to the standby) and $SCONF"
$node -n
$snode -n

say "stopping anything left from an earlier run; a fresh cluster and standby (data dirs removed)"
$node stop all
$snode stop all
rm -rf /tmp/coral/node1/data /tmp/coral/node2/data /tmp/coral/node3/data /tmp/coral/shared
rm -rf /tmp/coral-standby/node1 /tmp/coral-standby/shared

trap '$node stop all >/dev/null 2>&1 || true; $snode stop all >/dev/null 2>&1 || true' EXIT
say "starting the standby (one node, receiving on 127.0.0.1:7407), then every node of $CONF on this machine"
$snode start all
$node start all

for n in 1 2 3; do
  say "coralctl -n $n status"
  $ctl -n "$n" status
done

say "waiting for raftd to form the cluster and elect a leader"
# (every node: the third may still be joining when the first two have a leader)
leader=0
for _ in $(seq 1 400); do
  ready=0
  for n in 1 2 3; do
    l=$($ctl -n "$n" --json raft status 2>/dev/null | sed -n 's/^ *"leader": \([0-9]*\).*/\1/p')
    f=$($ctl -n "$n" --json raft status 2>/dev/null | grep -c '"fenced": true' || true)
    if [ -n "$l" ] && [ "$l" != 0 ] && [ "$f" = 0 ]; then ready=$((ready + 1)); [ "$n" = 1 ] && leader=$l; fi
  done
  [ "$ready" = 3 ] && break
  sleep 0.05
done
say "coralctl -n 1 raft status (leader: node $leader)"
$ctl -n 1 raft status
say "coralctl -n 2 cluster members"
$ctl -n 2 cluster members

other=$(( leader % 3 + 1 ))
say "kv put through node $other, get from every node (linearizable reads)"
$ctl -n "$other" kv put app/settings '{"batch":17}'
for n in 1 2 3; do printf 'node %s: ' "$n"; $ctl -n "$n" kv get app/settings; done
printf 'HTTP on node 3: '; curl -s "http://127.0.0.1:7301/v1/kv/app/settings" || echo "(curl not installed)"
printf 'HTTP write without a token: '; curl -s -X PUT -d x "http://127.0.0.1:7301/v1/kv/app/settings" || true
printf 'grd/map written by anyone but grdd: '; $ctl -n 1 kv put grd/map junk 2>&1 || true

victim=$(cat /tmp/coral/node$leader/raftd.pid)
say "kill -9 raftd of the leader, node $leader (pid $victim); time to the first commit under a new leader"
t0=$(date +%s%N)
kill -9 "$victim"
until $ctl -n "$other" kv put failover/probe "$t0" >/dev/null 2>&1; do sleep 0.01; done
t1=$(date +%s%N)
echo "first write committed $(( (t1 - t0) / 1000000 )) ms after the leader was killed"
for _ in $(seq 1 100); do
  sleep 0.1
  if $ctl -n "$leader" raft status 2>/dev/null | grep -q 'not fenced'; then break; fi
done
say "coralctl -n $other raft history"
$ctl -n "$other" raft history
say "coralctl -n $leader raft status: the killed node is back, under a new incarnation"
$ctl -n "$leader" raft status | sed -n '1p;4p'

say "coralctl -n 1 sga"
$ctl -n 1 sga

say "coralctl -n 2 ping all"
$ctl -n 2 ping all

victim=$(cat /tmp/coral/node3/lmsd.pid)
say "kill -9 lmsd of node 3 (pid $victim); the supervisor restarts it, and the new lmsd, which cannot resume its predecessor's transfers, has node 3 leave the cluster: nodes 1 and 2 recover it and it joins again"
seen3=$(wc -l < /tmp/coral/node3/node.log)
kill -9 "$victim"
for _ in $(seq 1 200); do
  sleep 0.05
  now=$(cat /tmp/coral/node3/lmsd.pid 2>/dev/null || true)
  if [ -n "$now" ] && [ "$now" != "$victim" ] && $ctl -n 3 ping lmsd >/dev/null 2>&1 &&
     tail -n +"$(( seen3 + 1 ))" /tmp/coral/node3/node.log | grep -q 'joining again'; then break; fi
done
$ctl -n 3 status | sed -n '1,3p;/lmsd/p'
tail -n +"$(( seen3 + 1 ))" /tmp/coral/node3/node.log |
  grep -E 'ended while the cache served|warning: leaving the cluster|the node left the cluster|joining again' |
  sed 's/^[^ ]* //' || true

say "waiting for node 3 to be a member again (nodes 1 and 2 recover it first; its sessions wait until then)"
t0=$(date +%s%N)
for _ in $(seq 1 400); do
  if $ctl -n 3 raft status 2>/dev/null | grep -q 'not fenced'; then break; fi
  sleep 0.05
done
if $ctl -n 3 raft status 2>/dev/null | grep -q 'not fenced'; then
  echo "node 3 is a member again, not fenced, $(( ($(date +%s%N) - t0) / 1000000 )) ms after it began to join"
else
  echo "node 3 is still fenced after 20 s: its sessions wait in the bank below"
fi

say "waiting for every node's grdd to hold the agreed bucket map (block masters come from it)"
for n in 1 2 3; do
  for _ in $(seq 1 200); do
    v=$($ctl -n "$n" grd status 2>/dev/null | sed -n 's/^map version \([0-9]*\).*/\1/p')
    if [ -n "$v" ] && [ "$v" != 0 ]; then break; fi
    sleep 0.1
  done
  echo "node $n: map version ${v:-none}"
done

say "the resource manager: etc/rsrc-catalog loaded through node 1, plan DAYTIME activated through node 2 (in force on every node: the bank's sessions in OLTP, its readers in REPORTS, a pool of 2 calls per node)"
$ctl -n 1 rsrc load etc/rsrc-catalog
$ctl -n 2 rsrc activate DAYTIME --cause "the main job"
for n in 1 2 3; do
  for _ in $(seq 1 50); do
    $ctl -n "$n" rsrc stats | grep -q 'plan DAYTIME in force' && break
    sleep 0.1
  done
done
$ctl -n 3 rsrc plan DAYTIME

say "coral-bank: 1000 accounts, 8 per block, 2 sessions and 3 readers on each node, 5 s"
$B/tools/coral-bank -c "$CONF" --accounts 1000 --per-block 8 --sessions 2 --readers 3 --seconds 5
say "coralctl -n 1 rsrc groups; coralctl -n 1 rsrc stats (the readers queued for REPORTS' pool of 2)"
$ctl -n 1 rsrc groups
$ctl -n 1 rsrc stats
for n in 1 2 3; do
  say "coralctl -n $n gcs stats"
  $ctl -n "$n" gcs stats
done
say "coralctl -n 1 cache; coralctl -n 1 redo; coralctl -n 1 gcs block 1 0"
$ctl -n 1 cache
$ctl -n 1 redo
$ctl -n 1 gcs block 1 0
say "coralctl datafile list --verify"
$ctl datafile list --verify

say "coral-bank with row locks: an EX global enqueue (lmdd) on both accounts, taken in random order, on 16 accounts, 5 s: sessions deadlock, the coordinator breaks each cycle, the victims try again"
$B/tools/coral-bank -c "$CONF" --file rows --accounts 16 --per-block 8 --sessions 2 --readers 0 --seconds 5 --row-locks
say "coralctl -n 1 ges stats"
$ctl -n 1 ges stats
say "coralctl ges deadlocks (the last three the coordinator found)"
# (read whole, not cut by head: coralctl would die of SIGPIPE past a pipe's first write)
dl=$($ctl -n 1 ges deadlocks)
echo "$dl" | sed -n 1p
echo "$dl" | tail -9

say "seeding the standby from the primary's shared storage while the primary runs (its thread checkpoints, then every block, then the control file)"
$sctl standby seed /tmp/coral/shared
for _ in $(seq 1 100); do
  $sctl standby status | grep -q 'apply: applying' && break
  sleep 0.1
done
$sctl standby status

say "node 3 lost under load: coral-bank runs 12 s on the three nodes, node 3's supervisor and daemons get kill -9 after 4 s"
$B/tools/coral-bank -c "$CONF" --accounts 1000 --per-block 8 --sessions 2 --readers 0 --seconds 12 \
  --ride-through 3000 >/tmp/coral/bank-loss.txt 2>&1 &
bank=$!
sleep 4
# the logs go on from earlier runs: only what follows the kill counts
l1=$(( $(wc -l < /tmp/coral/node1/node.log) + 1 ))
l2=$(( $(wc -l < /tmp/coral/node2/node.log) + 1 ))
kill -9 $(cat /tmp/coral/node3/coral-node.pid /tmp/coral/node3/*.pid 2>/dev/null | sort -u) 2>/dev/null || true
t_kill=$(date +%s%N)
for _ in $(seq 1 300); do
  if tail -n +"$l1" /tmp/coral/node1/node.log | grep -q 'recovery of node 3: done' &&
     tail -n +"$l2" /tmp/coral/node2/node.log | grep -q 'recovery of node 3: done'; then
    break
  fi
  sleep 0.05
done
echo "node 3 recovered by nodes 1 and 2 $(( ($(date +%s%N) - t_kill) / 1000000 )) ms after the kill (at most 50 ms late)"
for n in 1 2; do
  say "coralctl -n $n recovery history (this node's part)"
  $ctl -n "$n" recovery history | tail -1
done
say "coral-bank went on with nodes 1 and 2 (node 3's sessions stop)"
wait "$bank" || { cat /tmp/coral/bank-loss.txt; echo "the bank's check failed" >&2; exit 1; }
cat /tmp/coral/bank-loss.txt
say "node 3 starts again: an empty cache, its thread already recovered"
$node start 3
for _ in $(seq 1 200); do
  v=$($ctl -n 3 grd status 2>/dev/null | sed -n 's/^map version \([0-9]*\).*/\1/p')
  if [ -n "$v" ] && [ "$v" != 0 ] && $ctl -n 3 --json raft status 2>/dev/null | grep -q '"fenced": false'; then break; fi
  sleep 0.1
done
$B/tools/coral-bank -c "$CONF" --accounts 1000 --per-block 8 --sessions 2 --readers 1 --seconds 2 | tail -3

say "a power loss of the whole cluster under load: coral-bank runs, every supervisor and daemon gets kill -9"
$B/tools/coral-bank -c "$CONF" --accounts 1000 --per-block 8 --sessions 2 --readers 0 --seconds 60 \
  >/dev/null 2>&1 &
bank=$!
sleep 3
$ctl -n 1 redo | sed -n '1,2p'
kill -9 "$bank" $(cat /tmp/coral/node*/coral-node.pid /tmp/coral/node*/*.pid 2>/dev/null | sort -u) 2>/dev/null || true
wait "$bank" 2>/dev/null || true
sleep 0.5
declare -A seen
for n in 1 2 3; do seen[$n]=$(wc -l < /tmp/coral/node$n/node.log); done
say "starting every node again: the first smond finds no instance running and recovers every redo thread"
$node start all
for n in 1 2 3; do
  tail -n +"$(( ${seen[$n]} + 1 ))" /tmp/coral/node$n/node.log | grep 'cold start:' | sed 's/^[^ ]* //' || true
done
for n in 1 2 3; do
  say "coralctl -n $n recovery status"
  $ctl -n "$n" recovery status
done
for n in 1 2 3; do
  for _ in $(seq 1 200); do
    v=$($ctl -n "$n" grd status 2>/dev/null | sed -n 's/^map version \([0-9]*\).*/\1/p')
    if [ -n "$v" ] && [ "$v" != 0 ] && $ctl -n "$n" --json raft status 2>/dev/null | grep -q '"fenced": false'; then
      break
    fi
    sleep 0.1
  done
done
say "coral-bank again, 2 s: the total it finds before it starts must be 1000 accounts x 1000"
$B/tools/coral-bank -c "$CONF" --accounts 1000 --per-block 8 --sessions 2 --readers 1 --seconds 2

say "the primary's redo as each node ships it to the standby"
$ctl standby status --all
say "the standby: every thread's copy caught up, the apply settled"
for _ in $(seq 1 300); do
  st=$($sctl --json standby status)
  lag=$(printf '%s' "$st" | sed -n 's/^ *"lag_bytes": \([0-9]*\).*/\1/p' | sort -n | tail -1)
  if printf '%s' "$st" | grep -q '"consistent": true' && printf '%s' "$st" | grep -q '"open_txns": 0' &&
     [ "${lag:-1}" = 0 ]; then break; fi
  sleep 0.1
done
$sctl standby status
say "the standby's copy of the accounts (coral-bank --check-copy): the money adds up, as on the primary"
$B/tools/coral-bank -c "$SCONF" --accounts 1000 --per-block 8 --check-copy

say "stopping the cluster and the standby"
$node stop all
$snode stop all
trap - EXIT

say "what is left"
left=$(ls /dev/shm | grep -E '^coral\.coral(-standby)?\.' || true)
socks=$(ls /tmp/coral/node*/ /tmp/coral-standby/node1/ 2>/dev/null | grep -E '\.(sock|pid)$' || true)
if [ -z "$left" ] && [ -z "$socks" ]; then
  echo "nothing: no SGA in /dev/shm, no socket or pidfile in the run directories"
else
  echo "LEFT BEHIND: $left $socks" >&2
  exit 1
fi
