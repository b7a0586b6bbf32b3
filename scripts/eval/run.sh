#!/usr/bin/env bash
# Onset / beat / tempo evaluation of phase4 against aubio on a generated corpus.
#
#   scripts/eval/run.sh --subset   # CI: 6 pieces, a few minutes with the build
#   scripts/eval/run.sh --full     # the table in docs/eval.md (15 pieces)
#   ... [--rate HZ] [--out DIR]     # the pieces converted to HZ first (sox);
#                                  # results in DIR (default scripts/eval/out)
#
# Installs what it needs (Debian: fluidsynth, fluid-soundfont-gm, aubio-tools;
# PyPI into the venv target/venv: mir_eval numpy scipy), builds the release binary, generates the
# corpus into scripts/eval/corpus/ (cached, deterministic), runs phase4
# analyze and aubio's aubioonset/aubiotrack on it, and writes
# scripts/eval/out/results.{md,json}. Set PHASE4_BIN to skip the build.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
mode="${1:---subset}"
case "$mode" in
  --subset|--full) ;;
  *) echo "usage: $0 --subset|--full [--rate HZ] [--out DIR]" >&2; exit 2 ;;
esac
[ $# -gt 0 ] && shift
args=()
[ "$mode" = "--subset" ] && args+=(--subset)
while [ $# -gt 0 ]; do
  case "$1" in
    --rate|--out) args+=("$1" "${2:-}"); shift 2 ;;
    *) echo "usage: $0 --subset|--full [--rate HZ] [--out DIR]" >&2; exit 2 ;;
  esac
done

. "$here/common.sh"
eval_deps fluidsynth fluid-soundfont-gm aubio-tools sox
bin="$(eval_bin)"

exec python3 "$here/evaluate.py" "${args[@]}" --phase4 "$bin"
