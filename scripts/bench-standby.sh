#!/usr/bin/env bash
# Synchronous commit's cost against PostgreSQL 15's, on this machine, in the same run:
# a one-node Coral primary with a one-node standby (replicad), and a PostgreSQL primary with
# one streaming standby (pg_basebackup), both with fsync on. Alternating, ROUNDS times:
#   - one session: a commit's median latency async and sync (Coral: commit-load changing 8
#     bytes of its own block; PostgreSQL: pgbench inserting one row), and sync minus async;
#   - SESSIONS sessions: commits per second async and sync, and sync/async;
#   - the standby's apply against the primary: transactions applied per second on the Coral
#     standby during the async many-session runs, over the primary's commits per second.
# Prints the medians over the rounds and the ratios. Goals (issue 20): Coral's sync overhead at
# most 1.0x PostgreSQL's; sync/async at SESSIONS sessions at least PostgreSQL's; the apply
# keeps up (ratio at least 1). A benchmark prints figures; it asserts nothing.
#
#   scripts/bench-standby.sh [ROUNDS (3)] [SECONDS per run (5)] [SESSIONS (32)]
#
# Works in ${BENCH_DIR:-/var/tmp/coral-bench-standby}; ports 18800-18831 (Coral), 18950-18951
# (PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-5}
SESS=${3:-32}
DIR=${BENCH_DIR:-/var/tmp/coral-bench-standby}
B=${BUILD_DIR:-build}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

./scripts/install-deps.sh >/dev/null
if [ ! -x "$PGBIN/pg_ctl" ]; then
  apt-get install -y -qq postgresql-15 >/dev/null
fi
./scripts/build.sh "$B" >/dev/null

