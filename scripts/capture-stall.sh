#!/usr/bin/env bash
# A sound server that dies, comes back and stops answering, under phase4
# capturing from it: JACK's dummy backend through alsa-lib's `jack` plugin
# (scripts/lib/jack-clock.sh), a clocked ALSA device without a sound card.
# jackd is killed (capture must say the device is down and reopen when it
# is back, with the watchdog pings going on), then phase4 starts while
# jackd is stopped (READY and a STATUS that says why, pings on, capture
# when it answers). See scripts/lib/capture_stall.py; PASS/FAIL lines.
#   scripts/capture-stall.sh [BINARY]   (default: builds target/release/phase4)
# Needs jackd2 and libasound2-plugins (installed when missing; root or
# sudo). 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh
. scripts/lib/jack-clock.sh
bin=${1:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin="${CARGO_TARGET_DIR:-target}/release/phase4"
fi
[ -x "$bin" ] || { echo "capture-stall: $bin is not an executable" >&2; exit 2; }
p4_venv scripts/lib/requirements-core.txt
work=$(mktemp -d)
cleanup() {
    jack_clock_stop
    rm -rf "$work"
}
trap cleanup EXIT
jack_clock_start "$work"
# A second device to switch to: a file read through the null plugin.
head -c 192000 /dev/zero >"$work/in.raw"
cat >>"$work/asound.conf" <<EOT
pcm.p4file {
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "$work/in.raw"
    format "raw"
    hint { show on description "capture-stall file" }
}
EOT
python3 scripts/lib/capture_stall.py "$(realpath "$bin")" "$work" "${JACK_CLOCK_PIDS[0]}" -- \
    jackd --realtime --name "$JACK_DEFAULT_SERVER" -d dummy -r 48000 -p 256 -C 2 -P 2
