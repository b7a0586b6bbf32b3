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
#   MIDI clock    aseqdump on the kernel's sequencer: not here, in the VM
#                 of the `vm` suite (scripts/vm/suites/midi.sh, booted once
#                 with capture's checks: scripts/test.sh runs
#                 `vm-test.sh amd64 --suites capture,midi,devices`)
# Every multicast or broadcast test runs in network and mount namespaces
# the test process creates itself (tests/rig/conftest.py): only a loopback
# interface, so nothing reaches a real network.
#
# Builds phase4-link (Ableton Link's C++ through rusty_link: cmake,
# libclang for bindgen). Installs what it needs; runs as root or with sudo
# (namespaces need root). Warm (target/ and the venv kept), about 2-3
# minutes on the shared 2-core machine: the C++ of Ableton Link is built
# once and cargo keeps it in target/release (a phase4 change relinks
# phase4-link only, ~50 s); see rig-note / docs/operations.md for figures.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh

# avahi-daemon and dbus would otherwise be started by their maintainer
# scripts on the machine's real interfaces: forbid service starts while
# installing (policy-rc.d), unless a policy is already in place.
pkgs=(avahi-daemon avahi-utils dbus iproute2 cmake libclang-dev alsa-utils lintian)
missing=0
for p in "${pkgs[@]}"; do p4_pkg_installed "$p" || missing=1; done
if [ "$missing" = 1 ]; then
    added_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | p4_as_root tee /usr/sbin/policy-rc.d >/dev/null
        p4_as_root chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    rc=0
    p4_apt_install "${pkgs[@]}" || rc=$?
    [ -n "$added_policy" ] && p4_as_root rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || exit "$rc"
fi
# zeroconf, python-oscquery, LinkPython-extern, websockets, python-osc: in
# scripts/lib/requirements-extra.txt, installed into the test venv.
p4_venv scripts/lib/requirements-core.txt scripts/lib/requirements-extra.txt

echo "== phase4 and phase4-link (Ableton Link): build, .deb, lintian, unit =="
# A test build: labelled as one (as scripts/ci-appliance.sh does), unless
# the builder said who they are.
if [ -z "${DEBEMAIL:-}" ]; then
    export DEBFULLNAME="phase4 CI test build (not for release)" DEBEMAIL="ci-test-build@phase4.invalid"
fi
t0=$(date +%s)
cargo build --release --quiet -p phase4
echo "ci-rig: phase4 built in $(( $(date +%s) - t0 )) s"
bash scripts/build-link.sh
echo "== phase4-link unit tests =="
cargo test --release --quiet -p phase4-link 2>&1 | grep -E "^test result|FAILED|panicked"

echo "== rig outputs against independent peers (own network namespace) =="
t0=$(date +%s)
p4_as_root env "PATH=$PATH" ${PHASE4_BIN:+"PHASE4_BIN=$PHASE4_BIN"} \
    python3 -m pytest -q -p no:cacheprovider tests/rig
echo "ci-rig: tests/rig took $(( $(date +%s) - t0 )) s"
