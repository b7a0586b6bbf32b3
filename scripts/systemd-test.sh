#!/usr/bin/env bash
# phase4 under a real systemd: boot Debian bookworm in systemd-nspawn, install
# the amd64 package, and check what the unit promises.
#
# Usage (as root): scripts/systemd-test.sh [--deb PATH] [--keep]
#   --deb PATH  package to test. It must be built with the fault-injection
#               feature (scripts/build-deb.sh amd64 --test); default: build it.
#   --keep      leave the work directory (boot log, journal) for inspection.
#
# Checks: install (user, group audio, unit enabled, conffile), start → READY
# and active, a health line in the journal, OSC datagrams decoded by liblo's
# oscdump, SCHED_FIFO and mlockall allowed by the sandbox, a reinstall that
# keeps conffile edits and restarts the service, a hung thread → watchdog
# kill and restart within WatchdogSec + RestartSec (+ phase4's 2 s heartbeat
# staleness), systemctl reload → config re-read in the same process (a bad
# edit refused), systemctl stop → clean exit within 1 s, a bad config → exit 78
# and no restart loop, dpkg --purge leaves nothing behind; then a phase4
# account made by hand without its group (install makes the group, purge
# keeps the account), a deleted conffile (the unit still starts), and purge
# with /var/lib/phase4 a mount point (emptied, purge finishes).
# Each prints PASS/FAIL; the exit status is the number of failures (max 100).
#
# There is no sound card, so a drop-in points the service at a WAV file played
# at real time. The root filesystem is debootstrapped once into
# $PHASE4_CI_CACHE (default /var/cache/phase4-ci) and booted with
# --volatile=overlay, so every run starts from the same clean system.
# Needs: systemd-container debootstrap liblo-tools python3 (ci-appliance.sh
# installs them).
set -euo pipefail
. "$(dirname "$0")/lib/appliance.sh"

deb=""
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --deb) deb=$2; shift ;;
        --keep) keep=1 ;;
        *) p4_die "unknown argument: $1" ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || p4_die "must run as root (systemd-nspawn, nsenter)"
for t in systemd-nspawn debootstrap nsenter oscdump python3; do
    command -v "$t" >/dev/null || p4_die "$t missing (apt-get install systemd-container debootstrap liblo-tools python3)"
done

cache=${PHASE4_CI_CACHE:-/var/cache/phase4-ci}
# Bump the suffix when the package list changes so caches are rebuilt.
rootfs=$cache/rootfs-bookworm-v1
work=$(mktemp -d /tmp/phase4-systemd-test.XXXXXX)
share=$work/share
mkdir -p "$share"
failures=0
nspawn_pid=""
leader=""

