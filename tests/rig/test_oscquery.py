"""OSCQuery: phase4 found by python-oscquery's browser (zeroconf) and read by
its client (an implementation we did not write), every node checked against
the proposal's JSON rules by a validator written here from the proposal
text, LISTEN streaming received over a WebSocket (the `websockets` package)
and decoded by python-osc; hostile requests get clean errors; writes
through the OSC input port validated like WebSocket commands, from this
machine and (after /phase4/auth with the token) from a "LAN" address,
192.0.2.10 added to the loopback interface of the test's own network
namespace (a source address that is not 127/8).

Runs inside the network namespace conftest.py creates (the mDNS multicast
never reaches a real interface).
"""

import asyncio
import subprocess
import json
import socket
import time
import urllib.request

import pytest
import websockets
from pythonosc.osc_message import OscMessage
from pythonoscquery.osc_query_browser import OSCQueryBrowser
from pythonoscquery.osc_query_client import OSCQueryClient
from pythonoscquery.shared.oscquery_spec import OSCQueryAttribute

from conftest import beat_track, private_network, wait_port, write_wav

private_network()  # only in conftest.py's namespace (unshare(CLONE_NEWNET)): nothing leaves it


PORT = 8767
INPUT = 9102
ADDRESSES = ["meta", "lmh", "level", "bpm", "tempo", "onset/low", "onset/mid", "onset/high",
             "fft", "spectral", "onset", "beat", "silence"]
EVENTS = {"onset/low", "onset/mid", "onset/high", "onset", "beat"}
OSC_TYPES = set("ifsbhtdScrmTFNI[]")


def validate_node(node, path="/", problems=None):
    """The proposal's rules for a node object (README, "Core Functionality",
    "Optional Attributes", "Other notes on attributes")."""
    p = problems if problems is not None else []
    if not isinstance(node, dict):
        return p + [f"{path}: not an object"]
    if node.get("FULL_PATH") != path:
        p.append(f"{path}: FULL_PATH {node.get('FULL_PATH')!r}")
    access = node.get("ACCESS")
    if access is not None and access not in (0, 1, 2, 3):
        p.append(f"{path}: ACCESS {access!r}")
    if "DESCRIPTION" in node and not isinstance(node["DESCRIPTION"], str):
        p.append(f"{path}: DESCRIPTION not a string")
    types = node.get("TYPE")
    if types is not None:
        if not isinstance(types, str) or not types or set(types) - OSC_TYPES:
            p.append(f"{path}: TYPE {types!r}")
        n = len(types)
        # VALUE and RANGE: one item per type (or one item standing for all).
        if "VALUE" in node:
            v = node["VALUE"]
            if not isinstance(v, list) or len(v) != n:
                p.append(f"{path}: VALUE {v!r} for TYPE {types!r}")
            else:
                for t, x in zip(types, v):
                    if t in "ifhd" and not (x is None or isinstance(x, (int, float))):
                        p.append(f"{path}: VALUE {x!r} not a number")
                    if t in "TF" and not isinstance(x, bool):
                        p.append(f"{path}: VALUE {x!r} not a boolean")
            if access is not None and not access & 1:
                p.append(f"{path}: VALUE on a method that cannot be read")
        if "RANGE" in node:
            r = node["RANGE"]
            if not isinstance(r, list) or len(r) not in (1, n):
                p.append(f"{path}: RANGE length {len(r) if isinstance(r, list) else r!r} for {n} types")
            else:
                for item in r:
                    if item is None:
                        continue
                    if not isinstance(item, dict) or set(item) - {"MIN", "MAX", "VALS"}:
                        p.append(f"{path}: RANGE item {item!r}")
                    elif "VALS" in item and not isinstance(item["VALS"], list):
                        p.append(f"{path}: VALS not a list")
                    elif "MIN" in item and "MAX" in item and item["MIN"] > item["MAX"]:
                        p.append(f"{path}: MIN > MAX")
    contents = node.get("CONTENTS")
    if contents is not None:
        if not isinstance(contents, dict):
            p.append(f"{path}: CONTENTS not an object")
        else:
            for name, child in contents.items():
                if "/" in name or not name:
                    p.append(f"{path}: child name {name!r}")
                validate_node(child, (path.rstrip("/") + "/" + name), p)
    if types is None and contents is None:
        p.append(f"{path}: neither a method (TYPE) nor a container (CONTENTS)")
    return p


