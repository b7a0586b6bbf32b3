#!/usr/bin/env bash
# Smoke test of the arm64 build under qemu user-mode emulation:
#   1. --check-config on the shipped and example configs (and 78 on a bad one)
#   2. `phase4 analyze` of a test WAV, compared with the x86_64 output within
#      a stated float tolerance (scripts/lib/compare-analyze.py)
#   3. the live service capturing through the real (arm64) alsa-lib from a
#      `file` PCM for 2 s of audio, with its OSC decoded by liblo's oscdump
#
# Usage: scripts/qemu-smoke.sh [--bin ARM64_BINARY] [--x86-bin BINARY]
#                              [--armhf-bin ARMHF_BINARY]
#   With --armhf-bin, the armhf build gets steps 1 and 2 too (qemu-arm).
#   Default binaries: built with scripts/cross-build.sh arm64 and
#   `cargo build --release`.
# Tolerance: |a - b| <= ATOL + RTOL * max(|a|, |b|) for every number, with
#   ATOL = RTOL = 1e-4 (override: PHASE4_QEMU_ATOL, PHASE4_QEMU_RTOL); events
#   may move by at most one FFT hop (0.011 s).
# Needs: qemu-user, the arm64 cross setup, python3, liblo-tools (optional:
# step 3 is skipped without oscdump).
set -euo pipefail
. "$(dirname "$0")/lib/appliance.sh"

arm_bin=""
x86_bin=""
armhf_bin=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) arm_bin=$2; shift ;;
        --x86-bin) x86_bin=$2; shift ;;
        --armhf-bin) armhf_bin=$2; shift ;;
        *) p4_die "unknown argument: $1" ;;
    esac
    shift
done
command -v qemu-aarch64 >/dev/null || p4_die "qemu-aarch64 missing: apt-get install qemu-user"
cd "$P4_ROOT"
if [ -z "$arm_bin" ]; then
    arm_bin=$(scripts/cross-build.sh arm64 | tail -1)
fi
if [ -z "$x86_bin" ]; then
    cargo build --release --quiet
    x86_bin="${CARGO_TARGET_DIR:-$P4_ROOT/target}/release/phase4"
fi
file -b "$arm_bin" | grep -q 'ARM aarch64' || p4_die "$arm_bin is not an arm64 binary"

