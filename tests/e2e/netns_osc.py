"""Runs inside a private network namespace (started by
test_osc_destinations.py through `unshare -n -m`): only `lo` exists, so an
address outside 127.0.0.0/8 has no route and nothing can leave the machine.

Scenarios (argv[1]):
  unreachable  an unreachable destination listed before a working one
  stuck-dns    a host name whose DNS server never answers, listed first

Prints one JSON object with what was measured: READY delay, OSC datagram
gaps at the working receiver, watchdog ping gaps, and phase4's log."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import BIN, OscReceiver, render, tone, write_config, write_wav  # noqa: E402

RUN_S = 12.0


def sh(*cmd):
    subprocess.run(cmd, check=True)


class Notify:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.msgs = []
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            now = time.monotonic()
            for line in data.decode(errors="replace").splitlines():
                self.msgs.append((now, line))


def swallow_dns(stop):
    """A DNS server that reads queries and never answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 53))
    s.settimeout(0.2)
    while not stop.is_set():
        try:
            s.recvfrom(4096)
        except socket.timeout:
            pass


def max_gap(times, start, end):
    pts = [start] + [t for t in times if start <= t <= end] + [end]
    return max(b - a for a, b in zip(pts, pts[1:]))


def main():
    scenario = sys.argv[1]
    sh("ip", "link", "set", "lo", "up")
    tmp = Path(tempfile.mkdtemp(prefix="p4netns-"))
    stop = threading.Event()
    if scenario == "stuck-dns":
        # Our own resolver configuration, visible only in this mount namespace.
        (tmp / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:2\n")
        (tmp / "nsswitch.conf").write_text("hosts: files dns\n")
        (tmp / "hosts").write_text("127.0.0.1 localhost\n")
        for f in ("resolv.conf", "nsswitch.conf", "hosts"):
            sh("mount", "--bind", str(tmp / f), f"/etc/{f}")
        threading.Thread(target=swallow_dns, args=(stop,), daemon=True).start()
        first = {"host": "stuck.p4test", "port": 9000}
    else:
        first = {"host": "192.0.2.1", "port": 9000}

    wav = write_wav(tmp / "tone.wav", render(tone(100.0), 2.0))
    rx = OscReceiver()
    cfg = write_config(
        tmp / "p4.toml",
        audio={"input": str(wav), "loop-input": True},
        osc={"resolve-interval-s": 1.0, "destinations": [first, {"host": "127.0.0.1", "port": rx.port}]},
        ws={"enabled": False},
        state={"dir": ""},
        health={"interval-s": 2.0},
    )
    notify = Notify(tmp / "notify.sock")
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp / "notify.sock"), WATCHDOG_USEC="1000000")
    t0 = time.monotonic()
    p = subprocess.Popen([str(BIN), "--config", str(cfg)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(RUN_S)
    t_end = time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        out, _ = p.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    rx.stop(linger=0.1)
    stop.set()
    notify.stop = True
    lmh = [m[0] for m in rx.messages() if m[1] == "/audio/lmh"]
    ready = [t for t, l in notify.msgs if l == "READY=1"]
    pings = [t for t, l in notify.msgs if l == "WATCHDOG=1"]
    ready_s = ready[0] - t0 if ready else None
    res = {
        "scenario": scenario,
        "ready_s": ready_s,
        "lmh": len(lmh),
        "lmh_max_gap_s": max_gap(lmh, (ready[0] if ready else t0) + 0.5, t_end - 0.1) if lmh else None,
        "watchdog_pings": len(pings),
        "watchdog_max_gap_s": max_gap(pings, (ready[0] if ready else t0) + 0.5, t_end - 0.1) if pings else None,
        "run_s": t_end - t0,
        "exit": p.returncode,
        "log": out[-20000:],
    }
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
