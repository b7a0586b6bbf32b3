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

With several --server, all run at once in each run (side by side, the
same window, the start order alternating), --runs times; medians are
printed, and for every server after the first its ratio to the first
(median of the per-run ratios). Lines scripts/bench.sh greps:
  RESULT name cpu_pct=.. vcsw_per_s=.. vcsw_per_block=.. ivcsw_per_s=..
         lmh_per_s=.. lmh_gap_p50_ms=.. lmh_gap_p99_ms=.. ws_msgs_per_s=.. rss_kib=..
  RATIO other/first cpu=.. vcsw=.. rss=.. cpu_added_pct=..
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


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ports import free_port  # noqa: E402  (never the same port twice)


def proc_cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TCK


def threads(pid):
    """{tid: (name, voluntary, nonvoluntary, cpu_s)} of every live thread."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            s = open(f"/proc/{pid}/task/{t}/status").read()
        except OSError:
            continue
        name = re.search(r"^Name:\s+(.*)$", s, re.M).group(1)
        v = int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", s, re.M).group(1))
        nv = int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", s, re.M).group(1))
        try:
            out[t] = (name, v, nv, proc_cpu_s(f"{pid}/task/{t}"))
        except (OSError, IndexError, ValueError):
            continue
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


def median(xs):
    xs = sorted(x for x in xs if x == x)
    if not xs:
        return float("nan")
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def one_run(a, specs, templates, run):
    """Start every server at once (side by side, the same window), measure,
    stop them. Returns {name: figures}."""
    # Alternate the start order run by run: neither server is always first.
    order = specs if run % 2 == 0 else list(reversed(specs))
    servers = [Server(s, a.clients_for.get(s.split("=", 1)[0], a.ws_clients), templates)
               for s in order]
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
    out = {}
    for s, b, e, r in zip(servers, t0, t1, rss):
        wall = e[0] - b[0]
        cpu = e[1] - b[1]
        vol = nvol = 0
        per_thread = {}
        for tid, (name, v, nv, c) in e[2].items():
            v0, nv0, c0 = b[2][tid][1:] if tid in b[2] else (0, 0, 0.0)
            vol += v - v0
            nvol += nv - nv0
            # Threads of one name (a pool) are summed.
            sw, pc = per_thread.get(name, (0.0, 0.0))
            per_thread[name] = (sw + (v - v0) / wall, pc + (c - c0) / wall * 100)
        # A thread that ended within the window took its counts with it.
        ended = [b[2][tid][0] for tid in b[2] if tid not in e[2]]
        times = s.rx[0].times
        win = times[b[3]:e[3]]
        gaps = [(y - x) * 1000 for x, y in zip(win, win[1:])]
        lmh_rate = (len(win) - 1) / (win[-1] - win[0]) if len(win) > 1 else 0.0
        s.log.seek(0)
        health = [l for l in s.log.read().splitlines() if "latency_us" in l]
        s.log.close()
        os.unlink(s.log.name)
        if s.cfg:
            os.unlink(s.cfg)
        out[s.name] = dict(
            cpu_pct=cpu / wall * 100, vcsw_per_s=vol / wall,
            vcsw_per_block=vol / wall / a.block_rate, ivcsw_per_s=nvol / wall,
            lmh_per_s=lmh_rate, lmh_gap_p50_ms=pct(gaps, 0.5), lmh_gap_p99_ms=pct(gaps, 0.99),
            ws_msgs_per_s=(e[4] - b[4]) / wall, rss_kib=r, threads=per_thread, ended=ended,
            health=health[-1] if health else "")
    return out


FIELDS = ["cpu_pct", "vcsw_per_s", "vcsw_per_block", "ivcsw_per_s", "lmh_per_s",
          "lmh_gap_p50_ms", "lmh_gap_p99_ms", "ws_msgs_per_s", "rss_kib"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=4)
    ap.add_argument("--runs", type=int, default=3, help="side-by-side runs; medians are printed")
    ap.add_argument("--ws-clients", type=int, default=1)
    ap.add_argument("--block-rate", type=float, default=48000 / 256)
    ap.add_argument("--server", action="append", required=True,
                    help="NAME=COMMAND ({OSC1} {OSC2} {WS} {HTTP} {CFG} are filled in); "
                         "the first is the one the others are compared with")
    ap.add_argument("--template", action="append", default=[],
                    help="NAME=FILE: a config for server NAME with @OSC1@ @OSC2@ @WS@ @HTTP@, "
                         "written to a temporary file passed as {CFG}")
    ap.add_argument("--ws-clients-for", action="append", default=[],
                    help="NAME=N: N WebSocket clients for server NAME (default --ws-clients)")
    ap.add_argument("--threads", action="store_true", help="print per-thread switches")
    a = ap.parse_args()
    a.clients_for = {k: int(v) for k, v in (x.split("=", 1) for x in a.ws_clients_for)}

    templates = dict(t.split("=", 1) for t in a.template)
    names = [s.split("=", 1)[0] for s in a.server]
    if len(set(names)) != len(names):
        sys.exit("live-measure: server names must differ")
    runs = []
    for run in range(a.runs):
        res = one_run(a, a.server, templates, run)
        runs.append(res)
        for n in names:
            r = res[n]
            print(f"run {run + 1}/{a.runs} {n}: {r['cpu_pct']:.2f} % of a core, "
                  f"{r['vcsw_per_s']:.0f} voluntary switches/s = {r['vcsw_per_block']:.2f} per block "
                  f"({r['ivcsw_per_s']:.0f} involuntary/s), /audio/lmh {r['lmh_per_s']:.1f}/s "
                  f"gap p99 {r['lmh_gap_p99_ms']:.2f} ms, ws {r['ws_msgs_per_s']:.0f} msg/s, "
                  f"peak RSS {r['rss_kib'] / 1024:.1f} MiB", flush=True)
    budget = 2.5 * a.block_rate
    clients = ", ".join(f"{n} {a.clients_for.get(n, a.ws_clients)}" for n in names)
    print(f"== medians of {a.runs} side-by-side run(s) of {a.seconds:.0f} s "
          f"(WS clients: {clients}; target: voluntary switches <= 2.5 x {a.block_rate:g} "
          f"blocks/s = {budget:.0f}/s; load average {os.getloadavg()[0]:.1f}) ==")
    med = {n: {f: median([r[n][f] for r in runs]) for f in FIELDS} for n in names}
    for n in names:
        m = med[n]
        print(f"{n}: {m['cpu_pct']:.2f} % of a core, {m['vcsw_per_s']:.0f} voluntary switches/s "
              f"= {m['vcsw_per_block']:.2f} per block ({m['vcsw_per_s'] / budget:.2f} x the budget), "
              f"{m['ivcsw_per_s']:.0f} involuntary/s, /audio/lmh {m['lmh_per_s']:.1f}/s gap p50 "
              f"{m['lmh_gap_p50_ms']:.2f} ms p99 {m['lmh_gap_p99_ms']:.2f} ms, ws {m['ws_msgs_per_s']:.0f} msg/s, "
              f"peak RSS {m['rss_kib'] / 1024:.1f} MiB")
        if a.threads:
            tnames = sorted({t for r in runs for t in r[n]["threads"]})
            rows = [(t, median([r[n]["threads"].get(t, (0.0, 0.0))[0] for r in runs]),
                     median([r[n]["threads"].get(t, (0.0, 0.0))[1] for r in runs])) for t in tnames]
            for t, v, c in sorted(rows, key=lambda x: -x[1]):
                print(f"    {t:<18} {v:8.1f} voluntary/s {v / a.block_rate:6.2f} per block  {c:5.2f} % CPU")
            ended = sorted({t for r in runs for t in r[n]["ended"]})
            if ended:
                print(f"    (ended within the window, not counted: {', '.join(ended)})")
        if runs[-1][n]["health"]:
            mm = re.search(r"latency_us p50=\d+ p95=\d+ p99=\d+ max=\d+", runs[-1][n]["health"])
            if mm:
                print(f"    {n} health (last run): {mm.group(0)}")
        print(f"RESULT {n} " + " ".join(f"{f}={m[f]:.3f}" for f in FIELDS))
    base = names[0]
    for n in names[1:]:
        # Per run, then the median: both figures come from the same window.
        cpu = median([r[n]["cpu_pct"] / r[base]["cpu_pct"] for r in runs if r[base]["cpu_pct"] > 0])
        sw = median([r[n]["vcsw_per_s"] / r[base]["vcsw_per_s"] for r in runs if r[base]["vcsw_per_s"] > 0])
        add = median([r[n]["cpu_pct"] - r[base]["cpu_pct"] for r in runs])
        rss = median([r[n]["rss_kib"] / r[base]["rss_kib"] for r in runs if r[base]["rss_kib"] > 0])
        print(f"RATIO {n}/{base} cpu={cpu:.2f} vcsw={sw:.2f} rss={rss:.2f} cpu_added_pct={add:+.2f} "
              f"({n} spends {cpu:.2f}x the CPU of {base} ({add:+.2f} % of a core), switches {sw:.2f}x "
              f"as often and peaks at {rss:.2f}x its resident memory)")


if __name__ == "__main__":
    main()
