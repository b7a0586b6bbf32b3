#!/usr/bin/env bash
# phase4 on the kernel's own ALSA drivers, in a small VM: Debian 12's kernel
# (snd-dummy: a real driver with a time-based period clock; snd-aloop: a
# loopback card) booted under qemu with an initramfs that holds busybox,
# alsa-lib, aplay, oscdump and the phase4 binary under test. The guest runs
# the suites in scripts/vm/suites/ and reports "P4R <check> PASS|FAIL|INFO
# <details>" lines on the console; this script prints them as a table.
#
# Usage: scripts/vm-test.sh [amd64|arm64|all] [options]
#   --suites LIST     comma list of guest suites (default: capture)
#   --bin PATH        phase4 binary for the (single) architecture
#                     (default: built here; arm64 with scripts/cross-build.sh)
#   --clock virtual   (default) qemu's instruction counter is the guest's
#                     clock (-icount shift=0,sleep=off, one vCPU): what the
#                     guest measures does not depend on how busy the host is
#   --clock host      the host's clock (closer to real scheduling noise; a
#                     loaded host makes the guest miss periods)
#   --timeout S       per VM (default 600)
#   --work DIR        cache and work files (default target/vm): the guest's
#                     Debian packages are downloaded there once
# Exit status 0 when every graded check passed.
#
# Adding checks: a suite is a busybox-sh file scripts/vm/suites/NAME.sh that
# uses the helpers in scripts/vm/guest/lib.sh (result, check, p4_start, ...)
# and names in its header the kernel modules and extra programs it needs:
#   # vm-modules: snd-seq snd-virmidi
#   # vm-bins: /usr/bin/aseqdump
# Run it with --suites capture,NAME (docs/operations.md, "Testing on real
# kernel drivers").
#
# Needs (installed when missing, with sudo when not root): qemu-system-x86
# or qemu-system-arm, cpio, kmod, gcc (gcc-aarch64-linux-gnu and
# libc6-dev-arm64-cross for arm64), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
arches=amd64 suites=capture bin="" clock=virtual tmo=600 work=target/vm
while [ $# -gt 0 ]; do
    case "$1" in
        amd64|arm64) arches=$1 ;;
        all) arches="amd64 arm64" ;;
        --suites) suites=$2; shift ;;
        --bin) bin=$2; shift ;;
        --clock) clock=$2; shift ;;
        --timeout) tmo=$2; shift ;;
        --work) work=$2; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "vm-test: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$clock" in virtual|host) ;; *) echo "vm-test: --clock virtual or host" >&2; exit 2 ;; esac
[ -n "$bin" ] && [ "$arches" = "amd64 arm64" ] && { echo "vm-test: --bin needs one architecture" >&2; exit 2; }
mkdir -p "$work"
work=$(cd "$work" && pwd)

apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> apt-get install ${missing[*]}" >&2
    $SUDO apt-get update -q >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >"$work/apt.log" 2>&1 ||
        { tail -20 "$work/apt.log" >&2; exit 1; }
}

# The phase4 binary for ARCH (built unless --bin says which).
phase4_for() {
    if [ -n "$bin" ]; then echo "$bin"; return; fi
    if [ "$1" = amd64 ]; then
        cargo build --release --quiet >&2
        echo "$root/${CARGO_TARGET_DIR:-target}/release/phase4"
    else
        bash scripts/cross-build.sh --install-deps arm64 >&2
        echo "${CARGO_TARGET_DIR:-$root/target}/aarch64-unknown-linux-gnu/release/phase4"
    fi
}

# Debian's amd64 vmlinuz is an xz-compressed bzImage; booting the ELF inside
# it through PVH skips a decompression that takes ~6 s under TCG.
extract_vmlinux() {
    python3 - "$1" "$2" <<'PY'
import lzma, sys
d = open(sys.argv[1], 'rb').read()
i = d.find(b'\xfd7zXZ\x00')
while i >= 0:
    try:
        out = lzma.LZMADecompressor().decompress(d[i:])
        if out[:4] == b'\x7fELF':
            open(sys.argv[2], 'wb').write(out)
            sys.exit(0)
    except lzma.LZMAError:
        pass
    i = d.find(b'\xfd7zXZ\x00', i + 1)
sys.exit('no xz-compressed ELF kernel in ' + sys.argv[1])
PY
}

