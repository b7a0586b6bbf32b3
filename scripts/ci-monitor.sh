#!/usr/bin/env bash
# Issue 14's monitor stream, recordings and listen control, as CI runs them
# (root or a sudo user): tests/monitor (the Opus stream decoded by FFmpeg's
# own decoder through PyAV at every preset, recordings and the replay buffer
# bit for bit, quota and full disk on a tmpfs in a private mount namespace,
# the page's listen and recording controls clicked in Debian's headless
# Chromium (record, save the last minute, download, delete; a locked page
# is refused), the listen control on localhost and,
# in tests/phone, as a phone on a plain-HTTP LAN address), then the CPU of
# one listener at Medium (scripts/monitor-cpu.py). About 2 minutes warm.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh

p4_apt_install chromium libasound2-dev pkg-config cmake util-linux iproute2 curl
p4_venv scripts/lib/requirements-core.txt scripts/lib/requirements-extra.txt

cargo build --release --quiet
export PHASE4_BIN="${CARGO_TARGET_DIR:-target}/release/phase4"
export CHROMIUM=/usr/bin/chromium

python3 -m pytest -q -p no:cacheprovider -s tests/monitor
# The phone's path (a plain-HTTP page: WebAssembly libopus + ScriptProcessor),
# in a network namespace the test process creates (root: sudo when not
# root). The vendored decoder must be the pinned opus-decoder build.
bash scripts/vendor-opus-decoder.sh --check
p4_as_root env "PATH=$PATH" "PHASE4_BIN=$PHASE4_BIN" "CHROMIUM=$CHROMIUM" \
    python3 -m pytest -q -p no:cacheprovider -s tests/phone
python3 scripts/monitor-cpu.py --seconds 8 --rounds 3 --presets medium
echo "ci-monitor: ok"
