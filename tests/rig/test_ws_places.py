"""Who keeps a connected WebSocket client's place when every open place is
taken, from the LAN (this suite's own network namespace: addresses of
documentation ranges on its loopback; nothing leaves the machine).

`ws.max-clients` 32 keeps a quarter for loopback and token holders; the
other 24 are open to watchers, at most `max-clients-per-ip` 8 from one
address. Three hosts holding eight idle watchers each kept every other
watcher of the venue out for as long as they liked (tester x #9). Now a
newcomer gets a place when some address holds at least two more than the
newcomer's: that address's oldest watcher is closed (1013, with the
reason), until every address holds about as many.
"""

import base64
import os
import selectors
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import beat_track, free_port, private_network, wait_port, write_wav

private_network()  # only in conftest.py's namespace (unshare(CLONE_NEWNET)): nothing leaves it

HOSTS = ["192.0.2.61", "192.0.2.62", "192.0.2.63"]
NEWCOMER = "192.0.2.64"
PER_IP = 8


@pytest.fixture
def lan():
    for a in HOSTS + [NEWCOMER]:
        subprocess.run(["ip", "addr", "add", f"{a}/32", "dev", "lo"], check=True)
    yield
    for a in HOSTS + [NEWCOMER]:
        subprocess.run(["ip", "addr", "del", f"{a}/32", "dev", "lo"], check=False)


@pytest.fixture
def box(run_phase4, tmp_path, lan):
    port = free_port(socket.SOCK_STREAM)
    wav = tmp_path / "in.wav"
    write_wav(wav, beat_track(4.0))
    p4 = run_phase4({
        "audio": {"input": str(wav), "loop-input": True},
        # The caps as shipped (32, 8 per address), said out loud.
        "ws": {"enabled": True, "bind": "0.0.0.0", "port": port,
               "http-port": free_port(socket.SOCK_STREAM),
               "max-clients": 32, "max-clients-per-ip": PER_IP, "snapshot-hz": 15.0},
        "osc": {"enabled": False},
    })
    wait_port(port)
    p4.wait_log("first block through")
    p4.port = port
    return p4


class Watcher:
    """A WebSocket client that only reads (a VJ's browser left open),
    noting the close frame it is sent, if any."""

    def __init__(self, src, port):
        self.src = src
        self.sock = socket.socket()
        self.sock.bind((src, 0))
        self.sock.settimeout(3)
        self.sock.connect((src, port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            got = self.sock.recv(4096)
            if not got:
                break
            head += got
        self.status = head.split(b"\r\n")[0]
        self.body = head.partition(b"\r\n\r\n")[2]
        self.buf = b""
        self.close = None  # (code, reason) once a close frame came
        self.ended = False
        self.frames = 0
        if self.opened and self.body:
            self.feed(self.body)  # frames that came with the answer

    @property
    def opened(self):
        return self.status == b"HTTP/1.1 101 Switching Protocols"

    def feed(self, data):
        if not data:
            self.ended = True
            return
        self.buf += data
        while len(self.buf) >= 2:
            op, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
            at = 2
            if n == 126:
                if len(self.buf) < 4:
                    return
                n, at = struct.unpack(">H", self.buf[2:4])[0], 4
            elif n == 127:
                if len(self.buf) < 10:
                    return
                n, at = struct.unpack(">Q", self.buf[2:10])[0], 10
            if len(self.buf) < at + n:
                return
            payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
            self.frames += 1
            if op == 8 and self.close is None:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                self.close = (code, payload[2:].decode(errors="replace"))


class Reader:
    """Reads every watcher's socket on one thread, so that none of them
    stalls (a client that stops reading is closed for that)."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def add(self, w):
        w.sock.setblocking(False)
        with self.lock:
            self.sel.register(w.sock, selectors.EVENT_READ, w)

    def run(self):
        while not self.stop:
            with self.lock:
                events = self.sel.select(timeout=0.02) if self.sel.get_map() else []
                for key, _ in events:
                    w = key.data
                    try:
                        data = w.sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    w.feed(data)
                    if not data:
                        self.sel.unregister(w.sock)
            if not events:
                time.sleep(0.01)

    def close(self):
        self.stop = True
        self.thread.join(2)


def connect_all(reader, src, port, n):
    ws = []
    for _ in range(n):
        w = Watcher(src, port)
        assert w.opened, (src, w.status, w.body)
        reader.add(w)
        ws.append(w)
    return ws


def wait_for(cond, timeout=3.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_hosts_holding_every_open_place_give_way_to_a_newcomer(box):
    port = box.port
    reader = Reader()
    everyone = []
    try:
        # The operator's own two tabs (loopback: privileged places).
        local = connect_all(reader, "127.0.0.1", port, 2)
        held = {h: connect_all(reader, h, port, PER_IP) for h in HOSTS}
        everyone = local + [w for ws in held.values() for w in ws]
        time.sleep(0.3)
        # A fourth address's watcher is let in (it was answered 503
        # "already 24 clients without the token" for as long as the three
        # liked), and the oldest watcher of the first host is closed with
        # the reason.
        first = Watcher(NEWCOMER, port)
        assert first.opened, (first.status, first.body)
        reader.add(first)
        everyone.append(first)
        oldest = held[HOSTS[0]][0]
        assert wait_for(lambda: oldest.close is not None), "no close frame"
        code, reason = oldest.close
        assert code == 1013 and "room made for another address" in reason, oldest.close
        closed = [w for w in everyone if w.close is not None]
        assert closed == [oldest]
        # Until every address holds six: the next five come in, one from
        # each host in turn (the one holding the most, whose oldest is
        # oldest on a tie), each host's oldest first.
        gone = {HOSTS[0]: 1, HOSTS[1]: 0, HOSTS[2]: 0}
        for k, host in enumerate([HOSTS[1], HOSTS[2], HOSTS[0], HOSTS[1], HOSTS[2]]):
            w = Watcher(NEWCOMER, port)
            assert w.opened, (k, w.status, w.body)
            reader.add(w)
            everyone.append(w)
            victim = held[host][gone[host]]
            gone[host] += 1
            assert wait_for(lambda: victim.close is not None), (k, host)
        assert wait_for(lambda: sum(w.close is not None for w in everyone) == 6)
        # Even shares: a newcomer from any of the four is refused with the
        # reason, and nobody else is closed for it.
        for src in HOSTS + [NEWCOMER]:
            w = Watcher(src, port)
            assert w.status.startswith(b"HTTP/1.1 503"), (src, w.status)
            assert b"without the token" in w.body, w.body
            w.sock.close()
        time.sleep(0.5)
        assert sum(w.close is not None for w in everyone) == 6
        # The operator's tabs were never touched, and still get frames.
        seen = [w.frames for w in local]
        time.sleep(0.5)
        for w, before in zip(local, seen):
            assert w.close is None and not w.ended and w.frames > before
        assert "made room for 192.0.2.64" in box.text()
        assert "by closing the oldest client of 192.0.2.61" in box.text()
    finally:
        reader.close()
        for w in everyone:
            w.sock.close()
