"""Device switches over the WebSocket (Python websockets client) never wedge
the supervisor: after switching to a clockless, always-ready PCM (ALSA's
`null` plugin, listed through a hint like any device) and away again,
SIGTERM still stops phase4 within a second, and server_status tells clocked
from clockless devices."""

import asyncio
import json
import subprocess

from conftest import alsa_device, encode, free_tcp_port, render, sigterm, tone, write_config, ws_connect
from conftest import ws_recv as recv


def test_switching_to_null_and_away_again_never_wedges_stop(phase4_bin, tmp_path):
    asound = alsa_device(tmp_path, encode(render(tone(440), 3.0), "S16_LE", 1), name="p4file")
    conf = asound.split(":")[-1]
    with open(conf, "a") as f:
        f.write('pcm.p4file.hint { show on description "phase4 test file" }\n'
                'pcm.p4null { type null hint { show on description "phase4 test null" } }\n')
    ws_port, http_port = free_tcp_port(), free_tcp_port()
    cfg = write_config(
        tmp_path / "c.toml",
        audio={"device": "p4file", "channels": 1, "format": "S16_LE"},
        osc={"enabled": False},
        ws={"port": ws_port, "http-port": http_port, "bind": "127.0.0.1"},
        state={"dir": str(tmp_path / "state")},
        health={"interval-s": 3600.0},
    )
    env = {"ALSA_CONFIG_PATH": asound, "PATH": "/usr/bin:/bin"}
    log = open(tmp_path / "phase4.log", "w")
    proc = subprocess.Popen([str(phase4_bin), "--config", str(cfg)], env=env, stderr=log)
    try:
        async def go():
            ws = await ws_connect(ws_port)
            async with ws:
                await ws.send(json.dumps({"type": "list_devices"}))
                d = await recv(ws, {"devices"}, timeout=30)
                names = {i["name"]: i for i in d["items"]}
                assert "p4null" in names and "p4file" in names, list(names)
                statuses = {}
                for name in ["p4null", "p4file", "p4null", "p4file"]:
                    await ws.send(json.dumps({"type": "set_device", "index": names[name]["index"]}))
                    # The reply is a meta naming the new device (metas sent
                    # for other reasons may come first), or an error.
                    while True:
                        r = await recv(ws, {"meta", "error"}, timeout=15)
                        assert r["type"] == "meta", r
                        if r["device"]["name"] == name:
                            break
                    for _ in range(10):
                        st = await recv(ws, {"server_status"}, timeout=10)
                        if st["device"]["name"] == name and st["device"]["up"]:
                            break
                    statuses[name] = st["device"]
                assert statuses["p4null"]["clocked"] is False
                assert statuses["p4null"]["access"] in ("mmap", "rw")
                assert "suspends" in statuses["p4file"] and "reopens" in statuses["p4file"]

        asyncio.run(go())
        assert proc.poll() is None, "phase4 died during the switches"
        took, _ = sigterm(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "phase4.log").read_text()
    assert took < 1.0, f"SIGTERM took {took:.2f} s\n{text[-2000:]}"
    assert proc.returncode == 0, text[-2000:]
    assert "panicked" not in text
