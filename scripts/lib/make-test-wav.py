#!/usr/bin/env python3
"""Write a deterministic test WAV for the appliance scripts.

A 120 BPM pattern that exercises every feature: a kick (decaying 60 Hz sine)
on each beat, a snare-like noise burst on beats 2 and 4, a 1 kHz tone that
fades in and out, and hi-hat clicks on the off-beats, then two seconds of
silence. Mono, 16-bit, 48 kHz unless told otherwise. Standard library only.

usage: make-test-wav.py OUT.wav [--seconds 12] [--rate 48000]
"""
import argparse
import math
import random
import struct
import wave


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--rate", type=int, default=48000)
    a = ap.parse_args()

    sr = a.rate
    n = int(a.seconds * sr)
    music_end = max(0, n - 2 * sr)  # last 2 s silent
    beat = 0.5  # 120 BPM
    rng = random.Random(4)
    noise = [rng.uniform(-1.0, 1.0) for _ in range(sr // 10)]
    frames = bytearray()
    for i in range(n):
        t = i / sr
        x = 0.0
        if i < music_end:
            k = int(t / beat)
            tb = t - k * beat
            x += 0.6 * math.sin(2 * math.pi * 60 * tb) * math.exp(-tb / 0.08)
            if k % 2 == 1 and tb < 0.1:
                x += 0.3 * noise[int(tb * sr)] * math.exp(-tb / 0.03)
            th = t - (k + 0.5) * beat
            if 0 <= th < 0.02:
                x += 0.2 * noise[int(th * sr)] * math.exp(-th / 0.004)
            x += 0.1 * math.sin(2 * math.pi * 1000 * t) * (0.5 - 0.5 * math.cos(2 * math.pi * t / 4))
        v = max(-32767, min(32767, int(round(x * 32767))))
        frames += struct.pack("<h", v)
    with wave.open(a.out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(bytes(frames))


if __name__ == "__main__":
    main()
