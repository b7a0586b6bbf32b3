"""The live path gives the same onset and beat events as `phase4 analyze`.

Plays a 12 s corpus piece through `phase4 --input` (real-time pacing, OSC
bundles time-tagged with the capture time) and compares the broadband onset
and beat events with analyze's: at 48 kHz, where the detectors reuse the
spectrum's FFT and run once per spectrum hop, and converted to 22.05 and
8 kHz, where they run their own FFT two or three times per spectrum hop and
an event found between two spectrum hops goes out with the block in which
it was found, not with the next hop. Event times on the live side are
stream times of the blocks they went out with: block k (its /audio/lmh
bundle, the k-th time tag) ends at stream time k + 1 blocks, whatever the
clock said when a loaded machine woke the capture thread late. A live event
goes out with the block in which it was detected, under that block's time
tag (its capture time); a run that lost blocks or bundles is played again.
Analyze writes the
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
import bisect
import os
import re
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


def play(wav, cfg, tmp, port_sock):
    """Play `wav` live through `cfg` and collect its OSC bundles: (messages
    as (time tag, address, params), blocks the service counted, blocks it
    lost on the way (ring and frame drops, from its last health line))."""
    packets = []
    stop = threading.Event()

    def rx():
        while not stop.is_set():
            try:
                packets.append(port_sock.recv(65536))
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
    last = [l for l in p.stderr.splitlines() if "health:" in l][-1]
    blocks = int(re.search(r" blocks=(\d+)", last).group(1))
    lost = sum(int(x) for x in re.findall(r"(?:bands|spectrum):(\d+)\(", last))
    lost += int(re.search(r" frame_drops=(\d+)", last).group(1))
    return msgs, blocks, lost


@pytest.mark.skipif(not os.path.exists(BIN), reason="needs a release build")
@pytest.mark.parametrize("rate", [48000, 22050, 8000])
def test_live_events_match_analyze(rate):
    block_s = BLOCK / rate
    with tempfile.TemporaryDirectory() as tmp:
        wav = short_wav(tmp, rate)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
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
        # A run that lost blocks on the way (a worker behind on a machine
        # busy with other real-time work) or whose bundles did not all
        # arrive shows nothing about the detectors: it is played again, up
        # to three times, and said so if none was whole.
        runs = []
        for _ in range(3):
            msgs, blocks, lost = play(wav, cfg, tmp, sock)
            tags = sorted({t for t, a, _ in msgs if a == "/audio/lmh" and t is not None})
            runs.append((blocks, lost, len(tags)))
            if lost == 0 and len(tags) == blocks:
                break
        else:
            pytest.fail(f"no whole run (blocks, lost, /audio/lmh bundles received): {runs}")
        # Stream time from the block, not the clock: block k (from 0) ends
        # at stream time (k + 1) blocks, and every event goes out in its
        # block's bundle, under that block's time tag. A capture thread that
        # woke late on a loaded machine moves the tag, not the block.
        def block_of(t):
            # The time tag read back may differ from its block's in the
            # last bits (python-osc's float conversion): the nearest one.
            k = bisect.bisect(tags, t)
            near = min((j for j in (k - 1, k) if 0 <= j < len(tags)), key=lambda j: abs(tags[j] - t))
            return near if abs(tags[near] - t) < block_s / 8 else None

        events = [(a, block_of(t)) for t, a, _ in msgs if a in ("/audio/onset", "/audio/beat")]
        assert all(k is not None for _, k in events), "an event outside every block's bundle"
        live_onsets = sorted((k + 1) * block_s for a, k in events if a == "/audio/onset")
        live_beats = sorted((k + 1) * block_s for a, k in events if a == "/audio/beat")
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
