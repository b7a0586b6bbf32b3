"""The Python server's own bundled UI against phase4 (issue 11): its recorded
session (upstream_ui_session.json, written from reading its ui/ code) is
replayed over a real WebSocket client with zero `error` replies, and every
meta carries what the UI reads from it."""

import asyncio
import json
import time
from pathlib import Path

import websockets

from p4compat import run
from test_outbound import check_meta

SESSION = json.loads((Path(__file__).parent / "upstream_ui_session.json").read_text())

# What each message type is answered with, as the UI expects.
ANSWER = {"list_devices": "devices", "save_preset": "presets", "list_presets": "presets"}


def test_the_recorded_ui_session_gets_no_error(make_server):
    # Capture from a listed device, so the device dropdown has something to
    # pick (its index is in meta.device.index).
    server = make_server(input=False, audio='device = "p4ws"')
    # Control lists the devices once at start; a client connecting before
    # that (~0.1 s) gets the lists a moment after server_status
    # (docs/protocol.md, "The greeting").
    time.sleep(0.5)

    async def go():
        seen = []
        async with websockets.connect(server.url) as ws:
            greeting = []
            while len(greeting) < 4:
                m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if m["type"] != "auth":
                    greeting.append(m)
            assert [m["type"] for m in greeting] == ["meta", "devices", "presets", "server_status"]
            assert SESSION["on_load"] == []
            meta = greeting[0]
            check_meta(meta)
            device = meta["device"]["index"]
            assert isinstance(device, int)
            for control in SESSION["controls"]:
                for msg in control["send"]:
                    msg = {k: (device if v == "$DEVICE" else v) for k, v in msg.items()}
                    await ws.send(json.dumps(msg))
                    want = ANSWER.get(msg["type"], "meta")
                    deadline = time.monotonic() + 30
                    while True:
                        left = deadline - time.monotonic()
                        assert left > 0, f"no {want} for {msg}"
                        frame = await asyncio.wait_for(ws.recv(), left)
                        if isinstance(frame, bytes):
                            continue
                        r = json.loads(frame)
                        seen.append(r["type"])
                        assert r["type"] != "error", (control["control"], msg, r)
                        if r["type"] == "meta":
                            check_meta(r)
                            assert "clamped" not in r, (control["control"], msg, r["clamped"])
                        if r["type"] == want:
                            break
            # A moment for anything late.
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                try:
                    frame = await asyncio.wait_for(ws.recv(), end - time.monotonic())
                except asyncio.TimeoutError:
                    break
                if isinstance(frame, str):
                    assert json.loads(frame)["type"] != "error", frame
        assert "error" not in seen
        sends = [m["type"] for c in SESSION["controls"] for m in c["send"]]
        assert seen.count("meta") >= sum(1 for t in sends if t not in ANSWER)

    run(go())
