"""Issue 14, item 1: the Opus monitor stream, decoded by FFmpeg's own Opus
decoder (not the libopus phase4 encodes with), at every preset at once
(each client chooses its own): the tone comes back within 1 Hz, a music
excerpt above a stated SNR, sequence numbers contiguous, and the capture →
client delay is printed."""

import asyncio
import json
import struct
import time

import av
import numpy as np
import pytest
import websockets

from conftest import SR, TOKEN, login, music, peak_hz, recv_json, tone, write_wav

PRESETS = ["low", "medium", "high", "ultra"]
# Waveform SNR of the decoded music excerpt, dB, lower bounds per preset.
# Opus is a perceptual codec: at 16 kbit/s it keeps less bandwidth and the
# waveform more loosely, so the bound there is lower. Measured on this
# excerpt: 16, 23, 25, 26 dB (printed by the test, quoted in the README).
SNR_MIN_DB = {"low": 10.0, "medium": 17.0, "high": 19.0, "ultra": 19.0}
HEADER = struct.Struct("<BBHIQQI")


def parse(frame):
    assert frame[0] == 2, "monitor frames start with 2"
    n = frame[1]
    assert n >= HEADER.size
    version, preset, frame48, seq, t_cap, t_send, rate = HEADER.unpack_from(frame, 2)
    return dict(version=version, preset=preset, frame48=frame48, seq=seq, t_cap=t_cap,
                t_send=t_send, rate=rate, opus=bytes(frame[2 + n:]))


async def listen(url, quality, seconds):
    """Subscribe at `quality`, collect `seconds` of packets; each with the
    CLOCK_MONOTONIC time it arrived (same clock as the server's stamps)."""
    got = []
    async with websockets.connect(url, max_size=1 << 20) as ws:
        await login(ws)
        await ws.send(json.dumps({"type": "subscribe_audio", "quality": quality}))
        sub = await recv_json(ws, "audio_subscribed")
        assert sub["quality"] == quality and sub["codec"] == "opus" and sub["sample_rate"] == 48000
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            f = await asyncio.wait_for(ws.recv(), 2.0)
            if isinstance(f, bytes) and f[0] == 2:
                p = parse(f)
                p["t_recv"] = time.monotonic_ns()
                got.append(p)
        await ws.send(json.dumps({"type": "unsubscribe_audio"}))
        await recv_json(ws, "audio_unsubscribed")
    return sub, got


def decode(packets):
    """FFmpeg's native Opus decoder ("opus", not "libopus")."""
    ctx = av.CodecContext.create("opus", "r")
    assert ctx.codec.name == "opus"
    ctx.sample_rate = 48000
    ctx.layout = "mono"
    out = []
    for p in packets:
        for fr in ctx.decode(av.Packet(p["opus"])):
            a = fr.to_ndarray()
            out.append(a[0] if a.ndim == 2 else a)
    return np.concatenate(out).astype(np.float64)


