#!/usr/bin/env bash
# The rig outputs of issue 13, each against an implementation we did not
# write:
#   mDNS/DNS-SD   python-zeroconf, and avahi-browse with a private
#                 avahi-daemon (and its own D-Bus) already on 5353
#   OSCQuery      python-oscquery's browser and client, the proposal's JSON
#                 rules, a LISTEN client (websockets + python-osc)
#   Link          LinkPython-extern (Ableton's Link) through phase4-link
#   WLED          a decoder of WLED's audioSyncPacket layout (in the test)
#   OSC           broadcast and multicast destinations, python-osc
#   MIDI clock    aseqdump on the kernel's sequencer, in the VM of
#                 scripts/vm-test.sh (when that script is there)
# Every multicast or broadcast test runs in network and mount namespaces
# the test process creates itself (tests/rig/conftest.py): only a loopback
# interface, so nothing reaches a real network.
#
# Builds phase4-link (Ableton Link's C++ through rusty_link: cmake,
# libclang for bindgen). Installs what it needs; runs as root or with sudo
# (namespaces need root). About 3 minutes on the 2-core CI machine with a
# warm target/ (see docs/operations.md for the measured breakdown).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

pkgs=(avahi-daemon avahi-utils dbus iproute2 cmake libclang-dev alsa-utils lintian)
missing=()
arch=$(dpkg --print-architecture)
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || dpkg -s "$p:$arch" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    # avahi-daemon and dbus would otherwise be started by their maintainer
    # scripts on the machine's real interfaces: forbid service starts
    # while installing (policy-rc.d), unless a policy is already in place.
    added_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq || echo "ci-rig: apt-get update reported errors; installing anyway"
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -n "$added_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d
fi
py=(pytest zeroconf python-oscquery requests LinkPython-extern websockets python-osc)
if ! python3 -c "import pytest, zeroconf, pythonoscquery, requests, link, websockets, pythonosc" 2>/dev/null; then
    python3 -m pip install -q --disable-pip-version-check "${py[@]}" 2>/dev/null \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages "${py[@]}"
fi

echo "== phase4 and phase4-link (Ableton Link): build, .deb, lintian, unit =="
t0=$(date +%s)
cargo build --release --quiet -p phase4
echo "ci-rig: phase4 built in $(( $(date +%s) - t0 )) s"
bash scripts/build-link.sh
echo "== phase4-link unit tests =="
cargo test --release --quiet -p phase4-link 2>&1 | grep -E "^test result|FAILED|panicked"

echo "== rig outputs against independent peers (own network namespace) =="
$SUDO env "PATH=$PATH" python3 -m pytest -q tests/rig

if [ -f scripts/vm-test.sh ]; then
    echo "== MIDI clock on the kernel's sequencer, read by aseqdump (VM) =="
    bash scripts/vm-test.sh amd64 --suites midi
else
    echo "== MIDI clock in the VM: skipped (scripts/vm-test.sh is not in this tree) =="
fi
