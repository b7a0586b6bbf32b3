"""The sd-notify protocol without systemd: the test binds the notify socket
itself and acts as the watchdog. READY=1 comes only after audio went
through, WATCHDOG=1 arrives at half of WATCHDOG_USEC, STATUS= lines say
what is going on, STOPPING=1 comes on SIGTERM, and a pipeline thread made to
hang (fault injection, test builds only) stops the pings."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import OscReceiver, minimal_config, render, sigterm, tone, write_config, write_wav


class NotifySocket:
    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.msgs = []  # (monotonic time, line)
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            now = time.monotonic()
            for line in data.decode().splitlines():
                self.msgs.append((now, line))

    def times(self, line):
        return [t for t, l in self.msgs if l == line]

    def close(self):
        self._stop = True
        self._t.join()
        self.sock.close()
        os.unlink(self.path)


def start(bin_path, tmp_path, hang=None, fifo=None):
    """phase4 on a looping 2 s tone, or on `fifo` (made here) once through."""
    wav = write_wav(tmp_path / "w.wav", render(tone(440), 2.0))
    if fifo:
        os.mkfifo(fifo)
    rx = OscReceiver()
    cfg = write_config(
        tmp_path / "c.toml",
        osc={"destinations": [{"host": "127.0.0.1", "port": rx.port}]},
        ws={"enabled": False},
        state={"dir": ""},
        health={"interval-s": 3600.0},
    )
    ns = NotifySocket(tmp_path / "notify.sock")
    env = dict(os.environ, NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="1000000")
    if hang:
        env["PHASE4_FAULT_HANG"] = hang
    t0 = time.monotonic()
    inputs = ["--input", str(fifo)] if fifo else ["--input", str(wav), "--loop"]
    proc = subprocess.Popen([str(bin_path), "--config", str(cfg), *inputs],
                            env=env, stderr=subprocess.PIPE, text=True)
    return proc, ns, rx, t0


def stop(proc, ns, rx):
    took, err = sigterm(proc)
    time.sleep(0.2)
    ns.close()
    rx.stop(0.1)
    return took, err


def lmh_rate_beside(phase4_bin, tmp_path, wav, fft):
    """Run phase4 on `wav` for 6 s with a watchdog of 1 s and the given
    `[fft]` section: (`/audio/lmh` per second from 2 to 6 s, watchdog ping
    times, notify messages, stderr)."""
    rx = OscReceiver()
    cfg = write_config(
        tmp_path / "c.toml",
        osc={"destinations": [{"host": "127.0.0.1", "port": rx.port}], "addresses": ["lmh"]},
        ws={"enabled": False},
        state={"dir": ""},
        health={"interval-s": 1.0},
        fft=fft,
    )
    ns = NotifySocket(tmp_path / "notify.sock")
    env = dict(os.environ, NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="1000000")
    proc = subprocess.Popen([str(phase4_bin), "--config", str(cfg), "--input", str(wav), "--loop"],
                            env=env, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    time.sleep(6.0)
    took, err = sigterm(proc)
    ns.close()
    rx.stop(0.1)
    lmh = [t for t, d in rx.raw if d.startswith(b"/audio/lmh\0") and t0 + 2.0 <= t < t0 + 6.0]
    return len(lmh) / 4.0, ns.times("WATCHDOG=1"), ns.msgs, err


def test_a_worker_slower_than_real_time_is_no_hung_thread(phase4_bin, tmp_path):
    # A spectrum 750 times a second at 192 kHz over a 16 k window: more
    # than any core here computes. The worker drops blocks (counted) and
    # goes on; it kept taking blocks until its ring was empty, which never
    # happened, so it never got back to its heartbeat, the pings stopped
    # for good ("no progress from spectrum") and systemd would have killed
    # it in a loop (tester u).
    wav = write_wav(tmp_path / "w.wav", render(tone(440), 1.0, rate=192000), rate=192000)
    block_rate = 192000 / 256
    overload = {"enabled": True, "window-frames": 16384, "hop-frames": 16, "n-bins": 1024,
                "peak-smear-oct": 3.0}
    for attempt in range(2):
        rate, pings, msgs, err = lmh_rate_beside(phase4_bin, tmp_path, wav, overload)
        # Every run: the pings go on, nothing is said to have stopped, and
        # the setup did overload the worker (else this test shows nothing).
        assert len(pings) >= 8, (len(pings), [l for _, l in msgs if l.startswith("STATUS")][-3:])
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert max(gaps) < 2.0, gaps
        assert not [l for _, l in msgs if "no progress" in l], [l for _, l in msgs if "no progress" in l][:3]
        drops = [int(x.split("(")[0]) for x in re.findall(r"spectrum:(\d+\(\+\d+\))", err)]
        assert drops and drops[-1] > 0, err[-600:]
        # `/audio/lmh` goes on at the block rate: the bands worker and the
        # OSC sender share the spectrum worker's CPU, below or beside it. On
        # a machine whose cores are busy with other work (CI's background
        # lanes) the sender's share of the other core is what sets this
        # rate, so it is compared with the same run without the spectrum,
        # measured right after on the same machine (ci94: 292 a second
        # here, with both cores compiling).
        if rate >= 0.5 * block_rate:
            return
        ref, ref_pings, _, ref_err = lmh_rate_beside(phase4_bin, tmp_path, wav, {"enabled": False})
        # The reference itself measured something (review aj AJ7: a run that
        # failed read 0, and any rate passed against it).
        assert ref >= 0.25 * block_rate and len(ref_pings) >= 8, (ref, len(ref_pings), ref_err[-600:])
        if rate >= 0.5 * ref:
            return
    pytest.fail(f"/audio/lmh at {rate:.0f}/s with the spectrum overloaded, {ref:.0f}/s without it "
                f"(block rate {block_rate:.0f}/s)")


def test_ready_after_audio_then_pings_status_and_stopping(fault_bin, tmp_path):
    proc, ns, rx, t0 = start(fault_bin, tmp_path)
    time.sleep(3.0)
    took, err = stop(proc, ns, rx)
    assert proc.returncode == 0, err
    ready = ns.times("READY=1")
    assert len(ready) == 1, ns.msgs
    first_lmh = min(m[0] for m in rx.messages() if m[1] == "/audio/lmh")
    assert ready[0] >= first_lmh, "READY=1 before any audio went through"
    assert ready[0] - t0 < 1.0, "start to READY"
    pings = [t for t in ns.times("WATCHDOG=1") if t < ready[0] + 3.0]
    # WATCHDOG_USEC = 1 s: a ping every 0.5 s.
    assert len(pings) >= 4, pings
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < 0.7, gaps
    status = [l for _, l in ns.msgs if l.startswith("STATUS=")]
    assert status and "48000 Hz" in status[0], status
    assert ns.times("STOPPING=1"), ns.msgs
    assert took < 1.0, f"SIGTERM to exit took {took:.2f} s"


def test_the_pings_need_no_free_file_descriptor(phase4_bin, tmp_path):
    # Out of file descriptors (a low LimitNOFILE, idle connections filling
    # it), the pipeline goes on; the watchdog pings must too, or systemd
    # restarts a healthy service. 0b8575b made a socket for every message:
    # no ping at all while the limit was below the open count.
    import resource
    proc, ns, rx, _ = start(phase4_bin, tmp_path)
    try:
        time.sleep(1.5)
        assert ns.times("READY=1"), ns.msgs
        open_now = len(os.listdir(f"/proc/{proc.pid}/fd"))
        _, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (open_now - 1, hard))
        t = time.monotonic()
        time.sleep(3.0)
        pings = [p for p in ns.times("WATCHDOG=1") if p > t]
        lmh = [m for m in rx.messages() if m[1] == "/audio/lmh" and m[0] > t]
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (1024, hard))
        assert len(lmh) > 2.5 * 187.5, len(lmh)
        # WATCHDOG_USEC = 1 s: a ping every 0.5 s.
        assert len(pings) >= 5, pings
    finally:
        took, err = stop(proc, ns, rx)
    assert proc.returncode == 0, err
    assert "notify socket did not take" not in err, err[-2000:]


@pytest.mark.parametrize("thread", ["bands", "spectrum", "capture", "osc"])
def test_a_hung_thread_stops_the_pings(fault_bin, tmp_path, thread):
    proc, ns, rx, _t0 = start(fault_bin, tmp_path, hang=thread)
    time.sleep(2.0)
    assert ns.times("READY=1"), ns.msgs
    before = len(ns.times("WATCHDOG=1"))
    assert before >= 2
    hang_at = time.monotonic()
    proc.send_signal(signal.SIGUSR2)
    time.sleep(3.0)
    took, err = stop(proc, ns, rx)
    late = [t for t in ns.times("WATCHDOG=1") if t > hang_at + 1.6]
    assert not late, f"pings went on {[round(t - hang_at, 2) for t in late]} s after {thread} hung"
    degraded = [l for t, l in ns.msgs if t > hang_at and l.startswith("STATUS=degraded")]
    assert degraded and thread in degraded[-1], ns.msgs[-5:]
    assert took < 1.5, "a hung thread must not keep the process from exiting"


def test_a_reload_before_the_first_block_does_not_announce_ready(phase4_bin, tmp_path):
    # A FIFO input whose writer comes late: no audio yet, so still starting.
    fifo = tmp_path / "in.wav"
    proc, ns, rx, _ = start(phase4_bin, tmp_path, fifo=fifo)
    wav = (tmp_path / "w.wav").read_bytes()
    time.sleep(0.7)
    proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    early = [l for _, l in ns.msgs]
    assert "READY=1" not in early and "RELOADING=1" not in early, early
    # Audio comes: READY=1 now, and the pings with it.
    with open(fifo, "wb") as w:
        w.write(wav)
        ready_at = None
        deadline = time.monotonic() + 5
        while ready_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
            ready_at = next(iter(ns.times("READY=1")), None)
        time.sleep(1.2)
        pings = [t for t in ns.times("WATCHDOG=1") if ready_at and t > ready_at]
    took, err = stop(proc, ns, rx)
    assert ready_at is not None, (ns.msgs, err)
    assert len(pings) >= 1, (ns.msgs, err)


def test_a_fifo_writer_that_pauses_keeps_the_pings_and_gets_no_burst(phase4_bin, tmp_path):
    # The writer sends 0.5 s, pauses 2 s (longer than the 1 s watchdog),
    # then sends the other 1.5 s: pings go on, and the audio after the pause comes
    # at real time, not as a burst of the time lost.
    fifo = tmp_path / "in.wav"
    proc, ns, rx, _ = start(phase4_bin, tmp_path, fifo=fifo)
    data = (tmp_path / "w.wav").read_bytes()  # 2 s
    head = 44 + 2 * 24000  # header and 0.5 s of 16-bit mono at 48 kHz
    with open(fifo, "wb") as w:
        w.write(data[:head])
        w.flush()
        time.sleep(2.5)
        resumed = time.monotonic()
        w.write(data[head:])
        w.flush()
        time.sleep(1.2)
    took, err = stop(proc, ns, rx)
    ready = ns.times("READY=1")
    assert ready, (ns.msgs, err)
    pings = [t for t in ns.times("WATCHDOG=1") if t > ready[0]]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert pings and max(gaps) < 0.8, ("pings stopped while the writer paused", gaps)
    lmh = [m[0] for m in rx.messages() if m[1] == "/audio/lmh"]
    first_second = [t for t in lmh if resumed <= t < resumed + 1.0]
    # 187.5 blocks a second at 48 kHz / 256; the 2 s lost would be 375 more.
    assert 120 <= len(first_second) <= 240, len(first_second)
    assert "ring_drops=bands:0(+0),spectrum:0(+0)" in err, err[-600:]


def test_a_device_that_never_opens_is_named_in_status_and_health(phase4_bin, tmp_path):
    # The service is ready (it waits for the device by itself) and its
    # STATUS= and health line say which device it waits for, not "-".
    cfg = write_config(
        tmp_path / "c.toml",
        audio={"device": "p4_no_such_device", "retry-initial-s": 0.05, "retry-max-s": 0.2},
        osc={"destinations": [{"host": "127.0.0.1", "port": 9}]},
        ws={"enabled": False},
        state={"dir": ""},
        health={"interval-s": 1.0},
    )
    ns = NotifySocket(tmp_path / "notify.sock")
    env = dict(os.environ, NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="1000000")
    proc = subprocess.Popen([str(phase4_bin), "--config", str(cfg)],
                            env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    ns.close()
    assert "READY=1" in [l for _, l in ns.msgs], (ns.msgs, err[-800:])
    status = [l for _, l in ns.msgs if l.startswith("STATUS=")]
    assert status and all("waiting for capture device p4_no_such_device" in s for s in status), status
    health = [l for l in err.splitlines() if "health: device=" in l]
    assert health and all("device=p4_no_such_device" in l and "up=no" in l for l in health), err[-800:]


def test_a_notify_socket_that_stops_reading_stalls_nothing(phase4_bin, tmp_path):
    # A service manager that stops reading its socket (or a container
    # manager that never reads it): the supervisor must go on writing
    # health lines and must stop on SIGTERM; once the socket is read
    # again, the pings come back.
    wav = write_wav(tmp_path / "w.wav", render(tone(440), 2.0))
    cfg = minimal_config(tmp_path)
    path = str(tmp_path / "stuck.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.bind(path)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    err_path = tmp_path / "err"
    with open(err_path, "w") as err_file:
        proc = subprocess.Popen([str(phase4_bin), "--config", str(cfg), "--input", str(wav), "--loop"],
                                env=env, stderr=err_file, text=True)
        try:
            time.sleep(4.5)
            full = err_path.read_text()
            # Read the queue out, then keep reading.
            sock.settimeout(0.05)
            queued = []
            while True:
                try:
                    queued.append(sock.recv(4096).decode())
                except socket.timeout:
                    break
            drained = time.monotonic()
            later = []
            while time.monotonic() < drained + 1.5:
                try:
                    later.append((time.monotonic(), sock.recv(4096).decode()))
                except socket.timeout:
                    pass
            took, _ = sigterm(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sock.close()
    err = err_path.read_text()
    # Health lines went on while the socket was full (one a second).
    assert full.count("health: device=") >= 3, full[-800:]
    assert "did not take a message" in full, full[-800:]
    assert queued and queued[0].startswith("READY=1"), queued[:3]
    pings = [at for at, m in later if m == "WATCHDOG=1\n"]
    assert len(pings) >= 5, later
    assert "takes messages again" in err, err[-800:]
    assert proc.returncode == 0, err[-800:]
    assert took < 1.0, f"SIGTERM to exit took {took:.2f} s"
