#!/usr/bin/env bash
# Load and abuse: starts phase4 (release build) and, while a well-behaved
# WebSocket client watches the feature stream from the LAN and a stand-in
# for systemd measures the watchdog pings, runs every abuse class of
# scripts/abuse/classes.py (issue 8: RCE through set_device, HTTP request
# floods and fd exhaustion, WebSocket frame floods, handshake slowloris,
# preset flood, DNS rebinding, control from the LAN without the token, the
# device-switch wedge; and from stop 38 watchers squatting every place, token
# guessing over fresh connections, keep-alive connections squatting the UI
# server; from stop 39 half-sent requests re-opened as soon as closed). Prints one line per class with the good client's
# worst snapshot rate and the longest watchdog gap; fails if the good client
# stays below 50 snapshots/s for more than 1 s, a watchdog gap exceeds 2 s,
# a class's own check fails, or phase4 does not exit within 1 s of SIGTERM.
#
# Everything runs inside a network namespace made here (`unshare --net`):
# only `lo` exists, with 10.77.0.1-9 added to it so that the good client and
# the attackers have LAN addresses of their own. Nothing leaves the machine.
#
#   scripts/abuse.sh                 every class (~2 min)
#   scripts/abuse.sh --classes a,b   some of them (--list shows them)
# Needs root or sudo (the namespace); installs python3-venv if missing and
# `websockets` into target/abuse-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

if [ -z "${P4_ABUSE_IN_NETNS:-}" ]; then
  if ! python3 -c "import ensurepip, venv" 2>/dev/null || ! command -v ip >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq || true
    $SUDO apt-get install -y -qq --no-install-recommends python3-venv iproute2 >/dev/null
  fi
  VENV=target/abuse-venv
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "websockets>=13"
  cargo build --release --quiet
  exec $SUDO unshare --net env P4_ABUSE_IN_NETNS=1 PATH="$PATH" "$0" "$@"
fi

# In the namespace: lo up, with the LAN addresses on it.
ip link set lo up
for i in 1 2 3 4 5 6 7 8 9; do
  ip addr add "10.77.0.$i/32" dev lo
done
exec target/abuse-venv/bin/python scripts/abuse/run.py --lan --bin "${CARGO_TARGET_DIR:-target}/release/phase4" "$@"
