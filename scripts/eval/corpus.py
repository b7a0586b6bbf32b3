#!/usr/bin/env python3
"""Deterministic test corpus for the onset / beat / tempo evaluation.

Each piece is written as a MIDI file by this script (exact note times in
seconds), rendered with fluidsynth and Debian's FluidR3_GM soundfont, mixed to
mono 48 kHz 16-bit, normalised, and stored with its ground truth:

    corpus/<name>.wav
    corpus/<name>.json  {"onsets": [...], "beats": [...], "tempo": [[t, bpm], ...],
                         "start": s, "change": s | null, "duration": s, ...}

Ground truth:
- onsets: every note-on, merged when closer than 30 ms (a chord or a kick
  under a hat is one onset). Pitched notes are written legato (each ends
  where a later onset starts) because fluidsynth's note releases make
  audible transients that are not onsets;
- beats: the quarter-note grid the parts are written on; for a piece whose
  written tempo lies outside the tracker's default range (75-180 BPM) the
  reference is its octave inside that range (eighth notes of a 70 BPM
  ballad), because that is what phase4 is specified to report;
- tempo: piecewise-constant BPM of that beat grid.

Variants: "noisy" adds pink-ish noise at 6 dB SNR, "quiet" scales the mix by
-36 dB (RMS around -50 dBFS, still above the -60 dBFS silence threshold).

Deterministic: a fixed RNG seed per piece; re-running gives byte-identical
MIDI and WAV files (fluidsynth's fast render is deterministic). Pieces are
cached: a piece is rebuilt only when its spec hash changes.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
from scipy.io import wavfile

SR = 48000
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
VERSION = 4  # bump to rebuild every piece

# GM drum keys
KICK, RIM, SNARE, CLAP, CHH, PHH, OHH, CRASH, RIDE, TAMB, COWBELL, LTOM = (
    36, 37, 38, 39, 42, 44, 46, 49, 51, 54, 56, 45)

# ---------------------------------------------------------------- MIDI file


def _varlen(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def write_midi(path: str, notes, programs: dict[int, int]) -> None:
    """Format-0 SMF at a fixed 120 BPM, 960 ticks per quarter: 1 tick =
    1/1920 s, so note times in seconds map exactly to ticks."""
    tpq = 960
    per_s = 1920.0
    ev = []  # (tick, order, bytes)
    ev.append((0, 0, b"\xff\x51\x03" + (500000).to_bytes(3, "big")))
    for ch, prog in programs.items():
        ev.append((0, 1, bytes([0xC0 | ch, prog])))
        ev.append((0, 1, bytes([0xB0 | ch, 7, 110])))  # channel volume
    for (t, dur, ch, key, vel) in notes:
        on = int(round(t * per_s))
        off = max(on + 1, int(round((t + dur) * per_s)))
        ev.append((on, 3, bytes([0x90 | ch, key, max(1, min(127, vel))])))
        ev.append((off, 2, bytes([0x80 | ch, key, 0])))
    ev.sort(key=lambda e: (e[0], e[1]))
    data = bytearray()
    last = 0
    for tick, _, b in ev:
        data += _varlen(tick - last) + b
        last = tick
    data += _varlen(0) + b"\xff\x2f\x00"
    with open(path, "wb") as f:
        f.write(b"MThd" + struct.pack(">IHHH", 6, 0, 1, tpq))
        f.write(b"MTrk" + struct.pack(">I", len(data)) + bytes(data))


# ---------------------------------------------------------------- pieces


def beat_grid(segments, start):
    """[(bpm, n_beats), ...] -> beat times from `start`, plus one more beat
    (the end of the last one)."""
    t = start
    out = []
    for bpm, n in segments:
        for _ in range(n):
            out.append(t)
            t += 60.0 / bpm
    out.append(t)
    return out


class Score:
    def __init__(self, seed):
        self.notes = []
        self.rng = np.random.default_rng(seed)

    def add(self, t, dur, ch, key, vel):
        vel = int(vel + self.rng.integers(-6, 7))
        self.notes.append((float(t), float(dur), ch, key, vel))


PROG = [  # (root bass key, chord keys) I-V-vi-IV in C
    (36, (60, 64, 67)), (43, (59, 62, 67)), (45, (60, 64, 69)), (41, (60, 65, 69))]


def sub(beats, i, frac):
    """Time at `frac` of beat i (0..1), following the local beat length."""
    return beats[i] + frac * (beats[i + 1] - beats[i])


def rock(s, beats, meter=4, hats=True):
    for i in range(len(beats) - 1):
        b = i % meter
        bar = i // meter
        root, chord = PROG[bar % 4]
        L = beats[i + 1] - beats[i]
        if b in (0, 2):
            s.add(beats[i], 0.1, 9, KICK, 112)
        if b in (1, 3):
            s.add(beats[i], 0.1, 9, SNARE, 105)
        if b == 2 and bar % 2 == 1:
            s.add(sub(beats, i, 0.5), 0.1, 9, KICK, 95)
        if hats:
            s.add(beats[i], 0.05, 9, CHH, 80)
            s.add(sub(beats, i, 0.5), 0.05, 9, CHH, 62)
        if i % (4 * meter) == 0:
            s.add(beats[i], 0.5, 9, CRASH, 100)
        s.add(beats[i], 0.5 * L, 1, root, 100)
        s.add(sub(beats, i, 0.5), 0.5 * L, 1, root + 12 if b == 3 else root, 90)
        if b in (0, 2):
            for k in chord:
                s.add(beats[i], 2.0 * L, 2, k, 84)


def house(s, beats):
    for i in range(len(beats) - 1):
        b = i % 4
        bar = i // 4
        root, chord = PROG[(bar // 2) % 4]
        L = beats[i + 1] - beats[i]
        s.add(beats[i], 0.1, 9, KICK, 120)
        if b in (1, 3):
            s.add(beats[i], 0.1, 9, CLAP, 100)
        s.add(sub(beats, i, 0.5), 0.1, 9, OHH, 85)
        for q in (0.25, 0.75):
            s.add(sub(beats, i, q), 0.03, 9, CHH, 55)
        s.add(sub(beats, i, 0.5), 0.5 * L, 1, root + 12, 105)
        if b == 1 or b == 3:
            for k in chord:
                s.add(sub(beats, i, 0.75), 0.25 * L, 2, k + 12, 80)


def hiphop(s, beats, swing=0.62):
    for i in range(len(beats) - 1):
        b = i % 4
        bar = i // 4
        root, chord = PROG[bar % 4]
        L = beats[i + 1] - beats[i]
        if b == 0 or (b == 2 and bar % 2 == 0):
            s.add(beats[i], 0.1, 9, KICK, 118)
        if b == 1 and bar % 2 == 1:
            s.add(sub(beats, i, swing), 0.1, 9, KICK, 100)
        if b in (1, 3):
            s.add(beats[i], 0.1, 9, SNARE, 110)
        s.add(beats[i], 0.05, 9, CHH, 78)
        s.add(sub(beats, i, swing), 0.05, 9, CHH, 60)
        if b == 0:
            s.add(beats[i], 2.0 * L, 1, root, 105)
            for k in chord:
                s.add(beats[i], 4.0 * L, 3, k, 70)
        if b == 2:
            s.add(sub(beats, i, swing), (1.0 - swing) * L, 1, root + 7, 95)


def dnb(s, beats):
    for i in range(len(beats) - 1):
        b = i % 4
        bar = i // 4
        root, _ = PROG[(bar // 2) % 4]
        L = beats[i + 1] - beats[i]
        if b == 0 or (b == 2 and bar % 2 == 1):
            s.add(beats[i], 0.1, 9, KICK, 118)
        if b == 2 and bar % 2 == 0:
            s.add(sub(beats, i, 0.5), 0.1, 9, KICK, 108)
        if b in (1, 3):
            s.add(beats[i], 0.1, 9, SNARE, 112)
        s.add(beats[i], 0.04, 9, CHH, 75)
        s.add(sub(beats, i, 0.5), 0.04, 9, CHH, 60)
        if b == 0:
            s.add(beats[i], 2.0 * L, 1, root, 110)
        if b == 2:
            s.add(sub(beats, i, 0.5), 1.5 * L, 1, root + 3, 100)


def ballad(s, beats):
    """70 BPM: piano arpeggio in eighths, soft kit with ride."""
    for i in range(len(beats) - 1):
        b = i % 4
        bar = i // 4
        root, chord = PROG[bar % 4]
        L = beats[i + 1] - beats[i]
        if b == 0:
            s.add(beats[i], 0.1, 9, KICK, 105)
            s.add(beats[i], 4.0 * L, 1, root, 100)
        if b == 2:
            s.add(sub(beats, i, 0.5), 0.1, 9, KICK, 95)
        if b in (1, 3):
            s.add(beats[i], 0.1, 9, SNARE, 100)
        s.add(beats[i], 0.3, 9, RIDE, 80)
        s.add(sub(beats, i, 0.5), 0.3, 9, RIDE, 66)
        arp = (chord[0], chord[1], chord[2], chord[1] + 12)
        s.add(beats[i], 1.0 * L, 0, arp[b], 82)
        s.add(sub(beats, i, 0.5), 0.5 * L, 0, arp[(b + 2) % 4], 70)


def piano(s, beats):
    """No drums: left-hand bass and chords, right-hand melody in quarters and
    eighths."""
    melody = [72, 74, 76, 79, 77, 76, 74, 72, 71, 72, 74, 76, 74, 72, 71, 67]
    for i in range(len(beats) - 1):
        b = i % 4
        bar = i // 4
        root, chord = PROG[bar % 4]
        L = beats[i + 1] - beats[i]
        if b == 0:
            s.add(beats[i], 2.0 * L, 0, root + 12, 92)
        if b == 2:
            s.add(beats[i], 2.0 * L, 0, root + 19, 80)
        if b in (1, 3):
            for k in chord:
                s.add(beats[i], 1.0 * L, 0, k, 70)
        m = melody[(i * 2) % len(melody)]
        s.add(beats[i], 0.5 * L, 0, m, 98)
        if (i + bar) % 3 != 2:
            s.add(sub(beats, i, 0.5), 0.5 * L, 0, melody[(i * 2 + 1) % len(melody)], 84)


def waltz(s, beats):
    """3/4, no drums: bass on one, chords on two and three."""
    for i in range(len(beats) - 1):
        b = i % 3
        bar = i // 3
        root, chord = PROG[bar % 4]
        L = beats[i + 1] - beats[i]
        if b == 0:
            s.add(beats[i], 1.0 * L, 1, root, 110)
            s.add(beats[i], 3.0 * L, 0, chord[2] + 12, 92)
        else:
            for k in chord:
                s.add(beats[i], 1.0 * L, 0, k, 75)


def funk(s, beats):
    for i in range(len(beats) - 1):
        b = i % 4
        bar = i // 4
        root, chord = PROG[bar % 2]
        L = beats[i + 1] - beats[i]
        if b == 0:
            s.add(beats[i], 0.1, 9, KICK, 118)
        if b == 2:
            s.add(sub(beats, i, 0.75), 0.1, 9, KICK, 100)
            s.add(sub(beats, i, 0.5), 0.1, 9, KICK, 104)
        if b in (1, 3):
            s.add(beats[i], 0.1, 9, SNARE, 112)
        for q in (0.0, 0.25, 0.5, 0.75):
            s.add(sub(beats, i, q), 0.03, 9, CHH, 72 if q == 0 else 52)
        s.add(beats[i], 0.25 * L, 1, root, 108)
        if b % 2 == 1:
            s.add(sub(beats, i, 0.75), 0.25 * L, 1, root + 12, 96)
        if b in (1, 3):
            for k in chord:
                s.add(sub(beats, i, 0.5), 0.25 * L, 2, k + 12, 88)


def jazz(s, beats, swing=0.66):
    """Swing: ride pattern, hi-hat pedal on 2 and 4, walking bass, comping."""
    walk = [0, 4, 7, 9, 12, 9, 7, 4]
    for i in range(len(beats) - 1):
        b = i % 4
        bar = i // 4
        root, chord = PROG[bar % 4]
        L = beats[i + 1] - beats[i]
        s.add(beats[i], 0.3, 9, RIDE, 92)
        if b in (1, 3):
            s.add(sub(beats, i, swing), 0.3, 9, RIDE, 70)
            s.add(beats[i], 0.05, 9, PHH, 80)
        s.add(beats[i], 1.0 * L, 1, root + walk[(i % 8)], 108)
        if b in (1, 3) and bar % 2 == 0:
            for k in chord:
                t = sub(beats, i, swing) if b == 3 else beats[i]
                s.add(t, beats[i + 1] - t, 0, k, 74)


def techno(s, beats):
    for i in range(len(beats) - 1):
        b = i % 4
        bar = i // 4
        L = beats[i + 1] - beats[i]
        s.add(beats[i], 0.1, 9, KICK, 122)
        s.add(sub(beats, i, 0.5), 0.05, 9, OHH, 80)
        for q in (0.25, 0.75):
            s.add(sub(beats, i, q), 0.02, 9, CHH, 50)
        if b == 3 and bar % 2 == 1:
            s.add(beats[i], 0.1, 9, CLAP, 95)
        s.add(sub(beats, i, 0.75), 0.25 * L, 1, 36 + (7 if bar % 4 == 3 else 0), 100)


# name -> (style, [(bpm, beats)], programs, ref_factor, meter)
# programs: channel -> GM program (0 piano, 33 fingered bass, 27 clean guitar,
# 38 synth bass, 81 saw lead, 4 e-piano, 16 organ)
STYLES = {
    "rock": (rock, {1: 33, 2: 27}),
    "house": (house, {1: 38, 2: 81}),
    "hiphop": (hiphop, {1: 33, 3: 4}),
    "dnb": (dnb, {1: 38}),
    "ballad": (ballad, {0: 0, 1: 33}),
    "piano": (piano, {0: 0}),
    "waltz": (waltz, {0: 0, 1: 32}),
    "funk": (funk, {1: 33, 2: 27}),
    "jazz": (jazz, {0: 0, 1: 32}),
    "techno": (techno, {1: 38}),
}


def beats_for(dur, bpm):
    return max(8, int(dur * bpm / 60.0))


PIECES = {
    # name: (style, segments, reference factor, variant)
    "rock_120": ("rock", [(120, 60)], 1, None),
    "house_124": ("house", [(124, 62)], 1, None),
    "hiphop_90": ("hiphop", [(90, 45)], 1, None),
    "dnb_174": ("dnb", [(174, 87)], 1, None),
    "ballad_70": ("ballad", [(70, 35)], 2, None),
    "piano_100": ("piano", [(100, 50)], 1, None),
    "waltz_150": ("waltz", [(150, 75)], 1, None),
    "funk_105": ("funk", [(105, 52)], 1, None),
    "jazz_160": ("jazz", [(160, 80)], 1, None),
    "techno_132": ("techno", [(132, 66)], 1, None),
    "rock_change_100_128": ("rock", [(100, 36), (128, 48)], 1, None),
    "rock_120_noisy": ("rock", [(120, 60)], 1, "noisy"),
    "funk_105_noisy": ("funk", [(105, 52)], 1, "noisy"),
    "rock_120_quiet": ("rock", [(120, 60)], 1, "quiet"),
    "piano_100_quiet": ("piano", [(100, 50)], 1, "quiet"),
}
SUBSET = ["rock_120", "hiphop_90", "piano_100", "rock_change_100_128",
          "funk_105_noisy", "rock_120_quiet"]
START = 0.5  # seconds of silence before the music


def merge_onsets(times, gap=0.03):
    out = []
    for t in sorted(times):
        if not out or t - out[-1] >= gap:
            out.append(t)
    return out


def render(notes, programs, seed):
    with tempfile.TemporaryDirectory() as d:
        mid = os.path.join(d, "p.mid")
        wav = os.path.join(d, "p.wav")
        write_midi(mid, notes, programs)
        subprocess.run(
            ["fluidsynth", "-ni", "-q", "-C", "0", "-R", "1", "-g", "0.5",
             "-r", str(SR), "-F", wav, SOUNDFONT, mid],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sr, x = wavfile.read(wav)
    assert sr == SR, sr
    x = x.astype(np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    return x / 32768.0


def pink_noise(n, rng):
    w = rng.standard_normal(n)
    # Paul Kellet's economy pink filter, as a 3-pole IIR (deterministic).
    from scipy.signal import lfilter
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1, -2.494956002, 2.017265875, -0.522189400]
    return lfilter(b, a, w)


def build(name, force=False):
    style, segs, factor, variant = PIECES[name]
    fn, programs = STYLES[style]
    spec = json.dumps([VERSION, name, style, segs, factor, variant, START], sort_keys=True)
    h = hashlib.sha1(spec.encode()).hexdigest()[:12]
    wav_path = os.path.join(CORPUS, name + ".wav")
    gt_path = os.path.join(CORPUS, name + ".json")
    if not force and os.path.exists(gt_path) and os.path.exists(wav_path):
        with open(gt_path) as f:
            if json.load(f).get("hash") == h:
                return wav_path, gt_path
    seed = int(h[:8], 16)
    s = Score(seed)
    beats = beat_grid(segs, START)
    fn(s, beats)
    x = render(s.notes, programs, seed)
    # Trim to the end of the last beat plus a short tail.
    end = beats[-1] + 0.3
    x = x[: int(end * SR)]
    x = x / (np.max(np.abs(x)) + 1e-12) * 0.89  # -1 dBFS peak
    rng = np.random.default_rng(seed + 1)
    if variant == "noisy":
        nz = pink_noise(len(x), rng)
        sig_rms = np.sqrt(np.mean(x[int(START * SR):] ** 2))
        nz *= sig_rms / np.sqrt(np.mean(nz ** 2)) / (10 ** (6 / 20))
        x = x + nz
        x = x / np.max(np.abs(x)) * 0.89
    elif variant == "quiet":
        x = x * 10 ** (-36 / 20)
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
    os.makedirs(CORPUS, exist_ok=True)
    wavfile.write(wav_path, SR, pcm)

    ref_beats = []
    tempo = []
    t_change = None
    k = 0
    for si, (bpm, n) in enumerate(segs):
        if si > 0:
            t_change = beats[k]
        tempo.append([beats[k], bpm * factor])
        k += n
    for i in range(len(beats) - 1):
        ref_beats.append(beats[i])
        for j in range(1, factor):
            ref_beats.append(beats[i] + j * (beats[i + 1] - beats[i]) / factor)
    onsets = merge_onsets([n[0] for n in s.notes])
    gt = {
        "hash": h,
        "name": name,
        "style": style,
        "variant": variant,
        "duration": len(pcm) / SR,
        "start": START,
        "change": t_change,
        "written_bpm": [b for b, _ in segs],
        "tempo": tempo,
        "beats": ref_beats,
        "onsets": onsets,
        "rms_dbfs": float(20 * np.log10(np.sqrt(np.mean((pcm / 32768.0) ** 2)) + 1e-12)),
    }
    with open(gt_path, "w") as f:
        json.dump(gt, f, indent=1)
    return wav_path, gt_path


def main(argv):
    names = list(PIECES)
    if "--subset" in argv:
        names = SUBSET
    for n in names:
        w, _ = build(n, force="--force" in argv)
        print(w)


if __name__ == "__main__":
    if shutil.which("fluidsynth") is None or not os.path.exists(SOUNDFONT):
        sys.exit("corpus.py needs fluidsynth and fluid-soundfont-gm (apt-get install fluidsynth fluid-soundfont-gm)")
    main(sys.argv[1:])
