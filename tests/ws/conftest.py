"""Fixtures for the WebSocket/UI tests: build phase4, generate a WAV, run the
service on it (--input FILE --loop) with a temp config, free ports and a temp
state directory, and stop it with SIGTERM."""

import asyncio
import json
import math
import os
import random
import signal
import socket
import sys
import struct
import subprocess
import time
import wave
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("P4_ARTIFACTS", ROOT / "target" / "ws-artifacts"))


sys.path.insert(0, str(ROOT / "scripts" / "lib"))
from ports import free_port  # noqa: E402  (never the same port twice)


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
        frames += pcm16(v)
    return write_mono_wav(path, sr, frames)


def pcm16(v):
    """One sample in [-1, 1] (clipped) as 16-bit little-endian PCM."""
    return struct.pack("<h", int(max(-1.0, min(1.0, v)) * 32000))


def write_mono_wav(path, sr, frames):
    """A mono 16-bit WAV of `frames` (bytes from pcm16); returns `path`."""
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
        # Absolute: the process runs in `workdir`.
        self.binary = str(Path(binary).resolve())
        self.wav, self.workdir = wav, Path(workdir)
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
        """Real ALSA capture devices without a sound card (see
        wire.alsa_test_devices): `p4ws` opens, `p4null` has no clock,
        `p4broken` does not open."""
        return dict(os.environ) | alsa_test_devices(self.workdir, self.wav)

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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test, for fixtures to read."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def make_server(binary, wav, tmp_path, request):
    started = []

    def make(**kw):
        s = Server(binary, wav, tmp_path, **kw)
        started.append(s)
        return s.start()

    yield make
    for s in started:
        s.stop()
    # A failed test shows what its servers logged (the log itself lives in
    # a temporary folder pytest deletes a few runs later).
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for s in started:
            lines = s.log.read_text(errors="replace").splitlines() if s.log.exists() else []
            print(f"---- {s.log.name}, last {min(len(lines), 80)} of {len(lines)} lines ----")
            print("\n".join(lines[-80:]))


@pytest.fixture
def server(make_server):
    return make_server()


# ------------------------------------------------------------------ helpers


async def recv_json(ws, type_, timeout=5.0):
    """The next text message of `type_` (others are skipped)."""
    return await recv_any(ws, {type_}, timeout)


async def fresh_meta(url, timeout=5.0, steps=None):
    """The meta a newly connected client gets. `steps`, when given, collects
    how long each step took (connect, first meta, close)."""
    import websockets

    steps = {} if steps is None else steps
    t0 = time.monotonic()
    async with websockets.connect(url, open_timeout=timeout, close_timeout=timeout) as ws:
        t1 = time.monotonic()
        steps["connect"] = round(t1 - t0, 2)
        msg = await recv_json(ws, "meta", timeout)
        t2 = time.monotonic()
        steps["meta"] = round(t2 - t1, 2)
    steps["close"] = round(time.monotonic() - t2, 2)
    return msg


def meta_now(url, timeout=30.0):
    """fresh_meta from synchronous code that may already run an event loop
    (Playwright's sync API does). The bound is the UI tests' own (30 s): on
    a machine loaded by Chromium and the CI's background builds, one call
    once took more than the 10 s it had; the error now says which step was
    slow."""
    import concurrent.futures

    steps = {}
    t0 = time.monotonic()
    ex = concurrent.futures.ThreadPoolExecutor(1)
    try:
        fut = ex.submit(lambda: asyncio.run(fresh_meta(url, timeout / 3, steps)))
        try:
            return fut.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            # (In Python 3.11 this is the built-in TimeoutError, which the
            # client's own step timeouts raise too.)
            why = f"{fut.exception()!r}" if fut.done() else f"nothing within {timeout} s"
            raise AssertionError(
                f"a new client got no meta: {why} "
                f"(steps done: {steps or 'none'}; {time.monotonic() - t0:.1f} s after the start)"
            ) from None
    finally:
        ex.shutdown(wait=False)


# ------------------------------------------------------- raw WebSocket frames

# The raw WebSocket/HTTP helpers live with the abuse runner (scripts/abuse/),
# which attacks phase4 the same way.
sys.path.insert(0, str(ROOT / "scripts" / "abuse"))
from wire import (  # noqa: E402,F401
    alsa_test_devices, http_request, recv_any, ws_close_code, ws_frame, ws_handshake)
