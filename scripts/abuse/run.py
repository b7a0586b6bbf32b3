#!/usr/bin/env python3
"""The load-and-abuse runner (scripts/abuse.sh runs it inside a network
namespace of its own).

Starts phase4 on a looping WAV with a stand-in for systemd (a notify socket,
WATCHDOG_USEC = 1 s, so healthy pings come every 0.5 s) and a well-behaved
WebSocket client that only watches (observer.py, a process of its own), then
runs every abuse class of classes.py in turn against the same process. For
each class it prints the good client's worst snapshot rate over any 1 s
window, how long that rate stayed below 50/s, and the longest gap between
watchdog pings, and fails the class when the rate stays below 50/s for more
than 1 s, the gap exceeds 2 s, or the class's own check fails. At the end
phase4 must exit within 1 s of SIGTERM.

usage: run.py --bin PHASE4 [--classes a,b|all] [--lan] [--list] [--json OUT]
  --lan   attackers and the good client use the addresses 10.77.0.1-9 on lo
          (abuse.sh sets them up in its namespace); without it everything
          comes from 127.0.0.1 and phase4 listens on loopback only.
"""

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from classes import CLASSES, Ctx, Failed  # noqa: E402
from wire import alsa_test_devices  # noqa: E402

MIN_RATE = 50          # snapshots per second the good client must keep
MAX_BELOW_S = 1.0      # ... except for at most this long
MAX_GAP_S = 2.0        # longest watchdog gap allowed
MAX_STOP_S = 1.0       # SIGTERM to exit
CLASS_TIMEOUT_S = 90
LAN = [f"10.77.0.{i}" for i in range(1, 10)]


sys.path.insert(0, str(HERE.parent / "lib"))
from ports import free_port  # noqa: E402  (never the same port twice)


class Observer:
    """observer.py's events, as lists of time stamps."""

    def __init__(self, notify, url, src):
        self.snapshots, self.pings, self.drops = [], [], []
        self.ready = threading.Event()
        self.bound = threading.Event()
        self.proc = subprocess.Popen([sys.executable, str(HERE / "observer.py"), notify, url] + ([src] if src else []),
                                     stdout=subprocess.PIPE, text=True, preexec_fn=lambda: os.nice(-5))
        threading.Thread(target=self._read, daemon=True).start()
        if not self.bound.wait(10):
            raise RuntimeError("observer did not start")

    def _read(self):
        for line in self.proc.stdout:
            kind, _, t = line.strip().partition(" ")
            if kind == "bound":
                self.bound.set()
            elif kind == "S":
                self.snapshots.append(float(t))
            elif kind == "W":
                self.pings.append(float(t))
            elif kind == "R":
                self.ready.set()
            elif kind == "D":
                self.drops.append(float(t))

    def rate_figures(self, t0, t1):
        """Worst snapshots per 1 s window within [t0, t1], and the longest
        stretch of windows below MIN_RATE (seconds)."""
        s = [x for x in self.snapshots if t0 - 1 <= x <= t1]
        worst, below, longest, t, i, j = None, 0.0, 0.0, t0 + 1, 0, 0
        while t <= t1:
            while j < len(s) and s[j] <= t:
                j += 1
            while i < j and s[i] <= t - 1:
                i += 1
            n = j - i
            worst = n if worst is None else min(worst, n)
            below = below + 0.1 if n < MIN_RATE else 0.0
            longest = max(longest, below)
            t += 0.1
        return (worst if worst is not None else 0), longest

    def longest_gap(self, t0, t1):
        ts = [t0] + [p for p in self.pings if t0 <= p <= t1] + [t1]
        return max(b - a for a, b in zip(ts, ts[1:]))

    def close(self):
        self.proc.kill()
        self.proc.wait()


class Phase4:
    def __init__(self, binary, work, lan, env):
        self.binary, self.work, self.env = binary, work, env
        self.ws_port, self.http_port = free_port(), free_port()
        self.state = work / "state"
        self.wav = work / "music.wav"
        if not self.wav.exists():
            subprocess.run([sys.executable, str(ROOT / "scripts/lib/make-test-wav.py"), str(self.wav),
                            "--seconds", "8"], check=True)
        self.cfg = work / "phase4.toml"
        self.cfg.write_text(f"""
[realtime]
lock-memory = false
[osc]
destinations = [{{ host = "127.0.0.1", port = {free_port(socket.SOCK_DGRAM)} }}]
[ws]
bind = "{'0.0.0.0' if lan else '127.0.0.1'}"
port = {self.ws_port}
http-port = {self.http_port}
web-dir = "{ROOT / 'web'}"
[state]
dir = "{self.state}"
[health]
interval-s = 3600.0
""")
        self.log = work / "phase4.log"
        self.proc = None

    def token(self):
        """What `phase4 token` prints (None when it fails)."""
        out = subprocess.run([self.binary, "token", "--config", str(self.cfg)], capture_output=True, text=True,
                             env=self.env)
        return out.stdout.split("\n", 1)[0].strip() if out.returncode == 0 else None

    def start(self):
        def limits():
            # systemd's default soft limit on open files.
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096))
        self.proc = subprocess.Popen([self.binary, "--config", str(self.cfg), "--input", str(self.wav), "--loop"],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.work, preexec_fn=limits)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """Seconds from SIGTERM to exit (None: it had to be killed)."""
        if not self.alive():
            return None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
            return time.monotonic() - t0
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


