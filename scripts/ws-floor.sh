#!/usr/bin/env bash
# The kernel's floor under issue 10's "20 WS clients add <= 0.5 % of a core":
# a C program (scripts/lib/ws-floor.c) that only writes, 60 times a second,
# one buffer to each of N loopback TCP connections read by another process,
# the writes phase4's p4-ws makes once a turn is framed. Alternates runs with
# N and with 0 connections and prints each run and the median of what the N
# connections add (CPU of the sending thread, % of one core).
#   scripts/ws-floor.sh [--clients N] [--bytes B] [--seconds S] [--runs R]
# Defaults: 20 clients, 1433 bytes (what one of phase4's clients reads per
# turn at 60 Hz with the FFT on: 86 kB/s), 20 s, 3 runs. 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=20 BYTES=1433 SECONDS_=20 RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) CLIENTS=$2; shift ;;
    --bytes) BYTES=$2; shift ;;
    --seconds) SECONDS_=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "ws-floor: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$RUNS" in ''|*[!0-9]*) echo "ws-floor: --runs must be a whole number, got '$RUNS'" >&2; exit 2 ;; esac
[ "$RUNS" -ge 1 ] && [ "$RUNS" -le 20 ] || { echo "ws-floor: --runs must be in 1..20" >&2; exit 2; }
command -v cc >/dev/null || { echo "ws-floor: needs a C compiler (apt-get install gcc)" >&2; exit 1; }
out="${CARGO_TARGET_DIR:-target}/ws-floor"
mkdir -p "$(dirname "$out")"
cc -O2 -Wall -Wextra -o "$out" scripts/lib/ws-floor.c
cpu() { "$out" "$1" "$BYTES" "$SECONDS_" | sed -n 's/.*cpu_pct=//p'; }
added=()
for r in $(seq 1 "$RUNS"); do
  with=$(cpu "$CLIENTS"); without=$(cpu 0)
  add=$(awk -v a="$with" -v b="$without" 'BEGIN { printf "%.2f", a - b }')
  added+=("$add")
  echo "run $r/$RUNS: $CLIENTS connections $with %, none $without %: +$add % of a core"
done
median=$(printf '%s\n' "${added[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
echo "WS_FLOOR_ADDED_PCT=$median ($CLIENTS connections x 60 writes/s of $BYTES bytes; median of $RUNS; load average $(cut -d' ' -f1 /proc/loadavg))"
