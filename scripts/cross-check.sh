#!/usr/bin/env bash
# Proves `cross build` (cross-rs 0.2.5) for arm64 and armhf the way users with
# Docker run it, on a machine that has no Docker and cannot pull cross's images
# from ghcr.io:
#   1. podman + runc from Debian stand in for Docker;
#   2. a Debian root filesystem made with debootstrap (cross gcc for aarch64
#      and armhf, native gcc, pkg-config, and the ENV that cross's own images
#      set) is turned into a local image with `podman import`: no registry;
#   3. cross 0.2.5 is installed into a private CARGO_HOME, and the same Rust
#      version as the host's into a private RUSTUP_HOME, so the machine's own
#      toolchain is never touched (checked before and after: `rustc -V`,
#      `rustup toolchain list`, installed targets and components);
#   4. `cross build --release --target <triple>` runs with the project's own
#      Cross.toml: only the image is overridden, by environment variable
#      (CROSS_TARGET_<TRIPLE>_IMAGE), so Cross.toml's pre-build installs
#      libasound2-dev:<arch> into the image exactly as it does for users;
#   5. each binary must have been built inside the container (dep-info paths
#      /project, /target), and then passes scripts/qemu-smoke.sh (arm64 and
#      armhf under qemu user-mode emulation).
# Prints a table of timings and results; exits non-zero on any failure.
#
# Usage: scripts/cross-check.sh [--suite bookworm|bullseye]
#   --suite  Debian release of the build image (default bookworm). A bookworm
#            image links binaries that need glibc 2.34+; bullseye, 2.30.
#
# Cache: ${CARGO_TARGET_DIR:-target}/cross-check/ holds the root filesystems,
# podman's image storage (its own, not /var/lib/containers), the private Rust
# and cargo homes, and cross's target directories. A second run reuses all of
# it. Remove it (as root) to start over.
#
# Needs: Debian/Ubuntu on amd64, root or sudo (apt-get, debootstrap, podman),
# rustup, network access to the Debian mirror, crates.io and Rust's release
# server (static.rust-lang.org). Installs its own packages.
#
# Environment: PHASE4_DEBIAN_MIRROR, PHASE4_DEBIAN_SECURITY_MIRROR (default:
# the host's apt sources, else deb.debian.org). PHASE4_DEBIAN_SECURITY_MIRROR=none
# leaves <suite>-security out of the image, for a mirror whose security
# archive does not match its own index (the pre-build then fails with 404s).
set -euo pipefail
. "$(dirname "$0")/lib/appliance.sh"

CROSS_VERSION=0.2.5
TRIPLES=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

suite=bookworm
while [ $# -gt 0 ]; do
    case "$1" in
        --suite) suite=${2:-}; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) p4_die "unknown argument: $1 (try --help)" ;;
    esac
    shift
done
case "$suite" in
    bookworm|bullseye) ;;
    *) p4_die "--suite must be bookworm or bullseye" ;;
esac
[ "$(uname -m)" = x86_64 ] || p4_die "cross's images are x86_64: run this on an amd64 host"
command -v apt-get >/dev/null || p4_die "needs a Debian or Ubuntu host (apt-get)"
real_rustup=$(command -v rustup) || p4_die "needs rustup (cross drives the toolchain through it)"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
cd "$P4_ROOT"
cache="${CARGO_TARGET_DIR:-$P4_ROOT/target}/cross-check"
mkdir -p "$cache"
log="$cache/log"
mkdir -p "$log"

failures=0
pass() { p4_pass "cross-check: $*"; }
fail() { p4_fail "cross-check: $*"; failures=$((failures + 1)); }

# Timings: "step|seconds|cold or cached".
timings=()
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$(now) - $1:.1f}')"; }
record() { timings+=("$1|$2|$3"); }

