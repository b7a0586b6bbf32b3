#!/usr/bin/env python3
"""Run phase4 and aubio on the corpus and score both with mir_eval.

    evaluate.py [--subset] [--phase4 PATH] [--out DIR] [--no-aubio]

Writes OUT/results.json (every number), OUT/results.md (the tables) and
prints the tables. See docs/eval.md for the method.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import mir_eval

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import corpus  # noqa: E402

ONSET_WINDOW = 0.05
TEMPO_TOL = 0.04
TEMPO_GRID = 0.1      # s between tempo samples
TRIM_S = 5.0          # mir_eval's beat trimming; tempo accuracy uses the same
LOCK_STAY_S = 5.0     # a lock must hold this long to count
TARGETS = {"onset_f": 0.93, "beat_f": 0.85, "acc1": 0.90, "acc2": 0.97, "lock_s": 4.0}


# ---------------------------------------------------------------- runners


def run_phase4(binary, wav, cfg):
    t0 = time.perf_counter()
    p = subprocess.run([binary, "analyze", wav, "--format", "jsonl", "--config", cfg],
                       check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    onsets, beats, tempo = [], [], []
    for line in p.stdout.splitlines():
        if not line.startswith("{"):
            continue
        ev = json.loads(line)
        ty = ev.get("type")
        if ty == "onset" and ev.get("band") == "broadband":
            onsets.append(ev["t"])
        elif ty == "beat":
            beats.append(ev["t"])
        elif ty == "spectral":
            tempo.append((ev["t"], ev["bpm"] if ev.get("locked") else 0.0))
    return {"onsets": onsets, "beats": beats, "tempo": tempo, "wall_s": wall}


def _floats(text):
    out = []
    for tok in text.split():
        try:
            out.append(float(tok))
        except ValueError:
            pass
    return out


def aubio_tempo_track(beats, duration):
    """aubio reports a tempo only through its beats (aubio_tempo_get_bpm is
    60 / the beat period it tracks): the tempo at t is 60 / the median of
    the last four inter-beat intervals, 0 before the second beat and 0 when
    no beat came in the last 2 s."""
    out = []
    b = np.asarray(beats)
    for t in np.arange(0.0, duration, 0.01):
        past = b[b <= t]
        if len(past) < 2 or t - past[-1] > 2.0:
            out.append((float(t), 0.0))
            continue
        ibi = np.diff(past[-5:])
        out.append((float(t), float(60.0 / np.median(ibi))))
    return out


def run_aubio(wav, duration):
    t0 = time.perf_counter()
    on = subprocess.run(["aubioonset", "-i", wav], check=True, capture_output=True, text=True)
    tr = subprocess.run(["aubiotrack", "-i", wav], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    beats = _floats(tr.stdout)
    return {"onsets": _floats(on.stdout), "beats": beats,
            "tempo": aubio_tempo_track(beats, duration), "wall_s": wall}


# ---------------------------------------------------------------- scoring


def ref_tempo_at(gt, t):
    bpm = gt["tempo"][0][1]
    for t0, b in gt["tempo"]:
        if t >= t0:
            bpm = b
    return bpm


def tempo_ok(est, ref, factors):
    return est > 0 and any(abs(est - ref * f) <= TEMPO_TOL * ref * f for f in factors)


def sample_tempo(track, times):
    """Estimated tempo at each time: the latest report at or before it."""
    ts = np.array([t for t, _ in track]) if track else np.zeros(0)
    bs = np.array([b for _, b in track]) if track else np.zeros(0)
    idx = np.searchsorted(ts, times, side="right") - 1
    return np.where(idx >= 0, bs[np.clip(idx, 0, None)] if len(bs) else 0.0, 0.0)


def lock_time(gt, track, t_from, t_to):
    """Seconds from t_from until the tempo is within 4 % of the reference and
    stays there for LOCK_STAY_S (or to t_to); None if never."""
    times = np.arange(t_from, t_to, 0.01)
    if len(times) == 0:
        return None
    est = sample_tempo(track, times)
    ok = np.array([tempo_ok(e, ref_tempo_at(gt, t), [1.0]) for e, t in zip(est, times)])
    need = int(min(LOCK_STAY_S, t_to - t_from) / 0.01) - 1
    run = 0
    for i in range(len(ok) - 1, -1, -1):
        run = run + 1 if ok[i] else 0
        if ok[i] and (run >= need or i + run >= len(ok)) and run >= min(need, len(ok) - i):
            cand = i
    # Scan forward for the first index that starts a long-enough run.
    run_len = np.zeros(len(ok), dtype=int)
    r = 0
    for i in range(len(ok) - 1, -1, -1):
        r = r + 1 if ok[i] else 0
        run_len[i] = r
    for i in range(len(ok)):
        if ok[i] and (run_len[i] >= need or i + run_len[i] == len(ok)) and run_len[i] >= 20:
            return float(times[i] - t_from)
    return None


def score(gt, est):
    ref_on = np.asarray(gt["onsets"])
    est_on = np.asarray(sorted(est["onsets"]))
    of, op, orc = mir_eval.onset.f_measure(ref_on, est_on, window=ONSET_WINDOW)
    ref_b = mir_eval.beat.trim_beats(np.asarray(gt["beats"]), TRIM_S)
    est_b = mir_eval.beat.trim_beats(np.asarray(sorted(est["beats"])), TRIM_S)
    bf = mir_eval.beat.f_measure(ref_b, est_b)
    ps = mir_eval.beat.p_score(ref_b, est_b)
    cmlc, cmlt, amlc, amlt = mir_eval.beat.continuity(ref_b, est_b)
    dur = gt["duration"]
    times = np.arange(TRIM_S, dur, TEMPO_GRID)
    est_t = sample_tempo(est["tempo"], times)
    refs = [ref_tempo_at(gt, t) for t in times]
    acc1 = float(np.mean([tempo_ok(e, r, [1.0]) for e, r in zip(est_t, refs)]))
    acc2 = float(np.mean([tempo_ok(e, r, [1.0, 2.0, 0.5, 3.0, 1 / 3]) for e, r in zip(est_t, refs)]))
    end1 = gt["change"] if gt["change"] else dur
    lock = lock_time(gt, est["tempo"], gt["start"], end1)
    lock_change = None
    if gt["change"]:
        lock_change = lock_time(gt, est["tempo"], gt["change"], dur)
    return {"onset_f": of, "onset_p": op, "onset_r": orc, "beat_f": bf, "p_score": ps,
            "cmlt": cmlt, "amlt": amlt, "acc1": acc1, "acc2": acc2,
            "lock_s": lock, "lock_change_s": lock_change,
            "lock_penalty_s": end1 - gt["start"]}


# ---------------------------------------------------------------- tables

COLS = [("onset_f", "onset F"), ("beat_f", "beat F"), ("p_score", "P-score"),
        ("cmlt", "CMLt"), ("amlt", "AMLt"), ("acc1", "acc1"), ("acc2", "acc2"),
        ("lock_s", "lock s"), ("lock_change_s", "lock after change s")]


def fmt(v, key):
    if key.startswith("lock"):
        return "never" if v is None else f"{v:.1f}"
    return f"{v:.3f}"


def summarize(rows, key):
    """Mean over pieces; a lock that never happened counts as the piece's
    length (from start or change to end)."""
    vals = []
    for r in rows:
        v = r[key]
        if key == "lock_s" and v is None:
            v = r["lock_penalty_s"]
        if key == "lock_change_s":
            if r.get("has_change"):
                vals.append(v if v is not None else r["change_penalty_s"])
            continue
        vals.append(v)
    return float(np.mean(vals)) if vals else None


def table(results, systems):
    names = list(results[systems[0]].keys())
    lines = []
    head = "| piece | " + " | ".join(f"{lab} ({s})" for _, lab in COLS[:1] for s in systems)
    # Per-metric side-by-side: metric columns, each "phase4 / aubio".
    lines.append("| piece | " + " | ".join(lab for _, lab in COLS) + " |")
    lines.append("|---|" + "---|" * len(COLS))
    for n in names:
        cells = []
        for key, _ in COLS:
            vs = [results[s][n][key] for s in systems]
            if key == "lock_change_s" and not results[systems[0]][n].get("has_change"):
                cells.append("")
            else:
                cells.append(" / ".join(fmt(v, key) for v in vs))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    cells = []
    for key, _ in COLS:
        vs = [summarize(list(results[s].values()), key) for s in systems]
        cells.append(" / ".join("" if v is None else fmt(v, key) for v in vs))
    lines.append("| **mean** | " + " | ".join(f"**{c}**" for c in cells) + " |")
    del head
    return "\n".join(lines)


def summary_table(results, systems):
    lines = ["| metric | target | " + " | ".join(systems) + " | target met (phase4) | phase4 better than aubio |",
             "|---|---|" + "---|" * len(systems) + "---|---|"]
    for key, lab in COLS:
        vals = [summarize(list(results[s].values()), key) for s in systems]
        if all(v is None for v in vals):
            continue
        tgt = TARGETS.get(key if key != "lock_change_s" else "lock_s")
        lower_better = key.startswith("lock")
        met = ""
        if tgt is not None and vals[0] is not None:
            ok = vals[0] <= tgt if lower_better else vals[0] >= tgt
            met = "yes" if ok else f"no ({vals[0] - tgt:+.3f})"
        better = ""
        if len(vals) > 1 and None not in vals:
            better = "yes" if ((vals[0] < vals[1]) if lower_better else (vals[0] > vals[1])) else "no"
        tg = "" if tgt is None else (f"≤ {tgt}" if lower_better else f"≥ {tgt}")
        lines.append(f"| {lab} | {tg} | " + " | ".join(fmt(v, key) for v in vals) + f" | {met} | {better} |")
    return "\n".join(lines)


def write_report(out, stem, md_lines, data):
    """Print the markdown report and write it and the raw figures to
    OUT/STEM.md and OUT/STEM.json."""
    text = "\n".join(md_lines)
    print()
    print(text)
    with open(os.path.join(out, stem + ".md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, stem + ".json"), "w") as f:
        json.dump(data, f, indent=1)


def at_rate(wav, rate, out):
    """`wav` converted to `rate` Hz (sox, without dither: the same
    file every run), in `out`."""
    conv = os.path.join(out, f"rate{rate}")
    os.makedirs(conv, exist_ok=True)
    dst = os.path.join(conv, os.path.basename(wav))
    subprocess.run(["sox", "-V1", "-D", wav, "-r", str(rate), dst], check=True)
    return dst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subset", action="store_true")
    ap.add_argument("--phase4", default=os.path.join(os.path.dirname(os.path.dirname(HERE)),
                                                     "target", "release", "phase4"))
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--no-aubio", action="store_true")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--rate", type=int,
                    help="convert every piece to this sample rate first (sox)")
    a = ap.parse_args()
    if a.rate is not None and not 8000 <= a.rate <= 384000:
        sys.exit("--rate must be between 8000 and 384000 Hz")
    names = corpus.SUBSET if a.subset else list(corpus.PIECES)
    if a.only:
        names = a.only
    os.makedirs(a.out, exist_ok=True)
    cfg = os.path.join(a.out, "eval.toml")
    with open(cfg, "w") as f:
        f.write("# phase4 defaults: the evaluation runs what a user gets.\n")
    systems = ["phase4"] + ([] if a.no_aubio else ["aubio"])
    if not a.no_aubio and shutil.which("aubiotrack") is None:
        sys.exit("aubio-tools is not installed (apt-get install aubio-tools)")
    results = {s: {} for s in systems}
    speed = {s: [0.0, 0.0] for s in systems}
    for n in names:
        wav, gtp = corpus.build(n)
        with open(gtp) as f:
            gt = json.load(f)
        if a.rate is not None:
            wav = at_rate(wav, a.rate, a.out)
        for s in systems:
            est = run_phase4(a.phase4, wav, cfg) if s == "phase4" else run_aubio(wav, gt["duration"])
            r = score(gt, est)
            r["has_change"] = bool(gt["change"])
            r["change_penalty_s"] = (gt["duration"] - gt["change"]) if gt["change"] else None
            results[s][n] = r
            speed[s][0] += gt["duration"]
            speed[s][1] += est["wall_s"]
        print(f"{n}: " + "  ".join(
            f"{s}: onsetF {results[s][n]['onset_f']:.3f} beatF {results[s][n]['beat_f']:.3f} "
            f"acc1 {results[s][n]['acc1']:.3f} lock {fmt(results[s][n]['lock_s'], 'lock_s')}"
            for s in systems), flush=True)
    md = ["## Per piece (" + " / ".join(systems) + ")", "", table(results, systems), "",
          "## Summary (mean over pieces)", "", summary_table(results, systems), ""]
    for s in systems:
        audio, wall = speed[s]
        md.append(f"- {s}: {audio:.0f} s of audio in {wall:.1f} s wall "
                  f"(including process start and, for phase4, JSON output)")
    write_report(a.out, "results", md, {"systems": systems, "pieces": names, "results": results})


if __name__ == "__main__":
    main()
