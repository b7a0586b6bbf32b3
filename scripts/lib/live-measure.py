#!/usr/bin/env python3
"""Measure running audio servers from outside, side by side over the same
window: CPU seconds per audio second (utime + stime from /proc/PID/stat,
all threads), voluntary context switches of the whole process per audio
second and per block (summed over /proc/PID/task/*/status), per thread,
and the /audio/lmh stream as a receiver sees it (kernel receive time
stamps, SO_TIMESTAMPNS: inter-arrival p50/p99 and the rate).

Each server is started by a shell command that may use {OSC1} {OSC2} (two
UDP ports this script receives on) and {WS} (a free TCP port). WebSocket
clients (Python `websockets`) connect to ws://127.0.0.1:{WS} and read
everything. Figures are taken between WARMUP and WARMUP + SECONDS.

  live-measure.py --seconds 30 --ws-clients 1 --block-rate 187.5 \\
      --server 'phase4=target/release/phase4 --config c.toml ...' \\
      [--server 'python=python3 -m server.main ...']

Prints, per server, lines that scripts/bench.sh greps:
  RESULT name cpu_pct=.. vcsw_per_s=.. vcsw_per_block=.. ivcsw_per_s=..
         lmh_per_s=.. lmh_gap_p50_ms=.. lmh_gap_p99_ms=.. rss_kib=..
"""

import argparse
import asyncio
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TCK = os.sysconf("SC_CLK_TCK")


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TCK


