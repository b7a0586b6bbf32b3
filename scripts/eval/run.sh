#!/usr/bin/env bash
# Onset / beat / tempo evaluation of phase4 against aubio on a generated corpus.
#
#   scripts/eval/run.sh --subset   # CI: 6 pieces, a few minutes with the build
#   scripts/eval/run.sh --full     # the table in docs/eval.md (15 pieces)
#
# Installs what it needs (Debian: fluidsynth, fluid-soundfont-gm, aubio-tools;
# PyPI: mir_eval numpy scipy), builds the release binary, generates the
# corpus into scripts/eval/corpus/ (cached, deterministic), runs phase4
# analyze and aubio's aubioonset/aubiotrack on it, and writes
# scripts/eval/out/results.{md,json}. Set PHASE4_BIN to skip the build.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
mode="${1:---subset}"
case "$mode" in
  --subset|--full) ;;
  *) echo "usage: $0 --subset|--full" >&2; exit 2 ;;
esac

need_apt=()
command -v fluidsynth >/dev/null || need_apt+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need_apt+=(fluid-soundfont-gm)
command -v aubiotrack >/dev/null || need_apt+=(aubio-tools)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq || echo "eval: apt-get update reported errors; installing anyway"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
python3 -c "import mir_eval, numpy, scipy" 2>/dev/null \
  || python3 -m pip install -q mir_eval numpy scipy

bin="${PHASE4_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --release --quiet)
  bin="${CARGO_TARGET_DIR:-$root/target}/release/phase4"
fi

args=()
[ "$mode" = "--subset" ] && args+=(--subset)
exec python3 "$here/evaluate.py" "${args[@]}" --phase4 "$bin"