def node_at(root, path):
    node = root
    for seg in path.strip("/").split("/"):
        node = node["CONTENTS"][seg]
    return node


def get(path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


@pytest.fixture
def server(run_phase4, tmp_path):
    wav = tmp_path / "in.wav"
    write_wav(wav, beat_track(8.0))
    p4 = run_phase4({
        "audio": {"input": str(wav), "loop-input": True},
        "osc": {"enabled": False},
        "fft": {"enabled": True, "n-bins": 32},
        "oscquery": {"enabled": True, "bind": "0.0.0.0", "port": PORT, "input-port": INPUT},
        "discovery": {"enabled": True, "name": "oscq box", "backend": "builtin"},
    })
    wait_port(PORT)
    p4.wait_log("first block through")
    time.sleep(1.0)
    return p4


def test_python_oscquery_finds_and_reads_phase4(server):
    browser = OSCQueryBrowser()
    try:
        svc = None
        end = time.time() + 10
        while svc is None and time.time() < end:
            time.sleep(0.5)
            svc = browser.find_service_by_name("oscq box")
        assert svc is not None, browser.get_discovered_oscquery()
        client = OSCQueryClient(svc)
        hi = client.get_host_info()
        assert hi.osc_port == INPUT and hi.osc_transport == "UDP", hi
        assert hi.extensions["LISTEN"] is True and hi.extensions["VALUE"] is True
        root = client.query_node("/")
        assert root is not None
        raw = client.last_json
        lmh = client.query_node("/audio/lmh")
        assert lmh is not None
        assert len(lmh.attributes[OSCQueryAttribute.VALUE]) == 3
    finally:
        browser.zc.close()
    problems = validate_node(raw)
    assert problems == [], problems
    for a in ADDRESSES:
        node = node_at(raw, "/audio/" + a)
        # Events have no lasting value (ACCESS 0) but can be LISTENed to.
        assert node["ACCESS"] == (0 if a in EVENTS else 1), a
        assert node["TYPE"] and node["DESCRIPTION"], a
        assert ("VALUE" in node) == (a not in EVENTS), a
    assert len(node_at(raw, "/audio/fft")["TYPE"]) == 32
    lo = node_at(raw, "/audio/settings/dsp/low/lo-hz")
    assert lo["ACCESS"] == 3 and lo["TYPE"] == "f" and lo["VALUE"] == [30.0]
    # Every value is live: the band energies of the music are not all zero.
    lmh = json.loads(get("/audio/lmh?VALUE")[2])
    assert len(lmh["VALUE"]) == 3 and max(lmh["VALUE"]) > 0.05, lmh


def test_attributes_errors_and_hostile_requests(server):
    assert get("/audio/lmh?TYPE")[:2] == (200, "application/json")
    assert json.loads(get("/audio/lmh?TYPE")[2]) == {"TYPE": "fff"}
    assert json.loads(get("/audio?TYPE")[2]) == {}
    assert get("/audio?VALUE")[0] == 204
    assert get("/audio/nothing")[0] == 404
    assert get("/audio/lmh?NOT_AN_ATTRIBUTE")[0] == 400
    hi = json.loads(get("/no/matter?HOST_INFO")[2])
    assert hi["OSC_PORT"] == INPUT and hi["WS_PORT"] == PORT and hi["NAME"].endswith("oscq box")
    # Writes are not taken over HTTP.
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}/audio/lmh", data=b"{}", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 405
    # An oversized head, garbage and a silent client: closed, server fine.
    for junk in [b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", b"\x00\xff garbage\r\n\r\n", b""]:
        s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
        if junk:
            try:
                s.sendall(junk)
            except OSError:
                pass
        try:
            reply = s.recv(100)
        except (socket.timeout, OSError):
            reply = b""
        s.close()
        assert reply == b"" or reply.startswith(b"HTTP/1.1 4"), reply
    assert get("/audio/lmh?TYPE")[0] == 200


def test_listen_streams_values_and_ignore_stops_them(server):
    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{PORT}/") as ws:
            await ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/audio/lmh"}))
            await ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/audio/tempo"}))
            got = {}
            end = time.time() + 3
            while time.time() < end:
                m = await asyncio.wait_for(ws.recv(), 2)
                assert isinstance(m, bytes)
                msg = OscMessage(m)
                got.setdefault(msg.address, []).append(msg.params)
            assert set(got) == {"/audio/lmh", "/audio/tempo"}, set(got)
            # At most listen-hz (60) per address, and close to it.
            assert 100 <= len(got["/audio/lmh"]) <= 200, len(got["/audio/lmh"])
            assert all(len(p) == 3 and all(0.0 <= x <= 1.0 for x in p) for p in got["/audio/lmh"])
            await ws.send(json.dumps({"COMMAND": "IGNORE", "DATA": "/audio/lmh"}))
            await ws.send(json.dumps({"COMMAND": "IGNORE", "DATA": "/audio/tempo"}))
            await asyncio.sleep(0.3)
            # Drain what was in flight, then nothing more comes.
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 0.3)
            except asyncio.TimeoutError:
                pass
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 1.0)

    asyncio.run(run())


