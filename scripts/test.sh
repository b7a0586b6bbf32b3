#!/usr/bin/env bash
# Runs phase4's test suites, every one of them even when an earlier one
# fails, prints a table at the end (suite, result, passed, failed, seconds)
# and exits 1 if any suite failed. Installs what each suite needs (see the
# README, "What scripts/test.sh installs"), as root or as a user with sudo.
#
#   scripts/test.sh              every suite (what CI runs)
#   scripts/test.sh --core       the fast ones: Rust tests + ALSA/OSC end-to-end
#   scripts/test.sh SUITE...     only these (plus deps and build)
#   scripts/test.sh --list       the suites and their commands
#
# Each suite's whole output is also in target/test-logs/<suite>.log.
#
# Adding a suite: one `suite` line below: its name, `core` if it belongs to
# the fast set (keep that under ~3 minutes), `bg` if it may run in the
# background lane, `side` if it may run in the side track, `-` otherwise,
# and the command. The side track runs its suites one after another at
# normal priority beside the in-line ones, from the end of the build: it
# is for suites that mostly wait (the rig's mDNS, Link and OSCQuery peers
# use a tenth of a core over 2.5 minutes) and whose checks hold on a loaded
# machine; its rows come before the lane's in the table. The background lane runs
# its suites one after another at the lowest CPU priority (nice 19) next to
# the others, so it only uses what they leave idle: it is for suites whose
# checks do not depend on wall-clock timing (the VM runs on qemu's virtual
# clock, the fuzzers count crashes, not executions, the audit reads files,
# the arm64/armhf builds only have to compile: they go to target/cross, a
# target directory of their own, so they never hold the build lock the
# suites' own cargo runs need, and the appliance suite packages them; one
# rustc at a time (-j1), so the lane keeps to about one core, as the VM
# does, and leaves the other to the timed suites). The command
# runs with bash from the repository root, with the test venv (target/venv:
# pytest, python-osc, websockets, Playwright's driver, numpy, scipy,
# mir_eval) first on PATH and PHASE4_BIN set to the release build. It passes
# when it exits 0; the passed/failed counts come from its cargo test, pytest
# or `PASS:`/`FAIL:` lines (else the suite counts as one test). A suite that
# needs more installs it itself (scripts/lib/common.sh: p4_apt_install,
# which uses sudo when not root) or adds a line to
# scripts/lib/requirements-extra.txt.
set -uo pipefail
cd "$(dirname "$0")/.."

names=(); cores=(); cmds=()
suite() { names+=("$1"); cores+=("$2"); cmds+=("$3"); }

#     name         set   command
suite build        core "cargo build --release"
suite rust         core "cargo test --all-targets --quiet"
suite e2e          core "bash scripts/ci-e2e.sh"
suite cross        bg   "CARGO_TARGET_DIR=\"\${CARGO_TARGET_DIR:-\$PWD/target}/cross\" bash scripts/cross-build.sh --install-deps all -- -j1"
suite vm           bg   "bash scripts/vm-test.sh amd64 --suites capture,midi,devices"
suite jack         -    "bash scripts/jack-measure.sh --check && bash scripts/probe-stall.sh --check && bash scripts/capture-stall.sh"
suite live-events  -    "bash scripts/ci-live-events.sh"
suite ws           -    "bash scripts/ci-ws.sh"
suite monitor      -    "bash scripts/ci-monitor.sh"
suite abuse        -    "bash scripts/abuse.sh"
suite rig          side "bash scripts/ci-rig.sh"
suite fuzz         bg   "bash scripts/fuzz.sh 30"
suite audit        bg   "bash scripts/audit.sh"
suite compat       side "python3 -m pytest -q -p no:cacheprovider tests/compat"
suite eval         -    "bash scripts/eval/run.sh --subset && python3 scripts/eval/gate.py && bash scripts/eval/run.sh --subset --rate 16000 --out scripts/eval/out/rate16000 && python3 scripts/eval/gate.py scripts/eval/out/rate16000/results.json"
suite appliance    -    "bash scripts/ci-appliance.sh"

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