# --- the machine's toolchain, as the caller sees it ---------------------------
# What cross 0.2.5 changes when it misreads rustup: the active toolchain's
# version (`rustup toolchain add` updates a channel), the toolchains and their
# update hashes; it also creates ~/.xargo. (Installed targets and components
# are left out: on a shared machine others add them; that cross asked rustup
# for nothing but queries is checked from the shim's log.)
toolchain_state() {
    rustc -V
    cargo -V
    "$real_rustup" toolchain list
    grep -Hs . "${RUSTUP_HOME:-$HOME/.rustup}"/update-hashes/* || true
    [ -e "$HOME/.xargo" ] && echo "$HOME/.xargo exists" || echo "no $HOME/.xargo"
    command -v cross || echo "no cross on PATH"
}
toolchain_state >"$cache/toolchain-before.txt" 2>&1
host_rustc=$(rustc -V)
rust_version=$(rustc -V | awk '{print $2}')
case "$rust_version" in
    *-*) p4_die "host rustc is $rust_version: this check pins a stable release (X.Y.Z)" ;;
esac

# --- 1. host packages ----------------------------------------------------------
t0=$(now)
host_pkgs=(podman runc debootstrap qemu-user liblo-tools file binutils python3
    libc6:arm64 libasound2:arm64 libc6:armhf libasound2:armhf)
# qemu-smoke.sh runs the arm binaries with `qemu-* -L /`: their loader and
# libraries come from the host's multiarch packages above.
$SUDO bash -c ". '$P4_ROOT/scripts/lib/appliance.sh' && p4_add_arch arm64 armhf && p4_apt_install ${host_pkgs[*]}" ||
    p4_die "could not install ${host_pkgs[*]}"
record "host packages (apt)" "$(elapsed "$t0")" "-"

# --- 2. podman's configuration, private to this check ---------------------------
# runc, not crun: crun refuses hybrid cgroups (v1 controllers + v2, as on this
# project's build machine). podman asks the runtime for nofile=1048576 by
# default, which fails without CAP_SYS_RESOURCE when the hard limit is lower
# ("error setting rlimit type 7"): ask for the host's hard limit. podman
# lowers its own nproc limit to 32768, so no more than that either.
hard_nofile=$($SUDO bash -c 'ulimit -Hn')
hard_nproc=$($SUDO bash -c 'ulimit -Hu')
cap() { if [ "$1" = unlimited ] || [ "$1" -gt "$2" ]; then echo "$2"; else echo "$1"; fi; }
nofile=$(cap "$hard_nofile" 65536)
nproc=$(cap "$hard_nproc" 32768)
cat >"$cache/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
EOF
cat >"$cache/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$cache/containers"
runroot = "/run/phase4-cross-check-$(printf %s "$cache" | cksum | cut -d' ' -f1)"
EOF
export CONTAINERS_CONF="$cache/containers.conf" CONTAINERS_STORAGE_CONF="$cache/storage.conf"
engine=podman
if [ -n "$SUDO" ]; then
    # cross runs the engine itself: give it one that is root, like Docker's
    # daemon, and keeps this configuration.
    mkdir -p "$cache/bin"
    cat >"$cache/bin/podman" <<EOF
#!/bin/sh
exec sudo env CONTAINERS_CONF='$CONTAINERS_CONF' CONTAINERS_STORAGE_CONF='$CONTAINERS_STORAGE_CONF' podman "\$@"
EOF
    chmod +x "$cache/bin/podman"
    engine="$cache/bin/podman"
fi
pm() { "$engine" "$@"; }
# A podman build that fails (a pre-build step) leaves the overlay driver's
# bind mount of its own directory behind, and then `rm -rf target` fails with
# EBUSY. Release it on the way out unless a container still uses the store.
# shellcheck disable=SC2317 # called by the EXIT trap
release_storage() {
    findmnt -rn "$cache/containers/overlay" >/dev/null 2>&1 || return 0
    [ -z "$(pm ps -aq 2>/dev/null)" ] || return 0
    $SUDO umount "$cache/containers/overlay" 2>/dev/null || true
}
trap release_storage EXIT

# --- 3. root filesystem and images -----------------------------------------------
apt_source() {  # debian | debian-security: the host's mirror for it, if any
    local uri
    uri=$({
        grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{ for (i = 2; i <= NF; i++) print $i }'
        grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
            awk '{ print ($2 ~ /^\[/) ? $3 : $2 }'
    } | grep -E "/$1/?\$" | head -1) || true
    echo "${uri:-http://deb.debian.org/$1}"
}
mirror=${PHASE4_DEBIAN_MIRROR:-$(apt_source debian)}
security=${PHASE4_DEBIAN_SECURITY_MIRROR:-$(apt_source debian-security)}
# What cross's images carry for these targets (cross-rs docker/common.sh,
# cmake.sh and Dockerfile.<triple> at v0.2.5): cross gcc, libc dev files,
# native gcc for build scripts, pkg-config, make, and cmake (3.23.1 there,
# built by cmake.sh; the bundled libopus of the monitor stream needs >= 3.16,
# bookworm has 3.25). No libasound2-dev: Cross.toml's pre-build adds it.
image_pkgs="gcc libc6-dev pkg-config make cmake gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross"
rootfs="$cache/rootfs-$suite"
recipe="suite=$suite mirror=$mirror security=$security packages=$image_pkgs"
base="localhost/phase4-cross:$suite-base"

t0=$(now)
if [ -f "$rootfs.done" ] && [ "$(cat "$rootfs.done")" = "$recipe" ]; then
    record "rootfs: debootstrap $suite + cross gcc" "$(elapsed "$t0")" cached
else
    p4_say "debootstrap --variant=minbase $suite from $mirror"
    $SUDO rm -rf "$rootfs" "$rootfs.done"
    $SUDO debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$log/debootstrap.log" 2>&1 ||
        { tail -20 "$log/debootstrap.log"; p4_die "debootstrap failed (log: $log/debootstrap.log)"; }
    {
        printf 'deb %s %s main\ndeb %s %s-updates main\n' "$mirror" "$suite" "$mirror" "$suite"
        [ "$security" = none ] || printf 'deb %s %s-security main\n' "$security" "$suite"
    } | $SUDO tee "$rootfs/etc/apt/sources.list" >/dev/null
    $SUDO cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    p4_say "installing the cross compilers in the root filesystem"
    # A private mount namespace: /proc goes away with it, even on failure.
    # `apt-get update` may fail on one index (a mirror mid-sync); the install
    # decides.
    $SUDO unshare --mount --propagation private sh -c "
        mount -t proc proc '$rootfs/proc' &&
        chroot '$rootfs' sh -c '
            export DEBIAN_FRONTEND=noninteractive
            apt-get update || echo \"apt-get update reported errors; installing anyway\"
            apt-get install -y --no-install-recommends $image_pkgs &&
            apt-get clean && rm -rf /var/lib/apt/lists/*'" >"$log/rootfs.log" 2>&1 ||
        { tail -20 "$log/rootfs.log"; p4_die "installing into the root filesystem failed (log: $log/rootfs.log)"; }
    echo "$recipe" | $SUDO tee "$rootfs.done" >/dev/null
    record "rootfs: debootstrap $suite + cross gcc" "$(elapsed "$t0")" cold
fi

t0=$(now)
if pm image exists "$base" && [ -f "$cache/image-$suite.done" ] && cmp -s "$rootfs.done" "$cache/image-$suite.done"; then
    record "podman import" "$(elapsed "$t0")" cached
else
    p4_say "podman import $rootfs -> $base"
    $SUDO tar -C "$rootfs" -c . | pm import -q - "$base" >/dev/null
    # Images derived from the old base are stale.
    for triple in "${TRIPLES[@]}"; do pm rmi -f "localhost/phase4-cross:$suite-$triple" >/dev/null 2>&1 || true; done
    cp "$rootfs.done" "$cache/image-$suite.done"
    record "podman import" "$(elapsed "$t0")" cold
fi

# One image per target, with the ENV of cross's image for it.
for triple in "${TRIPLES[@]}"; do
    tuple=$(p4_gnu_tuple "$triple")
    var=${triple//-/_}
    image="localhost/phase4-cross:$suite-$triple"
    pm image exists "$image" && continue
    ctx="$cache/image-$triple"
    mkdir -p "$ctx"
    cat >"$ctx/Containerfile" <<EOF
FROM $base
ENV CARGO_TARGET_${var^^}_LINKER=$tuple-gcc \\
    CC_$var=$tuple-gcc \\
    PKG_CONFIG_PATH=/usr/lib/$tuple/pkgconfig/
EOF
    pm build -q -t "$image" "$ctx" >/dev/null
done

# --- 4. Rust toolchain and cross, private to this check --------------------------
rust_home="$cache/rustup"
cargo_home="$cache/cargo"
toolchain_dir="$rust_home/toolchains/$rust_version-x86_64-unknown-linux-gnu"
t0=$(now)
# rust-src too: cross 0.2.5 asks for it whenever the target's std is
# installed; present, cross only queries and installs nothing.
if [ -x "$toolchain_dir/bin/cargo" ] &&
    RUSTUP_HOME="$rust_home" "$real_rustup" component list --toolchain "$rust_version" --installed 2>/dev/null |
        grep -q '^rust-src' &&
    [ "$(RUSTUP_HOME="$rust_home" "$real_rustup" target list --toolchain "$rust_version" --installed | grep -cxF -e "${TRIPLES[0]}" -e "${TRIPLES[1]}")" = 2 ]; then
    record "private Rust $rust_version (+ arm std, rust-src)" "$(elapsed "$t0")" cached
else
    p4_say "rustup toolchain install $rust_version into $rust_home"
    mkdir -p "$rust_home" "$cargo_home"
    RUSTUP_HOME="$rust_home" CARGO_HOME="$cargo_home" "$real_rustup" toolchain install "$rust_version" \
        --profile minimal --component rust-src --target "${TRIPLES[0]}" --target "${TRIPLES[1]}" \
        --no-self-update >"$log/rustup.log" 2>&1 ||
        { tail -20 "$log/rustup.log"; p4_die "rustup toolchain install failed (log: $log/rustup.log)"; }
    record "private Rust $rust_version (+ arm std, rust-src)" "$(elapsed "$t0")" cold
fi
[ "$("$toolchain_dir/bin/rustc" -V)" = "$host_rustc" ] ||
    p4_die "private rustc is $("$toolchain_dir/bin/rustc" -V), host is $host_rustc"

# Everything cross runs sees only the private homes. rustup downloads would go
# to a closed port (and the shim refuses them anyway).
private_env() {
    export RUSTUP_HOME="$rust_home" CARGO_HOME="$cargo_home" XARGO_HOME="$cache/xargo"
    export PATH="$P4_ROOT/scripts/cross:$cargo_home/bin:$toolchain_dir/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    export P4_REAL_RUSTUP="$real_rustup" P4_RUSTUP_LOG="$cache/rustup-calls.log"
    export RUSTUP_DIST_SERVER=http://127.0.0.1:9 RUSTUP_UPDATE_ROOT=http://127.0.0.1:9/rustup
    unset RUSTUP_TOOLCHAIN RUSTC RUSTDOC CARGO_BUILD_TARGET CROSS_CONFIG
}

# Never run cross outside private_env: even `cross --version` goes through its
# toolchain check and, with the caller's rustup, would update their stable.
# cross's build script takes `git rev-parse HEAD` of whatever repository holds
# its source; inside this one (the private CARGO_HOME is under target/) it
# would call itself a development build, whose default images are the `main`
# tag rather than 0.2.5's: GIT_CEILING_DIRECTORIES keeps git out.
cross_version() { (private_env; cross --version 2>/dev/null | head -1) || true; }
t0=$(now)
if [ -x "$cargo_home/bin/cross" ] && [ "$(cross_version)" = "cross $CROSS_VERSION" ]; then
    record "cargo install cross $CROSS_VERSION" "$(elapsed "$t0")" cached
else
    p4_say "cargo install cross --version $CROSS_VERSION --locked (private CARGO_HOME)"
    (private_env; GIT_CEILING_DIRECTORIES="$cargo_home" cargo install --force cross --version "$CROSS_VERSION" --locked) \
        >"$log/cross-install.log" 2>&1 ||
        { tail -20 "$log/cross-install.log"; p4_die "cargo install cross failed (log: $log/cross-install.log)"; }
    [ "$(cross_version)" = "cross $CROSS_VERSION" ] ||
        p4_die "installed cross says \"$(cross_version)\", not \"cross $CROSS_VERSION\""
    record "cargo install cross $CROSS_VERSION" "$(elapsed "$t0")" cold
fi

# Crates from crates.io into the private CARGO_HOME (mounted at /cargo), so
# the build container needs no crates.io access.
t0=$(now)
(private_env; cargo fetch --locked) >"$log/fetch.log" 2>&1 ||
    { tail -20 "$log/fetch.log"; p4_die "cargo fetch failed (log: $log/fetch.log)"; }
record "cargo fetch" "$(elapsed "$t0")" "-"

# --- 5. cross build ---------------------------------------------------------------
target_dir="$cache/target-$suite"
: >"$cache/rustup-calls.log"
results=()
declare -A bin
for triple in "${TRIPLES[@]}"; do
    var=${triple//-/_}
    image="localhost/phase4-cross:$suite-$triple"
    out="$target_dir/$triple/release/phase4"
    state=warm
    [ -e "$out" ] || state=cold
    p4_say "cross build --release --target $triple (image $image)"
    t0=$(now)
    set +e
    (
        private_env
        export CROSS_CONTAINER_ENGINE="$engine"
        # Like Docker: the container runs as the caller, so target/ stays theirs.
        export CROSS_ROOTLESS_CONTAINER_ENGINE=0
        export "CROSS_TARGET_${var^^}_IMAGE=$image"
        cross build -v --release --locked --target "$triple" --target-dir "$target_dir"
    ) >"$log/build-$triple.log" 2>&1
    rc=$?
    set -e
    secs=$(elapsed "$t0")
    record "cross build $triple" "$secs" "$state"
    if [ "$rc" != 0 ]; then
        fail "cross build --target $triple exited $rc (log: $log/build-$triple.log)"
        grep -E '^(error|Error)|STEP|exit status' "$log/build-$triple.log" | tail -8 | sed 's/^/    /'
        results+=("$triple|failed|-|-|-")
        continue
    fi
    # Built in the container? cross falls back to the host's cargo when it
    # has no image for a target; dep-info written in the container names
    # /target and /project.
    if grep -q "^/target/$triple/release/phase4: /project/" "$out.d" 2>/dev/null; then
        inside=yes
        pass "cross build --target $triple: built in the container ($secs s)"
    else
        inside=no
        fail "cross build --target $triple: not built in the container (see $out.d)"
    fi
    # The image cross built from Cross.toml's pre-build, and ran the build in.
    arch=$(p4_deb_arch "$triple")
    pre=$(grep -o -- "--tag cross-custom-[^ ]*-pre-build" "$log/build-$triple.log" | head -1 | cut -d' ' -f2)
    # shellcheck disable=SC2016 # ${Version} is dpkg-query's format
    if [ -n "$pre" ] && grep -q " run .* $pre sh -c" "$log/build-$triple.log" &&
        alsa=$(pm run --rm "$pre" dpkg-query -W -f '${Version}' "libasound2-dev:$arch" 2>/dev/null); then
        pass "Cross.toml's pre-build gave the build image libasound2-dev:$arch $alsa"
    else
        fail "Cross.toml's pre-build: no build image with libasound2-dev:$arch (log: $log/build-$triple.log)"
    fi
    glibc=$(readelf -V "$out" | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1)
    gcc=$(readelf -p .comment "$out" | grep -o 'GCC: .*' | head -1)
    results+=("$triple|$(file -b "$out" | cut -d, -f1-2)|$inside|$glibc|$gcc")
    bin[$triple]=$out
done

if grep -v -e '^rustup toolchain list$' -e '^rustup target list ' -e '^rustup component list ' \
    "$cache/rustup-calls.log" >"$cache/rustup-other.log"; then
    fail "cross asked rustup for more than queries: $(tr '\n' ';' <"$cache/rustup-other.log")"
else
    pass "cross only queried rustup ($(sort "$cache/rustup-calls.log" | uniq -c | awk '{ $1 = $1 "x"; print }' | paste -sd, -))"
fi

# --- 6. the binaries under qemu ------------------------------------------------------
if [ -n "${bin[aarch64-unknown-linux-gnu]:-}" ] && [ -n "${bin[armv7-unknown-linux-gnueabihf]:-}" ]; then
    # qemu-smoke.sh compares their `analyze` output with the host build's.
    t0=$(now)
    cargo build --release --quiet
    record "cargo build --release (x86_64, reference)" "$(elapsed "$t0")" "-"
    t0=$(now)
    if scripts/qemu-smoke.sh --bin "${bin[aarch64-unknown-linux-gnu]}" \
        --armhf-bin "${bin[armv7-unknown-linux-gnueabihf]}" \
        --x86-bin "${CARGO_TARGET_DIR:-$P4_ROOT/target}/release/phase4" >"$log/qemu-smoke.log" 2>&1; then
        pass "qemu-smoke.sh: arm64 and armhf builds from cross pass ($(grep -c '^PASS' "$log/qemu-smoke.log") checks)"
    else
        fail "qemu-smoke.sh failed on the cross builds (log: $log/qemu-smoke.log)"
        grep '^FAIL' "$log/qemu-smoke.log" | sed 's/^/    /'
    fi
    record "scripts/qemu-smoke.sh (both)" "$(elapsed "$t0")" "-"
else
    fail "qemu smoke test skipped: a build failed"
fi

# --- 7. the machine's toolchain is unchanged ---------------------------------------------
toolchain_state >"$cache/toolchain-after.txt" 2>&1
if diff -u "$cache/toolchain-before.txt" "$cache/toolchain-after.txt" >"$cache/toolchain.diff"; then
    pass "host toolchain unchanged: $host_rustc; $("$real_rustup" toolchain list | paste -sd, -)"
else
    fail "host toolchain changed:"
    sed 's/^/    /' "$cache/toolchain.diff"
fi

# --- report -------------------------------------------------------------------------------
echo
echo "$(cross_version), image: Debian $suite (debootstrap + podman import), engine: $(podman --version)"
printf '%-44s %8s  %s\n' "step" "seconds" "cache"
for row in "${timings[@]}"; do
    IFS='|' read -r step secs how <<<"$row"
    printf '%-44s %8s  %s\n' "$step" "$secs" "$how"
done
echo
printf '%-32s %-34s %-10s %-11s %s\n' "target" "binary" "container" "needs" "linked by"
for row in "${results[@]}"; do
    IFS='|' read -r t f i g c <<<"$row"
    printf '%-32s %-34s %-10s %-11s %s\n' "$t" "$f" "$i" "$g" "$c"
done
echo
if [ "$failures" = 0 ]; then
    p4_pass "cross-check: all checks passed"
else
    p4_fail "cross-check: $failures check(s) failed"
fi
exit $((failures > 100 ? 100 : failures))
