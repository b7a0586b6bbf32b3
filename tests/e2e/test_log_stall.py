"""A log that stops taking lines must not stop the service. Under systemd
phase4 logs to journald's syslog socket; a journal stalled on a slow SD card
leaves that socket's queue full, and a send to it blocks. The supervisor,
which logs the health line, also sends the watchdog pings: before the log
had a writer thread of its own, a full socket held it, the pings stopped and
systemd would have killed a working service.

The test plays journald: in a mount namespace of its own (`unshare -m`),
phase4's syslog socket (/dev/log, else /run/syslog) is a datagram socket the
test bound and fills before phase4 starts, and reads nothing from until it
has checked the pings. It then reads what phase4 wrote."""

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import minimal_config, render, sigterm, tone, write_wav
from test_watchdog import NotifySocket

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a mount namespace needs root and util-linux unshare",
)

# Inside the namespace: the socket where syslog looks for it, then phase4.
SHIM = r"""
set -e
sock="$1"; shift
if [ -e /dev/log ] || [ -L /dev/log ]; then
    mount --bind "$sock" /dev/log
else
    mount -t tmpfs p4test /run
    touch /run/syslog
    mount --bind "$sock" /run/syslog
fi
exec "$@"
"""


def fill(path):
    """Queue datagrams on the socket at `path` until it takes no more."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.connect(str(path))
    n = 0
    try:
        while n < 100_000:
            s.send(b"<30>filler: queued by the test")
            n += 1
    except BlockingIOError:
        pass
    s.close()
    return n


def stalled_journal(phase4_bin, tmp_path, *args):
    """A full syslog socket (bound here, never read yet) and the command that
    runs phase4 logging to it under a stand-in for systemd (INVOCATION_ID),
    on a looped tone. Returns (socket, datagrams queued, command)."""
    log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log.bind(str(tmp_path / "log.sock"))
    queued = fill(tmp_path / "log.sock")
    assert queued >= 1
    wav = write_wav(tmp_path / "w.wav", render(tone(440), 2.0))
    cfg = minimal_config(tmp_path)
    cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", SHIM, "sh",
           str(tmp_path / "log.sock"),
           str(phase4_bin), "--config", str(cfg), "--input", str(wav), "--loop", *args]
    return log, queued, cmd


def test_a_stalled_journal_does_not_stop_the_watchdog_or_the_exit(phase4_bin, tmp_path):
    log, queued, cmd = stalled_journal(phase4_bin, tmp_path, "--log-level", "debug")
    ns = NotifySocket(tmp_path / "notify.sock")
    # INVOCATION_ID: what systemd sets for a service, so phase4 logs to syslog.
    env = dict(os.environ, NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="1000000", INVOCATION_ID="p4test")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4.0)
        ready = ns.times("READY=1")
        assert ready, f"no READY=1 with the log stalled: {ns.msgs}"
        pings = [t for t in ns.times("WATCHDOG=1") if t < t0 + 4.0]
        # WATCHDOG_USEC = 1 s: a ping every 0.5 s from READY on.
        assert len(pings) >= 5, pings
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert max(gaps) < 0.8, gaps
        took, err = sigterm(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ns.close()
    assert proc.returncode == 0, err
    assert ns.times("STOPPING=1"), ns.msgs
    # The exit waits for the log at most half a second.
    assert took < 1.0, f"SIGTERM to exit took {took:.2f} s with the log stalled"
    # What reached the journal: the test's own lines, then phase4's first
    # lines (the queue held them; the writer was blocked on the next).
    log.setblocking(False)
    lines = []
    try:
        while True:
            lines.append(log.recv(4096).decode(errors="replace"))
    except BlockingIOError:
        pass
    log.close()
    # Only the test's own lines: the journal was stalled the whole time
    # (phase4's first line already found the queue full).
    ours = [l for l in lines if "phase4[" in l]
    assert len(lines) == queued and not ours, lines[-3:]


def test_lines_go_out_in_order_once_the_journal_reads_again(phase4_bin, tmp_path):
    """The stall ends: the lines phase4 queued meanwhile arrive, in order.
    (A stall long enough to overflow the queue is counted in one line: the
    unit test `a_stalled_log_drops_and_counts_lines_...`.)"""
    log, _queued, cmd = stalled_journal(phase4_bin, tmp_path)
    env = dict(os.environ, INVOCATION_ID="p4test")
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.5)
        # Journald comes back: read everything for a while.
        log.settimeout(0.2)
        lines = []
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            try:
                lines.append(log.recv(4096).decode(errors="replace"))
            except socket.timeout:
                pass
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        try:
            while True:
                lines.append(log.recv(4096).decode(errors="replace"))
        except (socket.timeout, BlockingIOError):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == 0, err
    ours = [l.split(": ", 1)[-1] for l in lines if "phase4[" in l]
    assert any(l.startswith("ready: first block") for l in ours), ours
    health = [l for l in ours if l.startswith("health:")]
    assert len(health) >= 3, ours
    # In order: the start lines, then the health lines as they came.
    assert ours.index(next(l for l in ours if l.startswith("ready:"))) < ours.index(health[0])
    assert "stopping" in ours, ours[-3:]
