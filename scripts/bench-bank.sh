#!/usr/bin/env bash
# The bank against PostgreSQL 15 on this machine, in the same run (issue 23, item 4): Coral's
# coral-bank on a three-node cluster (1000 accounts, 8 per block: two blocks in X, two
# balances changed with redo, a commit) and the same transfers in one PostgreSQL 15 (a
# pgbench script: two UPDATEs of a 1000-row table in one transaction, the lower id first so
# that neither side deadlocks, synchronous_commit on, fsync on), both on the same disk,
# alternating, ROUNDS times, at 6 and 48 sessions (Coral: a third on each node). Prints the
# medians of transfers per second and Coral's over PostgreSQL's. Goal: at least 1.5x at both
# counts. A benchmark prints figures; it asserts nothing.
#
#   scripts/bench-bank.sh [ROUNDS (3)] [SECONDS per run (5)] [SESSIONS... (6 48)]
#
# Works in ${BENCH_DIR:-/var/tmp/coral-bench-bank}; ports 19100-19399 (Coral), 19450
# (PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-5}
shift 2 2>/dev/null || shift $#
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(6 48)
DIR=${BENCH_DIR:-/var/tmp/coral-bench-bank}
B=${BUILD_DIR:-build}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
ACCOUNTS=1000

./scripts/install-deps.sh >/dev/null
if [ ! -x "$PGBIN/pg_ctl" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi
./scripts/build.sh "$B" >/dev/null
for n in "${COUNTS[@]}"; do
  [ $((n % 3)) -eq 0 ] || { echo "bench-bank: $n sessions do not split over three nodes" >&2; exit 2; }
done

pgstop() { [ -d "$DIR/pg" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/pg" -m fast stop >/dev/null 2>&1 || true; }
corstop() { [ -f "$DIR/coral.conf" ] && "$B/tools/coral-node" -c "$DIR/coral.conf" stop all >/dev/null 2>&1 || true; }
corstop
pgstop
rm -rf "$DIR"
mkdir -p "$DIR"
trap 'corstop; pgstop' EXIT

# ---- Coral: three nodes
CONF=$DIR/coral.conf
sed -e "s#/tmp/coral#$DIR/coral#g" -e 's/^name = coral$/name = benchbank/' \
    -e 's/^base_port = 7100$/base_port = 19100/' -e 's/^base_port = 7200$/base_port = 19200/' \
    -e 's/^base_port = 7300$/base_port = 19300/' etc/coral.conf > "$CONF"
"$B/tools/coral-node" -c "$CONF" start all >/dev/null
ctl="$B/tools/coralctl -c $CONF"
for _ in $(seq 1 300); do
  ok=1
  for i in 1 2 3; do
    $ctl -n "$i" --json grd status 2>/dev/null | grep -q '"map_version": [1-9]' || ok=0
  done
  [ "$ok" = 1 ] && break
  sleep 0.1
done
[ "$ok" = 1 ] || { echo "bench-bank: the cluster (a bucket map on every node) did not come up within 30 s" >&2; exit 1; }
coral_run() { # SESSIONS -> transfers per second
  "$B/tools/coral-bank" -c "$CONF" --accounts "$ACCOUNTS" --per-block 8 --sessions $(($1 / 3)) --readers 0 \
    --seconds "$SECS" --json | sed -n 's/.*"ok":true,"transfers":[0-9]*,"per_second":\([0-9.]*\).*/\1/p'
}

# ---- PostgreSQL: one server, the accounts in a table
mkdir -p "$DIR/pg" && chown postgres: "$DIR" "$DIR/pg"
runuser -u postgres -- "$PGBIN/initdb" -D "$DIR/pg" -A trust >/dev/null
maxn=0
for n in "${COUNTS[@]}"; do [ "$n" -gt "$maxn" ] && maxn=$n; done
cat >> "$DIR/pg/postgresql.conf" <<EOF
port = 19450
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
max_connections = $((maxn + 20))
synchronous_commit = on
fsync = on
EOF
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/pg" -l "$DIR/pg.log" -w start >/dev/null
psqlp() { runuser -u postgres -- psql -h 127.0.0.1 -p 19450 -qAt -d postgres -c "$1"; }
psqlp "CREATE TABLE acct (id int PRIMARY KEY, bal bigint NOT NULL)"
cat > "$DIR/transfer.sql" <<EOF
\\set a random(1, $ACCOUNTS)
\\set b random(1, $ACCOUNTS)
\\set amt random(1, 100)
BEGIN;
UPDATE acct SET bal = bal - :amt WHERE id = least(:a, :b);
UPDATE acct SET bal = bal + :amt WHERE id = greatest(:a, :b);
END;
EOF
chmod 644 "$DIR/transfer.sql"
pg_run() { # SESSIONS -> transfers per second
  psqlp "TRUNCATE acct; INSERT INTO acct SELECT g, 1000000 FROM generate_series(1, $ACCOUNTS) g; CHECKPOINT"
  runuser -u postgres -- "$PGBIN/pgbench" -h 127.0.0.1 -p 19450 -n -f "$DIR/transfer.sql" -c "$1" \
    -j "$(( $1 < 2 ? $1 : 2 ))" -T "$SECS" postgres 2>/dev/null | awk '/^tps/ { printf "%.1f\n", $3 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A r
for round in $(seq 1 "$ROUNDS"); do
  for n in "${COUNTS[@]}"; do
    c=$(coral_run "$n"); [ -n "$c" ] || { echo "bench-bank: coral-bank failed at $n sessions" >&2; exit 1; }
    p=$(pg_run "$n"); [ -n "$p" ] || { echo "bench-bank: pgbench failed at $n sessions" >&2; exit 1; }
    r[c$n]+="$c "
    r[p$n]+="$p "
    echo "round $round, $n sessions: Coral $c, PostgreSQL $p transfers/s" >&2
  done
done
echo "transfers per second, median of $ROUNDS rounds of ${SECS} s ($(nproc) CPUs shared by the three nodes, PostgreSQL and the clients):"
for n in "${COUNTS[@]}"; do
  c=$(tr ' ' '\n' <<<"${r[c$n]}" | grep -v '^$' | median)
  p=$(tr ' ' '\n' <<<"${r[p$n]}" | grep -v '^$' | median)
  awk -v n="$n" -v c="$c" -v p="$p" 'BEGIN {
    printf "  %2d sessions: Coral %8.0f  PostgreSQL %8.0f  Coral/PostgreSQL %.2fx (goal: at least 1.5x)\n", n, c, p,
      (p > 0 ? c / p : 0) }'
done
