"""Helpers for the compatibility suite (issue 11): phase4 against what
clients of the Python "Realtime Audio Feature Server" expect. The server
runner, the test WAV and the ALSA test devices are tests/ws's (loaded from
there under another module name, so both suites can share one pytest run)."""

import asyncio
import importlib.util
import json
import socket
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("p4_ws_fixtures", ROOT / "tests" / "ws" / "conftest.py")
ws = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ws)

recv_json = ws.recv_json
recv_any = ws.recv_any
fresh_meta = ws.fresh_meta


class OscServer(ws.Server):
    """A server that also streams the spectrum over OSC, as raw dB (the
    mode whose empty bins the Python server clamps to fft.db_floor)."""

    def config_text(self):
        text = super().config_text()
        text = text.replace("[osc]\n", "[osc]\nsend-fft = true\n", 1)
        return text + "\n[fft]\nenabled = true\nsend-raw-db = true\nn-bins = 256\n"


def run(coro):
    return asyncio.run(coro)


async def send(ws_, msg):
    await ws_.send(msg if isinstance(msg, str) else json.dumps(msg))


async def answer(ws_, timeout=5.0):
    """The reply to a setting change: `meta` (maybe with `clamped`), or
    `error` followed by the snap-back `meta` (returned as (error, meta))."""
    r = await recv_any(ws_, {"meta", "error"}, timeout)
    if r["type"] == "error":
        m = await recv_any(ws_, {"meta", "error"}, timeout)
        return r, m
    return None, r


def osc_listen(port, seconds):
    """Every OSC message to 127.0.0.1:`port` for `seconds`, decoded by
    python-osc: a list of (time, address, type tags, params)."""
    from pythonosc.osc_packet import OscPacket

    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))
        s.settimeout(0.2)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data, _ = s.recvfrom(65536)
            except socket.timeout:
                continue
            now = time.monotonic()
            for tm in OscPacket(data).messages:
                m = tm.message
                out.append((now, m.address, type_tags(m.dgram), m.params))
    return out


def type_tags(dgram):
    """The OSC type tag string of one message (after its padded address)."""
    end = dgram.index(b"\0")
    start = (end // 4 + 1) * 4
    tags = dgram[start:dgram.index(b"\0", start)].decode()
    return tags.lstrip(",")
