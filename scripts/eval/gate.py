#!/usr/bin/env python3
"""CI gate on the evaluation subset: fails when phase4's mean beat F, tempo
accuracy or onset F falls below aubio's on the same pieces, or below a
floor well under the issue's targets (a regression guard, not the targets
themselves; docs/eval.md has the full table against the targets), or when
any single piece's beat continuity (CMLt) falls below a floor: a tracker
that loses the beat or takes turns between two phases on one piece (the
funk_105_noisy regression of the new tracker: CMLt 0.933) is caught even
when the mean still looks good."""
import json
import sys
from pathlib import Path

# The results of `run.sh --subset` (or the file given: a run with --rate).
path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out" / "results.json"
res = json.loads(path.read_text())
pieces = res["pieces"]


def mean(system, metric):
    vals = [res["results"][system][p][metric] for p in pieces]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals)


FLOORS = {"onset_f": 0.85, "beat_f": 0.80, "acc1": 0.85, "acc2": 0.90}
failed = False
for metric, floor in FLOORS.items():
    ours, theirs = mean("phase4", metric), mean("aubio", metric)
    ok = ours >= floor and ours >= theirs
    failed |= not ok
    print(f"eval gate: {metric:8s} phase4 {ours:.3f}  aubio {theirs:.3f}  floor {floor:.2f}  {'ok' if ok else 'FAIL'}")
PIECE_FLOORS = {"cmlt": 0.94}
for metric, floor in PIECE_FLOORS.items():
    for p in pieces:
        v = res["results"]["phase4"][p][metric]
        ok = v is not None and v >= floor
        failed |= not ok
        if not ok:
            print(f"eval gate: {metric} of {p}: phase4 {v}  floor {floor:.2f}  FAIL")
    low = min(res["results"]["phase4"][p][metric] or 0.0 for p in pieces)
    print(f"eval gate: {metric:8s} lowest piece {low:.3f}  floor {floor:.2f}")
sys.exit(1 if failed else 0)
