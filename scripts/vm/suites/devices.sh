# Device listing and switching over phase4's own WebSocket on a real
# driver's devices: snd-aloop with one substream per direction, so a `hw`
# device answers a second open "busy", as a USB card's does. The client is
# p4util's (the guest has no Python). Checks:
#   dev_in_use       the device capture runs on, and the other name of its
#                    card and device (plughw:), are listed available (they
#                    were opened a second time for the listing: "busy", so
#                    the device that worked was listed unavailable)
#   dev_probe_in_use a probe lists it available too, without opening it,
#                    with the signal capture delivered meanwhile (a tone
#                    aplay plays into the loopback: probed_signal true),
#                    and probes the others
#   dev_cli_busy     `phase4 devices` (another process) finds the card busy
#                    and names the service's process as its holder (from
#                    the kernel's /proc/asound)
#   dev_cli_unit     with that process in the cgroup systemd gives a unit
#                    (system.slice/phase4.service, cgroup v2), the holder is
#                    named with its unit: "phase4 (pid N, phase4.service)"
#   dev_switch_probe a switch asked for while a probe runs happens: to the
#                    other device, back, and to the plughw: name of the
#                    card and device in use (it opened its device while
#                    the probe held it: "busy", rolled back)
#   dev_default      with `device = "default"` (the shipped configuration)
#                    and with `plughw:N,1` (numbers, not CARD=), the
#                    listing's name of the card's device capture runs on
#                    is listed available, not opened again ("busy")
#   dev_waiting      while capture waits for `plughw:N,1` (another program
#                    holds it), the listing does not open that device
#                    (capture's next try could find it "busy"): it says
#                    capture is waiting for it; capture opens it once free
#   dev_held_by      a device another program holds is listed busy, with
#                    that program's name and pid
# vm-modules: snd-aloop
# vm-bins:

A="hw:CARD=Loopback,DEV=1"
A2="plughw:CARD=Loopback,DEV=1"
B="hw:CARD=Loopback,DEV=0"
WS=8765

modprobe snd-aloop pcm_substreams=1
# A tone into the loopback's DEV=0 playback: capture on DEV=1 hears it.
(p4util tone S16_LE 48000 2 90 1000 | aplay -q -D hw:CARD=Loopback,DEV=0 -t raw -f S16_LE -r 48000 -c 2 2>/dev/null) &
TONE_PID=$!

# The last `devices` message in FILE, one entry a line.
dev_items() {
    grep '"type":"devices"' "$1" | tail -1 | sed 's/},{/}\n{/g'
}
# Its entry for NAME.
dev_item() {
    dev_items "$1" | grep "\"name\":\"$2\""
}
available() {
    dev_item "$1" "$2" | grep -q '"available":true' && ! dev_item "$1" "$2" | grep -q '"error"'
}

# dev_config DEVICE: the configuration, on DEVICE.
dev_config() {
    cat >/tmp/dev.toml <<EOF
[audio]
device = "$1"
format = "S16_LE"
channels = 2
sample-rate-hz = 48000
block-frames = 256
[osc]
destinations = [{ host = "127.0.0.1", port = 9000 }]
addresses = ["meta"]
[ws]
bind = "127.0.0.1"
port = $WS
http-port = $((WS + 1))
[state]
dir = ""
[health]
interval-s = 1.0
EOF
}
dev_config "$A"
p4_start dev /tmp/dev.toml

p4util ws $WS 3 '{"type":"list_devices"}' >/tmp/dev.list
both=no
available /tmp/dev.list "$A" && available /tmp/dev.list "$A2" && both=yes
check dev_in_use "$A, in use, and $A2 listed: $(dev_item /tmp/dev.list "$A" | sed 's/"description.*//') $(dev_item /tmp/dev.list "$A2" | sed 's/"description.*//')" \
    [ "$both" = yes ]

p4util ws $WS 20 '{"type":"list_devices","probe":true}' >/tmp/dev.probe
probed=$(dev_items /tmp/dev.probe | grep -c '"probed_signal"')
probe_ok=no
if available /tmp/dev.probe "$A" && dev_item /tmp/dev.probe "$A" | grep -q '"probed_signal":true' &&
    [ "$probed" -gt 1 ]; then
    probe_ok=yes
fi
check dev_probe_in_use "$A available after a probe, with a signal ($probed probed in all): $(dev_item /tmp/dev.probe "$A" | sed 's/"description.*//')" \
    [ "$probe_ok" = yes ]

phase4 devices >/tmp/dev.cli 2>&1
check dev_cli_busy "$(grep -A0 "^  $A " /tmp/dev.cli | cut -c1-250)" grep -q "^  $A .*busy.*phase4 (pid $P4_PID) has it open" /tmp/dev.cli

