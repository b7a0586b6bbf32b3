#!/usr/bin/env bash
# The ALSA/OSC end-to-end tests (tests/e2e), as scripts/test.sh runs them:
# the whole directory as the calling user; then, for a user who is not root,
# the tests that need root (a private network namespace for the OSC
# destinations, a mount namespace for the stalled journal) once more as root
# through sudo, so a sudo user runs every test that root does instead of
# seeing them skipped. Without sudo they stay skipped and this says so.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh

ROOT_ONLY=(tests/e2e/test_osc_destinations.py tests/e2e/test_log_stall.py)

# The fault-injection build (tests/e2e/conftest.py: fault_bin) compiles
# phase4 once more, ~100 s on two cores: started now at the lowest
# priority, it runs while the first tests mostly wait on real time, and
# the fixture's own `cargo build` finds it done (or waits on cargo's lock).
fault_log=${CARGO_TARGET_DIR:-target}/e2e-fault-build.log
mkdir -p "$(dirname "$fault_log")"
nice -n 19 cargo build --release --quiet --features fault-injection \
    --bin phase4-fault-injection > "$fault_log" 2>&1 &
fault_pid=$!

python3 -m pytest -q -p no:cacheprovider tests/e2e
rc=$?
wait "$fault_pid" || { echo "e2e: the fault-injection build failed:"; cat "$fault_log"; }
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && command -v unshare >/dev/null; then
        echo "== e2e: the tests that need root, through sudo: ${ROOT_ONLY[*]} =="
        # No bytecode: root must leave no files the user cannot replace.
        p4_as_root env "PATH=$PATH" PYTHONDONTWRITEBYTECODE=1 \
            ${PHASE4_BIN:+"PHASE4_BIN=$PHASE4_BIN"} \
            python3 -m pytest -q -p no:cacheprovider "${ROOT_ONLY[@]}" || rc=1
    else
        echo "e2e: ${ROOT_ONLY[*]} were skipped: they need root (sudo) and util-linux unshare"
    fi
fi
exit "$rc"
