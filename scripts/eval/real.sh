#!/usr/bin/env bash
# Beat and tempo evaluation of phase4 (and aubio, and optionally madmom's
# online tracker) on a corpus of real recordings with human annotations.
#
#   scripts/eval/real.sh --corpus DIR [--madmom PATH] [--config TOML] [--no-aubio]
#                        [--rate HZ]
#
# DIR is a corpus built by scripts/eval/realcorpus.py (the audio and the
# annotations are not ours to commit; see docs/eval.md, "Real recordings").
# Installs what it needs (Debian: aubio-tools, sox; PyPI into the venv target/venv: mir_eval numpy
# scipy), builds the release binary (PHASE4_BIN=path skips that) and writes
# scripts/eval/out/real.{md,json}. --rate HZ converts every excerpt to that
# sample rate first (tracking must be the same at every rate).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
args=()
corpus=""
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus) corpus="${2:-}"; shift 2 ;;
    --madmom|--config|--out|--rate) args+=("$1" "${2:-}"); shift 2 ;;
    --no-aubio|--no-streams) args+=("$1"); shift ;;
    --only) shift; args+=(--only); while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do args+=("$1"); shift; done ;;
    *) echo "usage: $0 --corpus DIR [--madmom PATH] [--config TOML] [--no-aubio] [--no-streams] [--rate HZ] [--only NAME...]" >&2; exit 2 ;;
  esac
done
if [ -z "$corpus" ] || [ ! -f "$corpus/manifest.json" ]; then
  echo "real.sh: --corpus DIR must be a corpus built by scripts/eval/realcorpus.py" >&2
  exit 2
fi

. "$here/common.sh"
eval_deps aubio-tools sox
bin="$(eval_bin)"
exec python3 "$here/realeval.py" --corpus "$corpus" --phase4 "$bin" "${args[@]}"
