"""The live path gives the same onset and beat events as `phase4 analyze`.

Plays a 12 s corpus piece through `phase4 --input` (real-time pacing, OSC
bundles time-tagged with the capture time) and compares the broadband onset
and beat events with analyze's: at 48 kHz, where the detectors reuse the
spectrum's FFT and run once per spectrum hop, and converted to 22.05 and
8 kHz, where they run their own FFT two or three times per spectrum hop and
an event found between two spectrum hops goes out with the block in which
it was found, not with the next hop. Event times on the live side are the
bundle time tags relative to the first /audio/lmh bundle (whose block ends
at stream time one block). A live event goes out with the block in which it
was detected, stamped with that block's capture time; analyze writes the
same event back-dated by its lag (`lag_s`, at most one detector hop plus
the ODF peak lag of 8.5 ms, plus the rest of the block at rates where the
detector hop ends inside a block). So each analyze event must have a live
twin no earlier than one block before it and no later than that lag plus
one block plus slack: at every rate, within one block of where 48 kHz
puts it.

Needs: a release build (cargo build --release; PHASE4_BIN overrides the
path), python-osc, and the corpus tools (fluidsynth, fluid-soundfont-gm,
numpy, scipy), or any WAV in PHASE4_LIVE_WAV.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("PHASE4_BIN", os.path.join(ROOT, "target", "release", "phase4"))
BLOCK = 256
DET_HOP_S = 512 / 48000
SLACK_S = 0.004

osc_bundle = pytest.importorskip("pythonosc.osc_bundle")
osc_message = pytest.importorskip("pythonosc.osc_message")


def short_wav(tmp, rate):
    """12 s of a corpus piece (or PHASE4_LIVE_WAV) at `rate` Hz."""
    import numpy as np
    from scipy.io import wavfile
    from scipy.signal import resample_poly
    if os.environ.get("PHASE4_LIVE_WAV"):
        wav = os.environ["PHASE4_LIVE_WAV"]
    else:
        sys.path.insert(0, os.path.join(ROOT, "scripts", "eval"))
        import corpus  # noqa: E402
        wav, _ = corpus.build("rock_120")
    sr, x = wavfile.read(wav)
    x = x[: int(12 * sr)].astype(np.float64)
    if sr != rate:
        g = np.gcd(sr, rate)
        x = resample_poly(x, rate // g, sr // g, axis=0)
    out = os.path.join(tmp, "live.wav")
    wavfile.write(out, rate, np.clip(x, -32768, 32767).astype(np.int16))
    return out


def analyze(wav, cfg):
    out = subprocess.run([BIN, "analyze", wav, "--config", cfg], check=True,
                         capture_output=True, text=True).stdout
    onsets, beats = [], []
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        e = json.loads(line)
        if e["type"] == "onset" and e["band"] == "broadband":
            onsets.append(e["t"])
        elif e["type"] == "beat":
            beats.append(e["t"])
    return onsets, beats


def walk(packet, tag, out):
    if osc_bundle.OscBundle.dgram_is_bundle(packet):
        b = osc_bundle.OscBundle(packet)
        for c in b:
            if isinstance(c, osc_bundle.OscBundle):
                walk(c.dgram, c.timestamp, out)
            else:
                out.append((b.timestamp, c.address, c.params))
    else:
        m = osc_message.OscMessage(packet)
        out.append((tag, m.address, m.params))


@pytest.mark.skipif(not os.path.exists(BIN), reason="needs a release build")
@pytest.mark.parametrize("rate", [48000, 22050, 8000])
def test_live_events_match_analyze(rate):
    block_s = BLOCK / rate
    with tempfile.TemporaryDirectory() as tmp:
        wav = short_wav(tmp, rate)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.settimeout(0.5)
        cfg = os.path.join(tmp, "live.toml")
        with open(cfg, "w") as f:
            f.write(f"""
[osc]
bundle = true
[[osc.destinations]]
host = "127.0.0.1"
port = {port}
[ws]
enabled = false
""")
        ref_onsets, ref_beats = analyze(wav, cfg)
        packets = []
        stop = threading.Event()

        def rx():
            while not stop.is_set():
                try:
                    packets.append(sock.recv(65536))
                except socket.timeout:
                    pass

        th = threading.Thread(target=rx, daemon=True)
        th.start()
        env = dict(os.environ, PHASE4_STATE_DIRECTORY=tmp, STATE_DIRECTORY=tmp)
        p = subprocess.run([BIN, "--config", cfg, "--input", wav, "--duration", "12.5"],
                           capture_output=True, text=True, timeout=60, env=env)
        time.sleep(0.3)
        stop.set()
        th.join()
        assert p.returncode == 0, p.stderr
        msgs = []
        for pk in packets:
            walk(pk, None, msgs)
        lmh = [t for t, a, _ in msgs if a == "/audio/lmh" and t is not None]
        assert lmh, "no /audio/lmh bundles received"
        # The first block's bundle is stamped with the capture time of its
        # last frame: stream time one block.
        t0 = min(lmh) - block_s
        live_onsets = sorted(t - t0 for t, a, _ in msgs if a == "/audio/onset")
        live_beats = sorted(t - t0 for t, a, _ in msgs if a == "/audio/beat")
        lo = -block_s - SLACK_S
        hi = DET_HOP_S + 0.0085 + block_s + SLACK_S

        def match(ref, live, what):
            assert abs(len(ref) - len(live)) <= 1, f"{what}: {len(ref)} vs {len(live)}"
            # Every analyze event (but a possible last one cut by the end)
            # has its live twin.
            misses = [r for r in ref if not any(lo <= x - r <= hi for x in live)]
            assert len(misses) <= 1, f"{what}: no live twin for {misses[:5]}"

        assert len(ref_onsets) > 10 and len(ref_beats) > 5
        match(ref_onsets, live_onsets, "onsets")
        match(ref_beats, live_beats, "beats")
