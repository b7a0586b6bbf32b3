#!/usr/bin/env bash
# WebSocket load benchmark: 20 clients at 60 Hz snapshots with FFT frames.
# Prints phase4's CPU with 0 and 20 clients (the added CPU is the figure the
# design holds to: target <= 0.5 % of one core) and each client's rates;
# fails when a client does not keep its rate.
#   WS_LOAD_CLIENTS=20 WS_LOAD_SECONDS=10 PHASE4_BIN=... scripts/ws-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -z "${PHASE4_BIN:-}" ]; then
  cargo build --release --quiet
  export PHASE4_BIN="${CARGO_TARGET_DIR:-target}/release/phase4"
fi
exec "$PY" tests/ws/load_bench.py
