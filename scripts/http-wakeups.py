#!/usr/bin/env python3
"""How often the UI server's thread (p4-http) wakes for N kept-alive
connections that each ask for a small answer every ~2 s, spread out as real
browsers' are. Ideally one wake-up per request; prints both figures.

  scripts/http-wakeups.py [--bin target/release/phase4] [--conns 60]

Runs phase4 on a generated WAV on 127.0.0.1 ports 28951/28952.
"""
import argparse
import glob
import os
import socket
import subprocess
import tempfile
import time
import wave

HTTP = 28952
ASK = f"GET /ui-config.json HTTP/1.1\r\nHost: 127.0.0.1:{HTTP}\r\n\r\n".encode()


def http_switches(pid):
    for task in glob.glob(f"/proc/{pid}/task/*"):
        with open(task + "/comm") as f:
            if f.read().strip() != "p4-http":
                continue
        with open(task + "/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches"):
                    return int(line.split()[1])
    raise SystemExit("no p4-http thread")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/phase4")
    ap.add_argument("--conns", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=10)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        wav = os.path.join(d, "in.wav")
        with wave.open(wav, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(48000)
            w.writeframes(b"\0\0" * 48000)
        cfg = os.path.join(d, "c.toml")
        with open(cfg, "w") as f:
            f.write(f'[ws]\nport = {HTTP - 1}\nhttp-port = {HTTP}\n'
                    f'[state]\ndir = "{d}/state"\n[osc]\nenabled = false\n')
        p = subprocess.Popen([a.bin, "-c", cfg, "-i", wav, "--loop"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(2)
            gap = 2.0 / a.conns
            conns = []
            for _ in range(a.conns):
                conns.append(socket.create_connection(("127.0.0.1", HTTP)))
                time.sleep(gap)

            def ask_all():
                for c in conns:
                    c.sendall(ASK)
                    time.sleep(gap)
                for c in conns:
                    c.settimeout(3)
                    if not c.recv(65536):
                        raise SystemExit("a connection was closed")

            ask_all()
            before, t0 = http_switches(p.pid), time.monotonic()
            for _ in range(a.rounds):
                ask_all()
            after, t1 = http_switches(p.pid), time.monotonic()
            secs = t1 - t0
            print(f"{a.bin}: {a.conns} connections, {a.rounds * a.conns / secs:.1f} requests/s: "
                  f"p4-http woke {(after - before) / secs:.1f}/s")
        finally:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
