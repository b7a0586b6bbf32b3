#!/usr/bin/env bash
# Every WebSocket/UI test, as CI runs them, on a fresh Debian 12 machine (as
# root or as a user with sudo): installs Chromium (Debian's package; no
# browser is ever downloaded) and the test venv (target/venv: websockets,
# python-osc, pytest, Playwright's driver), builds phase4, runs tests/ws
# (protocol, README clients, persistence, slow clients, UI in headless
# Chromium, issue 8's security and abuse regression tests) and the
# 20-client load benchmark.
# Screenshots land in $P4_ARTIFACTS (default target/ws-artifacts).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh

p4_apt_install chromium libasound2-dev pkg-config
p4_venv scripts/lib/requirements-core.txt scripts/lib/requirements-extra.txt

cargo build --release --quiet
export PHASE4_BIN="${CARGO_TARGET_DIR:-target}/release/phase4"
export CHROMIUM=/usr/bin/chromium
export P4_ARTIFACTS="${P4_ARTIFACTS:-$PWD/target/ws-artifacts}"

python3 -m pytest -q -p no:cacheprovider tests/ws
bash scripts/ws-load.sh
echo "ci-ws: ok (screenshots in $P4_ARTIFACTS)"