def snr_db(decoded, loop):
    """SNR of `decoded` against the looped input, at the best integer lag."""
    y = decoded[len(decoded) // 4:][: SR * 2]
    n = len(loop)
    tiled = np.tile(loop, 3)
    corr = np.fft.irfft(np.fft.rfft(tiled[:2 * n]) * np.conj(np.fft.rfft(y, 2 * n)), 2 * n)
    lag = int(np.argmax(corr[:n]))
    x = tiled[lag:lag + len(y)]
    return 10 * np.log10(np.sum(x ** 2) / np.sum((x - y) ** 2))


def check_stream(name, sub, got, seconds):
    assert got, f"{name}: no packets"
    seqs = [p["seq"] for p in got]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{name}: sequence numbers not contiguous"
    assert all(p["preset"] == PRESETS.index(name) and p["version"] == 1 for p in got)
    assert all(p["frame48"] == 48 * sub["frame_ms"] for p in got)
    caps = [p["t_cap"] for p in got]
    # Capture stamps are measured (the input is played at real time on a
    # shared machine): increasing, 20 ms apart on average.
    assert all(b > a for a, b in zip(caps, caps[1:])), "capture stamps go forward"
    mean_ms = (caps[-1] - caps[0]) / (len(caps) - 1) / 1e6
    assert abs(mean_ms - 20.0) < 0.5, f"frames {mean_ms:.2f} ms apart"
    # 50 frames a second, give or take the edges of the window.
    assert len(got) >= 50 * seconds - 10, f"{name}: only {len(got)} packets in {seconds} s"
    delays = np.array([(p["t_recv"] - p["t_cap"]) / 1e6 for p in got])
    return delays


async def all_presets(url, seconds):
    return await asyncio.gather(*(listen(url, q, seconds) for q in PRESETS))


def run_presets(make_server, tmp_path, samples, seconds=3.0):
    wav = write_wav(tmp_path / "in.wav", samples)
    server = make_server(wav, extra=f'token = "{TOKEN}"\ntrust-loopback = false')
    time.sleep(0.3)
    results = asyncio.run(all_presets(server.url, seconds))
    assert server.running()
    return server, results


def test_a_tone_comes_back_within_1_hz_at_every_preset(make_server, tmp_path):
    seconds = 3.0
    _, results = run_presets(make_server, tmp_path, tone(1000.0, 2.0), seconds)
    sizes = {}
    for q, (sub, got) in zip(PRESETS, results):
        delays = check_stream(q, sub, got, seconds)
        x = decode(got)
        hz = peak_hz(x[len(x) // 4:])
        sizes[q] = np.mean([len(p["opus"]) for p in got]) * 8 * 50 / 1000
        print(f"monitor tone {q}: {hz:.2f} Hz, {sizes[q]:.0f} kbit/s, capture->client delay "
              f"median {np.median(delays):.1f} ms, p95 {np.percentile(delays, 95):.1f} ms, max {delays.max():.1f} ms")
        assert abs(hz - 1000.0) < 1.0, f"{q}: decoded tone at {hz:.2f} Hz"
        assert np.median(delays) < 100, f"{q}: capture->client delay {np.median(delays):.1f} ms"
    assert sizes["low"] < sizes["medium"] < sizes["high"] <= sizes["ultra"] * 1.05


def test_music_survives_at_every_preset_above_the_snr_bounds(make_server, tmp_path):
    loop = np.array(music(4.0))
    loop16 = np.round(np.clip(loop, -1, 1) * 32767) / 32767
    _, results = run_presets(make_server, tmp_path, list(loop), 3.0)
    for q, (sub, got) in zip(PRESETS, results):
        check_stream(q, sub, got, 3.0)
        snr = snr_db(decode(got), loop16)
        print(f"monitor music {q}: SNR {snr:.1f} dB (bound {SNR_MIN_DB[q]} dB)")
        assert snr > SNR_MIN_DB[q], f"{q}: SNR {snr:.1f} dB"


def test_listening_needs_the_token_and_a_known_preset(make_server, tmp_path):
    wav = write_wav(tmp_path / "in.wav", tone(440.0, 1.0))
    server = make_server(wav, extra=f'token = "{TOKEN}"\ntrust-loopback = false')

    async def go():
        async with websockets.connect(server.url) as ws:
            await ws.send(json.dumps({"type": "subscribe_audio", "quality": "medium"}))
            err = await recv_json(ws, "error")
            assert "token" in err["reason"]
            await login(ws)
            for bad in ['{"type":"subscribe_audio","quality":"loud"}',
                        '{"type":"subscribe_audio","quality":"' + "x" * 5000 + '"}',
                        '{"type":"subscribe_audio","quality":7}']:
                await ws.send(bad)
                err = await recv_json(ws, "error")
                assert len(err["reason"]) < 400
            # Nothing was subscribed: no audio frame arrives.
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                try:
                    f = await asyncio.wait_for(ws.recv(), 0.2)
                except asyncio.TimeoutError:
                    continue
                assert not (isinstance(f, bytes) and f[0] == 2)

    asyncio.run(go())
    assert server.running()


def test_a_slow_listener_loses_frames_and_nobody_else_does(make_server, tmp_path):
    """A listener that stops reading fills its own queue; another listener's
    sequence numbers stay contiguous."""
    wav = write_wav(tmp_path / "in.wav", tone(440.0, 1.0))
    server = make_server(wav, extra=f'token = "{TOKEN}"\ntrust-loopback = false')

    async def go():
        slow = await websockets.connect(server.url, max_size=1 << 20, max_queue=1)
        await login(slow)
        await slow.send(json.dumps({"type": "subscribe_audio", "quality": "ultra"}))
        await recv_json(slow, "audio_subscribed")
        slow.transport.pause_reading()  # stops reading, stays connected
        try:
            return await listen(server.url, "ultra", 4.0)
        finally:
            slow.transport.resume_reading()
            await slow.close()

    sub, got = asyncio.run(go())
    check_stream("ultra", sub, got, 4.0)
    assert server.running()