pass() { p4_pass "systemd: $*"; }
fail() { p4_fail "systemd: $*"; failures=$((failures + 1)); }
# Run a command inside the container (all its namespaces, its filesystem).
c() { nsenter -t "$leader" -a "$@"; }
prop() { c systemctl show -P "$1" phase4.service; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
le() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$1" "$2"; }
# systemd time span ("5s", "1min 30s", "500ms") -> seconds
secs() {
    python3 - "$1" <<'EOF'
import re, sys
units = {"min": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
print(sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)\s*(min|ms|us|s)", sys.argv[1])))
EOF
}

cleanup() {
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -TERM "$nspawn_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$nspawn_pid" 2>/dev/null || true
    fi
    if [ "$keep" = 1 ]; then p4_say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- the package -----------------------------------------------------------
if [ -z "$deb" ]; then
    # A test build: without a builder identity, label it as ci-appliance.sh does.
    if ! p4_deb_maintainer >/dev/null; then
        export DEBFULLNAME="phase4 CI test build (not for release)" DEBEMAIL="ci-test-build@phase4.invalid"
    fi
    deb=$("$P4_ROOT/scripts/build-deb.sh" amd64 --test | tail -1)
fi
[ -f "$deb" ] || p4_die "no package at $deb"
cp "$deb" "$share/phase4.deb"
python3 "$P4_ROOT/scripts/lib/make-test-wav.py" "$share/test.wav" --seconds 12

# --- the root filesystem (cached) -----------------------------------------
if [ ! -x "$rootfs/lib/systemd/systemd" ]; then
    p4_say "debootstrap bookworm into $rootfs (once, ~1-3 min)"
    mkdir -p "$cache"
    rm -rf "$rootfs.tmp"
    debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,libasound2,adduser,procps \
        bookworm "$rootfs.tmp" "${PHASE4_DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
        >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; p4_die "debootstrap failed"; }
    mv "$rootfs.tmp" "$rootfs"
fi

# --- boot ------------------------------------------------------------------
p4_say "booting the container"
# The container's systemd cannot raise hard rlimits above what it inherits
# (its init has no CAP_SYS_RESOURCE over the host), and a shell's hard
# RTPRIO is 0: give it the headroom a real boot has, so the unit's
# LimitRTPRIO/LimitMEMLOCK apply as they would on a Pi. nspawn drops
# CAP_IPC_LOCK by default; keep it for the fallback described further down.
setsid systemd-nspawn -D "$rootfs" --volatile=overlay --boot --register=no \
    --keep-unit --private-network --console=read-only \
    --rlimit=RTPRIO=99 --rlimit=MEMLOCK=infinity --capability=CAP_IPC_LOCK \
    --bind="$share:/share" >"$work/boot.log" 2>&1 </dev/null &
nspawn_pid=$!
for _ in $(seq 100); do
    leader=$(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null | tr -d " " | head -1 || true)
    [ -n "$leader" ] && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = systemd ] && break
    leader=""
    sleep 0.1
done
[ -n "$leader" ] || { tail -20 "$work/boot.log"; p4_die "container did not start"; }
# Until the container's systemd has its private socket, systemctl fails at
# once; retry until it answers (running/degraded) or a minute passes.
state=""
for _ in $(seq 120); do
    state=$(timeout 60 nsenter -t "$leader" -a systemctl is-system-running --wait 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
    sleep 0.5
done
case "$state" in
    running|degraded) pass "container booted ($state)" ;;
    *) fail "container boot: state '$state'"; tail -20 "$work/boot.log"; exit 1 ;;
esac

# Everything outside these paths that the package adds must be gone after purge.
snapshot() {
    c find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run \
        -o -path /tmp -o -path /var/tmp -o -path /var/log -o -path /var/cache \
        -o -path /var/lib/dpkg -o -path /var/lib/apt -o -path /share \
        -o -path /var/lib/systemd/timers -o -path /var/lib/systemd/random-seed \) -prune -o -print | sort
}
snapshot >"$work/files-before"

# --- install ---------------------------------------------------------------
if c dpkg -i /share/phase4.deb >"$work/dpkg-install.log" 2>&1; then
    pass "dpkg -i"
else
    fail "dpkg -i"; cat "$work/dpkg-install.log"; exit 1
fi
uid=$(c id -u phase4 2>/dev/null || echo none)
groups=$(c id -nG phase4 2>/dev/null || true)
if [ "$uid" != none ] && [ "$uid" -lt 1000 ] && [[ " $groups " == *" audio "* ]]; then
    pass "system user phase4 (uid $uid, groups: $groups)"
else
    fail "system user phase4: uid=$uid groups='$groups'"
fi
[ "$(c systemctl is-enabled phase4.service 2>&1)" = enabled ] &&
    pass "unit enabled at install" || fail "unit not enabled: $(c systemctl is-enabled phase4.service 2>&1)"
[ "$(c systemctl is-active phase4.service 2>&1)" = inactive ] &&
    pass "not started by dpkg (it waits for a device)" || fail "unit state after install: $(c systemctl is-active phase4.service 2>&1)"
if out=$(c dpkg --verify phase4 2>&1) && [ -z "$out" ]; then
    pass "dpkg --verify phase4: every file matches the package's md5sums"
else
    fail "dpkg --verify phase4: $out"
