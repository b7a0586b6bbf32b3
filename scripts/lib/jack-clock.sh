# shellcheck shell=bash
# Sourced by scripts/jack-measure.sh and scripts/bench.sh: a clocked ALSA
# capture device without a sound card. JACK's dummy backend is a software
# period clock (one 256-frame period every 5.333 ms at 48 kHz); alsa-lib's
# `jack` plugin makes it a PCM named `jackin` that any ALSA program can open
# (phase4, PortAudio's ALSA host API). Everything is started and stopped by
# PID.
#
#   jack_clock_start WORK [FILE.wav]
#       install jackd2, jack-tools and libasound2-plugins when missing, start
#       jackd (server name in JACK_DEFAULT_SERVER, exported), write
#       WORK/asound.conf and export ALSA_CONFIG_PATH to it. With FILE.wav,
#       jack-play plays it and `jackin` captures the player's output (every
#       program that opens `jackin` hears the same samples on the same
#       clock); without, `jackin` captures the dummy backend's silence.
#   jack_clock_stop
JACK_CLOCK_PIDS=()

jack_clock_start() {
    local work=$1 file=${2:-} port="system:capture_1" i
    # jackd2's installer asks about real-time limits; answer before it asks.
    p4_pkg_installed jackd2 ||
        echo "jackd2 jackd/tweak_rt_limits boolean false" | p4_as_root debconf-set-selections
    p4_apt_install jackd2 jack-tools libasound2-plugins
    export JACK_DEFAULT_SERVER="p4clock$$" JACK_NO_START_SERVER=1
    jackd --realtime --name "$JACK_DEFAULT_SERVER" -d dummy -r 48000 -p 256 -C 2 -P 2 \
        >"$work/jackd.log" 2>&1 &
    JACK_CLOCK_PIDS+=($!)
    for i in $(seq 50); do jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done
    jack_lsp >/dev/null 2>&1 || { cat "$work/jackd.log" >&2; echo "jack-clock: jackd did not start" >&2; return 1; }
    if [ -n "$file" ]; then
        jack-play "$file" >"$work/jack-play.log" 2>&1 &
        JACK_CLOCK_PIDS+=($!)
        port="jack-play-$!:out_1"
        for i in $(seq 50); do jack_lsp | grep -qx "$port" && break; sleep 0.1; done
        jack_lsp | grep -qx "$port" || { cat "$work/jack-play.log" >&2; echo "jack-clock: no $port" >&2; return 1; }
    fi
    cat >"$work/asound.conf" <<EOF
pcm.jackin {
    type jack
    capture_ports { 0 "$port" }
}
EOF
    export ALSA_CONFIG_PATH="/usr/share/alsa/alsa.conf:$work/asound.conf"
}

jack_clock_stop() {
    local i
    # The player first, then the server it plays through.
    for ((i = ${#JACK_CLOCK_PIDS[@]} - 1; i >= 0; i--)); do
        kill "${JACK_CLOCK_PIDS[$i]}" 2>/dev/null && wait "${JACK_CLOCK_PIDS[$i]}" 2>/dev/null
    done
    JACK_CLOCK_PIDS=()
    return 0
}
