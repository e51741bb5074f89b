#!/usr/bin/env bash
# libcoral.so exports exactly the functions coral.h declares (coral.map): none of the
# libcommon code it carries, and nothing of the header missing.
#   libcoral-exports.sh LIBCORAL_SO CORAL_H
set -euo pipefail
so=$1 hdr=$2
got=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRVWi]$/ {sub(/@.*/, "", $3); print $3}' | grep -v '^CORAL_0$' | sort -u)
want=$(grep -oE '\bcoral_[a-z0-9_]+ *\(' "$hdr" | tr -d ' (' | sort -u)
if [ "$got" != "$want" ]; then
  echo "not ok 1 - libcoral.so exports what coral.h declares"
  diff <(echo "$want") <(echo "$got") | sed 's/^/# /'
  echo "1..1"
  exit 1
fi
echo "ok 1 - libcoral.so exports the $(echo "$want" | wc -l) functions of coral.h and nothing else"
echo "1..1"