run_arch() {
    local arch=$1 t0 t1 t2 cc qemu tty sys kver kernel console initrd util p4 rc
    t0=$(date +%s.%N)
    apt_install cpio kmod gcc python3
    if [ "$arch" = amd64 ]; then
        apt_install qemu-system-x86
        cc=gcc
    else
        dpkg --print-foreign-architectures | grep -qx arm64 || { $SUDO dpkg --add-architecture arm64; $SUDO apt-get update -q >/dev/null 2>&1 || true; }
        apt_install qemu-system-arm gcc-aarch64-linux-gnu libc6-dev-arm64-cross
        cc=aarch64-linux-gnu-gcc
    fi
    sys="$work/guest-$arch"
    bash scripts/vm/fetch-guest.sh "$arch" "$sys" >&2
    kver=$(cat "$sys/kver")
    util="$work/p4util-$arch"
    [ "$util" -nt scripts/vm/guest/p4util.c ] || "$cc" -O2 -static -o "$util" scripts/vm/guest/p4util.c -lm
    p4=$(phase4_for "$arch")
    [ -x "$p4" ] || { echo "vm-test: no phase4 binary at $p4" >&2; return 1; }
    initrd="$work/initrd-$arch.cpio.gz"
    bash scripts/vm/mkinitrd.sh --sysroot "$sys" --bin "$p4" --util "$util" \
        --suites "${suites//,/ }" --out "$initrd" >&2
    console="$work/console-$arch.log"
    if [ "$arch" = amd64 ]; then
        kernel="$work/vmlinux-$kver"
        [ -s "$kernel" ] || extract_vmlinux "$sys/root/boot/vmlinuz-$kver" "$kernel"
        qemu=(qemu-system-x86_64 -accel tcg -cpu max -kernel "$kernel")
        tty=ttyS0
    else
        qemu=(qemu-system-aarch64 -M virt -accel tcg -cpu cortex-a72 -kernel "$sys/root/boot/vmlinuz-$kver")
        tty=ttyAMA0
    fi
    if [ "$clock" = virtual ]; then
        # icount hangs at SMP bring-up with two vCPUs: one.
        qemu+=(-icount shift=0,sleep=off -smp 1)
    else
        qemu+=(-smp 2)
    fi
    t1=$(date +%s.%N)
    set +e
    timeout "$tmo" "${qemu[@]}" -m 1024 -nic none -display none -no-reboot \
        -initrd "$initrd" -serial "file:$console" \
        -append "console=$tty quiet loglevel=3 panic=-1 p4.suites=$suites" </dev/null
    rc=$?
    set -e
    t2=$(date +%s.%N)
    tr -d '\r' <"$console" | grep -a '^P4R ' | sed "s/^P4R /$arch /" >"$work/results-$arch.txt" || true
    python3 -c "import sys; a,b,c=map(float,sys.argv[1:4]); print(f'{sys.argv[4]} TIME INFO prepare {b-a:.0f} s, VM {c-b:.0f} s (qemu status {sys.argv[5]}, clock {sys.argv[6]})')" \
        "$t0" "$t1" "$t2" "$arch" "$rc" "$clock" >>"$work/results-$arch.txt"
    [ "$rc" = 124 ] && echo "$arch VM FAIL timed out after $tmo s; console: $console" >>"$work/results-$arch.txt"
    grep -q "^$arch SUMMARY 0 failure" "$work/results-$arch.txt"
}

status=0
for a in $arches; do
    run_arch "$a" || status=1
done
# The table.
python3 - $(for a in $arches; do echo "$work/results-$a.txt"; done) <<'PY'
import sys, textwrap
rows = []
for path in sys.argv[1:]:
    for line in open(path, errors="replace"):
        parts = line.rstrip("\n").split(" ", 3)
        if len(parts) < 3 or parts[1] in ("BOOT", "SUITE"):
            continue
        arch, name, verdict = parts[:3]
        rows.append((arch, name, verdict, parts[3] if len(parts) > 3 else ""))
w = max([len(r[1]) for r in rows] + [5])
print(f"\n{'arch':<6} {'check':<{w}} {'result':<6} details")
print(f"{'-' * 6} {'-' * w} {'-' * 6} {'-' * 40}")
for arch, name, verdict, details in rows:
    lines = textwrap.wrap(details, 100) or [""]
    print(f"{arch:<6} {name:<{w}} {verdict:<6} {lines[0]}")
    for l in lines[1:]:
        print(f"{'':<6} {'':<{w}} {'':<6} {l}")
PY
exit $status
