"""Ableton Link: a Link peer we did not write (LinkPython-extern, Ableton's
Link through pybind11) sees phase4's tempo within 0.5 BPM and its beat phase
within 20 ms, through phase4-link (the GPL program that is the Link peer),
on a steady 120 BPM input; and silence leaves the session alone.

Runs inside the network namespace conftest.py creates: Link's discovery
multicast (224.76.78.75:20808) never reaches a real interface.

What "phase4's beat phase" is: the test sits between phase4 and phase4-link
on the loopback feed (it receives phase4's datagrams and forwards them), so
it knows exactly which phase phase4 claimed for which CLOCK_MONOTONIC time,
and compares the Link session's beat at that same instant.
"""

import socket
import statistics
import subprocess
import threading
import time

import link  # LinkPython-extern
import pytest
from pythonosc.osc_message import OscMessage

from conftest import LINK_BIN, ROOT, beat_track, free_port, private_network, write_wav

private_network()  # only in conftest.py's namespace (unshare(CLONE_NEWNET)): nothing leaves it

QUANTUM = 4.0


@pytest.fixture(scope="module")
def link_bin():
    if not LINK_BIN.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "phase4-link"], cwd=ROOT, check=True)
    return LINK_BIN


class Tap:
    """Receives phase4's feed, remembers it, forwards it to phase4-link."""

    def __init__(self, listen_port, forward_port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", listen_port))
        self.sock.settimeout(0.2)
        self.forward = ("127.0.0.1", forward_port)
        self.seen = []  # (bpm, phase, locked, t_ns)
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                data, _ = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            self.sock.sendto(data, self.forward)
            m = OscMessage(data)
            bpm, phase, _conf, locked, t_ns, _beat, _q = m.params
            self.seen.append((bpm, phase, bool(locked), t_ns))


def mono_to_link_us(l):
    """CLOCK_MONOTONIC ns -> Link clock µs offset, read back to back."""
    a = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    lk = l.clock().micros()
    b = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    return lk - (a + b) // 2 // 1000


def wrap(x):
    return x - round(x)


def test_a_link_peer_follows_phase4_and_silence_leaves_the_session_alone(run_phase4, link_bin, tmp_path):
    wav = tmp_path / "beat120.wav"
    # 22 s of music, then silence.
    write_wav(wav, beat_track(32.0, bpm=120.0, silence_after=22.0))
    feed = free_port(socket.SOCK_DGRAM)
    to_link = free_port(socket.SOCK_DGRAM)
    tap = Tap(feed, to_link)

    # The other peer is there first, at another tempo: phase4 must not
    # touch the session before it is locked (never a guess).
    peer = link.Link(90.0)
    peer.enabled = True

    p4 = run_phase4(
        {
            "audio": {"input": str(wav)},
            "osc": {"enabled": False},
            "ws": {"enabled": False},
            "link": {"enabled": True, "feed-port": feed, "quantum": QUANTUM},
        }
    )
    cfg = p4.cfg
    pl = subprocess.Popen(
        [str(link_bin), "--config", str(cfg), "--port", str(to_link), "--log-level", "debug"],
        stderr=open(tmp_path / "phase4-link.log", "w"),
    )
    try:
        # Before phase4 locks, the session stays at the peer's 90 BPM.
        early = []
        t0 = time.time()
        while not any(s[2] for s in tap.seen) and time.time() - t0 < 15:
            early.append(peer.captureAppSessionState().tempo())
            time.sleep(0.05)
        assert any(s[2] for s in tap.seen), "phase4 never locked"
        assert early and all(abs(t - 90.0) < 1e-6 for t in early), early[-5:]
        lock_at = time.time()

        # Locked: compare the session with what phase4 says, for ~6 s.
        time.sleep(3.0)
        tempo_err, phase_err_ms = [], []
        last = None
        while time.time() - lock_at < 12.0:
            time.sleep(0.1)
            locked = [s for s in tap.seen if s[2]]
            if not locked or locked[-1] == last:
                continue
            last = bpm, phase, _, t_ns = locked[-1]
            state = peer.captureAppSessionState()
            at = t_ns // 1000 + mono_to_link_us(peer)
            beat = state.beatAtTime(at, QUANTUM)
            tempo_err.append(abs(state.tempo() - bpm))
            phase_err_ms.append(abs(wrap(beat - phase)) * 60.0 / bpm * 1000.0)
        print(
            f"link: {len(phase_err_ms)} samples, tempo error max {max(tempo_err):.3f} BPM, "
            f"phase error median {statistics.median(phase_err_ms):.2f} ms, max {max(phase_err_ms):.2f} ms"
        )
        assert peer.numPeers() >= 1
        assert len(phase_err_ms) > 20, phase_err_ms
        assert max(tempo_err) < 0.5, tempo_err
        assert abs(statistics.median(s[0] for s in tap.seen if s[2]) - 120.0) < 1.0
        assert statistics.median(phase_err_ms) < 20.0, phase_err_ms
        assert max(phase_err_ms) < 40.0, phase_err_ms

        # Silence: phase4 unlocks; the peer moves the session to 100 BPM
        # and phase4-link leaves it there.
        t0 = time.time()
        while (tap.seen[-1][2] if tap.seen else True) and time.time() - t0 < 15:
            time.sleep(0.1)
        assert not tap.seen[-1][2], "phase4 did not unlock in the silence"
        s = peer.captureAppSessionState()
        s.setTempo(100.0, peer.clock().micros())
        peer.commitAppSessionState(s)
        time.sleep(2.0)
        assert abs(peer.captureAppSessionState().tempo() - 100.0) < 1e-6
    finally:
        tap.stop = True
        pl.terminate()
        pl.wait(5)
        peer.enabled = False
    log = (tmp_path / "phase4-link.log").read_text()
    assert "joining the Link session" in log, log
