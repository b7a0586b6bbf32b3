"""OSC to broadcast and multicast destinations (README: "several
destinations (unicast, broadcast with SO_BROADCAST, multicast with TTL)"),
received and decoded by python-osc.

Runs inside the network namespace conftest.py creates: the broadcast
(127.255.255.255, the loopback network's broadcast address there) and the
multicast group (239.1.2.3) never reach a real interface.
"""

import socket
import subprocess
import time

from pythonosc.osc_packet import OscPacket

from conftest import beat_track, free_port, private_network, write_wav

private_network()  # only in conftest.py's namespace (unshare(CLONE_NEWNET)): nothing leaves it


def receivers(bport, mport, group):
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b.bind(("0.0.0.0", bport))
    m = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    m.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    m.bind(("0.0.0.0", mport))
    m.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton(group) + socket.inet_aton("127.0.0.1"))
    for s in (b, m):
        s.settimeout(3)
    return b, m


def addresses(sock, seconds):
    out = []
    end = time.time() + seconds
    while time.time() < end:
        try:
            data, _ = sock.recvfrom(65536)
        except socket.timeout:
            break
        for m in OscPacket(data).messages:
            out.append((m.message.address, m.message.params))
    return out


def test_broadcast_and_multicast_destinations_receive_every_address(run_phase4, tmp_path):
    wav = tmp_path / "in.wav"
    write_wav(wav, beat_track(4.0))
    bport = free_port(socket.SOCK_DGRAM)
    mport = free_port(socket.SOCK_DGRAM)
    group = "239.1.2.3"
    b, m = receivers(bport, mport, group)
    run_phase4({
        "audio": {"input": str(wav)},
        "ws": {"enabled": False},
        "osc": {"enabled": True},
        "osc.destinations": [
            {"host": "127.255.255.255", "port": bport},
            {"host": group, "port": mport, "ttl": 1},
        ],
    })
    got_b = addresses(b, 3.0)
    got_m = addresses(m, 1.0)
    for got in (got_b, got_m):
        names = {a for a, _ in got}
        assert {"/audio/meta", "/audio/lmh", "/audio/level", "/audio/tempo"} <= names, names
        lmh = [p for a, p in got if a == "/audio/lmh"]
        assert len(lmh) > 100 and all(len(p) == 3 for p in lmh)


def test_a_receiver_gone_from_the_network_does_not_starve_the_others(run_phase4, tmp_path):
    """A receiver that is gone (a laptop asleep: no answer when the kernel
    asks for its link-layer address) has its datagrams held while the kernel
    asks, charged to the socket that sent them. With one socket for every
    destination they filled its send buffer, and every other destination,
    loopback included, got EAGAIN: tester aa lost 72 % of a healthy desk's
    datagrams. Each destination has sockets of its own now."""
    def sh(*cmd):
        subprocess.run(cmd, check=True)

    # A link whose far end never answers: the peer is up, without the address.
    sh("ip", "link", "add", "ga", "type", "veth", "peer", "name", "gb")
    try:
        sh("ip", "addr", "add", "10.77.0.1/24", "dev", "ga")
        sh("ip", "link", "set", "ga", "up")
        sh("ip", "link", "set", "gb", "up")
        wav = tmp_path / "in.wav"
        write_wav(wav, beat_track(4.0))
        port = free_port(socket.SOCK_DGRAM)
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", port))
        rx.settimeout(0.5)
        p4 = run_phase4({
            "audio": {"input": str(wav), "loop-input": True, "block-frames": 256},
            "ws": {"enabled": False},
            "osc": {"enabled": True, "send-fft": True},
            "osc.destinations": [
                {"host": "10.77.0.2", "port": 9000},
                {"host": "127.0.0.1", "port": port},
            ],
        })
        settle = time.monotonic() + 1.5
        while time.monotonic() < settle:  # the start, and what queued in it
            try:
                rx.recv(65536)
            except socket.timeout:
                pass
        lmh = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 6.0:
            try:
                data = rx.recv(65536)
            except socket.timeout:
                continue
            lmh += sum(m.message.address == "/audio/lmh" for m in OscPacket(data).messages)
        seconds = time.monotonic() - t0
        expected = seconds * 48000 / 256
        p4.stop()
        log = p4.text()
    finally:
        subprocess.run(["ip", "link", "del", "ga"], check=False)
    assert lmh >= 0.95 * expected, (lmh, round(expected), log[-1500:])
