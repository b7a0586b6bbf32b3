#!/usr/bin/env bash
# Build the phase4 Debian package for one architecture with cargo-deb.
#
# Usage: scripts/build-deb.sh ARCH [--test] [--output DIR] [-- cargo-deb args]
#   ARCH    amd64 | arm64 | armhf (arm ones cross-compile with Debian's cross
#           gcc: see scripts/cross-build.sh for the one-time setup)
#   --test  build the TEST package (for scripts/systemd-test.sh) into
#           target/debian-test/, with the revision 1~faultinjection (it
#           sorts below the release of the same version, so apt replaces
#           it with the release): the `phase4-fault-injection` binary
#           installed as /usr/bin/phase4 (Cargo.toml's deb variant
#           `fault-injection`). Never ship it. Only
#           that binary is built with the feature, so target/release/phase4
#           stays the normal build; the compiled dependencies are shared.
#   --output DIR   where to write the .deb (default target/debian/)
# Prints the path of the .deb on the last line of stdout.
#
# The package's Maintainer is whoever builds it: DEBFULLNAME and DEBEMAIL
# (as for dch; or DEBEMAIL="Name <address>"); the build stops without them.
# They also sign the debian/changelog entries whose trailer is
# `-- @MAINTAINER@`.
#
# Needs: cargo install --locked cargo-deb
set -euo pipefail
. "$(dirname "$0")/lib/appliance.sh"

[ $# -ge 1 ] || p4_die "usage: $0 amd64|arm64|armhf [--test] [--output DIR]"
arch=$1; shift
triple=$(p4_triple_for_arch "$arch") || p4_die "unknown architecture: $arch (amd64, arm64, armhf)"
test_pkg=0
output=""
while [ $# -gt 0 ]; do
    case "$1" in
        --test) test_pkg=1 ;;
        --output) output=$2; shift ;;
        --) shift; break ;;
        *) p4_die "unknown argument: $1" ;;
    esac
    shift
done

cd "$P4_ROOT"
command -v cargo-deb >/dev/null || p4_die "cargo-deb missing: cargo install --locked cargo-deb"

maintainer=$(p4_deb_maintainer) ||
    p4_die "the package needs a Maintainer who can be reached: set DEBFULLNAME=\"Your Name\" and DEBEMAIL=you@your.domain"
args=(--strip --no-separate-debug-symbols --no-dbgsym --maintainer "$maintainer")
[ -n "$triple" ] && args+=(--target "$triple")
if [ "$test_pkg" = 1 ]; then
    # cargo deb would build every binary with the feature (features are the
    # package's), replacing target/release/phase4: build the one binary
    # here and package it without a build.
    build=(cargo build --release --features fault-injection --bin phase4-fault-injection)
    [ -n "$triple" ] && build+=(--target "$triple")
    args+=(--variant fault-injection --no-build --deb-revision "1~faultinjection")
    output=${output:-$P4_ROOT/target/debian-test}
fi
output=${output:-$P4_ROOT/target/debian}
mkdir -p "$output"

if [ -n "$triple" ] && [ "$triple" != x86_64-unknown-linux-gnu ]; then
    p4_cross_env "$triple"
    # dpkg-shlibdeps (for Depends: $auto) finds the target's libraries here.
fi

if [ "$test_pkg" = 1 ]; then
    p4_say "${build[*]}"
    "${build[@]}" >&2 || p4_die "cargo build of phase4-fault-injection failed"
fi
p4_say "cargo deb ${args[*]} --output $output $*"
log=$(mktemp)
if ! cargo deb "${args[@]}" --output "$output/" "$@" | tee "$log" >&2; then
    rm -f "$log"; p4_die "cargo deb failed"
fi
deb=$(grep -E '\.deb$' "$log" | tail -1)
rm -f "$log"
[ -f "$deb" ] || p4_die "cargo deb did not report a .deb"

# cargo-deb writes no DEBIAN/md5sums; add it so `dpkg --verify phase4` can
# spot files damaged on a Pi's SD card (and lintian's no-md5sums-control-file
# goes away). Repacking keeps every file, mode and the control data as built.
tree=$(mktemp -d)
chmod 755 "$tree"
dpkg-deb -R "$deb" "$tree"
changelog=$tree/usr/share/doc/phase4/changelog.Debian.gz
if [ -f "$changelog" ]; then
    zcat "$changelog" | M="$maintainer" awk 'index($0, " -- @MAINTAINER@  ") == 1 { $0 = " -- " ENVIRON["M"] substr($0, 17) } { print }' |
        gzip -9n >"$changelog.new"
    mv "$changelog.new" "$changelog"
    chmod 644 "$changelog"
fi
(cd "$tree" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) \
    >"$tree/DEBIAN/md5sums"
chmod 644 "$tree/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz -b "$tree" "$deb" >/dev/null
rm -rf "$tree"
echo "$deb"
