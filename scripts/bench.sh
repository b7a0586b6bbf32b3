#!/usr/bin/env bash
# Prints phase4's headline figures on this machine:
#   1. `phase4 analyze` speed in x real time (one core, every feature on,
#      the log spectrum included)
#   2. live CPU per audio second at 48 kHz / 256 frames with the FFT on and
#      two OSC destinations (one of them a real receiver), and peak RSS
#   3. the capture -> OSC-sent latency histogram, idle and with both cores
#      loaded by stress-ng
# Usage: scripts/bench.sh [--quick]    (--quick: shorter runs, for CI)
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0; [ "${1:-}" = "--quick" ] && QUICK=1
LIVE_S=30; ANALYZE_S=300; [ $QUICK = 1 ] && { LIVE_S=8; ANALYZE_S=60; }

need() { command -v "$1" >/dev/null 2>&1; }
if ! need sox || ! need stress-ng || [ ! -x /usr/bin/time ] || ! need oscdump; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq sox stress-ng time liblo-tools >/dev/null
fi
cargo build --release --quiet
BIN=target/release/phase4
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT

# Test material: a 120 BPM kick/hat pattern over a chord, with noise.
sox -n -r 48000 -c 1 -b 16 "$W/kick.wav" synth 0.5 sine 60:40 fade q 0 0.5 0.45 gain -3 2>/dev/null
sox -n -r 48000 -c 1 -b 16 "$W/pad.wav" synth 0.5 sine 220 sine 277 sine 330 pinknoise gain -18 2>/dev/null
sox -m "$W/kick.wav" "$W/pad.wav" "$W/beat.wav" 2>/dev/null
sox "$W/beat.wav" "$W/music.wav" repeat $((ANALYZE_S * 2 - 1)) 2>/dev/null
# The live input loops a 4 s file: a long WAV would be decoded into memory
# and count against the resident-memory figure.
sox "$W/music.wav" "$W/live.wav" trim 0 4 2>/dev/null

. scripts/lib/live-config.sh
live_config "$W/full.toml" 3600

echo "== 1. analyze: ${ANALYZE_S} s of 48 kHz audio, one core, every feature on (FFT + log spectrum) =="
best=0
for i in 1 2 3; do
  line=$(taskset -c 0 "$BIN" analyze "$W/music.wav" --config "$W/full.toml" 2>&1 >/dev/null | grep '^analyze:')
  x=$(echo "$line" | sed -E 's/.*\(([0-9]+)x real time.*/\1/')
  echo "   run $i: $line"
  [ "$x" -gt "$best" ] && best=$x
done
echo "ANALYZE_SPEED=${best}x_real_time (target >= 1000x)"

echo "== 1b. per-hop cost of the onset detector and the beat tracker (criterion, benches/musical.rs) =="
MT=5; [ $QUICK = 1 ] && MT=2
taskset -c 0 cargo bench --quiet --bench musical -- --warm-up-time 1 --measurement-time $MT 2>/dev/null \
  | grep -E '^[a-z_]+ +time:' | sed 's/^/   /'

live() {  # $1 = label
  oscdump 9000 >/dev/null 2>&1 & local od=$!
  sleep 0.2
  /usr/bin/time -v "$BIN" --config "$W/full.toml" --input "$W/live.wav" --loop --duration "$LIVE_S" --log-level info \
      2> "$W/live.err" >/dev/null
  kill $od 2>/dev/null || true
  local user sys rss
  user=$(grep 'User time' "$W/live.err" | awk '{print $NF}')
  sys=$(grep 'System time' "$W/live.err" | awk '{print $NF}')
  rss=$(grep 'Maximum resident' "$W/live.err" | awk '{print $NF}')
  local cpu_pct
  cpu_pct=$(python3 -c "print(f'{100*($user+$sys)/$LIVE_S:.2f}')")
  local health
  health=$(grep 'health:' "$W/live.err" | tail -1)
  echo "   $1: cpu ${cpu_pct}% of one core (user ${user}s + sys ${sys}s over ${LIVE_S}s of audio), peak RSS $((rss / 1024)) MiB"
  echo "   $1: $(echo "$health" | grep -oE 'latency_us p50=[0-9]+ p95=[0-9]+ p99=[0-9]+ max=[0-9]+ n=[0-9]+') ring_drops=$(echo "$health" | grep -oE 'ring_drops=[^ ]+')"
  echo "LIVE_${1}_CPU_PCT=$cpu_pct LIVE_${1}_RSS_KIB=$rss"
}

echo "== 2. live: ${LIVE_S} s at 48 kHz / 256, FFT on, 2 OSC destinations (WAV input paced at real time) =="
live IDLE
echo "== 3. live again with both cores loaded by stress-ng --cpu 2 =="
stress-ng --cpu 2 --timeout $((LIVE_S + 5))s >/dev/null 2>&1 & sp=$!
sleep 1
live LOADED
kill $sp 2>/dev/null || true
echo "(targets: live CPU <= 1 % of one core; RSS <= 16 MiB; capture -> OSC p99 <= 1 ms, max <= 5 ms)"
