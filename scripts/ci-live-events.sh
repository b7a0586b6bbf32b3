#!/usr/bin/env bash
# The live path's onset and beat events against `phase4 analyze`'s
# (tests/test_live_events.py), as CI runs them (root or a sudo user).
# The test renders a corpus piece with fluidsynth and Debian's GM soundfont,
# so it installs them itself: on a fresh machine this suite runs before the
# eval suite, which installs them too.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
. scripts/eval/common.sh
eval_deps fluidsynth fluid-soundfont-gm
exec python3 -m pytest -q -p no:cacheprovider tests/test_live_events.py
