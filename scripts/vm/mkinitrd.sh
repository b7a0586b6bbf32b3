#!/usr/bin/env bash
# Build the test guest's initramfs: busybox as PID 1 (scripts/vm/guest/init),
# the guest suites and their helpers, the phase4 binary under test, alsa-lib
# with its configuration, aplay/arecord, oscdump, every library these need
# (looked up in the guest's own sysroot), and the kernel modules the suites
# ask for, with their dependencies and a modules.dep.
#
# Usage: scripts/vm/mkinitrd.sh --sysroot DIR --bin PHASE4 --util P4UTIL \
#            --suites "capture other" --out FILE
#   --sysroot: what fetch-guest.sh made (DIR/root, DIR/kver)
#
# A suite (scripts/vm/suites/NAME.sh) declares what it needs in its header:
#   # vm-modules: snd-dummy snd-aloop      kernel modules (dependencies follow)
#   # vm-bins: /usr/bin/aseqdump           more programs from the sysroot
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sysroot="" bin="" util="" suites="" out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --sysroot) sysroot=$2; shift ;;
        --bin) bin=$2; shift ;;
        --util) util=$2; shift ;;
        --suites) suites=$2; shift ;;
        --out) out=$2; shift ;;
        *) echo "mkinitrd: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
src="$sysroot/root"
kver=$(cat "$sysroot/kver")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,p4/suites}
cp "$src/bin/busybox" "$stage/bin/busybox"
install -m 755 "$here/guest/init" "$stage/init"
install -m 644 "$here/guest/lib.sh" "$stage/p4/lib.sh"
# Without debug info (24 MiB -> ~4 MiB): objcopy handles any ELF it knows.
objcopy --strip-debug "$bin" "$stage/p4/phase4" 2>/dev/null ||
    aarch64-linux-gnu-objcopy --strip-debug "$bin" "$stage/p4/phase4"
install -m 755 "$util" "$stage/p4/p4util"
bins=(/usr/bin/aplay /usr/bin/oscdump)
mods=()
for s in $suites; do
    f="$here/suites/$s.sh"
    [ -f "$f" ] || { echo "mkinitrd: no suite $f" >&2; exit 2; }
    install -m 644 "$f" "$stage/p4/suites/$s.sh"
    mods+=($(sed -n 's/^# vm-modules: *//p' "$f"))
    bins+=($(sed -n 's/^# vm-bins: *//p' "$f"))
done
for b in "${bins[@]}"; do
    [ -e "$src$b" ] || { echo "mkinitrd: $b not in the guest sysroot" >&2; exit 1; }
    mkdir -p "$stage$(dirname "$b")"
    cp -L "$src$b" "$stage$b"
done
ln -sf aplay "$stage/usr/bin/arecord"
mkdir -p "$stage/usr/share"
cp -r "$src/usr/share/alsa" "$stage/usr/share/alsa"
echo "root:x:0:0:root:/:/bin/sh" >"$stage/etc/passwd"
printf 'root:x:0:\naudio:x:29:root\n' >"$stage/etc/group"

# Libraries: NEEDED entries, recursively, from the sysroot (never the host).
libdirs=()
for d in lib usr/lib; do
    for t in "$src/$d"/*-linux-gnu*; do [ -d "$t" ] && libdirs+=("$t"); done
    libdirs+=("$src/$d")
done
declare -A seen
copy_deps() {
    local f=$1 n p d interp
    interp=$(readelf -l "$f" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
    if [ -n "$interp" ] && [ -z "${seen[$interp]:-}" ]; then
        seen[$interp]=1
        mkdir -p "$stage$(dirname "$interp")"
        cp -L "$src$interp" "$stage$interp"
    fi
    for n in $(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        [ -n "${seen[$n]:-}" ] && continue
        seen[$n]=1
        p=""
        for d in "${libdirs[@]}"; do [ -e "$d/$n" ] && { p="$d/$n"; break; }; done
        [ -n "$p" ] || { echo "mkinitrd: library $n (needed by $f) not in $src" >&2; exit 1; }
        d=${p#"$src"}
        mkdir -p "$stage$(dirname "$d")"
        cp -L "$p" "$stage$d"
        copy_deps "$p"
    done
}
copy_deps "$stage/p4/phase4"
for b in "${bins[@]}"; do copy_deps "$stage$b"; done

# Kernel modules and their dependencies, with a modules.dep for modprobe.
mdir="lib/modules/$kver"
mkdir -p "$stage/$mdir"
cp "$src/$mdir"/modules.builtin* "$src/$mdir/modules.order" "$stage/$mdir/" 2>/dev/null || true
add_mod() {
    local name=$1 f dep
    f=$(find "$src/$mdir/kernel" \( -name "$name.ko*" -o -name "${name//-/_}.ko*" \) | head -1)
    # Debian's arm64 kernel has no snd-dummy: suites check what loaded.
    [ -n "$f" ] || { echo "mkinitrd: module $name not in kernel $kver: left out" >&2; return 0; }
    [ -e "$stage/${f#"$src/"}" ] && return 0
    mkdir -p "$stage/$(dirname "${f#"$src/"}")"
    cp "$f" "$stage/${f#"$src/"}"
    for dep in $(modinfo -F depends "$f" | tr ',' ' '); do add_mod "$dep"; done
}
for m in "${mods[@]}"; do add_mod "$m"; done
depmod -b "$stage" "$kver"

mkdir -p "$(dirname "$out")"
(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$out"
echo "initrd $out: $(du -h "$out" | cut -f1), kernel $kver, modules: $(cd "$stage/$mdir" && find kernel -name '*.ko*' -printf '%f ' 2>/dev/null)"
