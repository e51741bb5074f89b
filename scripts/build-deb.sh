#!/usr/bin/env bash
# Builds Coral's Debian packages (coral, libcoral1, libcoral-dev) with dpkg-buildpackage:
# the working tree (the files git tracks or would: git ls-files, ignored ones left out) is copied to a
# temporary directory, packaging/debian becomes its debian/, and the .deb files land in
# OUT_DIR (default build-deb/). Needs debhelper and dpkg-dev (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-build-deb}")
version=$(sed -n "s/^  version : '\([^']*\)',$/\1/p" meson.build)
deb_version=$(sed -n '1s/^coral (\([^)]*\)).*/\1/p' packaging/debian/changelog)
if [ "$version" != "$deb_version" ]; then
  echo "build-deb: meson.build says $version, packaging/debian/changelog $deb_version" >&2; exit 1
fi
work=$(mktemp -d /tmp/coral-deb-XXXXXX)
trap 'rm -rf "$work"' EXIT
src="$work/coral-$version"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$src"
cp -a packaging/debian "$src/debian"
echo "build-deb: building coral $version in $src"
(cd "$src" && DEB_BUILD_OPTIONS="parallel=${BUILD_JOBS:-$(nproc)}" dpkg-buildpackage -us -uc -b) \
  > "$work/build.log" 2>&1 || { tail -60 "$work/build.log"; echo "build-deb: dpkg-buildpackage failed" >&2; exit 1; }
mkdir -p "$out"
rm -f "$out"/*.deb
mv "$work"/*.deb "$out"/
ls -1 "$out"/*.deb
