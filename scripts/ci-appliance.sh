#!/usr/bin/env bash
# One entry point for CI: every appliance check (packaging, unit, cross
# builds, real systemd). Runs on a fresh Debian 12 machine as root, or as a
# user with sudo (apt-get, dpkg --add-architecture and the nspawn test go
# through sudo; rustup and cargo install stay the user's), and installs what
# it needs. Each check prints PASS:/FAIL:; the exit status is non-zero if
# any failed, and a summary is printed at the end.
#
# Usage: scripts/ci-appliance.sh [--no-deps] [--skip-systemd] [--skip-cross]
#   --no-deps       do not apt-get/rustup/cargo install anything
#   --skip-systemd  skip the nspawn test (it needs root: on a machine
#                   without root or sudo)
#   --skip-cross    skip arm64/armhf packages and the qemu smoke test
#
# Steps:
#   deps      apt packages, foreign architectures, Rust targets, cargo-deb
#   configs   --check-config on configs/phase4.toml and configs/examples/*.toml
#   packages  scripts/build-deb.sh amd64|arm64|armhf
#   unit      systemd-analyze verify + security (exposure must be <= 2.0) on
#             the unit as installed by the amd64 package
#   lintian   0 errors and 0 warnings on every package (info tags printed)
#   control   dpkg-deb -I of arm64/armhf: Architecture and Depends
#   qemu      scripts/qemu-smoke.sh (arm64 under qemu vs x86_64)
#   systemd   scripts/systemd-test.sh (test package with fault-injection)
# The arm packages are built in target/cross (scripts/test.sh builds them
# there first, in its background lane; alone, this script builds them).
# Time on a 2-core machine, with target/ empty: 5 min for the steps after
# deps when the machine is idle, ~9 min when other builds compete (three
# release builds, the test package reusing the amd64 dependencies, the nspawn
# test ~30 s with a cached root filesystem); on a fresh machine
# add ~3 min for cargo-deb, ~2 min for apt, ~1 min for debootstrap. The test
# package is made from the phase4-fault-injection binary: target/release/phase4
# stays the normal build (checked below).
# Caches: ~/.cargo (cargo-deb), target/, /var/cache/phase4-ci (rootfs).
set -uo pipefail
. "$(dirname "$0")/lib/appliance.sh"

deps=1
systemd=1
cross=1
for a in "$@"; do
    case "$a" in
        --no-deps) deps=0 ;;
        --skip-systemd) systemd=0 ;;
        --skip-cross) cross=0 ;;
        *) p4_die "unknown argument: $a" ;;
    esac
