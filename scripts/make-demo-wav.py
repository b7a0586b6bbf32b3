#!/usr/bin/env python3
"""Writes a loopable demo track (stdlib only): 16 bars... well, 16 s at
120 BPM of kick, snare, hi-hat, bass and a chord pad, 48 kHz mono 16-bit.
Usage: make-demo-wav.py OUT.wav [SECONDS]"""
import math
import random
import struct
import sys
import wave

RATE = 48000
BPM = 120.0


def main():
    out = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 16.0
    n = int(seconds * RATE)
    beat = 60.0 / BPM
    rnd = random.Random(4)
    buf = [0.0] * n
    bass_notes = [55.0, 55.0, 73.42, 65.41]
    for i in range(n):
        t = i / RATE
        b = t / beat
        ph = (b % 1.0) * beat  # time since the beat
        bar_beat = int(b) % 4
        v = 0.0
        # kick on every beat: a falling sine
        if ph < 0.25:
            f = 45 + 90 * math.exp(-ph * 30)
            v += 0.8 * math.exp(-ph * 12) * math.sin(2 * math.pi * f * ph)
        # snare on 2 and 4: noise burst
        if bar_beat in (1, 3) and ph < 0.15:
            v += 0.35 * math.exp(-ph * 30) * (rnd.random() * 2 - 1)
        # hats on the off-beats
        ph8 = ((b * 2) % 1.0) * beat / 2
        if ph8 < 0.04 and int(b * 2) % 2 == 1:
            v += 0.15 * math.exp(-ph8 * 120) * (rnd.random() * 2 - 1)
        # bass, one note per bar
        f_bass = bass_notes[int(b / 4) % len(bass_notes)]
        v += 0.25 * math.sin(2 * math.pi * f_bass * t) * (0.6 + 0.4 * math.exp(-ph * 4))
        # pad
        for f in (220.0, 277.18, 329.63):
            v += 0.04 * math.sin(2 * math.pi * f * t)
        buf[i] = v
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"".join(struct.pack("<h", int(max(-1.0, min(1.0, s)) * 32000)) for s in buf))


if __name__ == "__main__":
    main()
