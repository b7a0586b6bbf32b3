#!/usr/bin/env bash
# Runs phase4's tests: Rust unit and integration tests (including the
# allocation proof through alsa-lib), then the end-to-end tests with real
# peers (alsa-lib's file plugin, python-osc), then the suites of the other
# parts when present (WebSocket/UI, musical-feature evaluation subset,
# appliance). Installs its own dependencies.
#   scripts/test.sh           everything
#   scripts/test.sh --core    Rust tests + end-to-end only
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
echo "== cargo test =="
cargo test --all-targets 2>&1 | tee /tmp/phase4-cargo-test.log | grep -E '^(test result|running|error|failures|---- )|FAILED|panicked' || true
if grep -qE 'test result: FAILED|error(\[E[0-9]+\])?:' /tmp/phase4-cargo-test.log; then
  echo "cargo test failed"; exit 1
fi
cargo build --release --quiet
echo "== end-to-end: ALSA file plugin, OSC decoded by python-osc =="
python3 -m pytest -q tests/e2e
[ "${1:-}" = "--core" ] && exit 0
echo "== capture on the kernel's own ALSA drivers: qemu VM with snd-dummy and snd-aloop (amd64) =="
bash scripts/vm-test.sh amd64
echo "== ALSA jack plugin on JACK's dummy backend: clocked, SCHED_FIFO, period rate =="
bash scripts/jack-measure.sh --check
echo "== live path vs analyze: onset and beat events =="
python3 -m pip install -q --disable-pip-version-check scipy 2>/dev/null || true
python3 -m pytest -q tests/test_live_events.py
echo "== WebSocket protocol, README clients, persistence, slow clients, UI in Chromium, security =="
bash scripts/ci-ws.sh
echo "== load and abuse (issue 8): every abuse class against a live phase4, in a network namespace =="
bash scripts/abuse.sh
echo "== rig outputs: mDNS, OSCQuery, Link, MIDI clock, WLED (own network namespace) =="
bash scripts/ci-rig.sh
echo "== onset/beat/tempo evaluation against aubio (subset) =="
bash scripts/eval/run.sh --subset
python3 scripts/eval/gate.py
if [ -f scripts/ci-appliance.sh ]; then
  echo "== appliance: systemd unit, packages, arm builds under qemu, real systemd =="
  bash scripts/ci-appliance.sh
fi
