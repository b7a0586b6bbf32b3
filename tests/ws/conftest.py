"""Fixtures for the WebSocket/UI tests: build phase4, generate a WAV, run the
service on it (--input FILE --loop) with a temp config, free ports and a temp
state directory, and stop it with SIGTERM."""

import asyncio
import base64
import json
import math
import os
import random
import signal
import socket
import struct
import subprocess
import time
import wave
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("P4_ARTIFACTS", ROOT / "target" / "ws-artifacts"))


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port):
    with socket.socket() as s:
        # Like the server's listener: TIME_WAIT leftovers do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="session")
def binary():
    env_bin = os.environ.get("PHASE4_BIN")
    if env_bin:
        return str(Path(env_bin).resolve())
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return str(Path(target) / "release" / "phase4")


@pytest.fixture(scope="session")
def wav(tmp_path_factory):
    """4 s of music-like audio at 48 kHz: a bass tone, a mid tone and a
    noise burst on every half second (onsets, a 120 BPM pulse)."""
    path = tmp_path_factory.mktemp("audio") / "input.wav"
    sr = 48000
    rnd = random.Random(4)
    frames = bytearray()
    for i in range(sr * 4):
        t = i / sr
        k = i % (sr // 2)
        v = 0.3 * math.sin(2 * math.pi * 110 * t) + 0.15 * math.sin(2 * math.pi * 1500 * t)
        v += 0.5 * rnd.uniform(-1, 1) * math.exp(-k / 600)
        frames += struct.pack("<h", int(max(-1.0, min(1.0, v)) * 32000))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(bytes(frames))
    return path


class Server:
    """One phase4 process on a WAV input."""

    def __init__(self, binary, wav, workdir, ws_port=None, http_port=None, state_dir=None, extra="",
                 env=None, input=True, audio="", nofile=None, bind="127.0.0.1"):
        self.binary, self.wav, self.workdir = binary, wav, Path(workdir)
        self.ws_port = ws_port or free_port()
        self.http_port = http_port or free_port()
        self.osc_port = free_port(socket.SOCK_DGRAM)
        self.state_dir = Path(state_dir or self.workdir / "state")
        self.extra = extra
        self.env = env or {}
        self.input = input      # play the WAV (else capture from [audio] device)
        self.audio = audio      # extra [audio] keys
        self.nofile = nofile    # RLIMIT_NOFILE (soft and hard) for the process
        self.bind = bind
        self.proc = None
        self.log = self.workdir / f"phase4-{self.ws_port}.log"

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.ws_port}"

    @property
    def http(self):
        return f"http://127.0.0.1:{self.http_port}"

    def config_text(self):
        return f"""
[audio]
{self.audio}

[realtime]
enabled = false
lock-memory = false

[osc]
destinations = [{{ host = "127.0.0.1", port = {self.osc_port} }}]

[ws]
bind = "{self.bind}"
port = {self.ws_port}
http-port = {self.http_port}
web-dir = "{ROOT / 'web'}"
{self.extra}

[state]
dir = "{self.state_dir}"
"""

    def alsa_env(self):
        """A real ALSA capture device without a sound card: alsa-lib's `file`
        plugin reading the test WAV's samples, listed (hinted) as `p4ws` so
        that list_devices and set_device have a device that opens, and
        `p4broken`, listed but failing to open."""
        raw = self.workdir / "p4ws.raw"
        if not raw.exists():
            with wave.open(str(self.wav), "rb") as w:
                frames = w.readframes(w.getnframes())
            raw.write_bytes(frames * 4)
        conf = self.workdir / "asound.conf"
        conf.write_text(
            'pcm.p4ws {\n type file\n slave.pcm "null"\n file "/dev/null"\n'
            f' infile "{raw}"\n format "raw"\n'
            ' hint { show on description "phase4 test device (file plugin)" }\n}\n'
            # Listed, but does not open: a switch to it must roll back.
            'pcm.p4broken {\n type hw\n card 99\n'
            ' hint { show on description "phase4 test device that fails to open" }\n}\n'
        )
        env = dict(os.environ)
        env["ALSA_CONFIG_PATH"] = f"/usr/share/alsa/alsa.conf:{conf}"
        return env

    def start(self, timeout=10.0):
        cfg = self.workdir / f"phase4-{self.ws_port}.toml"
        # The [ws] extras may carry whole sections after their keys.
        cfg.write_text(self.config_text())
        args = [self.binary, "--config", str(cfg), "--log-level", "debug"]
        if self.input:
            args += ["--input", str(self.wav), "--loop"]
        env = self.alsa_env() | self.env

        def limits():
            if self.nofile:
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

        self.proc = subprocess.Popen(
            args,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
            preexec_fn=limits,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"phase4 exited with {self.proc.returncode}:\n{self.log.read_text()}")
            host = "127.0.0.1" if self.bind in ("0.0.0.0", "127.0.0.1") else self.bind
            try:
                with socket.create_connection((host, self.ws_port), timeout=0.2):
                    pass
                with socket.create_connection((host, self.http_port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("phase4 did not open its ports:\n" + self.log.read_text())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_s(self):
        """User + system CPU time of the process so far, seconds."""
        f = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def make_server(binary, wav, tmp_path):
    started = []

    def make(**kw):
        s = Server(binary, wav, tmp_path, **kw)
        started.append(s)
        return s.start()

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def server(make_server):
    return make_server()


# ------------------------------------------------------------------ helpers


async def recv_json(ws, type_, timeout=5.0):
    """The next text message of `type_` (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {type_} message within {timeout} s")
        frame = await asyncio.wait_for(ws.recv(), left)
        if isinstance(frame, str):
            msg = json.loads(frame)
            if msg.get("type") == type_:
                return msg


async def recv_any(ws, types, timeout=5.0):
    """The next text message whose type is in `types`."""
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


async def fresh_meta(url):
    """The meta a newly connected client gets."""
    import websockets

    async with websockets.connect(url) as ws:
        return await recv_json(ws, "meta")


def meta_now(url):
    """fresh_meta from synchronous code that may already run an event loop
    (Playwright's sync API does)."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(lambda: asyncio.run(fresh_meta(url))).result(timeout=10)


# ------------------------------------------------------- raw WebSocket frames


def ws_handshake(port, host=None, origin=None, path="/", src=None, timeout=5.0):
    """A raw socket that completed a WebSocket handshake (or raises with the
    status line it got)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                 source_address=(src, 0) if src else None)
    key = base64.b64encode(os.urandom(16)).decode()
    head = (f"GET {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if origin:
        head += f"Origin: {origin}\r\n"
    s.sendall((head + "\r\n").encode())
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(4096)
        if not chunk:
            break
        resp += chunk
    status = resp.split(b"\r\n", 1)[0].decode(errors="replace")
    if " 101 " not in status:
        s.close()
        raise ConnectionRefusedError(status)
    return s


def ws_frame(opcode, payload=b"", mask=True, fin=True):
    """One client frame."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        head = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    m = os.urandom(4)
    return head + m + bytes(c ^ m[i % 4] for i, c in enumerate(payload))


def ws_close_code(s, timeout=5.0):
    """Read server frames until a close frame; its code (None if the
    connection ended without one)."""
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
        except (socket.timeout, ConnectionResetError):
            return None
        if not chunk:
            return None
        buf += chunk
    return None


class NotifySocket:
    """Stands in for systemd: the notify socket phase4 sends READY=1 and
    WATCHDOG=1 to. `env()` gives the variables to start phase4 with."""

    def __init__(self, path, watchdog_usec=5_000_000):
        import threading
        self.path = str(path)
        self.watchdog_usec = watchdog_usec
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.pings = []
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def env(self):
        return {"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": str(self.watchdog_usec)}

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            if b"WATCHDOG=1" in data:
                self.pings.append(time.monotonic())

    def longest_gap(self, since, until=None):
        """Longest time without a ping within [since, until]."""
        until = until or time.monotonic()
        ts = [since] + [t for t in self.pings if since <= t <= until] + [until]
        return max(b - a for a, b in zip(ts, ts[1:]))

    def close(self):
        self._stop = True
        self._t.join()
        self.sock.close()


async def snapshot_counter(url, stop, per_second, **kw):
    """Count snapshots per wall-clock second into `per_second` (a list)
    until `stop` (an asyncio.Event) is set."""
    import websockets
    async with websockets.connect(url, max_size=None, **kw) as ws:
        second, n = int(time.monotonic()), 0
        while not stop.is_set():
            try:
                f = await asyncio.wait_for(ws.recv(), 0.2)
            except asyncio.TimeoutError:
                f = None
            now = int(time.monotonic())
            while now > second:
                per_second.append(n)
                second, n = second + 1, 0
            if isinstance(f, str) and '"type":"snapshot"' in f:
                n += 1