fi
c dpkg-query -W -f='${Conffiles}\n' phase4 | grep -q ' /etc/phase4/phase4.toml ' &&
    pass "/etc/phase4/phase4.toml is a conffile" || fail "/etc/phase4/phase4.toml is not a conffile"
if c runuser -u phase4 -- phase4 --check-config /etc/phase4/phase4.toml >"$work/check.log" 2>&1; then
    pass "shipped config passes --check-config"
else
    fail "shipped config: $(cat "$work/check.log")"
fi

# --- configure it for a machine without a sound card -----------------------
c mkdir -p /srv/phase4-test /etc/systemd/system/phase4.service.d
c cp /share/test.wav /srv/phase4-test/test.wav
c sh -c 'cat > /srv/phase4-test/test.toml' <<'EOF'
# systemd-test: the WAV input at real time instead of a sound card, and a
# health line every 2 s instead of every 60 s.
[audio]
input = "/srv/phase4-test/test.wav"
loop-input = true

[health]
interval-s = 2
EOF
# The unit gets real-time through LimitRTPRIO/LimitMEMLOCK, which systemd can
# only grant if its own hard limits allow (true on a Pi: PID 1 has
# CAP_SYS_RESOURCE). Some hosts (CI VMs whose root lacks CAP_SYS_RESOURCE in
# its bounding set, hard RLIMIT_RTPRIO 0) cannot pass that on to a container;
# there the test drop-in grants CAP_SYS_NICE/CAP_IPC_LOCK instead, which
# still proves the sandbox itself (seccomp filter, no RestrictRealtime)
# allows SCHED_FIFO and mlockall.
rt_dropin=""
capbnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
if ! (( 0x$capbnd & (1 << 24) )) && { [ "$(ulimit -Hr)" != unlimited ] && [ "$(ulimit -Hr)" -lt 95 ]; }; then
    rt_dropin=$'AmbientCapabilities=CAP_SYS_NICE CAP_IPC_LOCK\nCapabilityBoundingSet=CAP_SYS_NICE CAP_IPC_LOCK'
    p4_say "host cannot raise RLIMIT_RTPRIO for the container (no CAP_SYS_RESOURCE, hard limit $(ulimit -Hr)): test drop-in uses CAP_SYS_NICE/CAP_IPC_LOCK instead"
fi
c sh -c 'cat > /etc/systemd/system/phase4.service.d/test.conf' <<EOF
[Service]
ExecStart=
ExecStart=/usr/bin/phase4 --config /srv/phase4-test/test.toml
Environment=PHASE4_FAULT_HANG=bands
# The WAV input is never made SCHED_FIFO, so prove with a helper that the
# unit's sandbox (same user, limits, seccomp filter) allows it.
ExecStartPre=/bin/sh -c 'chrt -f 70 true && echo "rt-check: SCHED_FIFO 70 allowed, RLIMIT_RTPRIO \$(ulimit -r), RLIMIT_MEMLOCK \$(ulimit -l)"'
$rt_dropin
EOF
c systemctl daemon-reload

# OSC receiver: liblo's oscdump in the container's network namespace.
nsenter -t "$leader" -n timeout 8 oscdump -L 9000 >"$work/osc.txt" 2>&1 &
osc_pid=$!
sleep 0.3

# --- start -----------------------------------------------------------------
t0=$(now)
if c timeout 40 systemctl start phase4.service; then
    t1=$(now)
    pass "systemctl start returned after READY=1 ($(elapsed "$t0" "$t1") s)"
else
    fail "systemctl start"
    c journalctl -u phase4 --no-pager -n 30 || true
fi
[ "$(c systemctl is-active phase4.service)" = active ] && pass "active" || fail "not active: $(c systemctl is-active phase4.service)"
status=$(prop StatusText)
[ -n "$status" ] && pass "STATUS= seen: $status" || fail "no STATUS= text"
c journalctl -u phase4 --no-pager -o cat | grep -q 'Started phase4.service' &&
    pass "journal: systemd saw READY (Started phase4.service)" || fail "journal has no 'Started' line"

