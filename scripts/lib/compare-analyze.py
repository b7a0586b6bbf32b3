#!/usr/bin/env python3
"""Compare two `phase4 analyze --format jsonl` outputs of the same WAV, e.g.
x86_64 against aarch64 under qemu.

Feature frames (every type but events) are matched by (type, t) and must
agree field by field: numbers within |a - b| <= atol + rtol * max(|a|, |b|),
everything else exactly. Events (onset, beat, silence: lines whose type is
listed in --event-types; onsets per band) are matched to the nearest time, within --event-dt
seconds, and their numbers use the same tolerance. Floating-point results can
differ in the last bits between architectures (libm, SIMD summation order in
the FFT), so exact equality is not expected; a threshold that sits right at a
tiny difference could move an event, which --event-dt allows for.

usage: compare-analyze.py A.jsonl B.jsonl [--atol 1e-4] [--rtol 1e-4]
       [--event-types onset,beat,silence] [--event-dt 0.011]
Prints the largest differences; exit 0 when within tolerance, 1 otherwise.
"""
import argparse
import json
import math
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--event-types", default="onset,beat,silence")
    ap.add_argument("--event-dt", type=float, default=0.011)
    args = ap.parse_args()
    event_types = set(filter(None, args.event_types.split(",")))

    a, b = load(args.a), load(args.b)
    problems = []
    worst = {}  # field -> (abs diff, rel diff, where)

    def cmp_records(ra, rb, where):
        if set(ra) != set(rb):
            problems.append(f"{where}: fields differ: {sorted(set(ra) ^ set(rb))}")
            return
        for k, va in ra.items():
            vb = rb[k]
            if isinstance(va, list) and isinstance(vb, list):
                # A list of numbers (`--bins`): element by element, each
                # within the same tolerance.
                if len(va) != len(vb):
                    problems.append(f"{where}: {k}: {len(va)} items vs {len(vb)}")
                    continue
                for i, (x, y) in enumerate(zip(va, vb)):
                    cmp_records({f"{k}[]": x, "type": ra.get("type", "?")},
                                {f"{k}[]": y, "type": rb.get("type", "?")}, f"{where} {k}[{i}]")
                continue
            if isinstance(va, bool) or not isinstance(va, (int, float)) or not isinstance(vb, (int, float)):
                if va != vb:
                    problems.append(f"{where}: {k}: {va!r} != {vb!r}")
                continue
            if math.isnan(va) or math.isnan(vb):
                if not (math.isnan(va) and math.isnan(vb)):
                    problems.append(f"{where}: {k}: {va} vs {vb}")
                continue
            d = abs(va - vb)
            scale = max(abs(va), abs(vb))
            rel = d / scale if scale > 0 else 0.0
            key = f"{ra.get('type', '?')}.{k}"
            if d > worst.get(key, (-1,))[0]:
                worst[key] = (d, rel, where)
            if d > args.atol + args.rtol * scale:
                problems.append(f"{where}: {k}: {va!r} vs {vb!r} (diff {d:.3g})")

    def split(rows):
        frames, events = {}, {}
        for r in rows:
            ty = r.get("type", "?")
            if ty in event_types:
                # onsets of different bands are different event streams
                key = f"{ty}/{r['band']}" if "band" in r else ty
                events.setdefault(key, []).append(r)
            else:
                frames[(ty, r.get("t"))] = r
        return frames, events

    fa, ea = split(a)
    fb, eb = split(b)
    for key in sorted(set(fa) | set(fb), key=lambda k: (str(k[0]), k[1] or 0)):
        if key not in fa or key not in fb:
            problems.append(f"frame {key} only in {'A' if key in fa else 'B'}")
            continue
        cmp_records(fa[key], fb[key], f"{key[0]}@{key[1]}")
    for ty in sorted(set(ea) | set(eb)):
        la, lb = ea.get(ty, []), eb.get(ty, [])
        if len(la) != len(lb):
            problems.append(f"{ty}: {len(la)} events vs {len(lb)}")
        used = set()
        for ra in la:
            best = None
            for j, rb in enumerate(lb):
                if j in used:
                    continue
                dt = abs(ra.get("t", 0) - rb.get("t", 0))
                if dt <= args.event_dt and (best is None or dt < best[0]):
                    best = (dt, j)
            if best is None:
                problems.append(f"{ty}@{ra.get('t')}: no matching event in B")
                continue
            used.add(best[1])
            rb = dict(lb[best[1]])
            rb["t"] = ra.get("t")  # time compared by event-dt above
            cmp_records(ra, rb, f"{ty}@{ra.get('t')}")

    n_ev = sum(len(v) for v in ea.values())
    print(f"compared {len(fa)} frames and {n_ev} events "
          f"(atol {args.atol:g}, rtol {args.rtol:g}, event dt {args.event_dt:g} s)")
    for key, (d, rel, where) in sorted(worst.items(), key=lambda kv: -kv[1][0])[:12]:
        print(f"  max |diff| {key:28s} {d:.3g} (rel {rel:.3g}) at {where}")
    for p in problems[:20]:
        print("  MISMATCH " + p)
    if len(problems) > 20:
        print(f"  ... and {len(problems) - 20} more")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
