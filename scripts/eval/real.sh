#!/usr/bin/env bash
# Beat and tempo evaluation of phase4 (and aubio, and optionally madmom's
# online tracker) on a corpus of real recordings with human annotations.
#
#   scripts/eval/real.sh --corpus DIR [--madmom PATH] [--config TOML] [--no-aubio]
#
# DIR is a corpus built by scripts/eval/realcorpus.py (the audio and the
# annotations are not ours to commit; see docs/eval.md, "Real recordings").
# Installs what it needs (Debian: aubio-tools, sox; PyPI: mir_eval numpy
# scipy), builds the release binary (PHASE4_BIN=path skips that) and writes
# scripts/eval/out/real.{md,json}.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
args=()
corpus=""
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus) corpus="${2:-}"; shift 2 ;;
    --madmom|--config|--out) args+=("$1" "${2:-}"); shift 2 ;;
    --no-aubio|--no-streams) args+=("$1"); shift ;;
    --only) shift; args+=(--only); while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do args+=("$1"); shift; done ;;
    *) echo "usage: $0 --corpus DIR [--madmom PATH] [--config TOML] [--no-aubio] [--no-streams] [--only NAME...]" >&2; exit 2 ;;
  esac
done
if [ -z "$corpus" ] || [ ! -f "$corpus/manifest.json" ]; then
  echo "real.sh: --corpus DIR must be a corpus built by scripts/eval/realcorpus.py" >&2
  exit 2
fi

need_apt=()
command -v aubiotrack >/dev/null || need_apt+=(aubio-tools)
command -v sox >/dev/null || need_apt+=(sox)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq || echo "real.sh: apt-get update reported errors; installing anyway"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
python3 -c "import mir_eval, numpy, scipy" 2>/dev/null \
  || python3 -m pip install -q mir_eval numpy scipy

bin="${PHASE4_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --release --quiet)
  bin="${CARGO_TARGET_DIR:-$root/target}/release/phase4"
fi
exec python3 "$here/realeval.py" --corpus "$corpus" --phase4 "$bin" "${args[@]}"
