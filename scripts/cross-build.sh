#!/usr/bin/env bash
# Build phase4 for the Raspberry Pi targets with Debian's cross gcc and the
# multiarch libasound2-dev, for machines without Docker/Podman (where `cross`
# cannot run). With a container engine, `cross build --release --target ...`
# and Cross.toml do the same.
#
# Usage: scripts/cross-build.sh [--install-deps] [arm64|armhf|all] [-- cargo build args]
#   arm64 = aarch64-unknown-linux-gnu (Pi 3/4/5, Zero 2 with a 64-bit OS)
#   armhf = armv7-unknown-linux-gnueabihf (32-bit Raspberry Pi OS)
# Binaries land in $CARGO_TARGET_DIR (default target/)/<triple>/release/phase4.
#
# One-time setup (what --install-deps does, as root):
#   dpkg --add-architecture arm64; dpkg --add-architecture armhf; apt-get update
#   apt-get install gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf \
#       libc6-dev-arm64-cross libc6-dev-armhf-cross \
#       libasound2-dev:arm64 libasound2-dev:armhf pkg-config
#   rustup target add aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf
set -euo pipefail
. "$(dirname "$0")/lib/appliance.sh"

install_deps=0
which=all
while [ $# -gt 0 ]; do
    case "$1" in
        --install-deps) install_deps=1 ;;
        arm64|armhf|all) which=$1 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) p4_die "unknown argument: $1 (try --help)" ;;
    esac
    shift
done

case "$which" in
    all) arches=(arm64 armhf) ;;
    *) arches=("$which") ;;
esac

if [ "$install_deps" = 1 ]; then
    p4_add_arch "${arches[@]}"
    pkgs=(pkg-config cmake)
    for a in "${arches[@]}"; do
        t=$(p4_gnu_tuple "$(p4_triple_for_arch "$a")")
        pkgs+=("gcc-$t" "libc6-dev-$a-cross" "libasound2-dev:$a")
    done
    p4_apt_install "${pkgs[@]}"
    for a in "${arches[@]}"; do rustup target add "$(p4_triple_for_arch "$a")"; done
fi

cd "$P4_ROOT"
for a in "${arches[@]}"; do
    triple=$(p4_triple_for_arch "$a")
    (
        p4_cross_env "$triple"
        p4_say "cargo build --release --target $triple $*"
        # cargo-deb sets PKG_CONFIG_PATH_<triple> to the target's pkgconfig
        # directory when it cross-builds; the same value here keeps alsa-sys's
        # build-script fingerprint equal, so scripts/build-deb.sh packages this
        # build instead of compiling phase4 again. (A name with dashes: bash
        # cannot export it, env can.)
        env "PKG_CONFIG_PATH_$triple=/usr/lib/$(p4_gnu_tuple "$triple")/pkgconfig" \
            cargo build --release --target "$triple" "$@"
    )
    out="${CARGO_TARGET_DIR:-$P4_ROOT/target}/$triple/release/phase4"
    [ -x "$out" ] || p4_die "no binary at $out"
    echo "$out"
done
