"""A client that never reads: it gets frames dropped and is disconnected,
and neither another client's snapshot rate nor the OSC rate drops."""

import asyncio
import base64
import json
import os
import socket
import time

import websockets

from conftest import recv_json


def osc_rate(sock, seconds):
    """OSC datagrams per second arriving on `sock`."""
    n, end = 0, time.monotonic() + seconds
    sock.settimeout(0.05)
    while time.monotonic() < end:
        try:
            sock.recv(65536)
            n += 1
        except socket.timeout:
            pass
    return n / seconds


async def snapshot_rate(url, seconds):
    async with websockets.connect(url) as ws:
        await recv_json(ws, "snapshot")
        n, fft, end = 0, 0, time.monotonic() + seconds
        while time.monotonic() < end:
            f = await asyncio.wait_for(ws.recv(), 2)
            if isinstance(f, bytes):
                fft += 1
            elif json.loads(f)["type"] == "snapshot":
                n += 1
        return n / seconds, fft / seconds


def stuck_client(port):
    """Handshake, then never read another byte (tiny receive buffer)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    return s


def test_a_client_that_never_reads_slows_no_one(make_server):
    server = make_server(extra="stall-timeout-s = 3.0")
    osc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    osc.bind(("127.0.0.1", server.osc_port))

    async def enable_fft():
        async with websockets.connect(server.url) as ws:
            await ws.send(json.dumps({"type": "set_fft", "enabled": True}))
            await recv_json(ws, "meta")
            await recv_json(ws, "meta")

    asyncio.run(enable_fft())
    base_snap, base_fft = asyncio.run(snapshot_rate(server.url, 3))
    base_osc = osc_rate(osc, 2)

    stuck = [stuck_client(server.ws_port) for _ in range(3)]
    time.sleep(0.5)
    snap, fft = asyncio.run(snapshot_rate(server.url, 6))
    with_stuck_osc = osc_rate(osc, 2)
    print(f"\nsnapshots/s {base_snap:.1f} -> {snap:.1f} with 3 stuck clients; "
          f"FFT frames/s {base_fft:.1f} -> {fft:.1f}; OSC datagrams/s {base_osc:.0f} -> {with_stuck_osc:.0f}")
    assert snap >= 0.95 * base_snap and snap > 55
    assert fft >= 0.95 * base_fft
    assert with_stuck_osc >= 0.95 * base_osc

    # The stuck clients are dropped after ws.stall-timeout-s.
    async def clients():
        async with websockets.connect(server.url) as ws:
            return (await recv_json(ws, "server_status"))["clients"]

    deadline = time.monotonic() + 20
    while asyncio.run(clients()) > 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert asyncio.run(clients()) == 1
    assert "stopped reading" in server.log.read_text()
    for s in stuck:
        s.close()
