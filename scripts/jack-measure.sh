#!/usr/bin/env bash
# phase4 through ALSA's `jack` plugin on JACK's dummy backend (a software
# period clock: one 256-frame period every 5.333 ms), measured from outside:
# /audio/lmh decoded by python-osc and timed by the kernel's receive time
# stamps (SO_TIMESTAMPNS: when phase4 sent it, not when this script got to
# read it), xruns from phase4's own health line, wake-ups of the capture
# thread from /proc. A "pair" is a gap under 1 ms (two blocks back to back).
#
# Usage:
#   scripts/jack-measure.sh --check            CI: the current build opens the
#                                              jack PCM as clocked, at
#                                              SCHED_FIFO, at the period rate
#   scripts/jack-measure.sh [-n RUNS] [-s SECONDS] BIN [BIN...]
#                                              side by side (runs interleaved):
#                                              xruns, paired blocks, gap p50/p99
# Installs jackd2, jack-tools and libasound2-plugins when missing. Everything
# stays on 127.0.0.1; jackd is started and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
check=0 runs=3 secs=25 bins=()
while [ $# -gt 0 ]; do
    case "$1" in
        --check) check=1 ;;
        -n) runs=$2; shift ;;
        -s) secs=$2; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) bins+=("$1") ;;
    esac
    shift
done
if [ "$check" = 1 ]; then
    cargo build --release --quiet
    bins=("${CARGO_TARGET_DIR:-target}/release/phase4") runs=1 secs=8
fi
[ ${#bins[@]} -gt 0 ] || { echo "jack-measure: which binary? (try --help)" >&2; exit 2; }

. scripts/lib/common.sh
# python-osc: from the test venv (made if need be), never the system Python.
python3 -c "import pythonosc" 2>/dev/null || p4_venv scripts/lib/requirements-core.txt
. scripts/lib/jack-clock.sh
work=$(mktemp -d)
trap 'jack_clock_stop; rm -rf "$work"' EXIT
jack_clock_start "$work"

# One run: BIN SECONDS -> "xruns pairs_pct p50_ms p99_ms rate wakes clock fifo"
measure() {
    python3 - "$1" "$2" "$work" <<'PY'
import os, re, socket, subprocess, sys, time
from pythonosc.osc_packet import OscPacket
binary, secs, work = sys.argv[1], float(sys.argv[2]), sys.argv[3]
import struct
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
# Kernel receive time stamps (SO_TIMESTAMPNS): the time each datagram reached
# the socket, i.e. when phase4 sent it, however late this script reads it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
rx.bind(("127.0.0.1", 0))
rx.settimeout(0.5)
cfg = os.path.join(work, "p4.toml")
open(cfg, "w").write(
    '[audio]\ndevice = "jackin"\nchannels = 1\nblock-frames = 256\nsample-rate-hz = 48000\n'
    f'[osc]\ndestinations = [{{ host = "127.0.0.1", port = {rx.getsockname()[1]} }}]\n'
    '[ws]\nenabled = false\n[state]\ndir = ""\n[health]\ninterval-s = 3600.0\n')
p = subprocess.Popen([binary, "--config", cfg], stderr=subprocess.PIPE, text=True)
arrivals, t_end, wakes, blocks0 = [], time.monotonic() + secs, None, None
def vol(pid):
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            if open(f"/proc/{pid}/task/{t}/comm").read().strip() == "p4-capture":
                s = open(f"/proc/{pid}/task/{t}/status").read()
                return int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", s, re.M).group(1))
        except OSError:
            pass
    return None
while time.monotonic() < t_end:
    try:
        data, anc, _, _ = rx.recvmsg(65536, socket.CMSG_SPACE(16))
    except socket.timeout:
        continue
    now = time.time()
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
            sec, nsec = struct.unpack("qq", raw[:16])
            now = sec + nsec * 1e-9
    for m in OscPacket(data).messages:
        if m.message.address == "/audio/lmh":
            arrivals.append(now)
            if len(arrivals) == 200:
                wakes, blocks0 = vol(p.pid), len(arrivals)
v_end, n_end = vol(p.pid), len(arrivals)
p.terminate()
err = p.communicate(timeout=10)[1]
xr = re.findall(r"xruns=(\d+)", err)
opened = re.search(r"open: .*clock (\w+).*SCHED_FIFO (\w+)", err)
a = arrivals[100:]  # skip the first half second
gaps = sorted((b - x) * 1000 for x, b in zip(a, a[1:]))
pct = lambda q: gaps[min(len(gaps) - 1, int(q * len(gaps)))] if gaps else float("nan")
pairs = 100 * sum(g < 1.0 for g in gaps) / max(1, len(gaps))
rate = (len(a) - 1) / (a[-1] - a[0]) if len(a) > 1 else 0
w = (v_end - wakes) / max(1, n_end - blocks0) if wakes is not None and v_end is not None else float("nan")
print(xr[-1] if xr else "?", f"{pairs:.1f}", f"{pct(0.5):.2f}", f"{pct(0.99):.2f}", f"{rate:.2f}", f"{w:.2f}",
      opened.group(1) if opened else "?", opened.group(2) if opened else "?")
PY
}

if [ "$check" = 1 ]; then
    read -r xr pairs p50 p99 rate wakes clock fifo < <(measure "${bins[0]}" "$secs")
    echo "jack plugin, $secs s: clock $clock, SCHED_FIFO $fifo, $rate blocks/s, xruns $xr, pairs $pairs %, gap p50 $p50 ms p99 $p99 ms, $wakes wake-ups/block"
    ok=1
    [ "$clock" = yes ] || { echo "FAIL: the jack PCM was not taken for a clocked device"; ok=0; }
    [ "$fifo" = granted ] || { echo "FAIL: no SCHED_FIFO on the jack PCM"; ok=0; }
    awk -v r="$rate" 'BEGIN { exit !(r > 187.5 * 0.99 && r < 187.5 * 1.01) }' || { echo "FAIL: block rate $rate, want 187.5 within 1 %"; ok=0; }
    [ "$ok" = 1 ] && echo "PASS: jack plugin clocked, real-time, at the period rate"
    [ "$ok" = 1 ]
    exit
fi

echo "JACK dummy backend 48 kHz / 256, ALSA jack plugin, $runs x $secs s per binary (interleaved), host load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$runs"); do
    for b in "${bins[@]}"; do
        echo "$b $(measure "$b" "$secs")" | tee -a "$work/results"
    done
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    b, *v = line.split()
    rows.setdefault(b, []).append(v)
print(f"\n{'binary':<40} {'xruns':>8} {'pairs %':>8} {'p50 ms':>7} {'p99 ms':>7} {'blocks/s':>9} {'wake/blk':>8}  clock / FIFO")
for b, vs in rows.items():
    med = lambda i: statistics.median(float(v[i]) for v in vs if v[i] != "?")
    xr = "/".join(v[0] for v in vs)
    print(f"{b[-40:]:<40} {xr:>8} {med(1):>8.1f} {med(2):>7.2f} {med(3):>7.2f} {med(4):>9.2f} {med(5):>8.2f}  {vs[0][6]} / {vs[0][7]}")
print("(medians over the runs; xruns per run)")
PY
