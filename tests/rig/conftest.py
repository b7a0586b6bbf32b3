"""Shared set-up for the rig-output tests (mDNS, OSCQuery, Link, MIDI, WLED,
OSC broadcast/multicast).

Nothing may leave the machine: these tests send multicast (mDNS on
224.0.0.251, Link discovery on 224.76.78.75, WLED on 239.0.0.1) and
broadcast. So before anything else, this pytest process moves itself into a
NETWORK NAMESPACE OF ITS OWN (unshare(CLONE_NEWNET)) holding only a loopback
interface, with multicast switched on and routed to it, and into a mount
namespace whose /run is a private tmpfs (for the private avahi-daemon and
D-Bus). Every process the tests start inherits both; the machine's real
interfaces are not reachable from here at all.
"""

import ctypes
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import pytest

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18


def _enter_namespaces():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET | CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET|CLONE_NEWNS) failed (needs root)")
    # Mounts made here stay here.
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "making / private failed")
    for cmd in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "set", "lo", "multicast", "on"],
        ["ip", "route", "add", "224.0.0.0/4", "dev", "lo"],
        ["mount", "-t", "tmpfs", "tmpfs", "/run"],
    ):
        subprocess.run(cmd, check=True)
    # Only loopback exists: nothing sent from here can reach a real network.
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert [l.split(":")[1].strip() for l in links.splitlines()] == ["lo"], links


_enter_namespaces()


def private_network():
    """Fail unless this process is in a network namespace other than the
    host's, holding only a loopback interface: called before every test of
    this suite (and by senders of floods themselves), so no test can send
    to a real network if the namespace was ever lost or the file run some
    other way."""
    try:
        shared = os.readlink("/proc/self/ns/net") == os.readlink("/proc/1/ns/net")
    except PermissionError:  # /proc/1 unreadable (no root, or a sandbox): the interfaces decide
        shared = False
    links = [name for _, name in socket.if_nameindex()]
    assert not shared and links == ["lo"], (
        f"not in the rig suite's own network namespace (host's: {shared}, interfaces {links})")


@pytest.fixture(autouse=True)
def _nothing_leaves_the_machine():
    private_network()

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("PHASE4_BIN", ROOT / "target" / "release" / "phase4"))
LINK_BIN = Path(os.environ.get("PHASE4_LINK_BIN", ROOT / "target" / "release" / "phase4-link"))
RATE = 48000


@pytest.fixture(scope="session")
def phase4_bin():
    if not BIN.exists():
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    return BIN


def write_wav(path, samples, rate=RATE):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(max(-1.0, min(1.0, s)) * 32767)) for s in samples))


def beat_track(seconds, bpm=120.0, silence_after=None, rate=RATE):
    """A steady drum pattern: a decaying 60 Hz kick on every beat, a noise
    snare on beats 2 and 4, a hi-hat click on the off-beats and a quiet
    1 kHz pad; silent from `silence_after` seconds on."""
    import math
    import random

    rng = random.Random(7)
    noise = [rng.uniform(-1, 1) for _ in range(rate // 10)]
    period = 60.0 / bpm
    out = []
    for i in range(int(seconds * rate)):
        t = i / rate
        if silence_after is not None and t >= silence_after:
            out.append(0.0)
            continue
        k = int(t / period)
        tb = t - k * period
        x = 0.6 * math.sin(2 * math.pi * 60 * tb) * math.exp(-tb / 0.08)
        if k % 2 == 1 and tb < 0.1:
            x += 0.3 * noise[int(tb * rate)] * math.exp(-tb / 0.03)
        th = tb - period / 2
        if 0 <= th < 0.02:
            x += 0.2 * noise[int(th * rate)] * math.exp(-th / 0.004)
        x += 0.1 * math.sin(2 * math.pi * 1000 * t) * (0.5 - 0.5 * math.cos(2 * math.pi * t / 4))
        out.append(x)
    return out


def tone(freq, seconds, amp=0.4, rate=RATE):
    import math

    return [amp * math.sin(2 * math.pi * freq * i / rate) for i in range(int(seconds * rate))]


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path, sections):
    """`sections`: {"audio": {...}, "osc.destinations": [{...}], ...}."""
    lines = []
    for name, body in sections.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{name}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in item.items()]
        else:
            lines.append(f"[{name}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in body.items()]
    Path(path).write_text("\n".join(lines) + "\n")


class Phase4:
    """A running phase4 with a config built from sections."""

    def __init__(self, binary, workdir, sections, args=()):
        self.cfg = Path(workdir) / "phase4.toml"
        base = {"state": {"dir": ""}, "health": {"interval-s": 1.0}}
        base.update(sections)
        write_config(self.cfg, base)
        self.log = Path(workdir) / "phase4.log"
        self.proc = subprocess.Popen(
            [str(binary), "--config", str(self.cfg), *args],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "w"),
        )

    def text(self):
        return self.log.read_text()

    def wait_log(self, needle, timeout=10.0):
        end = time.time() + timeout
        while time.time() < end:
            if needle in self.text():
                return True
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not logged:\n{self.text()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def run_phase4(phase4_bin, tmp_path):
    started = []

    def start(sections, args=()):
        p = Phase4(phase4_bin, tmp_path, sections, args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "lib"))
from ports import free_port  # noqa: E402  (never the same port twice)


def wait_port(port, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

AVAHI_CONF = """[server]
use-ipv4=yes
use-ipv6=no
allow-interfaces=lo
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
[reflector]
[rlimits]
"""


def accepts(path):
    """Whether a Unix stream socket at `path` takes a connection."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


@pytest.fixture
def avahi():
    """A private system D-Bus and avahi-daemon, inside this test's network
    and mount namespaces (the host's /run is hidden behind a tmpfs)."""
    d = Path(tempfile.mkdtemp(prefix="p4-avahi-"))
    sock = d / "bus"
    (d / "bus.conf").write_text(BUS_CONF.format(sock=sock))
    (d / "avahi.conf").write_text(AVAHI_CONF)
    os.makedirs("/run/avahi-daemon", exist_ok=True)
    bus = subprocess.Popen(["dbus-daemon", "--nofork", f"--config-file={d / 'bus.conf'}"])
    # Until the bus takes connections: its socket file appears when it is
    # bound, before it listens, and avahi-daemon started in between was
    # refused and exited (CI, once, with the cross build beside it).
    for _ in range(200):
        if accepts(sock):
            break
        time.sleep(0.05)
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={sock}")
    log = open(d / "avahi.log", "w")
    daemon = subprocess.Popen(
        ["avahi-daemon", "--no-drop-root", "--no-chroot", "--no-rlimits", "-f", str(d / "avahi.conf")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    end = time.time() + 10
    while "Server startup complete" not in (d / "avahi.log").read_text():
        assert time.time() < end and daemon.poll() is None, (d / "avahi.log").read_text()
        time.sleep(0.05)
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = env["DBUS_SYSTEM_BUS_ADDRESS"]
    yield env
    del os.environ["DBUS_SYSTEM_BUS_ADDRESS"]
    for p in (daemon, bus):
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
    log.close()
    shutil.rmtree(d, ignore_errors=True)
