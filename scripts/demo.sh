#!/usr/bin/env bash
# Runs phase4 on a generated demo track played at real time (no sound card
# needed): OSC to 127.0.0.1:9000, the UI at http://127.0.0.1:8766.
# Extra arguments go to phase4 (e.g. --device hw:1 to use a real input).
# As root or as a user with sudo (only to apt-get the ALSA headers and cmake).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh
p4_apt_install libasound2-dev pkg-config cmake  # cmake: opusic-sys builds the bundled libopus
BIN=${CARGO_TARGET_DIR:-target}/release/phase4
if [ ! -x "$BIN" ]; then
  cat <<'EOT'
phase4 demo: first build. cargo downloads and compiles about 180 crates, then
phase4 itself (an optimised release build): about 2 CPU-minutes, so 2 to 5
minutes on a 2-core machine depending on what else it is doing (4 min 46 s
measured on a busy one). Later runs start in seconds. cargo's progress follows.
EOT
fi
cargo build --release
DEMO=${XDG_CACHE_HOME:-$HOME/.cache}/phase4/demo.wav
[ -f "$DEMO" ] || { mkdir -p "$(dirname "$DEMO")"; python3 scripts/make-demo-wav.py "$DEMO"; }
CFG=$(mktemp --suffix=.toml)
cat > "$CFG" <<EOT
[fft]
enabled = true
[state]
dir = "${XDG_STATE_HOME:-$HOME/.local/state}/phase4"
[health]
interval-s = 10
EOT
echo "phase4 demo: OSC -> 127.0.0.1:9000, UI -> http://127.0.0.1:8766  (Ctrl-C to stop)"
if [ $# -gt 0 ]; then
  exec "$BIN" --config "$CFG" "$@"
fi
exec "$BIN" --config "$CFG" --input "$DEMO" --loop