def wait_streaming(obs, p, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not p.alive():
            raise RuntimeError(f"phase4 exited:\n{p.log.read_text()[-3000:]}")
        now = time.monotonic()
        if obs.ready.is_set() and len([s for s in obs.snapshots if s > now - 1]) >= MIN_RATE:
            return
        time.sleep(0.2)
    raise RuntimeError(f"phase4 did not start streaming:\n{p.log.read_text()[-3000:]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "target/release/phase4"))
    ap.add_argument("--classes", default="all")
    ap.add_argument("--lan", action="store_true")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.list:
        for name, item, what, _ in CLASSES:
            print(f"{name:20} item {item}  {what}")
        return 0
    chosen = [c for c in CLASSES if a.classes == "all" or c[0] in a.classes.split(",")]
    unknown = set(a.classes.split(",")) - {c[0] for c in CLASSES} - {"all"}
    if unknown or not chosen:
        print(f"unknown classes: {sorted(unknown)} (see --list)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="p4abuse-"))
    env = dict(os.environ) | {"WATCHDOG_USEC": "1000000", "NOTIFY_SOCKET": str(work / "notify.sock")}
    p = Phase4(os.path.abspath(a.bin), work, a.lan, env)
    env |= alsa_test_devices(work, p.wav)
    server = LAN[0] if a.lan else "127.0.0.1"
    good_src = LAN[0] if a.lan else None
    attackers = LAN[1:] if a.lan else ["127.0.0.1"]
    obs = Observer(env["NOTIFY_SOCKET"], f"ws://{server}:{p.ws_port}/", good_src)
    results, failed = [], 0
    try:
        token = p.token()
        p.start()
        wait_streaming(obs, p)
        print(f"phase4 {a.bin} in {work}; good client {'on ' + good_src if good_src else 'on loopback'}, "
              f"watching; watchdog stand-in WATCHDOG_USEC=1000000 (pings every 0.5 s when healthy)")
        print(f"{'class':20} {'item':>4}  {'worst rate':>10}  {'<50/s for':>9}  {'watchdog gap':>12}  result")
        for name, item, what, fn in chosen:
            if not p.alive():
                p.start()
                wait_streaming(obs, p)
            ctx = Ctx(p.ws_port, p.http_port, server, attackers, good_src or "127.0.0.1", "127.0.0.1", token,
                      str(work), str(p.state), p.proc.pid)
            t0 = time.monotonic()
            try:
                note = asyncio.run(asyncio.wait_for(fn(ctx), CLASS_TIMEOUT_S))
                problem = None
            except Failed as e:
                note, problem = str(e), str(e)
            except Exception as e:  # noqa: BLE001 - a crash of the attack is a result too
                note, problem = f"{type(e).__name__}: {e}", f"the attack failed: {type(e).__name__}: {e}"
            t1 = time.monotonic() + 1.0
            time.sleep(1.0)
            worst, below = obs.rate_figures(t0, t1)
            gap = obs.longest_gap(t0, t1)
            if not p.alive():
                problem = problem or f"phase4 exited with {p.proc.returncode}"
            if below > MAX_BELOW_S:
                problem = problem or f"good client below {MIN_RATE}/s for {below:.1f} s"
            if gap > MAX_GAP_S:
                problem = problem or f"watchdog gap {gap:.1f} s"
            ok = problem is None
            failed += not ok
            print(f"{name:20} {item:>4}  {worst:>6}/s    {below:>6.1f} s  {gap:>10.2f} s  "
                  f"{'PASS' if ok else 'FAIL: ' + problem}  ({note})", flush=True)
            results.append({"class": name, "item": item, "worst_rate": worst, "below_s": round(below, 2),
                            "watchdog_gap_s": round(gap, 2), "ok": ok, "note": note})
    finally:
        stop_s = p.stop()
        obs.close()
    ok = stop_s is not None and stop_s <= MAX_STOP_S
    failed += not ok
    print(f"{'sigterm':20} {'':>4}  {'':>10}  {'':>9}  {'':>12}  "
          f"{'PASS' if ok else 'FAIL'}  (exit {'after %.2f s' % stop_s if stop_s is not None else 'only when killed'})")
    results.append({"class": "sigterm", "stop_s": stop_s, "ok": ok})
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    if failed:
        print(f"abuse: {len(results) - failed} passed, {failed} failed (log and state kept in {work})")
        return 1
    # A passing run leaves nothing behind: its WAV alone is a few MB, and
    # CI runs this several times.
    shutil.rmtree(work, ignore_errors=True)
    print(f"abuse: {len(results)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
