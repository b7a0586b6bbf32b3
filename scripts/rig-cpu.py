#!/usr/bin/env python3
"""What each rig output costs in CPU: phase4 plays the same paced WAV (real
time) for SECONDS with the rig outputs off, then with one output on at a
time, then all of them; CPU time of the whole process (utime+stime from
/proc) per second of audio, and of the rig threads alone (p4-rig, p4-midi,
p4-oscq*, p4-mdns, p4-osc-in) by their /proc/<pid>/task entries.

Runs itself inside a network namespace it creates (`unshare -n` when not
already in one, loopback only, multicast routed to it): WLED multicast and
mDNS never leave the machine. Needs root (the namespace).

usage: scripts/rig-cpu.py [--seconds 20] [--bin target/release/phase4]
The machine is shared: run it when it is quiet, and read the deltas, not
the absolute figures. docs/operations.md quotes its output.
"""

import argparse
import json
import math
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def in_own_netns():
    return os.environ.get("P4_RIG_CPU_NETNS") == "1"


def reexec_in_netns():
    env = dict(os.environ, P4_RIG_CPU_NETNS="1")
    script = (
        "ip link set lo up && ip link set lo multicast on && "
        "ip route add 224.0.0.0/4 dev lo && exec python3 " + " ".join(map(repr, sys.argv))
    )
    sys.exit(subprocess.call(["unshare", "-n", "sh", "-c", script], env=env))


def make_wav(path, seconds, rate=48000):
    rng = random.Random(3)
    noise = [rng.uniform(-1, 1) for _ in range(rate // 10)]
    frames = bytearray()
    for i in range(int(seconds * rate)):
        t = i / rate
        k = int(t / 0.5)
        tb = t - k * 0.5
        x = 0.6 * math.sin(2 * math.pi * 60 * tb) * math.exp(-tb / 0.08)
        if k % 2 and tb < 0.1:
            x += 0.3 * noise[int(tb * rate)] * math.exp(-tb / 0.03)
        x += 0.1 * math.sin(2 * math.pi * 1000 * t)
        frames += struct.pack("<h", int(max(-1, min(1, x)) * 32767))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))


CASES = {
    "baseline (rig off)": "",
    "wled": "[wled]\nenabled = true\n",
    "link feed": "[link]\nenabled = true\n",
    "midi (no sequencer here: the idle thread)": "[midi]\nenabled = true\n",
    "oscquery, 1 LISTEN client (lmh+tempo)": "[oscquery]\nenabled = true\nport = 8767\n",
    "discovery (builtin mDNS)": "[ws]\nbind = \"0.0.0.0\"\n[discovery]\nenabled = true\nbackend = \"builtin\"\n",
    "all of them": "[ws]\nbind = \"0.0.0.0\"\n[wled]\nenabled = true\n[link]\nenabled = true\n[midi]\nenabled = true\n[oscquery]\nenabled = true\nport = 8767\n[discovery]\nenabled = true\nbackend = \"builtin\"\n",
}
RIG_THREADS = ("p4-rig", "p4-midi", "p4-oscq", "p4-oscq-ws", "p4-mdns", "p4-osc-in")


def cpu_s(stat_path):
    f = open(stat_path).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def listen_client(stop):
    """A raw WebSocket client (stdlib only): LISTEN to two paths, read all."""
    import base64

    for _ in range(100):
        try:
            s = socket.create_connection(("127.0.0.1", 8767), timeout=2)
            break
        except OSError:
            time.sleep(0.1)
    else:
        return
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    s.recv(4096)
    for path in ("/audio/lmh", "/audio/tempo"):
        payload = json.dumps({"COMMAND": "LISTEN", "DATA": path}).encode()
        mask = os.urandom(4)
        s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    s.settimeout(0.5)
    while not stop.is_set():
        try:
            s.recv(65536)
        except socket.timeout:
            pass
    s.close()


def run_case(binary, wav, extra, seconds, tmp):
    cfg = Path(tmp) / "c.toml"
    cfg.write_text(
        f'[audio]\ninput = "{wav}"\n[state]\ndir = ""\n[osc]\nenabled = true\n'
        f"[health]\ninterval-s = 3600.0\n" + extra
    )
    # Sections may repeat between the base and the case: merge by hand.
    text = cfg.read_text()
    if text.count("[ws]") > 1:
        raise SystemExit("case repeats [ws]")
    p = subprocess.Popen([binary, "--config", str(cfg)], stderr=subprocess.DEVNULL)
    stop = threading.Event()
    t = None
    if "[oscquery]" in extra:
        t = threading.Thread(target=listen_client, args=(stop,), daemon=True)
        t.start()
    time.sleep(2.0)  # start-up, lock
    c0 = cpu_s(f"/proc/{p.pid}/stat")
    r0 = rig_cpu(p.pid)
    time.sleep(seconds)
    c1 = cpu_s(f"/proc/{p.pid}/stat")
    r1 = rig_cpu(p.pid)
    stop.set()
    p.terminate()
    p.wait(5)
    return 100 * (c1 - c0) / seconds, 100 * (r1 - r0) / seconds


def rig_cpu(pid):
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            if comm in RIG_THREADS or comm.lower().startswith(("mdns", "zbus")):
                total += cpu_s(task / "stat")
        except OSError:
            pass
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "phase4"))
    a = ap.parse_args()
    if not in_own_netns():
        reexec_in_netns()
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "in.wav"
        make_wav(wav, a.seconds + 4)
        print(f"{'case':44} {'process %':>10} {'rig threads %':>14} {'delta %':>8}")
        base = None
        for name, extra in CASES.items():
            total, rig = run_case(a.bin, wav, extra, a.seconds, tmp)
            base = total if base is None else base
            print(f"{name:44} {total:10.2f} {rig:14.2f} {total - base:8.2f}")


if __name__ == "__main__":
    main()
