#!/usr/bin/env bash
# Build phase4-link (the GPL Ableton Link peer) and its Debian package, and
# check both: lintian on the .deb, systemd-analyze verify on its unit, the
# binary's --help. amd64 only (the arm packages cross-compile the same way
# as phase4's, see scripts/cross-build.sh, plus Link's C++ through cmake).
#
# Usage: scripts/build-link.sh [--output DIR]
# Needs (installed when missing): cmake, libclang-dev, lintian, cargo-deb.
# The package's Maintainer is whoever builds it: DEBFULLNAME and DEBEMAIL,
# as for scripts/build-deb.sh (scripts/ci-rig.sh sets a CI test label).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh
. scripts/lib/appliance.sh
maintainer=$(p4_deb_maintainer) ||
    p4_die "the package needs a Maintainer who can be reached: set DEBFULLNAME=\"Your Name\" and DEBEMAIL=you@your.domain"
out=target/debian
[ "${1:-}" = "--output" ] && out=$2
p4_apt_install cmake libclang-dev lintian systemd
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
t0=$(date +%s)
cargo build --release --quiet -p phase4-link
echo "build-link: phase4-link built in $(( $(date +%s) - t0 )) s"
mkdir -p "$out"
deb=$(cargo deb -p phase4-link --no-build --strip --no-separate-debug-symbols --no-dbgsym \
    --maintainer "$maintainer" --output "$out" 2>&1 | tail -1)
# The changelog's trailer is `-- @MAINTAINER@` (the builder signs it).
tree=$(mktemp -d)
chmod 755 "$tree"
dpkg-deb -R "$deb" "$tree"
changelog=$tree/usr/share/doc/phase4-link/changelog.Debian.gz
zcat "$changelog" | sed "s|^ -- @MAINTAINER@  | -- $maintainer  |" | gzip -9n >"$changelog.new"
mv "$changelog.new" "$changelog"
chmod 644 "$changelog"
dpkg-deb --root-owner-group -Zxz -b "$tree" "$deb" >/dev/null
rm -rf "$tree"
echo "build-link: $deb"
target/release/phase4-link --help | head -3
# In a directory of its own: lintian leaves an mldbm-elf-* file behind.
lt=$(mktemp -d)
TMPDIR="$lt" lintian --fail-on error,warning "$deb"
rm -rf "$lt"
# The unit as the package installs it, verified inside a root that holds
# the package's files and the host's units (sysinit.target, ...), like
# scripts/ci-appliance.sh does for phase4's.
root=$(mktemp -d /tmp/phase4-link-root.XXXXXX)
dpkg-deb -x "$deb" "$root"
unit=/usr/lib/systemd/system/phase4-link.service
cp -an /lib/systemd/system/. "$root/usr/lib/systemd/system/" 2>/dev/null || true
out=$(MANPATH="$root/usr/share/man" systemd-analyze verify --root="$root" "$unit" 2>&1) || true
if [ -n "$out" ]; then
    printf '%s\n' "$out"; rm -rf "$root"; echo "build-link: systemd-analyze verify failed"; exit 1
fi
systemd-analyze security --offline=yes --root="$root" phase4-link.service 2>&1 | tail -1
rm -rf "$root"
echo "build-link: ok"
