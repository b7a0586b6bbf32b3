#!/usr/bin/env bash
# Soak test: phase4 live at 48 kHz / 256 (FFT on, two OSC destinations, a
# receiver at each) for SOAK_S seconds (default 600) on the paced WAV input,
# with both cores loaded by stress-ng unless SOAK_STRESS=0. Prints the final
# health line and fails if any block was dropped or any xrun counted.
#   scripts/soak.sh [BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/phase4}
SOAK_S=${SOAK_S:-600}
[ -x "$BIN" ] || cargo build --release --quiet
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
python3 scripts/make-demo-wav.py "$W/demo.wav" 8
. scripts/lib/live-config.sh
live_config "$W/soak.toml" 60
udp_sink 9000
udp_sink 9001
if [ "${SOAK_STRESS:-1}" = 1 ] && command -v stress-ng >/dev/null; then
  stress-ng --cpu 2 --timeout "$((SOAK_S + 10))s" >/dev/null 2>&1 &
fi
"$BIN" --config "$W/soak.toml" --input "$W/demo.wav" --loop --duration "$SOAK_S" 2> "$W/log"
echo "per-minute latency (capture -> OSC sent):"
grep 'health:' "$W/log" | grep -oE 'latency_us p50=[0-9]+ p95=[0-9]+ p99=[0-9]+ max=[0-9]+' | sed 's/^/  /'
last=$(grep 'health:' "$W/log" | tail -1)
drops=$(echo "$last" | grep -oE 'ring_drops=bands:[0-9]+' | grep -oE '[0-9]+$')
drops2=$(echo "$last" | grep -oE 'spectrum:[0-9]+' | grep -oE '[0-9]+$')
xruns=$(echo "$last" | grep -oE 'xruns=[0-9]+' | grep -oE '[0-9]+$')
blocks=$(echo "$last" | grep -oE 'blocks=[0-9]+' | grep -oE '[0-9]+$')
frame_drops=$(echo "$last" | grep -oE 'frame_drops=[0-9]+' | grep -oE '[0-9]+$')
echo "SOAK ${SOAK_S}s: blocks=$blocks ring_drops=$((drops + drops2)) frame_drops=$frame_drops xruns=$xruns"
[ "$((drops + drops2 + xruns + frame_drops))" -eq 0 ]
