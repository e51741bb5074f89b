#!/usr/bin/env bash
# The main job: starts the three-node cluster of etc/coral.conf on this machine, shows what
# each node runs, exercises every daemon over its socket, restarts a killed daemon, and
# stops the cluster cleanly, checking that nothing is left behind. Until the daemons'
# services exist (raftd, grdd, lmsd... in later issues) this is the work there is to show.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build}
CONF=${CORAL_CONF:-etc/coral.conf}
node="$B/tools/coral-node -c $CONF"
ctl="$B/tools/coralctl -c $CONF"

say() { printf '\n== %s\n' "$*"; }

say "checking $CONF"
$node -n

say "stopping anything left from an earlier run"
$node stop all

trap '$node stop all >/dev/null 2>&1 || true' EXIT
say "starting every node of $CONF on this machine"
$node start all

for n in 1 2 3; do
  say "coralctl -n $n status"
  $ctl -n "$n" status
done

say "coralctl -n 1 sga"
$ctl -n 1 sga

say "coralctl -n 2 ping all"
$ctl -n 2 ping all

victim=$(cat /tmp/coral/node3/lmsd.pid)
say "kill -9 lmsd of node 3 (pid $victim); the supervisor restarts it"
kill -9 "$victim"
for _ in $(seq 1 100); do
  sleep 0.05
  now=$(cat /tmp/coral/node3/lmsd.pid 2>/dev/null || true)
  if [ -n "$now" ] && [ "$now" != "$victim" ] && $ctl -n 3 ping lmsd >/dev/null 2>&1; then break; fi
done
$ctl -n 3 status | sed -n '1,2p;/lmsd/p'

say "stopping the cluster"
$node stop all
trap - EXIT

say "what is left"
left=$(ls /dev/shm | grep '^coral\.coral\.' || true)
socks=$(ls /tmp/coral/node*/ 2>/dev/null | grep -E '\.(sock|pid)$' || true)
if [ -z "$left" ] && [ -z "$socks" ]; then
  echo "nothing: no SGA in /dev/shm, no socket or pidfile in the run directories"
else
  echo "LEFT BEHIND: $left $socks" >&2
  exit 1
fi