# The service's process moved into the cgroup systemd would give it
# (cgroup v2; the path is the kernel's own /proc/PID/cgroup).
UNIT_CG=/sys/fs/cgroup/system.slice/phase4.service
mkdir -p /sys/fs/cgroup
if { grep -q " /sys/fs/cgroup cgroup2 " /proc/mounts || mount -t cgroup2 cgroup2 /sys/fs/cgroup; } &&
    mkdir -p "$UNIT_CG" && echo "$P4_PID" >"$UNIT_CG/cgroup.procs"; then
    phase4 devices >/tmp/dev.unit 2>&1
    check dev_cli_unit "$(tr '\n' ' ' </proc/$P4_PID/cgroup)-> $(grep "^  $A " /tmp/dev.unit | cut -c1-250)" \
        grep -q "^  $A .*busy.*phase4 (pid $P4_PID, phase4.service) has it open" /tmp/dev.unit
else
    result dev_cli_unit FAIL "cannot put phase4 (pid $P4_PID) into $UNIT_CG"
fi

# A switch right after a probe was asked for, to B, back to A, then to A2
# (the same card and device as A, listed available above); each is
# answered (meta, devices) once the probe and then the switch are done.
ok=0
for to in "$B" "$A" "$A2"; do
    n=$(grep -c "now on $to" /tmp/dev.log)
    p4util ws $WS 25 '{"type":"list_devices","probe":true}' "{\"type\":\"set_device\",\"name\":\"$to\"}" >/tmp/dev.switch
    if [ "$(grep -c "now on $to" /tmp/dev.log)" -gt "$n" ] && ! grep -q '"type":"error"' /tmp/dev.switch; then
        ok=$((ok + 1))
    else
        result dev_switch_detail INFO "to $to: $(grep '"type":"error"' /tmp/dev.switch | cut -c1-200) $(grep -E 'rolling back|busy' /tmp/dev.log | tail -1 | cut -c1-200)"
    fi
done
check dev_switch_probe "$ok of 3 switches asked for during a probe happened" [ $ok -eq 3 ]
p4_stop dev

# Configurations that name the card's device otherwise than the listing
# does: `default` (on the loopback through ALSA_CARD: other suites' cards
# may come first) and numbers (the loopback's card number, from the link
# /proc/asound has for its id).
LB=$(readlink /proc/asound/Loopback)
LB=${LB#card}
ok=0 seen="" n=0
for pair in "default $B" "plughw:$LB,1 $A"; do
    dev=${pair%% *} listed=${pair#* } n=$((n + 1))
    dev_config "$dev"
    [ "$dev" = default ] && export ALSA_CARD=Loopback
    p4_start "dev$n" /tmp/dev.toml
    unset ALSA_CARD
    p4util ws $WS 3 '{"type":"list_devices"}' >/tmp/dev.list
    # Described from what capture opened (one format), not probed (the
    # loopback offers many): the device in use, not a free one.
    available /tmp/dev.list "$listed" && dev_item /tmp/dev.list "$listed" | grep -q '"formats":\["S16_LE"\]' &&
        ok=$((ok + 1))
    seen="$seen | on $dev: $(dev_item /tmp/dev.list "$listed" | sed 's/"description.*"formats"/"formats"/')"
    p4_stop "dev$n"
done
check dev_default "$ok of 2 listed available$seen" [ $ok -eq 2 ]

# Another program holds A; capture, configured with its numbers, waits.
aplay -C -q -D "$A" -t raw -f S16_LE -r 48000 -c 2 /dev/null 2>/dev/null &
HOLD_PID=$!
# And B, which capture does not want.
aplay -C -q -D "$B" -t raw -f S16_LE -r 48000 -c 2 /dev/null 2>/dev/null &
HOLD_B=$!
usleep 300000
dev_config "plughw:$LB,1"
phase4 --config /tmp/dev.toml 2>/tmp/dev_wait.log &
P4_PID=$!
wait_log /tmp/dev_wait.log "retrying in" 10
p4util ws $WS 3 '{"type":"list_devices"}' >/tmp/dev.list
waiting=$(dev_item /tmp/dev.list "$A" | sed 's/.*"available"/"available"/')
dev_item /tmp/dev.list "$B" >/tmp/dev.held
held_b=$(sed 's/.*"available"/"available"/' /tmp/dev.held)
kill "$HOLD_PID" "$HOLD_B"
wait "$HOLD_PID" "$HOLD_B" 2>/dev/null
opened=no
wait_log /tmp/dev_wait.log " open: " 10 && opened=yes
p4_stop dev_wait
check dev_waiting "while held: $waiting; opened once free: $opened" \
    sh -c "echo '$waiting' | grep -q 'capture is opening it' && [ $opened = yes ]"
check dev_held_by "$B: $held_b (held by aplay, pid $HOLD_B)" \
    grep -q "busy.*; aplay (pid $HOLD_B) has it open" /tmp/dev.held
killall aplay 2>/dev/null
wait "$TONE_PID" 2>/dev/null
