#!/usr/bin/env bash
# Installs what Coral needs to build and test on Debian 12, with apt-get. Safe to re-run:
# when every package is already there it does nothing.
set -euo pipefail
pkgs=(gcc pkg-config meson ninja-build libevent-dev libssl-dev libprotobuf-c-dev
      protobuf-c-compiler liblz4-dev libinih-dev libjansson-dev libcriterion-dev
      util-linux procps iproute2 openssl curl clang libclang-rt-14-dev
      prometheus tmux debhelper dpkg-dev man-db systemd lintian)
# prometheus and promtool: the metrics port's test and the alert rules' tests; tmux: coralctl
# top's; debhelper, dpkg-dev, man-db, systemd (systemd-analyze) and lintian: the Debian
# packages' test
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run this script as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
