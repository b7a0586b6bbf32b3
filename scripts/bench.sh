#!/usr/bin/env bash
# Prints phase4's headline figures on this machine:
#   1. `phase4 analyze` speed in x real time (one core, every feature on,
#      the log spectrum included)
#   2. live CPU per audio second at 48 kHz / 256 frames with the FFT on and
#      two OSC destinations (oscdump reading one, a UDP sink the other), and
#      peak RSS
#   3. the capture -> OSC-sent latency histogram, idle and with both cores
#      loaded by stress-ng
#   4. overhead, side by side (scripts/lib/live-measure.py): 48 kHz / 256,
#      FFT on, two OSC destinations (UDP sinks of the script), WebSocket
#      clients reading everything; CPU % of a core and voluntary context
#      switches per audio second from /proc (whole process and per thread)
#      against the budget of 2.5 x the block rate; medians of alternating
#      runs, and the ratio to a peer when one is given
# Usage: scripts/bench.sh [--quick] [--live-only] [--runs N] [--seconds S]
#                         [--ws-clients N] [--against BIN] [--jack] [--peer 'CMD']
#   --quick       shorter runs, for CI
#   --live-only   only part 4
#   --against BIN a second phase4 binary run side by side (before/after)
#   --ws-load     instead of the above: phase4 with no WebSocket client and
#                 phase4 with 20 side by side (what 20 clients add)
#   --jack        part 4 captures from a clocked ALSA device instead of the
#                 paced WAV input: `jackin`, JACK's dummy backend through
#                 alsa-lib's jack plugin (scripts/lib/jack-clock.sh), which
#                 plays the test music: every server hears the same samples
#                 on the same clock
#   --peer CMD    a peer server run side by side, e.g. the Python server
#                 (implies --jack); CMD may use {OSC1} {OSC2} (the two UDP
#                 ports to send OSC to), {WS} (the WebSocket port the clients
#                 connect to), {HTTP} (a free port for its UI) and {DEVICE}
#                 (the ALSA capture device); figures are of the one process
#                 CMD becomes (a peer that forks workers must be started so
#                 that they are its threads). For the Python server phase4
#                 replaces: --peer 'scripts/lib/pyserver-peer.sh DIR {DEVICE}
#                 {OSC1} {OSC2} {WS} {HTTP}' (README, "Performance")
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh
QUICK=0 LIVE_ONLY=0 WS_LOAD=0 JACK=0 RUNS=3 M_SECONDS="" WS_CLIENTS=1 AGAINST="" PEER=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --live-only) LIVE_ONLY=1 ;;
    --ws-load) WS_LOAD=1 LIVE_ONLY=1 ;;
    --runs) RUNS=$2; shift ;;
    --seconds) M_SECONDS=$2; shift ;;
    --ws-clients) WS_CLIENTS=$2; shift ;;
    --against) AGAINST=$2; shift ;;
    --jack) JACK=1 ;;
    --peer) PEER=$2 JACK=1; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
LIVE_S=30; ANALYZE_S=300; [ $QUICK = 1 ] && { LIVE_S=8; ANALYZE_S=60; RUNS=1; }
M_SECONDS=${M_SECONDS:-$LIVE_S}

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
# -R: the same pink noise on every run (sox seeds it from the clock otherwise,
# and the onset count of the analyze run moved between 120 and 135).
sox -n -r 48000 -c 1 -b 16 "$W/kick.wav" synth 0.5 sine 60:40 fade q 0 0.5 0.45 gain -3 2>/dev/null
sox -R -n -r 48000 -c 1 -b 16 "$W/pad.wav" synth 0.5 sine 220 sine 277 sine 330 pinknoise gain -18 2>/dev/null
sox -m "$W/kick.wav" "$W/pad.wav" "$W/beat.wav" 2>/dev/null
sox "$W/beat.wav" "$W/music.wav" repeat $((ANALYZE_S * 2 - 1)) 2>/dev/null
# The live input loops a 4 s file: a long WAV would be decoded into memory
# and count against the resident-memory figure.
sox "$W/music.wav" "$W/live.wav" trim 0 4 2>/dev/null

. scripts/lib/live-config.sh
live_config "$W/full.toml" 3600

overhead() {
  echo "== 4. overhead: $RUNS side-by-side run(s) of ${M_SECONDS} s, 48 kHz / 256, FFT on, 2 OSC destinations, $WS_CLIENTS WS client(s) =="
  p4_venv scripts/lib/requirements-core.txt  # pytest, python-osc, websockets
  live_template "$W/live.tmpl" 5
  local input="--input $W/live.wav --loop"
  if [ $JACK = 1 ]; then
    # Music for every run, warm-up and start/stop included; jack-play stops
    # at its end (the clock goes on, the input goes silent).
    sox "$W/beat.wav" "$W/jack.wav" repeat $(( (RUNS * (${M_SECONDS%.*} + 12) + 10) * 2 )) 2>/dev/null
    . scripts/lib/jack-clock.sh
    jack_clock_start "$W" "$W/jack.wav"
    trap 'jack_clock_stop; kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
    input="--device jackin"
    echo "   (input: ALSA PCM jackin, JACK dummy backend 48 kHz / 256 playing the test music)"
  fi
  local run="$BIN --config {CFG} $input --log-level info"
  local servers=(--server "phase4=$run" --template "phase4=$W/live.tmpl")
  if [ $WS_LOAD = 1 ]; then
    echo "   (what 20 WebSocket clients add: phase4 with none and phase4 with 20, side by side)"
    servers=(--server "clients0=$run" --template "clients0=$W/live.tmpl" --ws-clients-for clients0=0
             --server "clients20=$run" --template "clients20=$W/live.tmpl" --ws-clients-for clients20=20)
  fi
  if [ -n "$AGAINST" ]; then
    servers+=(--server "against=$(realpath "$AGAINST") --config {CFG} $input --log-level info"
              --template "against=$W/live.tmpl")
  fi
  [ -n "$PEER" ] && servers+=(--server "peer=${PEER//\{DEVICE\}/jackin}")
  python3 scripts/lib/live-measure.py --runs "$RUNS" --seconds "$M_SECONDS" --ws-clients "$WS_CLIENTS" \
      --block-rate 187.5 --threads "${servers[@]}"
}
if [ $LIVE_ONLY = 1 ]; then
  overhead
  exit 0
fi

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
  udp_sink 9001; local sink=$!
  sleep 0.2
  /usr/bin/time -v "$BIN" --config "$W/full.toml" --input "$W/live.wav" --loop --duration "$LIVE_S" --log-level info \
      2> "$W/live.err" >/dev/null
  kill $od $sink 2>/dev/null || true
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
overhead