def threads(pid):
    """{tid: (name, voluntary, nonvoluntary)} of every live thread."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            s = open(f"/proc/{pid}/task/{t}/status").read()
        except OSError:
            continue
        name = re.search(r"^Name:\s+(.*)$", s, re.M).group(1)
        v = int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", s, re.M).group(1))
        nv = int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", s, re.M).group(1))
        out[t] = (name, v, nv)
    return out


def rss_kib(pid):
    s = open(f"/proc/{pid}/status").read()
    m = re.search(r"^VmHWM:\s+(\d+)", s, re.M)
    return int(m.group(1)) if m else 0


class Lmh:
    """Receives OSC on a UDP port; times /audio/lmh by kernel time stamps."""

    def __init__(self, port, record):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.record = record
        self.times = []
        self.datagrams = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(16))
            except socket.timeout:
                continue
            except OSError:
                return
            self.datagrams += 1
            if not self.record:
                continue
            stamp = None
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    stamp = sec + nsec * 1e-9
            # A bundle ("#bundle") or a message; /audio/lmh's address is
            # found either way without a full decode.
            if b"/lmh\x00" in data[:256]:
                self.times.append(stamp if stamp is not None else time.time())


async def ws_client(url, stop, counts):
    import websockets

    for _ in range(100):
        try:
            async with websockets.connect(url, max_queue=None, open_timeout=5) as ws:
                while not stop.is_set():
                    try:
                        await asyncio.wait_for(ws.recv(), 0.5)
                        counts[0] += 1
                    except asyncio.TimeoutError:
                        pass
                return
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.1)
        except Exception:
            await asyncio.sleep(0.1)


def ws_clients(url, n, stop, counts):
    async def main():
        await asyncio.gather(*(ws_client(url, stop, counts) for _ in range(n)))

    asyncio.run(main())


class Server:
    def __init__(self, spec, ws_clients_n, templates):
        self.name, cmd = spec.split("=", 1)
        self.osc1, self.osc2 = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
        self.ws, self.http = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
        ports = dict(OSC1=self.osc1, OSC2=self.osc2, WS=self.ws, HTTP=self.http)
        self.cfg = None
        if self.name in templates:
            text = open(templates[self.name]).read()
            for k, v in ports.items():
                text = text.replace(f"@{k}@", str(v))
            self.cfg = f"/tmp/live-measure-{os.getpid()}-{self.name}.cfg"
            open(self.cfg, "w").write(text)
        self.cmd = cmd.format(CFG=self.cfg, **ports)
        self.rx = [Lmh(self.osc1, True), Lmh(self.osc2, False)]
        self.log = open(f"/tmp/live-measure-{os.getpid()}-{self.name}.log", "w+")
        self.proc = subprocess.Popen(
            ["bash", "-c", "exec " + self.cmd], stdout=subprocess.DEVNULL, stderr=self.log,
            start_new_session=True)
        self.ws_stop = threading.Event()
        self.ws_counts = [0]
        self.ws_thread = None
        if ws_clients_n > 0:
            self.ws_thread = threading.Thread(
                target=ws_clients, daemon=True,
                args=(f"ws://127.0.0.1:{self.ws}", ws_clients_n, self.ws_stop, self.ws_counts))
            self.ws_thread.start()

    def sample(self):
        return time.monotonic(), proc_cpu_s(self.proc.pid), threads(self.proc.pid), \
            len(self.rx[0].times), self.ws_counts[0]

    def finish(self):
        self.ws_stop.set()
        for r in self.rx:
            r.stop = True
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=4)
    ap.add_argument("--ws-clients", type=int, default=1)
    ap.add_argument("--block-rate", type=float, default=48000 / 256)
    ap.add_argument("--server", action="append", required=True,
                    help="NAME=COMMAND ({OSC1} {OSC2} {WS} {HTTP} {CFG} are filled in)")
    ap.add_argument("--template", action="append", default=[],
                    help="NAME=FILE: a config for server NAME with @OSC1@ @OSC2@ @WS@ @HTTP@, "
                         "written to a temporary file passed as {CFG}")
    ap.add_argument("--threads", action="store_true", help="print per-thread switches")
    a = ap.parse_args()

    templates = dict(t.split("=", 1) for t in a.template)
    servers = [Server(s, a.ws_clients, templates) for s in a.server]
    try:
        time.sleep(a.warmup)
        for s in servers:
            if s.proc.poll() is not None:
                s.log.seek(0)
                sys.stderr.write(s.log.read()[-3000:])
                sys.exit(f"live-measure: {s.name} exited with {s.proc.returncode} during warm-up")
        t0 = [s.sample() for s in servers]
        time.sleep(a.seconds)
        t1 = [s.sample() for s in servers]
        rss = [rss_kib(s.proc.pid) for s in servers]
    finally:
        for s in servers:
            s.finish()
    for s, b, e, r in zip(servers, t0, t1, rss):
        wall = e[0] - b[0]
        cpu = e[1] - b[1]
        vol = nvol = 0
        rows = []
        for tid, (name, v, nv) in e[2].items():
            v0, nv0 = (b[2][tid][1], b[2][tid][2]) if tid in b[2] else (0, 0)
            vol += v - v0
            nvol += nv - nv0
            rows.append((name, tid, (v - v0) / wall, (nv - nv0) / wall))
        # Threads that ended within the window still count.
        for tid, (name, v, nv) in b[2].items():
            if tid not in e[2]:
                rows.append((name + " (ended)", tid, float("nan"), float("nan")))
        times = s.rx[0].times
        win = times[b[3]:e[3]]
        gaps = [(y - x) * 1000 for x, y in zip(win, win[1:])]
        lmh_rate = (len(win) - 1) / (win[-1] - win[0]) if len(win) > 1 else 0.0
        print(f"{s.name}: {cpu / wall * 100:.2f} % of one core ({cpu:.2f} CPU-s over {wall:.1f} s), "
              f"{vol / wall:.0f} voluntary switches/s = {vol / wall / a.block_rate:.2f} per block "
              f"({nvol / wall:.0f} involuntary/s), /audio/lmh {lmh_rate:.1f}/s gap p50 "
              f"{pct(gaps, 0.5):.2f} ms p99 {pct(gaps, 0.99):.2f} ms, ws messages "
              f"{(e[4] - b[4]) / wall:.0f}/s, peak RSS {r / 1024:.1f} MiB")
        if a.threads:
            for name, tid, v, nv in sorted(rows, key=lambda x: -x[2] if x[2] == x[2] else 0):
                print(f"    {name:<18} {tid:>8} {v:8.1f} vol/s {v / a.block_rate:6.2f}/block {nv:7.1f} invol/s")
        print(f"RESULT {s.name} cpu_pct={cpu / wall * 100:.3f} vcsw_per_s={vol / wall:.1f} "
              f"vcsw_per_block={vol / wall / a.block_rate:.3f} ivcsw_per_s={nvol / wall:.1f} "
              f"lmh_per_s={lmh_rate:.2f} lmh_gap_p50_ms={pct(gaps, 0.5):.3f} "
              f"lmh_gap_p99_ms={pct(gaps, 0.99):.3f} rss_kib={r}")
        s.log.seek(0)
        health = [l for l in s.log.read().splitlines() if "latency_us" in l]
        if health:
            m = re.search(r"latency_us p50=\d+ p95=\d+ p99=\d+ max=\d+", health[-1])
            print(f"    {s.name} health: {m.group(0) if m else health[-1][-160:]}")
        s.log.close()
        os.unlink(s.log.name)
        if s.cfg:
            os.unlink(s.cfg)


if __name__ == "__main__":
    main()