class MetaWatch:
    """python-osc receiving phase4's OSC output: the latest /audio/meta."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)

    def meta_after(self, t, timeout=4.0):
        """The first /audio/meta sent after time.time() `t`: what was queued
        before is drained first (meta comes every 0.2 s)."""
        from pythonosc.osc_packet import OscPacket

        while time.time() < t:
            time.sleep(0.01)
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recvfrom(65536)
        except BlockingIOError:
            pass
        self.sock.settimeout(0.2)
        end = time.time() + timeout
        while time.time() < end:
            try:
                data, _ = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            for m in OscPacket(data).messages:
                if m.message.address == "/audio/meta":
                    return m.message.params
        raise AssertionError("no /audio/meta")


def send(msg_addr, args, src=("127.0.0.1", 0), dst=("127.0.0.1", INPUT)):
    from pythonosc.osc_message_builder import OscMessageBuilder

    b = OscMessageBuilder(address=msg_addr)
    for a in args:
        b.add_arg(a)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(src)
    s.sendto(b.build().dgram, dst)
    return s


def test_writes_through_the_osc_input_port_are_validated_like_ws_commands(run_phase4, tmp_path):
    from conftest import free_port

    out_port = free_port(socket.SOCK_DGRAM)
    watch = MetaWatch(out_port)
    wav = tmp_path / "in.wav"
    write_wav(wav, beat_track(8.0))
    # A second, non-loopback address in this test's own network namespace
    # (conftest.py): a "LAN" sender that must authenticate.
    subprocess.run(["ip", "addr", "add", "192.0.2.10/32", "dev", "lo"], check=True)
    try:
        p4 = run_phase4({
            "audio": {"input": str(wav), "loop-input": True},
            "ws": {"enabled": True, "token": "t0ken-rig-s3cret"},
            "osc": {"enabled": True, "addresses": ["meta"], "meta-interval-s": 0.2},
            "osc.destinations": [{"host": "127.0.0.1", "port": out_port}],
            "oscquery": {"enabled": True, "bind": "0.0.0.0", "port": PORT, "input-port": INPUT},
        })
        wait_port(PORT)
        p4.wait_log("first block through")
        before = watch.meta_after(time.time())
        assert before[3:5] == pytest.approx([30.0, 250.0], abs=0.5), before

        # From this machine: applied, /audio/meta says so, and so does OSCQuery.
        t = time.time()
        send("/audio/settings/dsp/low/hi-hz", [300.0])
        time.sleep(0.5)
        after = watch.meta_after(t + 0.4)
        assert after[4] == pytest.approx(300.0, abs=0.5), after
        assert json.loads(get("/audio/settings/dsp/low/hi-hz?VALUE")[2]) == {"VALUE": [300.0]}

        # Bad values change nothing: below lo + 50, not a number, NaN, an
        # unknown setting, two arguments.
        for addr, args in [
            ("/audio/settings/dsp/low/hi-hz", [60.0]),
            ("/audio/settings/dsp/low/hi-hz", ["loud"]),
            ("/audio/settings/dsp/low/hi-hz", [float("nan")]),
            ("/audio/settings/dsp/low/lo-hz", [5.0]),
            ("/audio/settings/dsp/bogus", [1.0]),
            ("/audio/settings/dsp/low/hi-hz", [200.0, 300.0]),
        ]:
            send(addr, args)
        time.sleep(0.5)
        same = watch.meta_after(time.time())
        assert same == after, (same, after)

        # From the "LAN" address: refused until it authenticates.
        lan = ("192.0.2.10", INPUT)
        send("/audio/settings/dsp/low/hi-hz", [400.0], src=("192.0.2.10", 40001), dst=lan)
        send("/phase4/auth", ["wrong"], src=("192.0.2.10", 40001), dst=lan)
        send("/audio/settings/dsp/low/hi-hz", [400.0], src=("192.0.2.10", 40001), dst=lan)
        time.sleep(0.5)
        assert watch.meta_after(time.time()) == after
        s = send("/phase4/auth", ["t0ken-rig-s3cret"], src=("192.0.2.10", 40002), dst=lan)
        time.sleep(0.2)
        from pythonosc.osc_message_builder import OscMessageBuilder

        b = OscMessageBuilder(address="/audio/settings/dsp/low/hi-hz")
        b.add_arg(400.0)
        s.sendto(b.build().dgram, lan)
        time.sleep(0.5)
        assert watch.meta_after(time.time())[4] == pytest.approx(400.0, abs=0.5)
        assert "refused /audio/settings/dsp/low/hi-hz" in p4.text()
    finally:
        subprocess.run(["ip", "addr", "del", "192.0.2.10/32", "dev", "lo"], check=False)


def test_a_listener_outlives_the_server_being_stopped_for_a_while(run_phase4, tmp_path):
    """The server stopped (SIGSTOP, a frozen cgroup, a paused VM) for longer
    than the 15 s a silent listener is given: its listeners could answer no
    ping meanwhile, and f081928 dropped every one of them the moment it
    resumed. Now the idle clock starts again at the resume."""
    import signal

    from conftest import free_port

    port = free_port()
    wav = tmp_path / "in.wav"
    write_wav(wav, beat_track(4.0))
    p4 = run_phase4({
        "audio": {"input": str(wav), "loop-input": True},
        "osc": {"enabled": False},
        "oscquery": {"enabled": True, "bind": "127.0.0.1", "port": port},
    })
    wait_port(port)
    p4.wait_log("first block through")

    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/audio/lmh"}))
            await asyncio.wait_for(ws.recv(), 5)
            p4.proc.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(17)
            finally:
                p4.proc.send_signal(signal.SIGCONT)
            # Values keep coming, on this same connection, for 3 s more.
            end = time.time() + 3
            n = 0
            while time.time() < end:
                m = await asyncio.wait_for(ws.recv(), 2)
                n += isinstance(m, bytes)
            assert n > 60, n

    asyncio.run(run())
    assert p4.proc.poll() is None
