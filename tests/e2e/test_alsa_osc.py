"""End to end through the real alsa-lib (the `file` plugin, no sound card):
capture in every sample format, mono and stereo, mmap and RW, the full
pipeline, and OSC decoded by python-osc."""

import math
import statistics

import pytest

from conftest import (
    BLOCK,
    RATE,
    OscReceiver,
    alsa_device,
    encode,
    render,
    run_phase4,
    silence,
    tone,
    write_config,
)

FORMATS = ["S16_LE", "S24_3LE", "S24_LE", "S32_LE", "FLOAT_LE"]


def base_config(tmp_path, port, fmt, channels, access, strength, **extra):
    sections = dict(
        audio={"device": "p4e2e", "format": fmt, "channels": channels, "access": access, "block-frames": BLOCK},
        autoscale={"strength": strength},
        fft={"enabled": True, "send-raw-db": True},
        osc={"send-fft": True, "destinations": [{"host": "127.0.0.1", "port": port}]},
        ws={"enabled": False},
        state={"dir": ""},
        health={"interval-s": 3600.0},
    )
    for k, v in extra.items():
        sections.setdefault(k, {}).update(v)
    return write_config(tmp_path / "phase4.toml", **sections)


def capture(phase4_bin, tmp_path, signal, seconds, fmt="S16_LE", channels=1, access="mmap",
            strength=1.0, pick=None, **extra):
    """Run phase4 on `signal` through the file plugin; return OSC messages."""
    samples = render(signal, seconds + 0.5)
    env = {"ALSA_CONFIG_PATH": alsa_device(tmp_path, encode(samples, fmt, channels, pick))}
    rx = OscReceiver()
    cfg = base_config(tmp_path, rx.port, fmt, channels, access, strength, **extra)
    proc = run_phase4(phase4_bin, cfg, ["--duration", str(seconds)], env)
    rx.stop()
    assert proc.returncode == 0, proc.stderr
    return rx.messages(), proc.stderr


def lmh(msgs):
    return [m[2] for m in msgs if m[1] == "/audio/lmh"]


def mean_tail(rows, frac=0.5):
    tail = rows[int(len(rows) * (1 - frac)):]
    return [statistics.fmean(r[i] for r in tail) for i in range(3)]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("access", ["mmap", "rw"])
