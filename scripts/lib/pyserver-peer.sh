#!/usr/bin/env bash
# Runs the Python server phase4 replaces (aiXander/Realtime_PyAudio_FFT, its
# `server` package: `python -m server.main`) as the peer of
# `scripts/bench.sh --peer`, set up like phase4 in that benchmark: FFT on
# and /audio/fft sent, two OSC destinations, the WebSocket server on.
# Nothing of it is part of phase4: bring a checkout of it yourself.
#
#   scripts/lib/pyserver-peer.sh --setup DIR
#       make a venv in DIR/.p4-venv with the dependencies its pyproject.toml
#       lists (PortAudio from apt: libportaudio2)
#   scripts/lib/pyserver-peer.sh DIR DEVICE OSC1 OSC2 WS HTTP
#       write a config from DIR/configs/main.example.yaml (capture device
#       DEVICE by name, OSC to 127.0.0.1:OSC1 and :OSC2, WebSocket on WS, UI
#       on HTTP) into a temporary directory and exec the server on it; the
#       process it becomes is the server (its threads are the ones measured)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib/common.sh
. "$here/common.sh"

if [ "${1:-}" = --setup ]; then
    dir=$(cd "$2" && pwd)
    [ -f "$dir/server/main.py" ] || { echo "pyserver-peer: $dir has no server/main.py" >&2; exit 2; }
    p4_apt_install libportaudio2 python3-venv
    [ -x "$dir/.p4-venv/bin/python" ] || python3 -m venv "$dir/.p4-venv"
    deps=$(python3 -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
        "$dir/pyproject.toml")
    mapfile -t deps <<<"$deps"
    "$dir/.p4-venv/bin/pip" install -q "${deps[@]}"
    "$dir/.p4-venv/bin/pip" freeze | sed 's/^/pyserver-peer: /'
    exit 0
fi

[ $# -eq 6 ] || { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
dir=$(cd "$1" && pwd) device=$2 osc1=$3 osc2=$4 ws=$5 http=$6
cfg_dir=$(mktemp -d)
# The server saves its settings next to its config: keep that out of DIR.
"$dir/.p4-venv/bin/python" - "$dir/configs/main.example.yaml" "$cfg_dir/main.yaml" \
    "$device" "$osc1" "$osc2" "$ws" "$http" <<'PY'
import sys, yaml
src, dst, device, osc1, osc2, ws, http = sys.argv[1:]
c = yaml.safe_load(open(src))
c["audio"]["device"] = {"name": device, "index": None}
c["audio"]["blocksize"] = 256
c["fft"]["enabled"] = True
c["osc"]["destinations"] = [{"host": "127.0.0.1", "port": int(osc1)},
                            {"host": "127.0.0.1", "port": int(osc2)}]
c["osc"]["send_fft"] = True
c["ws"].update(enabled=True, host="127.0.0.1", port=int(ws), http_port=int(http))
yaml.safe_dump(c, open(dst, "w"))
PY
cd "$dir"
exec "$dir/.p4-venv/bin/python" -m server.main --config "$cfg_dir/main.yaml" --log-level INFO
