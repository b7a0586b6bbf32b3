"""Shared fixtures for the end-to-end tests: the release binary, generated
audio written as raw files or WAVs, an ALSA `file`-plugin device pointing at
them (real alsa-lib, no sound card), and an OSC receiver decoded by
python-osc (a decoder we did not write)."""

import asyncio
import math
import os
import signal
import socket
import struct
import sys
import subprocess
import threading
import time
import wave
from pathlib import Path

import pytest
from pythonosc.osc_packet import OscPacket

ROOT = Path(__file__).resolve().parents[2]
# The WebSocket receive helper lives with the abuse runner's wire pieces.
sys.path.insert(0, str(ROOT / "scripts" / "abuse"))
from wire import recv_any as ws_recv  # noqa: E402,F401
sys.path.insert(0, str(ROOT / "scripts" / "lib"))
from ports import free_port  # noqa: E402  (never the same port twice)

BIN = Path(os.environ.get("PHASE4_BIN", ROOT / "target" / "release" / "phase4"))
RATE = 48000
BLOCK = 256


@pytest.fixture(scope="session")
def phase4_bin():
    if not BIN.exists():
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    return BIN


@pytest.fixture(scope="session")
def fault_bin():
    """phase4 built with the fault-injection feature (never shipped), as
    the binary `phase4-fault-injection` (src/bin/fault_injection.rs).

    Built in the shared target directory, so only phase4 itself is compiled
    again (a separate target directory cost a whole second release build,
    minutes on a first run). A binary of its own, so target/release/phase4
    is never replaced, not even for a moment: suites running beside this
    one (scripts/test.sh's side track) use it."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    subprocess.run(["cargo", "build", "--release", "--quiet", "--features", "fault-injection",
                    "--bin", "phase4-fault-injection"], cwd=ROOT, check=True)
    return target / "release" / "phase4-fault-injection"


def tone(freq, amp=0.5):
    return lambda t: amp * math.sin(2 * math.pi * freq * t)


def silence(_t):
    return 0.0


def render(signal, seconds, rate=RATE):
    """Samples of `signal(t)` (a function of time, or a list of
    (duration, function) segments played one after another)."""
    n = int(seconds * rate)
    if callable(signal):
        return [signal(i / rate) for i in range(n)]
    out = []
    for dur, fn in signal:
        m = int(dur * rate)
        out.extend(fn(i / rate) for i in range(m))
    return out[:n] + [0.0] * max(0, n - len(out))


def encode(samples, fmt, channels, pick=None):
    """Interleave mono `samples` into `channels` in sample format `fmt`.
    With `pick`, only that channel carries the signal (others silent)."""
    out = bytearray()
    for s in samples:
        s = max(-1.0, min(1.0, s))
        for c in range(channels):
            v = s if pick is None or c == pick else 0.0
            if fmt == "S16_LE":
                out += struct.pack("<h", int(round(v * 32767)))
            elif fmt == "S24_3LE":
                out += struct.pack("<i", int(round(v * 8388607)))[:3]
            elif fmt == "S24_LE":
                # 24 bits in the low three bytes of four; the padding byte
                # is garbage on purpose (codecs differ): it must be ignored.
                out += struct.pack("<i", int(round(v * 8388607)))[:3] + b"\xa5"
            elif fmt == "S32_LE":
                out += struct.pack("<i", int(round(v * 2147483647)))
            elif fmt == "FLOAT_LE":
                out += struct.pack("<f", v)
            else:
                raise ValueError(fmt)
    return bytes(out)


def write_wav(path, samples, rate=RATE, bits=16):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(bits // 8)
        w.setframerate(rate)
        if bits == 16:
            w.writeframes(b"".join(struct.pack("<h", int(max(-1, min(1, s)) * 32767)) for s in samples))
        elif bits == 8:
            w.writeframes(bytes(int((max(-1, min(1, s)) + 1) * 127) for s in samples))
    return path


def alsa_device(tmp_path, raw_bytes, name="p4e2e"):
    """An ALSA config defining `name` as a file-plugin capture device."""
    raw = tmp_path / f"{name}.raw"
    raw.write_bytes(raw_bytes)
    conf = tmp_path / "asound.conf"
    conf.write_text(
        f'pcm.{name} {{\n type file\n slave.pcm "null"\n file "/dev/null"\n'
        f' infile "{raw}"\n format "raw"\n}}\n'
    )
    return f"/usr/share/alsa/alsa.conf:{conf}"


def free_udp_port():
    return free_port(socket.SOCK_DGRAM)


def free_tcp_port():
    return free_port(socket.SOCK_STREAM)


async def ws_connect(port, wait_s=10.0):
    """A WebSocket client (Python websockets) of phase4 on 127.0.0.1:`port`,
    once phase4 listens (it is tried every 0.1 s for `wait_s`)."""
    import websockets
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await websockets.connect(f"ws://127.0.0.1:{port}", max_size=None)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


class OscReceiver:
    """Collects every OSC message sent to a UDP port, with arrival times.
    Bundles are flattened; each message keeps the bundle's time tag."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # A clockless device produces a burst far faster than real time; a
        # large receive buffer keeps the kernel from dropping datagrams.
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE (root)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.raw = []
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop:
            try:
                data, _ = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            self.raw.append((time.monotonic(), data))

    def stop(self, linger=0.5):
        time.sleep(linger)
        self._stop = True
        self._t.join()
        self.sock.close()

    def messages(self):
        out = []
        for t, data in self.raw:
            packet = OscPacket(data)
            for m in packet.messages:
                out.append((t, m.message.address, m.message.params, m.time, typetags(data, m.message)))
        return out


def typetags(_data, message):
    # python-osc exposes the decoded values; rebuild the tag string from the
    # raw message it parsed.
    dg = message.dgram
    i = dg.index(b",")
    end = dg.index(b"\x00", i)
    return dg[i + 1 : end].decode()


def write_config(path, **sections):
    """Write a TOML config from {section: {key: value}} (nested dicts for
    sub-tables, lists of dicts for arrays of tables)."""
    lines = []

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        raise TypeError(v)

    def emit(prefix, table):
        simple = {k: v for k, v in table.items() if not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict))}
        lines.append(f"[{prefix}]")
        for k, v in simple.items():
            lines.append(f"{k} = {val(v)}")
        for k, v in table.items():
            if isinstance(v, dict):
                emit(f"{prefix}.{k}", v)
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    lines.append(f"[[{prefix}.{k}]]")
                    for ik, iv in item.items():
                        lines.append(f"{ik} = {val(iv)}")

    for name, table in sections.items():
        emit(name, table)
    path.write_text("\n".join(lines) + "\n")
    return path


def minimal_config(tmp_path, port=9, health_s=1.0, **audio):
    """A config with `audio` settings, OSC to 127.0.0.1:`port`, no
    WebSocket and no state directory."""
    return write_config(
        tmp_path / "c.toml",
        audio=audio,
        osc={"destinations": [{"host": "127.0.0.1", "port": port}]},
        ws={"enabled": False},
        state={"dir": ""},
        health={"interval-s": health_s},
    )


def sigterm(proc, timeout=10):
    """SIGTERM to `proc` and wait for it: (seconds to exit, its stderr if
    piped, else None)."""
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout)
    return time.monotonic() - t, err


def run_phase4(phase4_bin, config, args=(), env_extra=None, timeout=60):
    env = dict(os.environ)
    env.update(env_extra or {})
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.run(
        [str(phase4_bin), "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
