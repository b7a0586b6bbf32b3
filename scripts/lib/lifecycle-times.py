#!/usr/bin/env python3
"""Prints phase4's start -> READY=1 and SIGTERM -> exit times (median, min,
max over N runs), measured the way systemd sees them: the test binds the
sd-notify socket itself. Four setups: the paced WAV input with the
WebSocket/HTTP servers off, the same with them on (the shipped default),
with the OSCQuery server and its OSC input port on as well (on 127.0.0.1),
and a missing ALSA device (on-missing-device = "retry": READY while it waits).

    python3 scripts/lib/lifecycle-times.py [PHASE4_BIN] [RUNS]

Default binary target/release/phase4, 10 runs. Standard library only.
"""
import math
import os
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ports import free_port  # noqa: E402  (never the same port twice)


def write_inputs(tmp):
    wav = os.path.join(tmp, "tone.wav")
    with wave.open(wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 48000)))
                               for i in range(48000 * 2)))
    configs = {}
    for setup in ("wav, ws off", "wav, ws on", "wav, oscquery", "missing device"):
        path = os.path.join(tmp, f"{len(configs)}.toml")
        text = '[state]\ndir = ""\n[[osc.destinations]]\nhost = "127.0.0.1"\nport = 9\n'
        if setup in ("wav, ws on", "wav, oscquery"):
            text += f"[ws]\nport = {free_port()}\nhttp-port = {free_port()}\n"
        if setup == "wav, oscquery":
            text += (f'[oscquery]\nenabled = true\nbind = "127.0.0.1"\nport = {free_port()}\n'
                     f"input-port = {free_port()}\n")
        if setup in ("wav, ws off", "missing device"):
            text += "[ws]\nenabled = false\n"
        if setup == "missing device":
            text += '[audio]\ndevice = "no_such_device_p4"\n'
        with open(path, "w") as f:
            f.write(text)
        configs[setup] = (path, [] if setup == "missing device" else ["--input", wav, "--loop"])
    return configs


def one_run(binary, config, args, sock_path):
    """(seconds to READY=1, seconds from SIGTERM to exit)"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(sock_path)
        s.settimeout(30)
        env = dict(os.environ, NOTIFY_SOCKET=sock_path)
        t0 = time.monotonic()
        p = subprocess.Popen([binary, "--config", config, *args], env=env, stderr=subprocess.DEVNULL)
        try:
            while "READY=1" not in s.recv(4096).decode().splitlines():
                pass
            ready = time.monotonic() - t0
            # A random moment: the servers poll for the stop every 200 ms.
            time.sleep(random.uniform(0.5, 1.5))
            t1 = time.monotonic()
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
            return ready, time.monotonic() - t1
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            os.unlink(sock_path)


def show(xs):
    ms = sorted(x * 1000 for x in xs)
    return f"median {statistics.median(ms):4.0f} ms (min {ms[0]:.0f}, max {ms[-1]:.0f})"


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "phase4")
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    with tempfile.TemporaryDirectory() as tmp:
        for setup, (config, args) in write_inputs(tmp).items():
            results = [one_run(binary, config, args, os.path.join(tmp, "notify.sock")) for _ in range(runs)]
            print(f"{setup:15s}  start -> READY {show([r for r, _ in results])}   "
                  f"SIGTERM -> exit {show([s for _, s in results])}   n={runs}")


if __name__ == "__main__":
    main()
