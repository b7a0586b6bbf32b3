"""Fixtures for the monitor tests (issue 14): phase4 runs on a WAV played at
real time (tests/ws's Server), clients are Python `websockets`, the Opus
stream is decoded by FFmpeg's own Opus decoder (libavcodec's `opus`, not
libopus) through PyAV."""

import importlib.util
import json
import math
import os
import random
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("ws_conftest", ROOT / "tests" / "ws" / "conftest.py")
ws = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ws)

Server = ws.Server
recv_json, recv_any = ws.recv_json, ws.recv_any
TOKEN = "monitor-test-token"
SR = 48000


def write_wav(path, samples, sr=SR, width=2):
    """Mono WAV of `samples` (floats in [-1, 1]) as 16-bit ints."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(sr)
        w.writeframes(b"".join(struct.pack("<h", int(round(max(-1.0, min(1.0, v)) * 32767))) for v in samples))
    return path


def tone(hz, seconds, amp=0.5, sr=SR):
    return [amp * math.sin(2 * math.pi * hz * i / sr) for i in range(int(sr * seconds))]


def music(seconds, sr=SR):
    """A synthetic music excerpt (no recording may be committed): a bass
    line, a three-note chord with harmonics, a kick and a hi-hat on a
    120 BPM grid. Loops seamlessly at whole beats."""
    rnd = random.Random(14)
    out = []
    notes = [55.0, 55.0, 73.4, 65.4]
    chord = [261.6, 329.6, 392.0]
    beat = sr // 2
    for i in range(int(sr * seconds)):
        t = i / sr
        b, k = divmod(i, beat)
        bass = 0.25 * math.sin(2 * math.pi * notes[b % 4] * t)
        ch = sum(0.06 * math.sin(2 * math.pi * f * h * t) / h for f in chord for h in (1, 2, 3))
        kick = 0.4 * math.sin(2 * math.pi * 60 * k / sr) * math.exp(-k / 2400)
        hat = 0.12 * rnd.uniform(-1, 1) * math.exp(-((k - beat // 2) % beat) / 300)
        out.append(bass + ch + kick + hat)
    return out


def peak_hz(x, sr=SR):
    """The strongest frequency of `x` (Hann window, 8x zero padding,
    parabolic interpolation of the log magnitude)."""
    import numpy as np

    w = x * np.hanning(len(x))
    spec = np.abs(np.fft.rfft(w, 8 * len(w)))
    k = int(np.argmax(spec))
    a, b, c = np.log(spec[k - 1:k + 2] + 1e-12)
    k += 0.5 * (a - c) / (a - 2 * b + c)
    return k * sr / (8 * len(w))


def longest_run(x, gap=32):
    """The longest stretch of `x` without `gap` exact zeros in a row (the
    player outputs exact silence while it refills after an underrun)."""
    import numpy as np

    z = np.convolve((x == 0).astype(int), np.ones(gap, int), "same") >= gap
    best, start = (0, 0), None
    for i, silent in enumerate(np.append(z, True)):
        if not silent and start is None:
            start = i
        elif silent and start is not None:
            best = max(best, (i - start, start))
            start = None
    return x[best[1]:best[1] + best[0]]


AUTH = f'token = "{TOKEN}"\ntrust-loopback = false\n'


def record_cfg(**kw):
    keys = {"replay-s": 5.0} | kw
    return "\n[record]\n" + "\n".join(
        f"{k} = {json.dumps(v) if isinstance(v, str) else v}" for k, v in keys.items()) + "\n"


def wav_samples(data):
    path = Path(f"/tmp/p4-mon-{os.getpid()}.wav")
    path.write_bytes(data)
    try:
        with wave.open(str(path)) as w:
            assert w.getnchannels() == 1 and w.getframerate() == SR
            return w.getsampwidth(), np.frombuffer(w.readframes(w.getnframes()), "<i2")
    finally:
        path.unlink()


def matches_loop(rec, loop):
    """Whether `rec` is a stretch of the looped `loop`, sample for sample."""
    n = len(loop)
    tiled = np.tile(loop, len(rec) // n + 2)
    head = rec[:64]
    for off in range(n):
        if np.array_equal(tiled[off:off + 64], head):
            return np.array_equal(tiled[off:off + len(rec)], rec)
    return False


def loop_of(path):
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


@pytest.fixture(scope="session")
def binary():
    env_bin = os.environ.get("PHASE4_BIN")
    if env_bin:
        return str(Path(env_bin).resolve())
    return _build()


def _build():
    import subprocess

    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return str(Path(target) / "release" / "phase4")


@pytest.fixture
def make_server(binary, tmp_path):
    started = []

    def make(wav, wrap=None, **kw):
        """`wrap(server)`: a program to run instead of phase4 (it gets
        phase4's arguments)."""
        s = Server(binary, wav, tmp_path, **kw)
        if wrap:
            s.binary = str(wrap(s))
        started.append(s)
        return s.start()

    yield make
    for s in started:
        s.stop()


async def login(ws):
    """Send the control token; wait for the `auth` that says authorized (the
    server sends one on connect too)."""
    import json

    await ws.send(json.dumps({"type": "auth", "token": TOKEN}))
    for _ in range(5):
        if (await recv_json(ws, "auth"))["authorized"] is True:
            return ws
    raise AssertionError("the control token was not accepted")
