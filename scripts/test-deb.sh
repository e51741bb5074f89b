#!/usr/bin/env bash
# The Debian packages' test: builds them (scripts/build-deb.sh; CORAL_DEBS=DIR: takes those
# it built already, as test-all.sh has it do in the background), has lintian look at them,
# installs them with dpkg -i,
# checks the installed configuration (coral-node -n), the man pages, the systemd unit
# (systemd-analyze verify, and its exposure score), a program built against libcoral-dev
# with pkg-config, then starts the three nodes of /etc/coral/coral.conf as the user coral
# from the installed binaries, runs the installed coral-bank on them, stops them, and
# removes the packages (dpkg -P), checking nothing of theirs is left. Needs root, and a
# machine where coral is not installed already (it installs and removes it). One line per
# check, "deb: CHECK: ok" or "deb: CHECK FAILED ..."; the last line counts them.
set -uo pipefail
cd "$(dirname "$0")/.."
ok=0; bad=0
pass() { echo "deb: $1: ok"; ok=$((ok + 1)); }
fail() { echo "deb: $1 FAILED${2:+: $2}"; bad=$((bad + 1)); }
check() { # NAME COMMAND...: runs it, output kept for a failure
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$(echo "$out" | tail -15)"; fi
}
finish() { echo "deb: $ok checks passed, $bad failed"; [ "$bad" -eq 0 ]; exit $?; }

if [ "$(id -u)" -ne 0 ]; then fail "root" "the package test installs packages: run it as root"; finish; fi
if dpkg-query -W -f='${Status}' coral 2>/dev/null | grep -q "installed"; then
  fail "a machine without coral" "coral is installed here already; this test installs and purges it"
  finish
fi
had_user=0; getent passwd coral >/dev/null && had_user=1
work=$(mktemp -d /tmp/coral-debtest-XXXXXX)
ctl="coralctl -c /etc/coral/coral.conf"
cleanup() {
  coral-node stop all >/dev/null 2>&1 || true
  dpkg -P coral libcoral-dev libcoral1 >/dev/null 2>&1 || true
  rm -rf "$work" /var/lib/coral /run/coral
  [ "$had_user" = 1 ] || deluser --system coral >/dev/null 2>&1 || true
}
trap cleanup EXIT

if [ -n "${CORAL_DEBS:-}" ]; then
  mkdir -p "$work/debs" && cp "$CORAL_DEBS"/*.deb "$work/debs"/ 2>/dev/null
  if ! ls "$work"/debs/coral_*.deb >/dev/null 2>&1; then
    fail "build" "CORAL_DEBS=$CORAL_DEBS holds no coral_*.deb"; finish
  fi
elif ! ./scripts/build-deb.sh "$work/debs" > "$work/build.txt" 2>&1; then
  fail "build" "$(tail -30 "$work/build.txt")"; finish
fi
pass "build ($(ls "$work/debs" | grep -vc dbgsym) packages)"
lint=$(lintian --tag-display-limit 0 "$work"/debs/coral_*.deb "$work"/debs/libcoral1_*.deb \
  "$work"/debs/libcoral-dev_*.deb 2>&1 | grep -v 'running with root privileges')
if [ -z "$lint" ]; then pass "lintian: nothing to say"; else fail "lintian" "$lint"; fi

check "dpkg -i" dpkg -i "$work"/debs/libcoral1_*.deb "$work"/debs/libcoral-dev_*.deb "$work"/debs/coral_*.deb
check "coral-node -n on the installed configuration" coral-node -n
check "man coralctl found" sh -c 'man -w coralctl && man coralctl 2>/dev/null | grep -q "coralctl"'
check "man coral.conf found" man -w 5 coral.conf
check "the coral user and its directories" sh -c \
  'getent passwd coral && [ "$(stat -c %U /var/lib/coral)" = coral ] && [ "$(stat -c %U /run/coral)" = coral ] &&
   [ "$(stat -c %G:%a /etc/coral/coral.conf)" = coral:640 ]'
check "systemd-analyze verify coral-node@.service" sh -c \
  'out=$(systemd-analyze verify /lib/systemd/system/coral-node@.service 2>&1); rc=$?; echo "$out"; [ $rc = 0 ] && [ -z "$out" ]'
exposure=$(systemd-analyze security --offline=true /lib/systemd/system/coral-node@.service 2>/dev/null |
  sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p' | tail -1)
echo "deb: systemd-analyze security: exposure ${exposure:-unknown} (0 is best, 10 worst)"

cat > "$work/hello.c" <<'EOF'
#include <coral/coral.h>
#include <stdio.h>
/* a program built against the installed libcoral-dev: opening a session on a node that
 * is not running must fail with a message, not crash */
