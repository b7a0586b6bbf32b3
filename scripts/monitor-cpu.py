#!/usr/bin/env python3
"""CPU of the monitor stream (issue 14): phase4 plays a music WAV at real
time; for each case (nobody listening; one listener at each preset asked
for) it measures over SECONDS, side by side:

  - the p4-monitor thread's CPU (utime+stime from /proc), % of one core;
  - the time spent inside opus_encode_float (server_status.monitor.encode_s);
  - the whole process's CPU.

Usage: scripts/monitor-cpu.py [--seconds S] [--presets medium,...]
Prints one line per case; the machine may be shared: figures are medians of
three rounds, with the nobody-listening case measured in each round.
"""

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mon", ROOT / "tests" / "monitor" / "conftest.py")
sys.path.insert(0, str(ROOT / "tests" / "monitor"))
mon = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mon)

import websockets  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu_s(pid, name):
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (t / "comm").read_text().strip() == name:
                f = (t / "stat").read_text().rsplit(")", 1)[1].split()
                return (int(f[11]) + int(f[12])) / TICK
        except OSError:
            pass
    return 0.0


async def status(url):
    async with websockets.connect(url) as ws:
        return (await mon.recv_json(ws, "server_status", 5.0))["monitor"]


async def measure(server, preset, seconds):
    """(p4-monitor %, encoder %, process %) over `seconds`."""
    ws = None
    if preset:
        ws = await websockets.connect(server.url, max_size=1 << 20)
        await mon.login(ws)
        await ws.send(json.dumps({"type": "subscribe_audio", "quality": preset}))
        await mon.recv_json(ws, "audio_subscribed")
    await asyncio.sleep(1.0)
    e0 = (await status(server.url))["encode_s"]
    t0, m0, p0 = time.monotonic(), thread_cpu_s(server.proc.pid, "p4-monitor"), server.cpu_s()
    end = t0 + seconds
    while time.monotonic() < end:
        if ws:
            try:
                await asyncio.wait_for(ws.recv(), 0.5)
            except asyncio.TimeoutError:
                pass
        else:
            await asyncio.sleep(0.2)
    dt = time.monotonic() - t0
    m1, p1 = thread_cpu_s(server.proc.pid, "p4-monitor"), server.cpu_s()
    e1 = (await status(server.url))["encode_s"]
    if ws:
        await ws.close()
    return 100 * (m1 - m0) / dt, 100 * (e1 - e0) / dt, 100 * (p1 - p0) / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--presets", default="medium")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    binary = os.environ.get("PHASE4_BIN") or str(ROOT / "target" / "release" / "phase4")
    with tempfile.TemporaryDirectory() as d:
        wav = mon.write_wav(Path(d) / "music.wav", mon.music(8.0))
        server = mon.Server(binary, wav, d, extra=f'token = "{mon.TOKEN}"\ntrust-loopback = false').start()
        try:
            cases = [None] + a.presets.split(",")
            got = {c: [] for c in cases}
            for _ in range(a.rounds):
                for c in cases:
                    got[c].append(asyncio.run(measure(server, c, a.seconds)))
            print(f"monitor-cpu: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
                  f"(shared machine), {a.rounds} rounds of {a.seconds:.0f} s, medians:")
            for c in cases:
                m, e, p = (statistics.median(x[i] for x in got[c]) for i in range(3))
                print(f"monitor-cpu: {c or 'nobody listening':<16} p4-monitor {m:5.2f} %  "
                      f"opus_encode {e:5.2f} %  process {p:5.2f} % of one core")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
