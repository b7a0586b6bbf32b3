#!/usr/bin/env bash
# Download (never install) the Debian packages the test guest needs for ARCH
# and unpack them into DIR/root: Debian 12's own kernel with its modules,
# busybox, alsa-lib and its configuration, aplay/arecord, oscdump (liblo), the
# C runtime. Packages are cached in DIR/debs; a second run downloads nothing.
#
# Usage: scripts/vm/fetch-guest.sh ARCH DIR      (ARCH: amd64 | arm64)
# A foreign ARCH needs `dpkg --add-architecture ARCH && apt-get update` first
# (scripts/vm-test.sh does it).
set -euo pipefail
arch=${1:?ARCH}
dir=${2:?DIR}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
mkdir -p "$dir/debs"
# The versioned kernel package behind the meta package.
kpkg=$(apt-cache depends "linux-image-$arch:$arch" 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ :<>]*\).*/\1/p' | head -1)
[ -n "$kpkg" ] || { echo "fetch-guest: no linux-image-$arch for $arch in apt's lists" >&2; exit 1; }
pkgs=("$kpkg" busybox-static libasound2 alsa-utils liblo7 liblo-tools libc6 libgcc-s1)
cd "$dir/debs"
fetch() {
    # apt-get download as root drops to the _apt user unless told not to;
    # the cache directory belongs to whoever runs this script.
    apt-get download -q -o APT::Sandbox::User="$(id -un)" "$@" >/dev/null
}
for p in "${pkgs[@]}"; do
    ls "${p}"_*_"$arch".deb >/dev/null 2>&1 || fetch "$p:$arch"
done
# Architecture-independent: alsa-lib's configuration (alsa.conf, cards/, pcm/).
ls libasound2-data_*_all.deb >/dev/null 2>&1 || fetch libasound2-data
cd - >/dev/null
stamp="$dir/root/.p4-unpacked"
if [ ! -e "$stamp" ] || [ -n "$(find "$dir/debs" -newer "$stamp" -name '*.deb')" ]; then
    rm -rf "$dir/root"
    mkdir -p "$dir/root"
    for d in "$dir"/debs/*.deb; do dpkg-deb -x "$d" "$dir/root"; done
    touch "$stamp"
fi
ls "$dir/root/lib/modules" | head -1 >"$dir/kver"
echo "guest $arch: kernel $(cat "$dir/kver"), $(ls "$dir"/debs/*.deb | wc -l) packages (cache: $dir/debs)"
