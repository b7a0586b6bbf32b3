#!/usr/bin/env bash
# Fuzz the parsers that take outside input with libFuzzer: the configuration
# loader, the WAV reader, the WebSocket control decoder and the HTTP request
# handling that is ours. The targets live in fuzz/ (a cargo-fuzz layout, so
# `cargo +nightly fuzz run <target>` works too).
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]    default: 30 s for every target
#   scripts/fuzz.sh 600                       the 10-minute run per target
#   scripts/fuzz.sh 0                         build only
#   FUZZ_ASAN=1 scripts/fuzz.sh 600           with AddressSanitizer (slower)
#
# Each target starts from the seeds committed in fuzz/seeds/<target> plus
# what earlier runs found (fuzz/corpus/<target>, not committed), runs on one
# core for SECONDS, and prints one line: executions, coverage (edges), corpus
# size and whether it crashed. Targets run side by side, one per core
# (FUZZ_JOBS overrides). A crash leaves its input in
# fuzz/artifacts/<target>/ and makes the script fail.
#
# The targets are built the way cargo-fuzz builds them (libfuzzer-sys, LLVM
# SanitizerCoverage flags, nightly) without needing cargo-fuzz installed.
# Needs the nightly toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
case "$secs" in ''|*[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET ...]" >&2; exit 64 ;; esac
if ! cargo +nightly -V >/dev/null 2>&1; then
    echo "fuzz: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 1
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^phase4-fuzz$')
fi
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
[ "${FUZZ_ASAN:-0}" = 1 ] && flags+=" -Zsanitizer=address"
echo "fuzz: building ${targets[*]} (nightly, libFuzzer${FUZZ_ASAN:+, ASan})"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
RUSTFLAGS="$flags" cargo +nightly build --release --quiet --manifest-path fuzz/Cargo.toml \
    --target "$host" "${bins[@]}" 2>fuzz/build.log || { tail -30 fuzz/build.log; exit 1; }

[ "$secs" = 0 ] && { echo "fuzz: built (0 seconds asked: nothing run)"; exit 0; }

# One target per core at a time: libFuzzer runs on one core, so on two
# cores the smoke takes half as long.
jobs=${FUZZ_JOBS:-$(nproc)}
run_one() {  # target -> its result line in fuzz/<target>.result
    local t=$1 log="fuzz/$1.log" rc execs edges corpus result seeds=()
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
    "fuzz/target/$host/release/$t" "fuzz/corpus/$t" "${seeds[@]}" \
        -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    execs=$(grep -m1 -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
    edges=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo '?')
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if [ $rc -eq 0 ]; then result=ok; else result="CRASH (see $log, fuzz/artifacts/$t/)"; fi
    printf '%-12s %8s %10s %8s %8s  %s\n' "$t" "$secs" "$execs" "$edges" "$corpus" "$result" >"fuzz/$t.result"
}
set +e
running=0
for t in "${targets[@]}"; do
    rm -f "fuzz/$t.result"
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait
set -e
failed=0
printf '%-12s %8s %10s %8s %8s  %s\n' target seconds execs edges corpus result
for t in "${targets[@]}"; do
    if [ -f "fuzz/$t.result" ]; then cat "fuzz/$t.result"; else echo "$t: no result"; failed=1; fi
    grep -q ' ok$' "fuzz/$t.result" 2>/dev/null || failed=1
done
exit $failed