pgstop() { for d in "$DIR/pgs" "$DIR/pgp"; do
  [ -d "$d" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m fast stop >/dev/null 2>&1 || true; done; }
corstop() { for c in "$DIR/primary.conf" "$DIR/standby.conf"; do
  [ -f "$c" ] && "$B/tools/coral-node" -c "$c" stop all >/dev/null 2>&1 || true; done; }
corstop
pgstop
rm -rf "$DIR"
mkdir -p "$DIR"
trap 'corstop; pgstop' EXIT

# ---- Coral: one primary node, one standby node
printf 'bench-standby-replication-token\n' > "$DIR/repl.token"
chmod 600 "$DIR/repl.token"
awk -v dir="$DIR" '
  /^\[/ { sec = $0; skip = (sec == "[node.2]" || sec == "[node.3]") }
  skip { next }
  sec == "[replication]" && /^standby =/ { print "standby = 127.0.0.1:18823"; next }
  sec == "[replication]" && /^token_file =/ { print "token_file = " dir "/repl.token"; next }
  sec == "[replication]" && /^sync =/ { print "sync ="; next }
  /^name = coral$/ { print "name = benchsbp"; next }
  /^base_port = 7100$/ { print "base_port = 18800"; next }
  { gsub("/tmp/coral", dir "/p"); print }' etc/coral.conf > "$DIR/primary.conf"
sed -e "s#/tmp/coral-standby/repl.token#$DIR/repl.token#" -e "s#/tmp/coral-standby#$DIR/s#g" \
    -e 's/^name = coral-standby$/name = benchsbs/' -e 's/^base_port = 7400$/base_port = 18816/' \
    -e 's/^primary_cluster = coral$/primary_cluster = benchsbp/' etc/coral-standby.conf > "$DIR/standby.conf"
pnode="$B/tools/coral-node -c $DIR/primary.conf"
pctl="$B/tools/coralctl -c $DIR/primary.conf"
sctl="$B/tools/coralctl -c $DIR/standby.conf"
"$B/tools/coral-node" -c "$DIR/standby.conf" start all >/dev/null
$pnode start all >/dev/null
for _ in $(seq 1 200); do
  $pctl -n 1 --json raft status 2>/dev/null | grep -q '"fenced": false' && break
  sleep 0.1
done
$pctl datafile create load $((SESS + 8)) >/dev/null
FID=$($pctl --json datafile list | sed -n 's/^ *"id": \([0-9]*\).*/\1/p' | head -1)
$sctl standby seed "$DIR/p/shared" >/dev/null
for _ in $(seq 1 100); do $sctl standby status | grep -q 'apply: applying' && break; sleep 0.1; done

coral_sync() { # MODE: async | sync
  local v=""
  [ "$1" = sync ] && v="FIRST 1 (benchsbs)"
  sed -i "/^\[replication\]/,/^\[/ s/^sync =.*/sync = $v/" "$DIR/primary.conf"
  $pctl -n 1 reload replicad >/dev/null
  for _ in $(seq 1 50); do
    if [ "$1" = sync ]; then $pctl -n 1 standby status | grep -q 'commits: sync FIRST' && break
    else $pctl -n 1 standby status | grep -q 'commits: async' && break; fi
    sleep 0.1
  done
}
coral_run() { # SESSIONS -> "per_second p50_us"
  "$B/tests/bench/commit-load" -c "$DIR/primary.conf" --node 1 --file "$FID" --sessions "$1" --seconds "$SECS" |
    sed -n 's/.*"per_second":\([0-9.]*\),"p50_us":\([0-9]*\).*/\1 \2/p'
}
applied() { $sctl --json standby status | sed -n 's/^ *"txns_applied": \([0-9]*\).*/\1/p' | head -1; }

# ---- PostgreSQL: a primary and one streaming standby
mkdir -p "$DIR/pgp" && chown postgres: "$DIR" "$DIR/pgp"
runuser -u postgres -- "$PGBIN/initdb" -D "$DIR/pgp" -A trust >/dev/null
cat >> "$DIR/pgp/postgresql.conf" <<EOF
port = 18950
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
max_wal_senders = 4
wal_level = replica
max_connections = $((SESS + 20))
synchronous_standby_names = ''
EOF
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/pgp" -l "$DIR/pgp.log" -w start >/dev/null
runuser -u postgres -- "$PGBIN/pg_basebackup" -h 127.0.0.1 -p 18950 -D "$DIR/pgs" -R >/dev/null
sed -i 's/^port = 18950/port = 18951/' "$DIR/pgs/postgresql.conf"
sed -i "s/^primary_conninfo = '/primary_conninfo = 'application_name=standby1 /" "$DIR/pgs/postgresql.auto.conf"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/pgs" -l "$DIR/pgs.log" -w start >/dev/null
psqlp() { runuser -u postgres -- psql -h 127.0.0.1 -p 18950 -qAt -d postgres -c "$1"; }
psqlp "CREATE TABLE t (id bigserial PRIMARY KEY, v int)"
printf 'INSERT INTO t (v) VALUES (1);\n' > "$DIR/insert.sql"
chmod 644 "$DIR/insert.sql"
pg_sync() {
  local v=""
  [ "$1" = sync ] && v="FIRST 1 (standby1)"
  psqlp "ALTER SYSTEM SET synchronous_standby_names = '$v'" && psqlp "SELECT pg_reload_conf()" >/dev/null
  for _ in $(seq 1 50); do
    st=$(psqlp "SELECT sync_state FROM pg_stat_replication" || true)
    if [ "$1" = sync ] && [ "$st" = sync ]; then break; fi
    if [ "$1" = async ] && [ "$st" = async ]; then break; fi
    sleep 0.1
  done
}
pg_run() { # SESSIONS -> "tps latency_us"
  runuser -u postgres -- "$PGBIN/pgbench" -h 127.0.0.1 -p 18950 -n -f "$DIR/insert.sql" -c "$1" -j "$(( $1 < 4 ? $1 : 4 ))" \
    -T "$SECS" postgres 2>/dev/null |
    awk '/^latency average/ { lat = $4 * 1000 } /^tps/ { tps = $3 } END { printf "%.1f %d\n", tps, lat }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A r
for round in $(seq 1 "$ROUNDS"); do
  for mode in async sync; do
    coral_sync "$mode"
    pg_sync "$mode"
    read -r _ lat < <(coral_run 1); r[c1$mode]+="$lat "
    read -r _ lat < <(pg_run 1); r[p1$mode]+="$lat "
    a0=$(applied)
    read -r tps _ < <(coral_run "$SESS"); r[cn$mode]+="$tps "
    a1=$(applied)
    if [ "$mode" = async ]; then
      r[apply]+="$(awk -v a="$a0" -v b="$a1" -v s="$SECS" -v t="$tps" 'BEGIN { printf "%.3f", (b - a) / s / t }') "
    fi
    read -r tps _ < <(pg_run "$SESS"); r[pn$mode]+="$tps "
  done
  echo "round $round done" >&2
done
m() { tr ' ' '\n' <<<"${r[$1]}" | grep -v '^$' | median; }
c1a=$(m c1async) c1s=$(m c1sync) p1a=$(m p1async) p1s=$(m p1sync)
cna=$(m cnasync) cns=$(m cnsync) pna=$(m pnasync) pns=$(m pnsync) ap=$(m apply)
awk -v c1a="$c1a" -v c1s="$c1s" -v p1a="$p1a" -v p1s="$p1s" -v cna="$cna" -v cns="$cns" -v pna="$pna" -v pns="$pns" \
    -v ap="$ap" -v n="$SESS" -v rounds="$ROUNDS" 'BEGIN {
  co = c1s - c1a; po = p1s - p1a
  printf "one session, commit latency (median of %d rounds, us):\n", rounds
  printf "  Coral       async %8.0f  sync %8.0f  sync overhead %8.0f\n", c1a, c1s, co
  printf "  PostgreSQL  async %8.0f  sync %8.0f  sync overhead %8.0f\n", p1a, p1s, po
  printf "  overhead ratio Coral/PostgreSQL: %.2fx (goal: at most 1.0x)\n", (po > 0 ? co / po : 0)
  printf "%d sessions, commits per second:\n", n
  printf "  Coral       async %8.0f  sync %8.0f  sync/async %.2f\n", cna, cns, (cna > 0 ? cns / cna : 0)
  printf "  PostgreSQL  async %8.0f  sync %8.0f  sync/async %.2f\n", pna, pns, (pna > 0 ? pns / pna : 0)
  printf "  Coral sync/async over PostgreSQL sync/async: %.2fx (goal: at least 1.0x)\n", ((pna > 0 && cna > 0 && pns > 0) ? (cns / cna) / (pns / pna) : 0)
  printf "the Coral standby applied %.2fx the transactions the primary committed, during the async runs (goal: at least 1.0)\n", ap
}'
