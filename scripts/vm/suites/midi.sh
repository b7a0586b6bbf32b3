# MIDI clock out through the kernel's ALSA sequencer (issue 13). A 120 BPM
# pattern (a 60 Hz kick on each beat, a 8 kHz tick on each off-beat) plays
# through snd-aloop into phase4; phase4's [midi] clock goes to its
# sequencer port phase4:clock, which aseqdump (alsa-utils, not ours)
# subscribes to. Checks: the port exists, Song Position 0 and Start come on
# lock, the Clock rate matches phase4's tempo within 0.5 %, Stop comes when
# phase4 stops.
# vm-modules: snd-seq snd-aloop
# vm-bins: /usr/bin/aseqdump
# (Run by scripts/vm-test.sh --suites midi; the helpers are in
# scripts/vm/guest/lib.sh.)

PLAY="hw:CARD=Loopback,DEV=0,SUBDEV=0"
LOOP="hw:CARD=Loopback,DEV=1,SUBDEV=0"
WINDOW=20 # seconds of clock counted

modprobe snd-seq
modprobe snd-aloop pcm_substreams=1
check midi_seq "sequencer device" test -e /dev/snd/seq

# 36 s of the pattern: 10 segments of 50 ms per beat.
: >/tmp/beat.raw
i=0
while [ $i -lt 72 ]; do
    p4util tone S16_LE 48000 2 0.05 60 60 0 0 0 8000 0 0 0 0 >>/tmp/beat.raw
    i=$((i + 1))
done
aplay -q -D "$PLAY" -t raw -f S16_LE -r 48000 -c 2 /tmp/beat.raw 2>/dev/null &
PLAY_PID=$!
usleep 100000

p4_config /tmp/midi.toml "$LOOP" 'format = "S16_LE"' 'channels = 2' 'sample-rate-hz = 48000' 'block-frames = 256'
sed -i 's/^addresses = .*/addresses = ["bpm", "meta"]/' /tmp/midi.toml
printf '[midi]\nenabled = true\nclient-name = "phase4"\nport-name = "clock"\n' >>/tmp/midi.toml
p4_start midi /tmp/midi.toml
check midi_port "phase4 opened its sequencer port" wait_log /tmp/midi.log "midi: clock on sequencer port" 10

aseqdump -p phase4:clock >/tmp/seq.dump 2>/tmp/seq.err &
SEQ_PID=$!
# Wait for the lock (Start), then count Clocks over the window.
wait_log /tmp/seq.dump "Start" 20
t0=$(now)
c0=$(grep -c "Clock" /tmp/seq.dump)
usleep $((WINDOW * 1000000))
c1=$(grep -c "Clock" /tmp/seq.dump)
t1=$(now)
p4_stop midi
usleep 300000
kill -INT "$SEQ_PID" 2>/dev/null
wait "$SEQ_PID" 2>/dev/null
kill "$PLAY_PID" 2>/dev/null
wait "$PLAY_PID" 2>/dev/null

check midi_songpos "Song Position 0 before Start" grep -q "Song position pointer.*0" /tmp/seq.dump
check midi_start "Start on lock" grep -q "Start" /tmp/seq.dump
rate=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.3f", (b - a) / (t1 - t0) }')
# phase4's tempo over the same run (its /audio/bpm, as oscdump decoded it),
# in beats per second of the audio's own clock; and how fast that clock ran
# against the guest's (blocks per second, from oscdump's arrival times of
# the per-block /audio/bpm): the clock follows the music as it plays.
set -- $(awk '
    function hex(s,   i, v) { v = 0; s = tolower(s)
        for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
        return v }
    $2 == "/audio/bpm" && $4 > 0 { split($1, a, "."); t = hex(a[1]) + hex(a[2]) / 4294967296
        if (!n++) first = t; last = t; s += $4 }
    END { if (n > 1) printf "%.3f %.4f\n", s / n, (n - 1) / (last - first); else print "0 0" }' /tmp/midi.osc)
bpm=$1 blocks=$2
want=$(awk -v b="$bpm" -v r="$blocks" 'BEGIN { printf "%.3f", b * 24 / 60 * r / 187.5 }')
result midi_audio_clock INFO "$blocks blocks/s of audio per guest second (nominal 187.5)"
check midi_rate "$rate clocks/s for $bpm BPM at $blocks blocks/s (want $want within 0.5 %)" \
    awk -v r="$rate" -v w="$want" 'BEGIN { d = (r - w) / w; exit !(w > 0 && d <= 0.005 && -d <= 0.005) }'
check midi_stop "Stop when phase4 stops" grep -q "Stop" /tmp/seq.dump
result midi_events INFO "$(grep -c Clock /tmp/seq.dump) clocks; $(sed -n 's/^ *[0-9]*:[0-9]* *//p' /tmp/seq.dump | awk '{ print $1 }' | sort | uniq -c | tr '\n' ' ')"
