#!/usr/bin/env bash
# Runs phase4 on a generated demo track played at real time (no sound card
# needed): OSC to 127.0.0.1:9000, the UI at http://127.0.0.1:8766.
# Extra arguments go to phase4 (e.g. --device hw:1 to use a real input).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! dpkg -s "libasound2-dev:$(dpkg --print-architecture)" pkg-config >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq libasound2-dev pkg-config >/dev/null
fi
cargo build --release --quiet
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
  exec target/release/phase4 --config "$CFG" "$@"
fi
exec target/release/phase4 --config "$CFG" --input "$DEMO" --loop
