"""Raw WebSocket and HTTP pieces for attacking phase4, the ALSA test
devices it runs with, and a receive helper for WebSocket clients. Shared by
scripts/abuse/, tests/ws and tests/e2e."""

import asyncio
import base64
import json
import os
import socket
import struct
import time
import wave
from pathlib import Path


async def recv_any(ws, types, timeout=5.0):
    """The next JSON text message on the WebSocket client `ws` (Python
    websockets) whose type is in `types`; the others are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"none of {types} within {timeout} s")
        frame = await asyncio.wait_for(ws.recv(), left)
        if isinstance(frame, str):
            msg = json.loads(frame)
            if msg.get("type") in types:
                return msg


def connect(port, src=None, host="127.0.0.1", timeout=5.0):
    """A TCP connection to phase4, from source address `src` if given."""
    return socket.create_connection((host, port), timeout=timeout,
                                    source_address=(src, 0) if src else None)


def ws_handshake(port, host=None, origin=None, path="/", src=None, timeout=5.0, server="127.0.0.1"):
    """A raw socket that completed a WebSocket handshake (raises
    ConnectionRefusedError with the status line otherwise)."""
    s = connect(port, src, server, timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    head = (f"GET {path} HTTP/1.1\r\nHost: {host or f'{server}:{port}'}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if origin:
        head += f"Origin: {origin}\r\n"
    s.sendall((head + "\r\n").encode())
    # Byte by byte: the first frames may follow the response in the same
    # segment, and they belong to whoever reads the socket next.
    resp = b""
    while not resp.endswith(b"\r\n\r\n") and len(resp) < 16384:
        chunk = s.recv(1)
        if not chunk:
            break
        resp += chunk
    status = resp.split(b"\r\n", 1)[0].decode(errors="replace")
    if " 101 " not in status:
        s.close()
        raise ConnectionRefusedError(status or "connection closed")
    return s


def ws_frame(opcode, payload=b"", mask=True, fin=True):
    """One client frame (masked with a zero key when `mask`, which keeps
    building 100 000 of them cheap; the key is not secret)."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        head = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack(">Q", n)
    return head + (b"\0\0\0\0" if mask else b"") + payload


def ws_close_code(s, timeout=5.0):
    """Read server frames until a close frame and return its code (None if
    the connection ended without one)."""
    s.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        while len(buf) >= 2:
            op, n = buf[0] & 0x0F, buf[1] & 0x7F
            off = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, off = struct.unpack(">H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, off = struct.unpack(">Q", buf[2:10])[0], 10
            if len(buf) < off + n:
                break
            payload, buf = buf[off:off + n], buf[off + n:]
            if op == 8:
                return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            return None
        if not chunk:
            return None
        buf += chunk
    return None


def send_all(s, data, timeout=10.0):
    """Send as much of `data` as the peer takes within `timeout`; the number
    of bytes sent (the peer may close early)."""
    s.settimeout(timeout)
    sent = 0
    view = memoryview(data)
    try:
        while sent < len(data):
            sent += s.send(view[sent:sent + 65536])
    except OSError:
        pass
    return sent


def http_request(port, host_header, path="/", extra="", src=None, server="127.0.0.1", timeout=5.0):
    """Status code of a one-shot GET (None when the connection failed)."""
    try:
        s = connect(port, src, server, timeout)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n{extra}Connection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else None
    except (OSError, ValueError, IndexError):
        return None


def alsa_test_devices(workdir, wav):
    """ALSA devices without a sound card, in an alsa-lib config of their own;
    returns the environment that makes alsa-lib read it. All three are
    listed (hinted), so `list_devices` shows them and `set_device` may pick
    them:
    - `p4ws`: the `file` plugin reading the samples of `wav` (opens, no
      clock);
    - `p4null`: the `null` plugin: no clock and always ready (the device
      the supervisor wedge of issue 8, item 9 needs);
    - `p4broken`: a card that does not exist (a switch to it must roll back).
    """
    workdir = Path(workdir)
    raw = workdir / "p4ws.raw"
    if not raw.exists():
        with wave.open(str(wav), "rb") as w:
            frames = w.readframes(w.getnframes())
        raw.write_bytes(frames * 4)
    conf = workdir / "asound.conf"
    conf.write_text(
        'pcm.p4ws {\n type file\n slave.pcm "null"\n file "/dev/null"\n'
        f' infile "{raw}"\n format "raw"\n'
        ' hint { show on description "phase4 test device (file plugin)" }\n}\n'
        'pcm.p4null {\n type null\n'
        ' hint { show on description "phase4 test device without a clock (null plugin)" }\n}\n'
        'pcm.p4broken {\n type hw\n card 99\n'
        ' hint { show on description "phase4 test device that fails to open" }\n}\n'
    )
    return {"ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{conf}"}