done
cd "$P4_ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$P4_ROOT/target}
# The arm64/armhf builds have a target directory of their own: scripts/test.sh
# builds them there in its background lane (scripts/cross-build.sh) while the
# other suites run, and cargo-deb below then only packages them.
cross_dir=$CARGO_TARGET_DIR/cross
# Logs of this run (private: root and a sudo user may both run it).
work=$(mktemp -d /tmp/phase4-ci-appliance.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The packages get the builder as Maintainer (scripts/build-deb.sh). A CI
# machine usually has no identity set: label its packages as unreleased test
# builds, under the reserved .invalid domain (RFC 6761: names under it never
# exist), so nobody mistakes them for a contact. Never ship such a package.
if ! p4_deb_maintainer >/dev/null; then
    export DEBFULLNAME="phase4 CI test build (not for release)" DEBEMAIL="ci-test-build@phase4.invalid"
fi
results=()
failed=0
step_start=0
begin() { step_start=$(date +%s); p4_say "[$1]"; }
ok()  { p4_pass "$1"; results+=("PASS  $1 ($(( $(date +%s) - step_start )) s)"); }
bad() { p4_fail "$1"; results+=("FAIL  $1"); failed=$((failed + 1)); }

# --- deps ------------------------------------------------------------------
if [ "$deps" = 1 ]; then
    begin deps
    pkgs=(build-essential pkg-config cmake libasound2-dev lintian systemd python3 file xz-utils
          liblo-tools curl ca-certificates)
    [ "$systemd" = 1 ] && pkgs+=(systemd-container debootstrap)
    if [ "$cross" = 1 ]; then
        p4_add_arch arm64 armhf
        pkgs+=(qemu-user gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf
               libc6-dev-arm64-cross libc6-dev-armhf-cross
               libasound2-dev:arm64 libasound2-dev:armhf)
    fi
    if p4_apt_install "${pkgs[@]}"; then ok "deps: apt packages"; else bad "deps: apt packages"; fi
    if [ "$cross" = 1 ]; then
        rustup target add aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf >/dev/null 2>&1 &&
            ok "deps: rust targets" || bad "deps: rust targets"
    fi
    if ! command -v cargo-deb >/dev/null; then
        p4_say "cargo install --locked cargo-deb (~3 min)"
        cargo install --locked --quiet cargo-deb && ok "deps: cargo-deb" || bad "deps: cargo-deb"
    fi
fi

# --- configs -----------------------------------------------------------------
begin configs
if cargo build --release --quiet; then
    bin=$CARGO_TARGET_DIR/release/phase4
    cfg_fail=0
    for cfg in configs/phase4.toml configs/examples/*.toml; do
        if out=$("$bin" --check-config "$cfg" 2>&1); then
            p4_pass "configs: $cfg"
        else
            p4_fail "configs: $cfg: $out"; cfg_fail=1
        fi
    done
    [ "$cfg_fail" = 0 ] && ok "configs: every shipped config passes --check-config" ||
        bad "configs: a shipped config fails --check-config"
else
    bad "configs: cargo build --release"
fi

# --- packages ----------------------------------------------------------------
declare -A deb=()
arches=(amd64)
[ "$cross" = 1 ] && arches+=(arm64 armhf)
for a in "${arches[@]}"; do
    begin "package $a"
    dir=$CARGO_TARGET_DIR
    [ "$a" = amd64 ] || dir=$cross_dir
    if out=$(CARGO_TARGET_DIR=$dir scripts/build-deb.sh "$a" 2>"$work/build-deb-$a.log") &&
        [ -f "$(tail -1 <<<"$out")" ]; then
        deb[$a]=$(tail -1 <<<"$out")
        ok "package $a: ${deb[$a]#"$P4_ROOT/"}"
    else
        tail -20 "$work/build-deb-$a.log"
        bad "package $a: scripts/build-deb.sh $a"
    fi
done

# Release packages must never carry the test-only fault-injection hook.
for a in "${arches[@]}"; do
    [ -n "${deb[$a]:-}" ] || continue
    begin "no fault injection $a"
    if dpkg-deb --fsys-tarfile "${deb[$a]}" | tar -xO ./usr/bin/phase4 | grep -q PHASE4_FAULT_HANG; then
        bad "package $a contains the fault-injection hook (PHASE4_FAULT_HANG)"
    else
        ok "package $a has no fault-injection hook"
    fi
done

# --- unit ----------------------------------------------------------------------
begin unit
if [ -n "${deb[amd64]:-}" ]; then
    root=$(mktemp -d /tmp/phase4-unit-root.XXXXXX)
    dpkg-deb -x "${deb[amd64]}" "$root"
    unit=/usr/lib/systemd/system/phase4.service
    # verify resolves dependencies (sysinit.target, ...) inside --root: give
    # it the host's units next to the package's files.
    mkdir -p "$root/usr/lib/systemd/system"
    cp -an /lib/systemd/system/. "$root/usr/lib/systemd/system/" 2>/dev/null
    # ... and the host's copy of any program the unit runs that the package
    # does not ship (ExecReload=/bin/kill): verify checks each is executable.
    for exe in $(sed -nE 's/^Exec[A-Za-z]*=[-@:+!]*(\/[^ ]+).*/\1/p' "$root$unit" | sort -u); do
        [ -e "$root$exe" ] || [ ! -x "$exe" ] || { mkdir -p "$root$(dirname "$exe")"; cp -L "$exe" "$root$exe"; }
    done
    # MANPATH: the man:phase4(1) Documentation= link is checked against the
    # package's own man page.
    if out=$(MANPATH="$root/usr/share/man" systemd-analyze verify --root="$root" "$unit" 2>&1) && [ -z "$out" ]; then
        ok "unit: systemd-analyze verify (no messages)"
    else
        printf '%s\n' "$out"
        bad "unit: systemd-analyze verify"
    fi
    # --threshold=20: exit non-zero if the exposure level is above 2.0
    sec=$(systemd-analyze security --offline=yes --root="$root" --threshold=20 phase4.service 2>&1)
    rc=$?
    printf '%s\n' "$sec"
    score=$(grep -o 'Overall exposure level for phase4.service: [0-9.]*' <<<"$sec" | awk '{print $NF}')
    if [ "$rc" = 0 ] && [ -n "$score" ]; then
        ok "unit: systemd-analyze security exposure $score (target <= 2.0)"
    else
        bad "unit: systemd-analyze security exposure ${score:-?} (target <= 2.0)"
    fi
    rm -rf "$root"
else
    bad "unit: no amd64 package to check"
fi

# --- lintian -------------------------------------------------------------------
for a in "${arches[@]}"; do
    [ -n "${deb[$a]:-}" ] || continue
    begin "lintian $a"
    # -I prints info tags too; --fail-on makes errors and warnings fatal.
    # TMPDIR: lintian leaves an 8 KiB mldbm-elf-* cache file in its
    # temporary directory; ours is removed at exit.
    TMPDIR="$work" lintian -I --fail-on error,warning "${deb[$a]}" >"$work/lintian.txt" 2>&1
    rc=$?
    out=$(grep -v '^running with root privileges' "$work/lintian.txt")
    printf '%s\n' "$out" | sed 's/^/    /'
    n_e=$(grep -c '^E:' <<<"$out"); n_w=$(grep -c '^W:' <<<"$out"); n_i=$(grep -c '^I:' <<<"$out")
    if [ "$rc" = 0 ] && [ "$n_e" = 0 ] && [ "$n_w" = 0 ]; then
        ok "lintian $a: $n_e errors, $n_w warnings, $n_i info tags"
    else
        bad "lintian $a: $n_e errors, $n_w warnings (exit $rc)"
    fi
done

# --- control fields of the arm packages --------------------------------------
if [ "$cross" = 1 ]; then
    for a in arm64 armhf; do
        [ -n "${deb[$a]:-}" ] || continue
        begin "control $a"
        info=$(dpkg-deb -I "${deb[$a]}")
        printf '%s\n' "$info" | grep -E '^ (Package|Version|Architecture|Depends|Recommends):' | sed 's/^/   /'
        arch_f=$(dpkg-deb -f "${deb[$a]}" Architecture)
        depends=$(dpkg-deb -f "${deb[$a]}" Depends)
        binarch=$(dpkg-deb --fsys-tarfile "${deb[$a]}" | tar -xO ./usr/bin/phase4 | file -b -)
        want=$([ "$a" = arm64 ] && echo 'ARM aarch64' || echo 'ARM, EABI5')
        if [ "$arch_f" = "$a" ] && [[ "$depends" == *libasound2* ]] && [[ "$depends" == *libc6* ]] &&
            [[ "$depends" == *adduser* ]] && [[ "$binarch" == *"$want"* ]]; then
            ok "control $a: Architecture: $arch_f; Depends: $depends; binary: ${binarch%%,*}, ${want}"
        else
            bad "control $a: Architecture '$arch_f', Depends '$depends', binary '$binarch'"
        fi
    done
fi

# --- qemu --------------------------------------------------------------------
if [ "$cross" = 1 ]; then
    begin qemu
    arm_bin=$cross_dir/aarch64-unknown-linux-gnu/release/phase4
    armhf_bin=$cross_dir/armv7-unknown-linux-gnueabihf/release/phase4
    qargs=(--bin "$arm_bin" --x86-bin "$CARGO_TARGET_DIR/release/phase4")
    [ -x "$armhf_bin" ] && qargs+=(--armhf-bin "$armhf_bin")
    if [ -x "$arm_bin" ] && scripts/qemu-smoke.sh "${qargs[@]}"; then
        ok "qemu: arm64 (check-config, analyze vs x86_64, live ALSA) and armhf (check-config, analyze)"
    else
        bad "qemu: scripts/qemu-smoke.sh"
    fi
fi

# --- systemd -------------------------------------------------------------------
if [ "$systemd" = 1 ]; then
    begin systemd
    if test_deb=$(scripts/build-deb.sh amd64 --test 2>"$work/build-deb-test.log" | tail -1) && [ -f "$test_deb" ]; then
        # The test package carries the hook; making it leaves the normal
        # binary alone (other suites and the demo run target/release/phase4).
        begin "systemd: test package"
        # grep -c reads to the end (grep -q would stop at the match, and
        # pipefail would count tar's SIGPIPE as a failure).
        hooks=$(dpkg-deb --fsys-tarfile "$test_deb" | tar -xO ./usr/bin/phase4 | grep -c PHASE4_FAULT_HANG || true)
        if [ "${hooks:-0}" -eq 0 ]; then
            bad "the test package's /usr/bin/phase4 lacks the fault-injection hook"
        elif [ -f target/release/phase4 ] && grep -q PHASE4_FAULT_HANG target/release/phase4; then
            bad "building the test package left a fault-injection build in target/release/phase4"
        else
            ok "the test package has the hook; target/release/phase4 does not"
        fi
        begin systemd
        # systemd-nspawn and nsenter need root: through sudo when not root.
        if p4_as_root "$P4_ROOT/scripts/systemd-test.sh" --deb "$test_deb"; then
            ok "systemd: scripts/systemd-test.sh"
        else
            bad "systemd: scripts/systemd-test.sh"
        fi
    else
        tail -20 "$work/build-deb-test.log"
        bad "systemd: building the fault-injection test package"
    fi
fi

echo
echo "=== appliance summary ==="
printf '%s\n' "${results[@]}"
if [ "$failed" = 0 ]; then
    p4_pass "ci-appliance: all ${#results[@]} checks passed"
    exit 0
fi
p4_fail "ci-appliance: $failed of ${#results[@]} checks failed"
exit 1
