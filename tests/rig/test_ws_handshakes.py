"""The WebSocket acceptor's queue of handshakes in progress under a flood
of connections that never send their request, from the LAN (this suite's
own network namespace: addresses of documentation ranges on its loopback).
"""

import base64
import os
import socket
import subprocess
import time

import pytest

from conftest import beat_track, free_port, private_network, wait_port, write_wav

private_network()  # only in conftest.py's namespace (unshare(CLONE_NEWNET)): nothing leaves it

V4 = [f"192.0.2.{40 + i}" for i in range(8)]
CLIENT = "192.0.2.39"
SERVER6 = "fd00:10::1"
GUEST_NET = "fd00:9::"  # one host's /64 (any address in it binds here)


@pytest.fixture
def lan():
    cmds = [["ip", "addr", "add", f"{a}/32", "dev", "lo"] for a in V4 + [CLIENT]]
    cmds += [["ip", "addr", "add", f"{SERVER6}/64", "dev", "lo", "nodad"],
             ["ip", "-6", "route", "add", "local", f"{GUEST_NET}/64", "dev", "lo"],
             ["sysctl", "-qw", "net.ipv6.ip_nonlocal_bind=1"]]
    for c in cmds:
        subprocess.run(c, check=True)
    yield
    for a in V4 + [CLIENT]:
        subprocess.run(["ip", "addr", "del", f"{a}/32", "dev", "lo"], check=False)
    subprocess.run(["ip", "addr", "del", f"{SERVER6}/64", "dev", "lo"], check=False)
    subprocess.run(["ip", "-6", "route", "del", "local", f"{GUEST_NET}/64", "dev", "lo"], check=False)


@pytest.fixture
def ws_port(run_phase4, tmp_path, lan):
    port = free_port(socket.SOCK_STREAM)
    wav = tmp_path / "in.wav"
    write_wav(wav, beat_track(4.0))
    p4 = run_phase4({
        "audio": {"input": str(wav), "loop-input": True},
        "ws": {"enabled": True, "bind": "::", "port": port, "http-port": free_port(socket.SOCK_STREAM)},
        "osc": {"enabled": False},
    })
    wait_port(port)
    p4.wait_log("first block through")
    return port


def silent(src, port):
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    s = socket.socket(fam)
    s.bind((src, 0))
    s.connect((SERVER6 if ":" in src else src, port))
    return s


def upgrade_answer(s, port):
    key = base64.b64encode(os.urandom(16)).decode()
    s.settimeout(3)
    s.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    try:
        return s.recv(200).split(b"\r\n")[0]
    except OSError:
        return b""


@pytest.mark.parametrize("guests", ["one IPv6 /64", "eight IPv4 addresses"])
def test_handshakes_that_never_start_cannot_push_out_a_slower_client(ws_port, guests):
    # A client connects; before its request arrives, guests open 70
    # connections that send nothing. The queue holds 64: dropping the
    # oldest of all dropped the client's (tester x). Now an IPv6 host counts
    # as its /64 (8 at most), and when the queue is full the address
    # holding the most gives one up.
    client = silent(CLIENT, ws_port)
    held = []
    for i in range(70):
        src = f"{GUEST_NET}{i + 1:x}" if guests == "one IPv6 /64" else V4[i % 8]
        held.append(silent(src, ws_port))
    time.sleep(0.3)
    try:
        assert upgrade_answer(client, ws_port) == b"HTTP/1.1 101 Switching Protocols"
    finally:
        client.close()
        for s in held:
            s.close()


def test_a_guest_holding_its_64s_handshakes_does_not_keep_its_neighbours_out(ws_port):
    # The cap of 8 handshakes in progress is per /64, and a venue's Wi-Fi
    # is one /64: at the cap the address gives up its own oldest, not the
    # newcomer (review y: a guest holding 8 that never start, re-opened as
    # they time out, kept every other host of the /64 out).
    held = [silent(f"{GUEST_NET}66", ws_port) for _ in range(8)]
    time.sleep(0.2)
    try:
        for i in range(3):
            neighbour = silent(f"{GUEST_NET}{i + 1:x}", ws_port)
            try:
                assert upgrade_answer(neighbour, ws_port) == b"HTTP/1.1 101 Switching Protocols"
            finally:
                neighbour.close()
            held.append(silent(f"{GUEST_NET}66", ws_port))
    finally:
        for s in held:
            s.close()