health=""
for _ in $(seq 60); do
    health=$(c journalctl -u phase4 --no-pager -o cat | grep -m1 'health:' || true)
    [ -n "$health" ] && break
    sleep 0.1
done
[ -n "$health" ] && pass "health line in journalctl -u phase4: ${health:0:160}..." || fail "no health line in the journal"

wait "$osc_pid" 2>/dev/null || true
# oscdump prints "<timetag> <address> <typetags> <args...>" per message.
n_osc=$(grep -c ' /audio/' "$work/osc.txt" || true)
n_lmh=$(grep -c ' /audio/lmh fff ' "$work/osc.txt" || true)
if [ "$n_osc" -ge 100 ] && [ "$n_lmh" -ge 50 ] && grep -q ' /audio/meta ' "$work/osc.txt"; then
    pass "OSC datagrams decoded by oscdump: $n_osc messages, $n_lmh /audio/lmh, /audio/meta present"
else
    fail "OSC: $n_osc messages, $n_lmh /audio/lmh"; head -5 "$work/osc.txt"
fi
rt=$(c journalctl -u phase4 --no-pager -o cat | grep -m1 'rt-check:' || true)
[ -n "$rt" ] && pass "sandbox allows real time: $rt${rt_dropin:+ (with the CAP_SYS_NICE test drop-in)}" || fail "SCHED_FIFO not allowed inside the unit's sandbox"
if c journalctl -u phase4 --no-pager -o cat | grep -qE 'memory locked|mlock=granted'; then
    pass "mlockall granted"
else
    fail "mlockall not granted: $(c journalctl -u phase4 --no-pager -o cat | grep -m1 -i mlock)"
fi
p4_say "threads: $(c ps -L -o comm=,cls=,rtprio=,psr= -p "$(prop MainPID)" | tr -s ' ' | paste -sd, -)"
# realtime.cpu = "auto": the per-block threads share the last CPU the unit
# may use (sched_setaffinity is in @resources, which the filter allows).
pid=$(prop MainPID)
allowed=$(c grep Cpus_allowed_list "/proc/$pid/status" | awk '{print $2}')
hot=$(for t in $(c ls "/proc/$pid/task"); do
        c cat "/proc/$pid/task/$t/comm" "/proc/$pid/task/$t/status" 2>/dev/null |
          awk 'NR==1{n=$1} /^Cpus_allowed_list/{print n"="$2}'
      done | grep -E '^p4-(capture|bands|spectrum|osc)=' | sort | paste -sd' ' -)
if [ "$(nproc --all)" -lt 2 ] || [ "${allowed#*[,-]}" = "$allowed" ]; then
    p4_say "realtime.cpu: one CPU allowed ($allowed): nothing to pin ($hot)"
elif [ "$(echo "$hot" | tr ' ' '\n' | cut -d= -f2 | sort -u | wc -l)" = 1 ] &&
     [ "$(echo "$hot" | wc -w)" -ge 4 ] && [ "${hot##*=}" != "$allowed" ] &&
     c journalctl -u phase4 --no-pager -o cat | grep -q 'rt_cpu=[0-9]'; then
    pass "realtime.cpu: capture, workers and OSC sender share one CPU inside the sandbox ($hot; unit may use $allowed)"
else
    fail "realtime.cpu: per-block threads not on one CPU ($hot; unit may use $allowed)"
fi

# --- upgrade (reinstall): conffile edits survive, a running service restarts
c sh -c 'echo "# edited by the admin" >> /etc/phase4/phase4.toml'
pid0=$(prop MainPID)
if c dpkg -i /share/phase4.deb >"$work/dpkg-reinstall.log" 2>&1; then
    pid1=$(prop MainPID)
    if [ "$(c systemctl is-active phase4.service)" = active ] && [ "$pid1" != "$pid0" ] &&
        c grep -q '^# edited by the admin' /etc/phase4/phase4.toml; then
        pass "reinstall: service restarted (pid $pid0 → $pid1), edited conffile kept"
    else
        fail "reinstall: state $(c systemctl is-active phase4.service), pid $pid0 → $pid1, conffile edit kept: $(c grep -c '^# edited by the admin' /etc/phase4/phase4.toml)"
    fi
