#!/usr/bin/env bash
# Installs what building and testing phase4 needs on Debian/Ubuntu: the ALSA
# headers, ALSA and OSC tools the tests use, and the Python test clients.
# Idempotent; quiet when everything is there.
set -euo pipefail
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
pkgs=(libasound2-dev pkg-config alsa-utils liblo-tools sox stress-ng time)
missing=()
arch=$(dpkg --print-architecture)
# ":$arch" too: with arm64/armhf dev packages installed for cross builds a
# bare name is ambiguous to dpkg.
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || dpkg -s "$p:$arch" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || echo "deps: apt-get update reported errors; installing anyway"
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! python3 -c "import pytest, pythonosc, websockets, numpy" 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check pytest python-osc websockets numpy 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages pytest python-osc websockets numpy
fi
