#!/usr/bin/env bash
# Every WebSocket/UI test, as CI runs them, on a fresh Debian 12 machine:
# installs Chromium (Debian's package; no browser is ever downloaded) and a
# Python venv with websockets, python-osc, pytest and Playwright's driver,
# builds phase4, runs tests/ws (protocol, README clients, persistence, slow
# clients, UI in headless Chromium, issue 8's security and abuse regression
# tests) and the 20-client load benchmark.
# Screenshots land in $P4_ARTIFACTS (default target/ws-artifacts).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

apt_need=()
[ -x /usr/bin/chromium ] || apt_need+=(chromium)
python3 -c "import ensurepip, venv" 2>/dev/null || apt_need+=(python3-venv)
command -v pkg-config >/dev/null && pkg-config --exists alsa || apt_need+=(libasound2-dev pkg-config)
if [ ${#apt_need[@]} -gt 0 ]; then
  echo "ci-ws: apt-get install ${apt_need[*]}"
  # A partial index failure (a mirror mid-sync for a foreign architecture)
  # must not stop us: the install below says if a package is really missing.
  apt-get update -qq || echo "ci-ws: apt-get update reported errors; trying the install anyway"
  apt-get install -y -qq --no-install-recommends "${apt_need[@]}" >/dev/null
fi

VENV=${P4_WS_VENV:-target/ws-venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check \
  "websockets>=13" "python-osc>=1.8" "pytest>=7" "playwright>=1.45"

cargo build --release --quiet
export PHASE4_BIN="${CARGO_TARGET_DIR:-target}/release/phase4"
export CHROMIUM=/usr/bin/chromium
export P4_ARTIFACTS="${P4_ARTIFACTS:-$PWD/target/ws-artifacts}"

"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/ws
PYTHON="$VENV/bin/python" bash scripts/ws-load.sh
echo "ci-ws: ok (screenshots in $P4_ARTIFACTS)"