else
    fail "reinstall (dpkg -i over itself)"; cat "$work/dpkg-reinstall.log"
fi

# --- reload: systemctl reload re-reads the config without a restart --------
pid0=$(prop MainPID)
c sh -c 'cat >> /srv/phase4-test/test.toml' <<'EOF'
[dsp.low]
lo-hz = 30.0
hi-hz = 200.0
EOF
t0=$(date +%s)
if c systemctl reload phase4.service && sleep 1 &&
    c journalctl -u phase4 --no-pager -o cat --since "@$t0" | grep -q 'reload: applied' &&
    [ "$(prop MainPID)" = "$pid0" ] && [ "$(c systemctl is-active phase4.service)" = active ]; then
    pass "systemctl reload: config re-read and applied, same process (pid $pid0)"
else
    fail "systemctl reload: $(c journalctl -u phase4 --no-pager -o cat --since "@$t0" | grep -i reload | head -3)"
fi
# A bad edit is refused and the service keeps running on the old config;
# the same reload reads the presets folder again: a preset the admin put
# there by hand (as the service's user) is offered without a restart.
c sh -c 'echo "[bogus]" >> /srv/phase4-test/test.toml'
c sh -c 'd=/var/lib/phase4/presets; o=$(stat -c %U:%G /var/lib/phase4)
    install -d -o "${o%:*}" -g "${o#*:}" -m 0750 "$d"
    printf "[fft]\npeak-smear-oct = 1.5\n" > "$d/by hand.toml"; chown "$o" "$d/by hand.toml"'
t0=$(date +%s)
c systemctl reload phase4.service || true
sleep 1
log=$(c journalctl -u phase4 --no-pager -o cat --since "@$t0")
if grep -q 'keeping the running configuration' <<<"$log" &&
    [ "$(prop MainPID)" = "$pid0" ] && [ "$(c systemctl is-active phase4.service)" = active ]; then
    pass "systemctl reload with a bad config: refused, still running"
else
    fail "systemctl reload with a bad config: $(c systemctl is-active phase4.service), pid $(prop MainPID)"
fi
if grep -q 'presets: read the folder again: 1 offered' <<<"$log"; then
    pass "systemctl reload: a preset added by hand is offered without a restart"
else
    fail "systemctl reload: presets not read again: $(grep -i preset <<<"$log" | head -3)"
fi
c sed -i '/^\[bogus\]$/d' /srv/phase4-test/test.toml

# --- watchdog: hang the bands worker ---------------------------------------
pid0=$(prop MainPID)
nr0=$(prop NRestarts)
wd=$(prop WatchdogUSec)
rs=$(prop RestartUSec)
# phase4 stops pinging once a thread's heartbeat is older than this (its
# STALE_NS); only then does systemd's WatchdogSec start to run out.
stale_s=${PHASE4_HEARTBEAT_STALE_S:-1}
# WatchdogSec + RestartSec + staleness, plus 1.5 s for the new process to
# reach READY (~0.2 s) and for this loop polling systemctl under load.
limit=$(python3 -c "import sys; print(f'{sum(map(float, sys.argv[1:])) + 1.5:.1f}')" "$(secs "$wd")" "$(secs "$rs")" "$stale_s")
t0=$(now)
c systemctl kill --kill-whom=main -s SIGUSR2 phase4.service
restarted=0
for _ in $(seq 200); do
    pid=$(prop MainPID); nr=$(prop NRestarts); st=$(c systemctl is-active phase4.service || true)
    if [ "$nr" != "$nr0" ] && [ "$pid" != "$pid0" ] && [ "$pid" != 0 ] && [ "$st" = active ]; then
        restarted=1; break
    fi
    sleep 0.1
