#!/usr/bin/env bash
# Whether a device probe holds up other clients: phase4 captures from a
# clocked device without a sound card (JACK's dummy backend through
# alsa-lib's `jack` plugin, scripts/lib/jack-clock.sh) with five more such
# PCMs listed in alsa-lib's hints, so a probe listens to each for 0.3 s.
# One WebSocket client asks for `list_devices` with `probe`, three times;
# meanwhile another moves a setting every 50 ms and times each answer.
# Prints those times without a probe and during each probe, then while
# four read-only clients ask for the device list (no probe) 200 times a
# second each for 4 s (a listing is reused for a second).
#   scripts/probe-stall.sh [--check] [BINARY]
#       (default: builds target/release/phase4)
# --check (the `jack` suite of scripts/test.sh): PASS when each probe was
# answered and the other client got at least 5 answers while each ran (one
# every 50 ms makes about 40; a probe on control's thread allowed 1), and
# at least 30 during the listing flood (68; 17 when every listing opened
# the devices again), else FAIL and exit 1. Counts, not times.
# Needs jackd2 and libasound2-plugins (installed when missing; root or
# sudo). 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh
. scripts/lib/jack-clock.sh
check=""
if [ "${1:-}" = "--check" ]; then
    check="--check"
    shift
fi
bin=${1:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin="${CARGO_TARGET_DIR:-target}/release/phase4"
fi
[ -x "$bin" ] || { echo "probe-stall: $bin is not an executable" >&2; exit 2; }
p4_venv scripts/lib/requirements-core.txt
work=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    jack_clock_stop
    rm -rf "$work"
}
trap cleanup EXIT
jack_clock_start "$work"
for i in 1 2 3 4 5; do
    cat >>"$work/asound.conf" <<EOT
pcm.p4probe$i {
    type jack
    capture_ports { 0 "system:capture_1" }
    hint { show on description "probe-stall $i" }
}
EOT
done
read -r ws http < <(python3 -c 'import sys; sys.path.insert(0, "scripts/lib"); from ports import free_port; print(free_port(), free_port())')
cat >"$work/p4.toml" <<EOT
[audio]
device = "jackin"
[ws]
port = $ws
http-port = $http
[osc]
enabled = false
[state]
dir = "$work/state"
EOT
"$bin" --config "$work/p4.toml" >"$work/p4.log" 2>&1 &
pid=$!
python3 scripts/lib/probe_stall.py "ws://127.0.0.1:$ws" $check || { tail -20 "$work/p4.log" >&2; exit 1; }
