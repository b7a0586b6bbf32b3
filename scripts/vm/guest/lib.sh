# Helpers for the guest suites (busybox sh). Sourced by init before a suite.
#
#   result NAME PASS|FAIL|INFO DETAILS   one finding (graded by the host)
#   check NAME "DETAILS" CONDITION...    PASS if the command succeeds, else FAIL
#   p4_start NAME CONFIG [ARGS...]       oscdump on udp/9000 + phase4; waits
#                                        for the device to open
#   p4_stop NAME                         SIGTERM; sets STOP_MS (kill to exit)
#   wait_log FILE PATTERN SECONDS        wait until FILE has a line with PATTERN
#   lmh_stats NAME [SKIP_S]              "n rate p50_ms p99_ms max_ms pairs_pct"
#                                        of /audio/lmh arrivals (oscdump's time)
#   health NAME KEY                      KEY's value in the last health line
#   capture_tid PID                      the p4-capture thread's id

result() {
    echo "P4R $1 $2 $3" | tee -a "$P4_RESULTS"
}

check() {
    _name=$1 _details=$2
    shift 2
    if "$@"; then result "$_name" PASS "$_details"; else result "$_name" FAIL "$_details"; fi
}

now() { p4util now; }

wait_log() {
    _end=$(awk -v s="$3" -v n="$(now)" 'BEGIN { printf "%.3f", n + s }')
    while ! grep -q -- "$2" "$1" 2>/dev/null; do
        awk -v e="$_end" -v n="$(now)" 'BEGIN { exit !(n > e) }' && return 1
        usleep 10000
    done
}

p4_start() {
    _n=$1 _cfg=$2
    shift 2
    oscdump -L 9000 >"/tmp/$_n.osc" 2>/dev/null &
    OD_PID=$!
    usleep 100000
    phase4 --config "$_cfg" "$@" 2>"/tmp/$_n.log" &
    P4_PID=$!
    wait_log "/tmp/$_n.log" " open: " 10 || echo "P4R $_n INFO phase4 did not open: $(tail -3 "/tmp/$_n.log" | tr '\n' '|')"
}

p4_stop() {
    _t0=$(now)
    kill -TERM "$P4_PID" 2>/dev/null
    wait "$P4_PID"
    P4_RC=$?
    STOP_MS=$(awk -v a="$_t0" -v b="$(now)" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
    usleep 100000
    kill "$OD_PID" 2>/dev/null
    wait "$OD_PID" 2>/dev/null
    [ "$STOP_MS" -gt "${STOP_MAX_MS:-0}" ] && STOP_MAX_MS=$STOP_MS
    return 0
}

capture_tid() {
    for t in /proc/$1/task/*; do
        [ "$(cat "$t/comm" 2>/dev/null)" = p4-capture ] && { basename "$t"; return 0; }
    done
    return 1
}

health() {
    grep 'health:' "/tmp/$1.log" | tail -1 | tr ' ' '\n' | sed -n "s/^$2=\([0-9]*\).*/\1/p"
}

# Arrival times of /audio/lmh as oscdump printed them (NTP seconds.fraction
# in hex), from SKIP_S after the first one; gaps sorted for percentiles.
lmh_stats() {
    : >/tmp/gaps
    awk -v skip="${2:-0.5}" '
        function hex(s,   i, v) { v = 0; s = tolower(s)
            for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
            return v }
        $2 == "/audio/lmh" { split($1, a, "."); t = hex(a[1]) + hex(a[2]) / 4294967296
            if (!n0++) t0 = t
            if (t < t0 + skip) next
            if (n++) print (t - last) * 1000 > "/tmp/gaps"; else first = t
            last = t }
        END { printf "%d %.4f\n", n, (n > 1) ? (n - 1) / (last - first) : 0 > "/tmp/rate" }' "/tmp/$1.osc"
    sort -n /tmp/gaps >/tmp/gaps.sorted
    awk -v rate="$(cat /tmp/rate)" '
        { g[NR] = $1; if ($1 < 1) pairs++ }
        END { split(rate, r, " ")
            if (NR < 2) { print r[1], r[2], 0, 0, 0, 0; exit }
            i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
            i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
            printf "%d %.3f %.2f %.2f %.2f %.1f\n", r[1], r[2], g[i50], g[i99], g[NR], 100 * pairs / NR }' /tmp/gaps.sorted
    rm -f /tmp/gaps /tmp/gaps.sorted /tmp/rate
}

# A phase4 config: capture from DEVICE with the given [audio] lines, OSC to
# oscdump, a health line every second, no WebSocket, no state.
p4_config() {
    _f=$1 _dev=$2
    shift 2
    {
        echo "[audio]"
        echo "device = \"$_dev\""
        for kv in "$@"; do echo "$kv"; done
        echo "[autoscale]"
        echo "strength = 0.0"
        echo "[osc]"
        echo 'destinations = [{ host = "127.0.0.1", port = 9000 }]'
        # What the checks read; the rest would only load oscdump.
        echo 'addresses = ["lmh", "meta"]'
        echo "[ws]"
        echo "enabled = false"
        echo "[state]"
        echo 'dir = ""'
        echo "[health]"
        echo "interval-s = 1.0"
    } >"$_f"
}
