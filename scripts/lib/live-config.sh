# Sourced by scripts/bench.sh and scripts/soak.sh.
# live_config FILE HEALTH_INTERVAL_S: the benchmark's live setup (FFT and
# /audio/fft on, two OSC destinations, no WebSocket, no persistence).
live_config() {
  cat > "$1" <<EOT
[fft]
enabled = true
[osc]
send-fft = true
[[osc.destinations]]
host = "127.0.0.1"
port = 9000
[[osc.destinations]]
host = "127.0.0.1"
port = 9001
[ws]
enabled = false
[state]
dir = ""
[health]
interval-s = $2
EOT
}