int main(void)
{
	struct coral_session *s = NULL;
	int rc = coral_session_open("/etc/coral/coral.conf", 1, "test", "deb-hello", &s);
	printf("%d %s\n", rc, coral_session_error(s));
	coral_session_close(s);
	return rc == 0 ? 0 : 3;
}
EOF
check "a program built with pkg-config coral" sh -c \
  "gcc -Wall -Werror -o '$work/hello' '$work/hello.c' \$(pkg-config --cflags --libs coral)"
out=$("$work/hello" 2>&1); rc=$?
if [ $rc = 3 ] && [ -n "$(echo "$out" | cut -d' ' -f2-)" ]; then pass "libcoral refuses a stopped node with a message ($out)"
else fail "libcoral on a stopped node" "rc $rc: $out"; fi

# the three nodes of the installed configuration, as the user the unit runs them as
if runuser -u coral -- coral-node start all > "$work/start.txt" 2>&1; then pass "coral-node start all as coral"
else fail "coral-node start all as coral" "$(tail -20 "$work/start.txt"; tail -20 /run/coral/1/node.log 2>/dev/null)"; finish; fi
ready=0
for _ in $(seq 1 300); do
  ready=0
  for n in 1 2 3; do
    j=$($ctl -n "$n" --json raft status 2>/dev/null) || continue
    echo "$j" | grep -q '"leader": [1-9]' && ! echo "$j" | grep -q '"fenced": true' || continue
    $ctl -n "$n" grd status 2>/dev/null | grep -q '^map version [1-9]' && ready=$((ready + 1))
  done
  [ "$ready" = 3 ] && break
  sleep 0.1
done
if [ "$ready" = 3 ]; then pass "a leader and the bucket map on the three nodes"
else fail "a leader and the bucket map on the three nodes" "$($ctl -n 1 raft status 2>&1)"; fi
out=$(coral-bank -c /etc/coral/coral.conf --accounts 200 --per-block 8 --sessions 1 --readers 0 --seconds 3 2>&1); rc=$?
if [ $rc = 0 ]; then pass "the installed coral-bank ($(echo "$out" | grep -m1 -iE 'transfers' | sed 's/^ *//'))"
else fail "the installed coral-bank" "rc $rc: $(echo "$out" | tail -15)"; fi
check "coral-node stop all" coral-node stop all
check "nothing left in /dev/shm" sh -c '! ls /dev/shm | grep -q "^coral\.coral\."'

check "dpkg -P" dpkg -P coral libcoral-dev libcoral1
left=""
for f in /usr/sbin/lmsd /usr/bin/coralctl /usr/bin/coral-node /etc/coral/coral.conf /lib/systemd/system/coral-node@.service \
         /usr/include/coral/coral.h /usr/share/man/man8/coralctl.8.gz /run/coral; do
  [ -e "$f" ] && left="$left $f"
done
for p in coral libcoral1 libcoral-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "not-installed" ||
    { dpkg-query -W "$p" >/dev/null 2>&1 && left="$left package:$p"; }
done
if [ -z "$left" ]; then pass "removed cleanly"; else fail "removed cleanly" "still there:$left"; fi
finish
