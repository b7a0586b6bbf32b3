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

# live_template FILE HEALTH_INTERVAL_S: the same setup as a template for
# scripts/lib/live-measure.py, with the WebSocket/HTTP servers on and the
# ports left as @OSC1@ @OSC2@ @WS@ @HTTP@ (the script fills in free ones).
live_template() {
  live_config "$1" "$2"
  sed -i -e 's/^port = 9000$/port = @OSC1@/' -e 's/^port = 9001$/port = @OSC2@/' \
      -e '/^\[ws\]$/,/^\[/{s/^enabled = false$/enabled = true\nport = @WS@\nhttp-port = @HTTP@/}' "$1"
}

# udp_sink PORT: a receiver on 127.0.0.1:PORT that reads and drops every
# datagram, in the background (a rig has a receiver at each destination;
# without one the kernel answers each datagram with an ICMP "port
# unreachable", work charged to phase4's sending thread that no show has).
udp_sink() {
  python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    s.recv(65536)' "$1" &
}