def test_raw_mode_tones_land_in_their_bands(phase4_bin, tmp_path, fmt, channels, access):
    """strength 0: each tone drives its own band far above the other two."""
    seg = 1.0
    signal = [(seg, tone(100)), (seg, tone(2000)), (seg, tone(8000))]
    msgs, log = capture(phase4_bin, tmp_path, signal, 3 * seg, fmt, channels, access, strength=0.0)
    assert f"format {fmt}" in log and f"access {access}" in log, log
    rows = lmh(msgs)
    per_seg = int(seg * RATE / BLOCK)
    assert len(rows) >= 3 * per_seg - 1
    for k, band in enumerate(["low", "mid", "high"]):
        # Skip the first half of each segment (filters and smoothers settle).
        seg_rows = rows[k * per_seg + per_seg // 2:(k + 1) * per_seg]
        m = [statistics.fmean(r[i] for r in seg_rows) for i in range(3)]
        others = [m[i] for i in range(3) if i != k]
        # Raw mode maps 80 dB onto [0, 1]: 0.2 is 16 dB.
        assert m[k] > max(others) + 0.2, f"{band}: {m}"


def test_stereo_channel_pick_uses_only_that_channel(phase4_bin, tmp_path):
    msgs, _ = capture(phase4_bin, tmp_path, tone(100), 1.0, "S16_LE", 2, "mmap",
                      strength=0.0, pick=1, audio={"channel": 1})
    assert mean_tail(lmh(msgs))[0] > 0.5
    msgs, _ = capture(phase4_bin, tmp_path, tone(100), 1.0, "S16_LE", 2, "mmap",
                      strength=0.0, pick=1, audio={"channel": 0})
    assert mean_tail(lmh(msgs)) == [0.0, 0.0, 0.0]


def test_auto_scaled_bands_move_against_each_other(phase4_bin, tmp_path):
    """strength 1: each band is normalised on its own, so tones alternating
    between low and mid move those two in opposite directions."""
    signal = [(0.5, tone(100) if i % 2 == 0 else tone(2000)) for i in range(8)]
    msgs, _ = capture(phase4_bin, tmp_path, signal, 4.0, strength=1.0)
    rows = lmh(msgs)[int(RATE / BLOCK):]  # after the first second
    low = [r[0] for r in rows]
    mid = [r[1] for r in rows]
    corr = statistics.correlation(low, mid)
    assert corr < -0.5, corr
    assert max(low) > 0.5 and max(mid) > 0.5


@pytest.mark.parametrize("freq", [250.0, 1000.0, 3000.0, 9000.0])
def test_spectrum_peak_sits_in_the_bin_of_the_tone(phase4_bin, tmp_path, freq):
    msgs, _ = capture(phase4_bin, tmp_path, tone(freq), 1.0)
    ffts = [m[2] for m in msgs if m[1] == "/audio/fft"]
    assert len(ffts) > 50
    bins = ffts[-1]
    n, f_min, f_max = len(bins), 30.0, RATE / 2
    assert n == 128
    # The tone's energy lands in its nearest rfft bin (1024-point window);
    # the log bin that rfft bin falls in is where the peak must be.
    f_near = round(freq / (RATE / 1024)) * (RATE / 1024)
    expected = min(n - 1, int(math.floor(math.log(f_near / f_min) / math.log(f_max / f_min) * n)))
    assert max(range(n), key=lambda j: bins[j]) == expected


@pytest.mark.parametrize("strength", [0.0, 1.0])
def test_silence_stays_at_zero(phase4_bin, tmp_path, strength):
    msgs, _ = capture(phase4_bin, tmp_path, silence, 3.0, strength=strength)
    rows = lmh(msgs)
    assert rows and all(v == 0.0 for r in rows for v in r)
    sil = [m[2][0] for m in msgs if m[1] == "/audio/silence"]
    assert sil[-1] == 1, "silent after the 2 s hold"
    level = [m[2] for m in msgs if m[1] == "/audio/level"]
    assert level[-1][0] <= -150.0


def click_track(bpm=120.0, seconds=8.0):
    period = 60.0 / bpm

    def f(t):
        ph = t % period
        return 0.9 * math.exp(-ph * 60.0) * math.sin(2 * math.pi * 1500 * ph) if ph < 0.05 else 0.0

    return f


def test_every_address_with_exact_argument_types(phase4_bin, tmp_path):
    """Decode the whole stream with python-osc and check each address's
    type tags against the protocol table."""
    signal = [(8.0, click_track(120.0)), (3.0, silence)]
    msgs, _ = capture(phase4_bin, tmp_path, signal, 11.0,
                      fft={"send-raw-db": False}, osc={"bundle": False})
    expected = {
        "/audio/meta": "iiiffffff",
        "/audio/lmh": "fff",
        "/audio/level": "ff",
        "/audio/bpm": "f",
        "/audio/tempo": "fff",
        "/audio/fft": "f" * 128,
        "/audio/spectral": "ffff",
        "/audio/onset": "f",
        "/audio/beat": "iff",
        "/audio/silence": "i",
        "/audio/onset/low": "i",
        "/audio/onset/mid": "i",
        "/audio/onset/high": "i",
    }
    seen = {}
    for _t, addr, _params, _tt, tags in msgs:
        seen.setdefault(addr, set()).add(tags)
    missing = set(expected) - set(seen)
    assert not missing, f"never sent: {sorted(missing)}"
    for addr, tags in expected.items():
        assert seen[addr] == {tags}, f"{addr}: {seen[addr]}"
    unknown = set(seen) - set(expected)
    assert not unknown, unknown
    meta = next(m[2] for m in msgs if m[1] == "/audio/meta")
    assert meta[:3] == [48000, 256, 128]
    assert meta[3:5] == [30.0, 250.0]
    fft = [m[2] for m in msgs if m[1] == "/audio/fft"]
    assert all(0.0 <= v <= 1.0 for frame in fft for v in frame)


def test_bundles_carry_the_capture_time(phase4_bin, tmp_path):
    msgs, _ = capture(phase4_bin, tmp_path, tone(440), 1.0, osc={"bundle": True})
    tagged = [m for m in msgs if m[1] == "/audio/lmh"]
    assert tagged
    import time as _time

    now_unix = _time.time()
    for _t, _a, _p, tt, _tags in tagged:
        # python-osc converts the NTP tag to Unix seconds.
        assert tt is not None and abs(tt - now_unix) < 60
