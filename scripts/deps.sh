#!/usr/bin/env bash
# Installs what building phase4 and the first steps of scripts/test.sh need
# on Debian 12 / Ubuntu, as root or as a user with sudo. Idempotent; quiet
# when everything is there.
#   scripts/deps.sh          build + every suite's common needs
#   scripts/deps.sh --core   only what `scripts/test.sh --core` needs
#
# apt (--core): libasound2-dev pkg-config cmake, and python3-venv if this python3
#   cannot make a venv
# apt (full):   also alsa-utils liblo-tools sox stress-ng time (benchmarks,
#   the systemd and qemu tests)
# Python: the venv target/venv (P4_VENV overrides) with
#   scripts/lib/requirements-core.txt (pytest, python-osc, websockets) and,
#   unless --core, scripts/lib/requirements-extra.txt (Playwright's driver,
#   numpy, scipy, mir_eval, ...). Nothing is pip-installed outside it.
# The suites install their own larger needs (Chromium, fluidsynth, cross
# compilers, ...): see "What scripts/test.sh installs" in the README.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

core=0
case "${1:-}" in
    --core) core=1 ;;
    "") ;;
    *) echo "usage: $0 [--core]" >&2; exit 2 ;;
esac

pkgs=(libasound2-dev pkg-config cmake)  # cmake: opusic-sys builds the bundled libopus
[ "$core" = 1 ] || pkgs+=(alsa-utils liblo-tools sox stress-ng time)
p4_apt_install "${pkgs[@]}"

reqs=("$P4_ROOT/scripts/lib/requirements-core.txt")
[ "$core" = 1 ] || reqs+=("$P4_ROOT/scripts/lib/requirements-extra.txt")
p4_venv "${reqs[@]}"