work=$(mktemp -d /tmp/phase4-qemu.XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0
pass() { p4_pass "qemu-arm64: $*"; }
fail() { p4_fail "qemu-arm64: $*"; failures=$((failures + 1)); }

# -L /: the arm64 loader and libraries come from the multiarch paths under /
# (libc6:arm64, libasound2:arm64). Not -L /usr/aarch64-linux-gnu: that mixes
# two glibcs and thread creation hangs. Its own ALSA config keeps the host's
# amd64 ALSA plugins (pulse, ...) from being loaded into the arm64 process.
cat >"$work/asound.conf" <<EOF
pcm.p4test {
    type file
    slave.pcm { type null }
    file "/dev/null"
    infile "$work/test.raw"
    format "raw"
}
EOF
arm() { ALSA_CONFIG_PATH="$work/asound.conf" qemu-aarch64 -L / "$arm_bin" "$@"; }

version=$(arm --version 2>&1 || true)
[ -n "$version" ] && pass "runs: $version" || fail "--version printed nothing"

# 1. configs
for cfg in configs/phase4.toml configs/examples/*.toml; do
    if out=$(arm --check-config "$cfg" 2>&1); then
        pass "--check-config $cfg"
    else
        fail "--check-config $cfg: $out"
    fi
done
printf '[audio]\nsample-rate-hz = "fast"\nbogus = 1\n' >"$work/bad.toml"
set +e
arm --check-config "$work/bad.toml" >"$work/bad.out" 2>&1
rc=$?
set -e
[ "$rc" = 78 ] && pass "--check-config of a bad config exits 78 ($(grep -c . "$work/bad.out") lines of problems)" ||
    fail "--check-config of a bad config exited $rc"

# 2. analyze: arm64 vs x86_64
python3 scripts/lib/make-test-wav.py "$work/test.wav" --seconds 12
"$x86_bin" analyze "$work/test.wav" --format jsonl >"$work/x86.jsonl" 2>"$work/x86.err"
t0=$(date +%s.%N)
arm analyze "$work/test.wav" --format jsonl >"$work/arm64.jsonl" 2>"$work/arm64.err"
t1=$(date +%s.%N)
p4_say "arm64 analyze under qemu took $(python3 -c "print(f'{$t1 - $t0:.1f}')") s: $(tail -1 "$work/arm64.err")"
atol=${PHASE4_QEMU_ATOL:-1e-4}
rtol=${PHASE4_QEMU_RTOL:-1e-4}
if python3 scripts/lib/compare-analyze.py "$work/x86.jsonl" "$work/arm64.jsonl" \
        --atol "$atol" --rtol "$rtol" --event-dt 0.011 >"$work/compare.txt"; then
    pass "analyze: arm64 matches x86_64 within atol $atol + rtol $rtol ($(wc -l <"$work/x86.jsonl") lines)"
else
    fail "analyze: arm64 differs from x86_64 beyond atol $atol + rtol $rtol"
fi
sed 's/^/    /' "$work/compare.txt"

# 3. live capture through alsa-lib's file plugin (no clock: runs flat out)
if command -v oscdump >/dev/null; then
    # the WAV's samples without its 44-byte header: S16_LE mono 48 kHz
    tail -c +45 "$work/test.wav" >"$work/test.raw"
    port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat >"$work/live.toml" <<EOF
[audio]
device = "p4test"
format = "S16_LE"
channels = 1
sample-rate-hz = 48000
on-missing-device = "fail"
[realtime]
enabled = false
[ws]
enabled = false
[state]
dir = ""
[[osc.destinations]]
host = "127.0.0.1"
port = $port
ttl = 1
EOF
    timeout 30 oscdump -L "$port" >"$work/osc.txt" 2>&1 &
    osc_pid=$!
    sleep 0.3
    set +e
    timeout 60 env ALSA_CONFIG_PATH="$work/asound.conf" qemu-aarch64 -L / "$arm_bin" \
        --config "$work/live.toml" --duration 2 >"$work/live.log" 2>&1
    rc=$?
    set -e
    sleep 0.3
    kill "$osc_pid" 2>/dev/null || true
    wait "$osc_pid" 2>/dev/null || true
    n_lmh=$(grep -c ' /audio/lmh fff ' "$work/osc.txt" || true)
    if [ "$rc" = 0 ] && [ "$n_lmh" -ge 100 ]; then
        pass "live: ALSA file PCM → arm64 phase4 → $n_lmh /audio/lmh messages decoded by oscdump"
    else
        fail "live: exit $rc, $n_lmh /audio/lmh messages"
        tail -5 "$work/live.log" | sed 's/^/    /'
    fi
else
    p4_say "oscdump missing (apt-get install liblo-tools): live ALSA step skipped"
fi

# armhf (32-bit Raspberry Pi OS): the same configs and analyze comparison
if [ -n "$armhf_bin" ]; then
    armhf() { ALSA_CONFIG_PATH="$work/asound.conf" qemu-arm -L / "$armhf_bin" "$@"; }
    n_ok=0; n_cfg=0
    for cfg in configs/phase4.toml configs/examples/*.toml; do
        n_cfg=$((n_cfg + 1))
        armhf --check-config "$cfg" >/dev/null 2>&1 && n_ok=$((n_ok + 1))
    done
    [ "$n_ok" = "$n_cfg" ] && p4_pass "qemu-armhf: --check-config of $n_cfg configs" ||
        { p4_fail "qemu-armhf: --check-config: $n_ok of $n_cfg pass"; failures=$((failures + 1)); }
    armhf analyze "$work/test.wav" --format jsonl >"$work/armhf.jsonl" 2>/dev/null
    if python3 scripts/lib/compare-analyze.py "$work/x86.jsonl" "$work/armhf.jsonl" \
            --atol "$atol" --rtol "$rtol" --event-dt 0.011 >"$work/compare-armhf.txt"; then
        p4_pass "qemu-armhf: analyze matches x86_64 within atol $atol + rtol $rtol"
    else
        p4_fail "qemu-armhf: analyze differs from x86_64 beyond atol $atol + rtol $rtol"
        failures=$((failures + 1))
    fi
    sed -n '1,4p' "$work/compare-armhf.txt" | sed 's/^/    /'
fi

if [ "$failures" = 0 ]; then
    p4_pass "qemu-smoke: all checks passed"
else
    p4_fail "qemu-smoke: $failures check(s) failed"
fi
exit $((failures > 100 ? 100 : failures))
