"""A listening address the machine does not have yet (tester aa B1): the
box bound to its Wi-Fi address boots before DHCP gives it, or restarts
while the Wi-Fi is down. phase4 exited 1 before READY, OSC with it, and
systemd gave up after its start limit. Now the UI, the WebSocket, OSCQuery
and the OSC input port are bound to it anyway (IP_FREEBIND) and answer once
the address arrives.

Runs inside the network namespace conftest.py creates: the address is
added to that namespace's loopback interface.
"""

import json
import socket
import subprocess
import time
from urllib.request import urlopen

from pythonosc.udp_client import SimpleUDPClient

from conftest import beat_track, free_port, private_network, write_wav

private_network()  # only in conftest.py's namespace (unshare(CLONE_NEWNET)): nothing leaves it

LATER = "10.79.0.1"


def test_an_address_that_arrives_after_the_start_is_listened_on(run_phase4, tmp_path):
    wav = tmp_path / "in.wav"
    write_wav(wav, beat_track(4.0))
    ui, ws, oq = (free_port() for _ in range(3))
    oin = free_port(socket.SOCK_DGRAM)
    osc = free_port(socket.SOCK_DGRAM)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", osc))
    rx.settimeout(3)
    p4 = run_phase4({
        "audio": {"input": str(wav), "loop-input": True},
        "ws": {"enabled": True, "bind": LATER, "port": ws, "http-port": ui,
               "token": "t0ken-rig-s3cret", "trust-loopback": False},
        "osc": {"enabled": True},
        "osc.destinations": [{"host": "127.0.0.1", "port": osc}],
        "oscquery": {"enabled": True, "bind": LATER, "port": oq, "input-port": oin},
    })
    # Running: OSC flows, and each listener said why it answers later.
    rx.recv(65536)
    for what in ("ws", "http", "oscquery", "osc-in"):
        p4.wait_log(f"{what}: {LATER}:")
    assert "not an address of this machine yet" in p4.text()
    assert p4.proc.poll() is None
    # Every health line says which listeners still wait for their address
    # (review ab: a mistyped address was one warning at start, then nothing).
    p4.wait_log("rt_cpu=")  # a health line
    line = [l for l in p4.text().splitlines() if "health:" in l and "bind_waiting=" in l][0]
    waiting = set(line.split("bind_waiting=")[1].split()[0].split(","))
    assert waiting == {f"ws:{LATER}:{ws}", f"http:{LATER}:{ui}", f"oscquery:{LATER}:{oq}",
                       f"osc-in:{LATER}:{oin}"}, line
    subprocess.run(["ip", "addr", "add", f"{LATER}/32", "dev", "lo"], check=True)
    try:
        # Then no more.
        n = p4.text().count("health:")
        end = time.time() + 5
        while time.time() < end and p4.text().count("health:") < n + 2:
            time.sleep(0.1)
        last = [l for l in p4.text().splitlines() if "health:" in l][-1]
        assert "bind_waiting" not in last, last
        assert urlopen(f"http://{LATER}:{ui}/", timeout=5).status == 200
        ns = json.loads(urlopen(f"http://{LATER}:{oq}/", timeout=5).read())
        assert ns["FULL_PATH"] == "/"
        s = socket.create_connection((LATER, ws), timeout=5)
        s.sendall(f"GET / HTTP/1.1\r\nHost: {LATER}:{ws}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 101"), "the WebSocket answers"
        s.close()
        # The OSC input port took datagrams to the new address: a write
        # without the token is refused and counted, not lost in the void.
        SimpleUDPClient(LATER, oin).send_message("/audio/settings/dsp/low/hi-hz", 200.0)
        p4.wait_log("osc-in: refused")
    finally:
        subprocess.run(["ip", "addr", "del", f"{LATER}/32", "dev", "lo"], check=False)