done
t1=$(now)
dt=$(elapsed "$t0" "$t1")
# Split the time with systemd's own journal timestamps: the hang is noticed
# when a heartbeat is older than phase4's staleness limit (then pings stop),
# systemd kills after WatchdogSec without a ping, and restarts RestartSec
# after the exit.
read -r t_sig t_kill t_start < <(c journalctl -u phase4 --no-pager -o short-unix | python3 -c '
import sys
sig = kill = start = None
for line in sys.stdin:
    ts = line.split(" ", 1)[0]
    if "Sent signal SIGUSR2" in line: sig = float(ts)
    elif "Watchdog timeout" in line and sig: kill = float(ts)
    elif "Started phase4.service" in line and kill: start = float(ts)
print(sig or 0, kill or 0, start or 0)')
hang_to_kill=$(elapsed "$t_sig" "$t_kill"); kill_to_ready=$(elapsed "$t_kill" "$t_start")
if [ "$restarted" = 1 ] && [ "$t_kill" != 0 ] && le "$dt" "$limit"; then
    pass "hung thread → 'Watchdog timeout' kill $hang_to_kill s after the hang, running again $kill_to_ready s later; total $dt s (limit: WatchdogSec $wd + RestartSec $rs + $stale_s s heartbeat staleness + 1.5 s start/polling = $limit s)"
else
    fail "watchdog: restarted=$restarted, total $dt s (limit $limit s), hang→kill $hang_to_kill s, kill→running $kill_to_ready s"
fi

# --- clean stop ------------------------------------------------------------
t0=$(now)
c systemctl stop phase4.service
t1=$(now)
dt=$(elapsed "$t0" "$t1")
code=$(prop ExecMainCode); st=$(prop ExecMainStatus); res=$(prop Result)
# ExecMainCode 1 = CLD_EXITED (the process exited by itself, not by a signal).
if le "$dt" 1.0 && [ "$code" = 1 ] && [ "$st" = 0 ] && [ "$res" = success ]; then
    pass "systemctl stop: clean exit 0 in $dt s"
else
    fail "systemctl stop took $dt s, ExecMainCode=$code status=$st result=$res"
fi

# --- bad config: exit 78, no restart loop -----------------------------------
c sh -c 'cat >> /srv/phase4-test/test.toml' <<'EOF'
[audio.bogus]
sample-rate-hz = "fast"
EOF
if c timeout 20 systemctl start phase4.service 2>/dev/null; then
    fail "start with a bad config succeeded"
else
    pass "start with a bad config fails"
fi
# A manual start resets NRestarts; any automatic restart would increase it.
nr0=$(prop NRestarts)
# Long enough for RestartSec to pass twice: a restart would have happened.
sleep "$(python3 -c "import sys; print(2 * float(sys.argv[1]) + 0.5)" "$(secs "$rs")")"
st=$(prop ExecMainStatus); nr=$(prop NRestarts); as=$(c systemctl is-active phase4.service || true)
if [ "$st" = 78 ] && [ "$nr" = "$nr0" ] && [ "$as" = failed ]; then
    pass "bad config → exit 78, state failed, no restart (NRestarts stays $nr)"
else
    fail "bad config: status=$st NRestarts $nr0→$nr state=$as"
fi
c journalctl -u phase4 --no-pager -o cat -n 20 | grep -iE 'problem|unknown|invalid' | head -3 | sed 's/^/    journal: /'

# --- purge -----------------------------------------------------------------
c journalctl -u phase4 --no-pager >"$work/journal.txt" 2>&1 || true
c rm -rf /etc/systemd/system/phase4.service.d /srv/phase4-test
c systemctl daemon-reload
c systemctl reset-failed phase4.service 2>/dev/null || true
c sh -c 'mkdir -p /var/lib/phase4/presets && echo "x = 1" > /var/lib/phase4/presets/test.toml'
if c dpkg --purge phase4 >"$work/dpkg-purge.log" 2>&1; then
    pass "dpkg --purge"
else
    fail "dpkg --purge"; cat "$work/dpkg-purge.log"
fi
snapshot >"$work/files-after"
# The shadow utilities keep one backup of each account file (/etc/passwd- ...).
left=$(comm -13 "$work/files-before" "$work/files-after" | grep -vxE '/etc/(passwd|group|shadow|gshadow|subuid|subgid)-' || true)
accounts=$(c sh -c 'getent passwd phase4; getent group phase4; grep -E "^audio:.*phase4" /etc/group' || true)
if [ -z "$left" ] && [ -z "$accounts" ]; then
    pass "purge left nothing behind (files, user, group, audio membership, unit symlinks)"
else
    fail "purge left: ${left//$'\n'/ } ${accounts//$'\n'/ }"
fi

# --- accounts made by hand, a deleted conffile, a mounted state dir ---------
# An account left by an older or manual install, without a phase4 group: the
# unit's Group=phase4 would fail every start (216/GROUP) unless postinst
# makes the group.
c useradd -r -M -d /nonexistent -s /usr/sbin/nologin -g nogroup phase4
if c dpkg -i /share/phase4.deb >"$work/dpkg-handmade.log" 2>&1 && c getent group phase4 >/dev/null; then
    pass "an existing phase4 user without its group: install makes the group"
else
    fail "an existing phase4 user without its group: $(tail -3 "$work/dpkg-handmade.log") group: $(c getent group phase4 || echo none)"
fi
# dpkg does not bring a deleted conffile back; the shipped unit must still
# start (built-in defaults: here the default device, which this container
# lacks, so it waits for it) instead of exiting 78 on a missing --config.
c rm /etc/phase4/phase4.toml
c systemctl start --no-block phase4.service
sleep 3
st=$(prop ExecMainStatus); as=$(c systemctl is-active phase4.service || true)
if [ "$st" != 78 ] && [ "$as" != failed ] && ! c journalctl -u phase4 --no-pager -o cat -n 30 | grep -q 'cannot read config'; then
    pass "deleted conffile: the unit runs on built-in defaults (state $as)"
else
    fail "deleted conffile: state $as, status $st: $(c journalctl -u phase4 --no-pager -o cat -n 3)"
fi
c systemctl stop phase4.service
c systemctl reset-failed phase4.service 2>/dev/null || true
if c dpkg --purge phase4 >"$work/dpkg-purge2.log" 2>&1 && c getent passwd phase4 >/dev/null; then
    pass "purge keeps a phase4 account the package did not make"
else
    fail "purge with a hand-made account: rc/log $(tail -3 "$work/dpkg-purge2.log"), account: $(c getent passwd phase4 || echo deleted)"
fi
c userdel phase4 2>/dev/null || true
c groupdel phase4 2>/dev/null || true
# The state directory on a disk of its own (a mount point): purge empties
# it and finishes, instead of failing on rm -rf of the mount point for good.
c dpkg -i /share/phase4.deb >"$work/dpkg-install3.log" 2>&1 || fail "reinstall after purge: $(tail -3 "$work/dpkg-install3.log")"
c mkdir -p /var/lib/phase4
c mount -t tmpfs -o size=4m p4state /var/lib/phase4
c sh -c 'mkdir /var/lib/phase4/recordings && echo x > /var/lib/phase4/recordings/a.wav && echo t > /var/lib/phase4/control-token'
if c dpkg --purge phase4 >"$work/dpkg-purge3.log" 2>&1 &&
    [ -z "$(c find /var/lib/phase4 -mindepth 1)" ] && ! c getent passwd phase4 >/dev/null; then
    pass "purge with /var/lib/phase4 a mount point: emptied, account deleted, purge finished"
else
    fail "purge with a mounted /var/lib/phase4: $(tail -3 "$work/dpkg-purge3.log"); left: $(c find /var/lib/phase4 -mindepth 1 | head -3) account: $(c getent passwd phase4 || echo deleted)"
fi
c umount /var/lib/phase4 2>/dev/null || true

if [ "$failures" = 0 ]; then
    p4_pass "systemd-test: all checks passed"
else
    p4_fail "systemd-test: $failures check(s) failed (rerun with --keep for logs)"
fi
exit $((failures > 100 ? 100 : failures))
