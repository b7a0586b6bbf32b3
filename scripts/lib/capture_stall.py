"""Driver of scripts/capture-stall.sh: a sound server that dies, comes
back, and does not answer, under phase4 capturing from it through
alsa-lib's `jack` plugin (a real clocked ALSA device, no mock).

  capture_stall.py BINARY WORK JACKD_PID -- JACKD COMMAND...

Three cases, each printed as PASS or FAIL (exit 1 on any FAIL):

1. jackd killed (kill -9): capture says so within 5 s (the device is
   reported down in `server_status`, the log says it delivered nothing) and
   the watchdog pings go on (no gap of 4 s; systemd's is 5 s).
2. jackd started again: capture reopens by itself and is up again.
3. phase4 started while jackd is stopped (SIGSTOP: the open blocks): READY
   within 6 s with a STATUS that says the device is not answering, the
   pings go on, and capture opens when jackd goes on (SIGCONT).
4. jackd stopped again while phase4 captures, and a client switches to
   another device while capture's reopen is blocked in jackd: the answer
   says capture starts again when the device answers, and it does.
5. A JACK server whose period (8192 frames at 4 kHz, 2.05 s) is longer
   than the stall limit: never reopened.
And before case 1: phase4 itself stopped for 3 s (SIGSTOP) reopens
nothing.

The test binds the notify socket itself and acts as systemd's watchdog.
127.0.0.1 only."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import websockets

sys.path.insert(0, os.path.dirname(__file__))
from ports import free_port  # noqa: E402

failures = []


def check(ok, what):
    print(("PASS: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


class Notify:
    """The sd-notify socket: every line with its arrival time."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
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
            for line in data.decode(errors="replace").splitlines():
                self.msgs.append((time.monotonic(), line))

    def first(self, prefix, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, line in list(self.msgs):
                if line.startswith(prefix):
                    return line
            time.sleep(0.05)
        return None

    def longest_ping_gap(self, since, until):
        ts = [since] + [t for t, l in self.msgs if l == "WATCHDOG=1" and since <= t <= until] + [until]
        return max(b - a for a, b in zip(ts, ts[1:]))

    def close(self):
        self.stop = True
        self.t.join()
        self.sock.close()


class Phase4:
    def __init__(self, binary, work, name, device="jackin", env=None):
        self.ws = free_port()
        self.log = os.path.join(work, f"{name}.log")
        cfg = os.path.join(work, f"{name}.toml")
        with open(cfg, "w") as f:
            f.write(f"""[audio]
device = "{device}"
[realtime]
enabled = false
lock-memory = false
[ws]
port = {self.ws}
http-port = {free_port()}
[osc]
enabled = false
[state]
dir = "{work}/state-{name}"
[health]
interval-s = 1.0
""")
        sock = os.path.join(work, f"{name}.notify")
        self.notify = Notify(sock)
        env = dict(os.environ, NOTIFY_SOCKET=sock, WATCHDOG_USEC="2000000", **(env or {}))
        self.proc = subprocess.Popen([binary, "--config", cfg], env=env,
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def wait_log(self, needle, timeout, count=1):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.text().count(needle) >= count:
                return True
            time.sleep(0.1)
        return False

    def device(self, timeout=5.0):
        """`server_status.device` as a client sees it now."""
        async def go():
            async with websockets.connect(f"ws://127.0.0.1:{self.ws}", max_size=1 << 22) as ws:
                while True:
                    m = await asyncio.wait_for(ws.recv(), timeout)
                    if isinstance(m, str):
                        j = json.loads(m)
                        if j.get("type") == "server_status":
                            return j["device"]
        return asyncio.run(go())

    def command(self, cmd, timeout):
        """Send `cmd`; the first `error` or `meta` that follows (a switch
        answers with one or the other)."""
        async def go():
            async with websockets.connect(f"ws://127.0.0.1:{self.ws}", max_size=1 << 22) as ws:
                # The greeting first (it has a meta).
                end = time.monotonic() + 2.0
                while time.monotonic() < end:
                    try:
                        await asyncio.wait_for(ws.recv(), end - time.monotonic())
                    except asyncio.TimeoutError:
                        break
                await ws.send(json.dumps(cmd))
                end = time.monotonic() + timeout
                while True:
                    m = await asyncio.wait_for(ws.recv(), end - time.monotonic())
                    if isinstance(m, str):
                        j = json.loads(m)
                        if j.get("type") in ("error", "meta"):
                            return j
        return asyncio.run(go())

    def device_until(self, want_up, timeout):
        end = time.monotonic() + timeout
        d = None
        while time.monotonic() < end:
            d = self.device()
            if d["up"] == want_up:
                return d
            time.sleep(0.3)
        return d

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()


def main():
    binary, work, jackd_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    jackd_cmd = sys.argv[sys.argv.index("--") + 1:]
    jackd = [None]

    def start_jackd():
        jackd[0] = subprocess.Popen(jackd_cmd, stdout=open(os.path.join(work, "jackd2.log"), "a"),
                                    stderr=subprocess.STDOUT)
        for _ in range(50):
            if subprocess.run(["jack_lsp"], capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise SystemExit("jackd did not start again")

    p = Phase4(binary, work, "a")
    try:
        check(p.notify.first("READY=1", 15) is not None and p.wait_log("capture: jackin open", 5),
              "phase4 captures from jackin")
        # 0. phase4 itself stopped for 3 s (SIGSTOP: a debugger, a frozen
        # cgroup, a paused VM): the device did not stall, nothing reopens.
        time.sleep(1.0)
        p.proc.send_signal(signal.SIGSTOP)
        time.sleep(3.0)
        p.proc.send_signal(signal.SIGCONT)
        time.sleep(3.0)
        d = p.device()
        check(d["up"] is True and d["reopens"] == 0 and "delivered nothing" not in p.text(),
              f"a 3 s SIGSTOP of phase4 reopens nothing (device {d})")
        # 1. The server dies.
        time.sleep(1.5)
        killed = time.monotonic()
        os.kill(jackd_pid, signal.SIGKILL)
        d = p.device_until(False, 5.0)
        check(d is not None and d["up"] is False,
              f"a dead sound server is reported down within 5 s (device {d})")
        check(p.wait_log("delivered nothing", 5), "the log says the device delivered nothing")
        # 2. It comes back.
        time.sleep(2)
        start_jackd()
        d = p.device_until(True, 15.0)
        check(d is not None and d["up"] is True and d["reopens"] >= 1,
              f"capture reopens by itself when the server is back (device {d})")
        gap = p.notify.longest_ping_gap(killed, time.monotonic())
        check(gap < 4.0, f"the watchdog pings went on meanwhile (longest gap {gap:.1f} s)")
    finally:
        p.stop()
    # 3. Started while the server does not answer.
    os.kill(jackd[0].pid, signal.SIGSTOP)
    q = Phase4(binary, work, "b")
    try:
        started = time.monotonic()
        ready = q.notify.first("READY=1", 6.0)
        check(ready is not None, f"READY within 6 s of start while the open blocks "
                                 f"({time.monotonic() - started:.1f} s)")
        status = q.notify.first("STATUS=degraded: opening capture device", 2.0)
        check(status is not None, f"STATUS says so: {status}")
        time.sleep(4)
        gap = q.notify.longest_ping_gap(started + 4.0, time.monotonic())
        check(gap < 4.0, f"the pings go on while it waits (longest gap {gap:.1f} s)")
        os.kill(jackd[0].pid, signal.SIGCONT)
        check(q.wait_log("capture: jackin open", 15), "capture opens when the server answers")
        d = q.device_until(True, 5.0)
        check(d is not None and d["up"] is True, f"and is up (device {d})")
        # 4. The server stops answering; capture's reopen blocks in it; a
        # client switches to another device meanwhile. The stuck thread
        # cannot be stopped: the client is told so, and capture comes back
        # on jackin when the server answers (it was left with none).
        os.kill(jackd[0].pid, signal.SIGSTOP)
        d = q.device_until(False, 6.0)
        check(d is not None and d["up"] is False, f"a stopped server is reported down ({d})")
        time.sleep(1.0)
        reply = q.command({"type": "set_device", "name": "p4file"}, 10.0)
        check("starts again on" in str(reply.get("reason")),
              f"a switch away from a stuck device says what happens: {reply}")
        os.kill(jackd[0].pid, signal.SIGCONT)
        check(q.wait_log("capturing from \"jackin\" again", 15),
              "when the stuck thread ends, capture starts again")
        d = q.device_until(True, 10.0)
        check(d is not None and d["up"] is True and d["name"] == "jackin",
              f"on jackin, up ({d})")
    finally:
        os.kill(jackd[0].pid, signal.SIGCONT)
        q.stop()
        jackd[0].terminate()
        jackd[0].wait()
    # 5. A device whose period is longer than the stall limit (JACK at
    # 4 kHz with 8192-frame periods: one every 2.05 s) delivers on its own
    # clock and is never taken for stalled (it was reopened after every
    # period).
    big = subprocess.Popen(["jackd", "--name", f"p4big{os.getpid()}", "-d", "dummy", "-r", "4000",
                            "-p", "8192", "-C", "1", "-P", "1"],
                           stdout=open(os.path.join(work, "jackd-big.log"), "w"), stderr=subprocess.STDOUT)
    r = Phase4(binary, work, "c", device="jackin",
               env={"JACK_DEFAULT_SERVER": f"p4big{os.getpid()}"})
    try:
        check(r.wait_log("period 8192 frames", 15), "phase4 captures 8192-frame periods at 4 kHz")
        time.sleep(12)
        d = r.device()
        check(d["up"] is True and d["reopens"] == 0 and "delivered nothing" not in r.text(),
              f"a 2.05 s period is no stall: 12 s without a reopen (device {d})")
    finally:
        r.stop()
        big.terminate()
        big.wait()
    if failures:
        for path in (p.log, q.log, r.log):
            print(f"--- {path}", file=sys.stderr)
            print(open(path, errors="replace").read()[-3000:], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