mode=all; picked=()
for a in "$@"; do
    case "$a" in
        --core) mode=core ;;
        --list)
            for i in "${!names[@]}"; do printf '%-12s %-5s %s\n' "${names[$i]}" "${cores[$i]}" "${cmds[$i]}"; done
            exit 0 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "unknown option: $a (try --help)" >&2; exit 2 ;;
        *)
            known=0
            for n in "${names[@]}"; do [ "$n" = "$a" ] && known=1; done
            [ "$known" = 1 ] || { echo "unknown suite: $a (scripts/test.sh --list)" >&2; exit 2; }
            picked+=("$a") ;;
    esac
done

selected() {  # index -> is the suite part of this run?
    local i=$1 p
    [ "${names[$i]}" = build ] && return 0
    if [ ${#picked[@]} -gt 0 ]; then
        for p in "${picked[@]}"; do [ "$p" = "${names[$i]}" ] && return 0; done
        return 1
    fi
    [ "$mode" = all ] || [ "${cores[$i]}" = core ]
}

# deps --core is enough when every selected suite is a core one.
deps_arg=--core
for i in "${!names[@]}"; do
    selected "$i" && [ "${cores[$i]}" != core ] && deps_arg=""
done

logs=${CARGO_TARGET_DIR:-target}/test-logs
mkdir -p "$logs"
export PHASE4_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/phase4"

# counts LOG -> "passed failed" read from cargo test, pytest and PASS:/FAIL:
# lines (roll-up lines such as "PASS: qemu-smoke: all checks passed" are
# not checks of their own); "" when the log has none of them.
counts() {
    awk '
        /^test result: / {
            for (i = 1; i <= NF; i++) {
                if ($(i + 1) ~ /^passed/) p += $i
                if ($(i + 1) ~ /^failed/) f += $i
            }
            seen = 1; next
        }
        /^(=+ )?[0-9]+ (passed|failed|errors?|skipped|deselected|xfailed|xpassed)([ ,].*)? in [0-9.]+s/ {
            for (i = 1; i <= NF; i++) {
                if ($(i + 1) ~ /^passed/) p += $i
                if ($(i + 1) ~ /^(failed|errors?)/) f += $i
            }
            seen = 1; next
        }
        /^(PASS|FAIL): [^ ]+: (all [0-9]* *checks? passed|[0-9]+ (of [0-9]+ )?checks?.* failed)/ { next }
        /^PASS: / { p++; seen = 1 }
        /^FAIL: / { f++; seen = 1 }
        END { if (seen) print p + 0, f + 0 }
    ' "$1"
}

rows=(); failed_suites=(); current=""
# result NAME RC SECONDS -> appends the table row (and the failure) for a
# finished suite whose log is in $logs/NAME.log.
result() {
    local name=$1 rc=$2 secs=$3 pf p f res
    pf=$(counts "$logs/$name.log")
    if [ -n "$pf" ]; then read -r p f <<<"$pf"; else p=0; f=0; fi
    if [ "$rc" = 0 ]; then
        res=ok
        [ -n "$pf" ] || p=1
    else
        res=FAIL
        [ "$f" -gt 0 ] || f=1
        failed_suites+=("$name")
    fi
    rows+=("$(printf '%-12s %-6s %7s %7s %8s' "$name" "$res" "$p" "$f" "$secs")")
}

run_suite() {  # name command
    local name=$1 cmd=$2 start rc
    printf '\n==== %s: %s ====\n' "$name" "$cmd"
    current=$name
    start=$SECONDS
    bash -c "$cmd" 2>&1 | tee "$logs/$name.log"
    rc=${PIPESTATUS[0]}
    result "$name" "$rc" "$((SECONDS - start))"
}

# A track beside the in-line suites: its suites in order at the given
# nice level, output only to their logs; each finished one appends "name rc
# seconds" to the track's done file. Sets track_pid.
track_pid=""
start_track() {  # label nice done-file index...
    local label=$1 nice=$2 done=$3 i
    shift 3
    : >"$done"
    for i in "$@"; do printf '\n==== %s (%s, log in %s/%s.log): %s ====\n' \
        "${names[$i]}" "$label" "$logs" "${names[$i]}" "${cmds[$i]}"; done
    # A track cannot ask for a password: ask once now (sudo keeps it for a
    # while) and let sudo fail rather than wait in the track.
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then sudo -v || true; fi
    export P4_SUDO_NONINTERACTIVE=1
    set -m  # a process group of its own: Ctrl-C can stop all of it
    (
        for i in "$@"; do
            start=$SECONDS
            nice -n "$nice" bash -c "${cmds[$i]}" >"$logs/${names[$i]}.log" 2>&1 </dev/null
            echo "${names[$i]} $? $((SECONDS - start))" >>"$done"
        done
    ) &
    track_pid=$!
    set +m
    unset P4_SUDO_NONINTERACTIVE
}
finish_track() {  # label pid done-file
    local label=$1 pid=$2 done=$3 name rc secs
    [ -n "$pid" ] || return 0
    printf '\n==== waiting for the %s ====\n' "$label"
    current=$label
    wait "$pid"
    while read -r name rc secs; do
        printf '\n==== %s (%s) exit %s after %s s ====\n' "$name" "$label" "$rc" "$secs"
        if [ "$rc" = 0 ]; then tail -n 15 "$logs/$name.log"; else cat "$logs/$name.log"; fi
        result "$name" "$rc" "$secs"
    done <"$done"
}
# The background lane (nice 19: only what the others leave idle) and the
# side track (normal priority).
bg_done=$logs/background.done bg_pid=""
side_done=$logs/side.done side_pid=""

summary() {
    printf '\n==== summary (logs in %s/) ====\n' "$logs"
    printf '%-12s %-6s %7s %7s %8s\n' suite result passed failed seconds
    printf '%s\n' "${rows[@]}"
    printf 'total %d s\n' "$SECONDS"
}
trap 'for pid in $side_pid $bg_pid; do kill -- -"$pid" 2>/dev/null; done
      rows+=("$(printf "%-12s %s" "$current" interrupted)"); summary; exit 130' INT

run_suite deps "bash scripts/deps.sh $deps_arg"
# The suites run from the venv deps.sh made (when it could make one).
. scripts/lib/common.sh
p4_venv_activate

# build first (every suite uses its binary), then the background lane and
# the side track start next to the other suites, which run in order.
for i in "${!names[@]}"; do
    selected "$i" && [ "${cores[$i]}" != bg ] && [ "${cores[$i]}" != side ] || continue
    run_suite "${names[$i]}" "${cmds[$i]}"
    if [ "${names[$i]}" = build ]; then
        background=(); side=()
        for j in "${!names[@]}"; do
            selected "$j" || continue
            [ "${cores[$j]}" = bg ] && background+=("$j")
            [ "${cores[$j]}" = side ] && side+=("$j")
        done
        if [ ${#background[@]} -gt 0 ]; then
            start_track "background lane" 19 "$bg_done" "${background[@]}"
            bg_pid=$track_pid
        fi
        if [ ${#side[@]} -gt 0 ]; then
            start_track "side track" 0 "$side_done" "${side[@]}"
            side_pid=$track_pid
        fi
    fi
done
finish_track "side track" "$side_pid" "$side_done"; side_pid=""
finish_track "background lane" "$bg_pid" "$bg_done"; bg_pid=""

summary
if [ ${#failed_suites[@]} -gt 0 ]; then
    echo "FAILED: ${failed_suites[*]}"
    # What failed, last: CI reports often keep only the end of the output.
    for name in "${failed_suites[@]}"; do
        printf '\n==== %s: its failing lines (whole log: %s/%s.log) ====\n' "$name" "$logs" "$name"
        grep -E 'FAIL|FAILED|Error|error:|panicked|Traceback|assert' "$logs/$name.log" | tail -n 25
        printf -- '---- last lines ----\n'
        tail -n 15 "$logs/$name.log"
    done
    exit 1
fi
echo "all suites passed"
