"""The OSCQuery port and the OSC input port are doors into phase4 like the
WebSocket's: one regression test per attack class on them, each checking
the attack is refused AND that the well-behaved use next to it still works.

HTTP (the OSCQuery server, hyper with the UI's limits):
  - DNS rebinding: a Host that is not a name of this machine gets 421, for
    plain requests and for the WebSocket upgrade alike;
  - a page on a foreign origin may not read the namespace (403, no
    Access-Control-Allow-Origin); the UI's own origin may;
  - a connection flood from one LAN address is cut at the per-address cap
    while others are still served; a connection over the cap is answered
    503 with the reason (not reset); a slowloris head is closed at its deadline;
  - streaming (LISTEN) clients are capped (503 beyond `max-clients`), a slot
    comes back when a client leaves, and an oversized WebSocket message
    closes only its own sender; connections that send nothing, not even a
    pong, are dropped after 15 s, so idle upgrades cannot hold the slots.
UDP (the OSC input port):
  - an oversized datagram is dropped unread, even from this machine;
  - token guessing from the LAN is looked at only 5 times a second per
    address (the right token inside a flood of wrong ones from the same
    address is not taken), and the flood stops neither this machine's
    writes nor another LAN host's authentication;
  - a bundle of guesses is one guess: only the first `/phase4/auth` of a
    datagram is looked at (the budgets count datagrams);
  - sixty LAN addresses, each within its own budget but together more
    than twice the shared one, do not keep a host that tries once a second
    from authenticating (quiet addresses have a reserve of their own);
  - a write flood from a sender that may write is capped at
    `max-input-per-s` and leaves the control thread responsive;
  - an address with a newline and a terminal escape, refused and logged,
    cannot forge a log line of its own or reach the terminal raw.

LAN addresses (192.0.2.x) are added to the loopback interface of the test's
own network namespace (conftest.py); nothing leaves the machine.
"""

import asyncio
import json
import socket
import subprocess
import time

import pytest
import websockets
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from conftest import beat_track, private_network, wait_port, write_wav
from test_oscquery import MetaWatch

private_network()  # only in conftest.py's namespace (unshare(CLONE_NEWNET)): nothing leaves it

PORT = 8777
INPUT = 9112
UI = 8766
LAN = ["192.0.2.21", "192.0.2.22"]
MAX_STREAMS = 4


@pytest.fixture
def lan_addresses():
    for a in LAN:
        subprocess.run(["ip", "addr", "add", f"{a}/32", "dev", "lo"], check=True)
    yield LAN
    for a in LAN:
        subprocess.run(["ip", "addr", "del", f"{a}/32", "dev", "lo"], check=False)


@pytest.fixture
def box(run_phase4, tmp_path, lan_addresses):
    from conftest import free_port

    out_port = free_port(socket.SOCK_DGRAM)
    wav = tmp_path / "in.wav"
    write_wav(wav, beat_track(6.0))
    p4 = run_phase4({
        "audio": {"input": str(wav), "loop-input": True},
        "ws": {"enabled": True, "token": "t0ken-rig-s3cret", "http-port": UI},
        "osc": {"enabled": True, "addresses": ["meta", "lmh"], "meta-interval-s": 0.2},
        "osc.destinations": [{"host": "127.0.0.1", "port": out_port}],
        "oscquery": {"enabled": True, "bind": "0.0.0.0", "port": PORT, "input-port": INPUT,
                     "max-clients": MAX_STREAMS, "max-input-per-s": 50.0},
    })
    wait_port(PORT)
    p4.wait_log("first block through")
    p4.meta = MetaWatch(out_port)
    return p4


def http(head, src="127.0.0.1", timeout=5.0):
    """Send a raw request head; the status code (0: closed without one)."""
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1" if src.startswith("127.") else src, PORT))
    s.sendall(head.encode())
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    s.close()
    if not data.startswith(b"HTTP/1.1 "):
        return 0, data
    return int(data[9:12]), data


def get(path, host="127.0.0.1:%d" % PORT, extra=""):
    return http(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")


def send_osc(addr, args, src=("127.0.0.1", 0), dst=("127.0.0.1", INPUT), pad=0, sock=None):
    """One OSC message; with `pad`, in a bundle beside a message holding a
    `pad`-byte string (an unknown address, refused on its own)."""
    b = OscMessageBuilder(address=addr)
    for a in args:
        b.add_arg(a)
    packet = b.build()
    if pad:
        filler = OscMessageBuilder(address="/padding")
        filler.add_arg("x" * pad)
        bundle = OscBundleBuilder(IMMEDIATELY)
        bundle.add_content(packet)
        bundle.add_content(filler.build())
        packet = bundle.build()
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if sock is None:
        s.bind(src)
    s.sendto(packet.dgram, dst)
    return s


def hi_hz(p4, after):
    return p4.meta.meta_after(after)[4]


def test_dns_rebinding_gets_421_for_requests_and_upgrades(box):
    assert get("/?HOST_INFO")[0] == 200
    assert get("/?HOST_INFO", host="localhost:%d" % PORT)[0] == 200
    status, body = get("/?HOST_INFO", host="evil.example:%d" % PORT)
    assert status == 421 and b"OSC_PORT" not in body, body
    upgrade = ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
    assert http(f"GET / HTTP/1.1\r\nHost: evil.example\r\n{upgrade}\r\n")[0] == 421
    assert http(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n{upgrade}\r\n")[0] == 101
    # An absolute-form target names its own authority: refused too.
    assert http(f"GET http://evil.example/?HOST_INFO HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0] == 400


def test_foreign_origins_may_not_read_the_namespace(box):
    status, head = get("/audio/lmh", extra="Origin: http://evil.example\r\n")
    assert status == 403 and b"access-control-allow-origin" not in head.lower(), head
    status, head = get("/audio/lmh", extra=f"Origin: http://127.0.0.1:{UI}\r\n")
    assert status == 200 and f"access-control-allow-origin: http://127.0.0.1:{UI}".encode() in head.lower()
    # The UI's origin first and a foreign one after it: refused, not read
    # first-wins.
    status, head = get("/audio/lmh", extra=f"Origin: http://127.0.0.1:{UI}\r\nOrigin: http://evil.example\r\n")
    assert status == 403 and b"access-control-allow-origin" not in head.lower(), head


def test_connection_flood_from_one_address_is_cut_and_others_still_served(box):
    held = []
    closed = 0
    for _ in range(40):
        s = socket.socket()
        s.settimeout(2)
        s.bind((LAN[0], 0))
        s.connect((LAN[0], PORT))
        held.append(s)
    time.sleep(0.5)
    for s in held:
        try:
            s.sendall(b"GET /?HOST_INFO HTTP/1.1\r\nHost: %s\r\n\r\n" % LAN[0].encode())
            got = s.recv(100)
            # Refused: answered 503 (up to 16 at once), or closed.
            if got == b"" or got.startswith(b"HTTP/1.1 503"):
                closed += 1
        except OSError:
            closed += 1
    # 16 per address (transport::http::MAX_CONNECTIONS_PER_IP) are served.
    assert closed >= 40 - 16, closed
    assert http(f"GET /?HOST_INFO HTTP/1.1\r\nHost: {LAN[1]}:{PORT}\r\n\r\n", src=LAN[1])[0] == 200
    assert get("/?HOST_INFO")[0] == 200
    for s in held:
        s.close()


def host_info_client(src):
    from http.client import HTTPConnection

    conn = HTTPConnection(src, PORT, timeout=5, source_address=(src, 0))

    def ask():
        # (A name of this machine; addresses added after the start are not.)
        conn.request("GET", "/?HOST_INFO", headers={"Host": f"127.0.0.1:{PORT}"})
        resp = conn.getresponse()
        return resp, resp.read()

    return conn, ask


def test_a_connection_refused_when_every_place_is_taken_is_told_why(box):
    """All 64 places taken, 16 by each of four addresses: a newcomer from
    one of them is refused with a 503 and the reason, which a real HTTP
    client (http.client) reads, not a reset; the connections held are
    untouched."""
    extra = ["192.0.2.23", "192.0.2.24"]
    for a in extra:
        subprocess.run(["ip", "addr", "add", f"{a}/32", "dev", "lo"], check=True)
    held = []
    try:
        for src in LAN + extra:
            for _ in range(16):  # transport::http::MAX_CONNECTIONS_PER_IP, kept alive
                conn, ask = host_info_client(src)
                assert ask()[0].status == 200
                held.append((conn, ask))
        conn, ask = host_info_client(LAN[1])
        resp, body = ask()
        conn.close()
        assert resp.status == 503, (resp.status, body)
        assert resp.getheader("Retry-After") == "5" and resp.getheader("Connection") == "close"
        assert b"every connection is taken" in body, body
        # The held ones are still served.
        assert held[0][1]()[0].status == 200
    finally:
        for conn, _ in held:
            conn.close()
        for a in extra:
            subprocess.run(["ip", "addr", "del", f"{a}/32", "dev", "lo"], check=False)


def test_kept_alive_connections_give_their_place_at_the_address_cap(box):
    """An address (an IPv6 /64: a venue's whole Wi-Fi) whose 16 places are
    kept-alive connections waiting for their next request: a newcomer from
    it is served, and the oldest is closed for it (review y: a guest that
    kept 16 alive with a request every few seconds kept the rest of its
    /64 out)."""
    held = []
    for _ in range(16):
        conn, ask = host_info_client(LAN[1])
        assert ask()[0].status == 200
        held.append((conn, ask))
    try:
        conn, ask = host_info_client(LAN[1])
        assert ask()[0].status == 200
        conn.close()
        held[0][0].sock.settimeout(2)
        assert held[0][0].sock.recv(10) == b"", "the oldest was closed for it"
        assert held[1][1]()[0].status == 200
    finally:
        for conn, _ in held:
            conn.close()


def test_connections_that_send_nothing_give_their_place_at_the_address_cap(box):
    """An address (an IPv6 /64: a venue's whole Wi-Fi) at its cap with
    connections that never finish a request head: a newcomer from it is
    served, and the oldest silent one is closed for it. One guest holding
    its /64's 16 places with half-sent heads kept every IPv6 client there
    from the UI (tester x: 40 of 40 refused)."""
    held = []
    for _ in range(16):
        s = socket.socket()
        s.settimeout(5)
        s.bind((LAN[1], 0))
        s.connect((LAN[1], PORT))
        s.sendall(b"GET /?HOST_INFO HTTP/1.1\r\nHost: x\r\n")  # never finished
        held.append(s)
    time.sleep(0.3)
    for _ in range(3):
        assert http(f"GET /?HOST_INFO HTTP/1.1\r\nHost: {LAN[1]}:{PORT}\r\n\r\n", src=LAN[1])[0] == 200
    # The oldest was closed for the first; the others found the place the
    # one before them left, or (when it was not given back yet) took the
    # next oldest silent one's. The rest are still open.
    # (Looked at all at once, well within the 5 s head deadline that
    # closes the rest.)
    import select

    time.sleep(0.5)
    readable, _, _ = select.select(held, [], [], 0)
    closed = []
    for s in held:
        got = None
        if s in readable:
            try:
                got = s.recv(100)
            except OSError:
                got = b""
        closed.append(got == b"")
    n = sum(closed)
    assert 1 <= n <= 3 and all(closed[:n]) and not any(closed[n:]), closed
    for s in held:
        s.close()


def test_slowloris_head_is_closed_at_its_deadline(box):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=15)
    s.sendall(b"GET /?HOST_INFO HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    t = time.time()
    got = s.recv(200)
    waited = time.time() - t
    s.close()
    # hyper's header deadline (5 s) answers 408 or closes.
    assert got == b"" or got.startswith(b"HTTP/1.1 408"), got
    assert 3.0 < waited < 10.0, waited
    assert get("/?HOST_INFO")[0] == 200


def test_streaming_clients_are_capped_and_slots_come_back(box):
    async def run():
        url = f"ws://127.0.0.1:{PORT}/"
        # A client that listens but never reads stops reading its socket
        # (websockets' bounded queue), so its own close waits for a reply it
        # cannot see: keep that wait short.
        clients = [await websockets.connect(url, close_timeout=1) for _ in range(MAX_STREAMS)]
        with pytest.raises(websockets.exceptions.InvalidStatus) as e:
            await websockets.connect(url)
        assert e.value.response.status_code == 503
        # An oversized message (> 4 KiB) closes its sender only.
        await clients[0].send("x" * 10000)
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            for _ in range(50):
                await asyncio.wait_for(clients[0].recv(), 1)
        await clients[1].send(json.dumps({"COMMAND": "LISTEN", "DATA": "/audio/lmh"}))
        assert isinstance(await asyncio.wait_for(clients[1].recv(), 2), bytes)
        # The closed client's slot is given back.
        await asyncio.sleep(0.5)
        again = await websockets.connect(url)
        for c in clients[1:] + [again]:
            await c.close()

    asyncio.run(run())


def idle_upgrade(src):
    """A WebSocket upgrade that then never reads, sends or answers a ping."""
    s = socket.socket()
    s.settimeout(5)
    s.bind((src, 0))
    s.connect(("127.0.0.1" if src.startswith("127.") else src, PORT))
    s.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    assert s.recv(12) == b"HTTP/1.1 101"
    return s


def test_idle_connections_cannot_hold_the_streaming_slots(box):
    async def run():
        url = f"ws://127.0.0.1:{PORT}/"
        # A quiet but live client: listens to nothing, and its library
        # answers the server's pings.
        quiet = await websockets.connect(url)
        idle = [idle_upgrade(LAN[i % 2]) for i in range(MAX_STREAMS - 1)]
        with pytest.raises(websockets.exceptions.InvalidStatus) as e:
            await websockets.connect(url)
        assert e.value.response.status_code == 503
        await asyncio.sleep(17)
        # The idle ones are gone, the live one is not.
        newcomer = await websockets.connect(url)
        await quiet.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/audio/lmh"}))
        assert isinstance(await asyncio.wait_for(quiet.recv(), 2), bytes)
        for c in (quiet, newcomer):
            await c.close()
        for s in idle:
            s.close()

    asyncio.run(run())


def test_oversized_datagram_is_dropped_even_from_this_machine(box):
    before = hi_hz(box, time.time())
    t = time.time()
    send_osc("/audio/settings/dsp/low/hi-hz", [333.0], pad=2000)
    time.sleep(0.5)
    assert hi_hz(box, t + 0.4) == before
    t = time.time()
    send_osc("/audio/settings/dsp/low/hi-hz", [333.0], pad=100)
    time.sleep(0.5)
    assert hi_hz(box, t + 0.4) == pytest.approx(333.0, abs=0.5)


def test_a_bundle_nested_as_deep_as_a_datagram_holds_is_read(box):
    # rosc decodes nested bundles by recursion: 75 levels overflowed the
    # input thread's 256 KiB stack in a debug build (tester u). The
    # datagram's 1 536 bytes hold at most 74 around this message; it is
    # read like a flat one (python-osc's builder builds each level).
    packet = OscMessageBuilder(address="/audio/settings/dsp/low/hi-hz")
    packet.add_arg(334.0)
    packet = packet.build()
    for _ in range(74):
        b = OscBundleBuilder(IMMEDIATELY)
        b.add_content(packet)
        packet = b.build()
    assert len(packet.dgram) <= 1536
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t = time.time()
    s.sendto(packet.dgram, ("127.0.0.1", INPUT))
    s.close()
    time.sleep(0.5)
    assert hi_hz(box, t + 0.4) == pytest.approx(334.0, abs=0.5)
    assert box.proc.poll() is None


def test_token_guessing_is_rate_limited_and_does_not_stop_local_writes(box):
    lan = (LAN[0], INPUT)
    guesser = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    guesser.bind((LAN[0], 40100))
    # 100 guesses: twenty times the 5/s budget of one address that may not
    # write (twice the 50/s of all of them together), and few enough that the kernel keeps all of them and the writes that
    # follow in the socket's receive buffer (~210 KB; a small datagram costs
    # ~770 B of it) even while phase4 is slow to read on a loaded machine:
    # with 300 the local write below was sometimes dropped by the kernel
    # before phase4 saw it, which tests UDP, not phase4.
    for i in range(100):
        send_osc("/phase4/auth", [f"guess{i}"], sock=guesser, dst=lan)
    # The right token right after the flood, from another port of the same
    # address: that address's budget is spent, so it is not even looked at.
    late = send_osc("/phase4/auth", ["t0ken-rig-s3cret"], src=(LAN[0], 40101), dst=lan)
    send_osc("/audio/settings/dsp/low/hi-hz", [410.0], sock=late, dst=lan)
    # Another host on the LAN authenticates through the flood: its address
    # has a budget of its own (with one shared budget, 20/s before, the
    # guesser had spent it and this was refused as well).
    t = time.time()
    peer = send_osc("/phase4/auth", ["t0ken-rig-s3cret"], src=(LAN[1], 40103), dst=lan)
    time.sleep(0.2)
    send_osc("/audio/settings/dsp/low/hi-hz", [415.0], sock=peer, dst=lan)
    time.sleep(0.5)
    assert hi_hz(box, t + 0.6) == pytest.approx(415.0, abs=0.5)
    assert "192.0.2.22:40103 authenticated" in box.text()
    assert "192.0.2.21:40101 authenticated" not in box.text()
    # This machine writes through the flood.
    t = time.time()
    send_osc("/audio/settings/dsp/low/hi-hz", [420.0])
    time.sleep(0.5)
    assert hi_hz(box, t + 0.4) == pytest.approx(420.0, abs=0.5)
    # Once the budget has refilled, the right token opens a session.
    time.sleep(1.5)
    ok = send_osc("/phase4/auth", ["t0ken-rig-s3cret"], src=(LAN[0], 40102), dst=lan)
    time.sleep(0.2)
    t = time.time()
    send_osc("/audio/settings/dsp/low/hi-hz", [430.0], sock=ok, dst=lan)
    time.sleep(0.5)
    assert hi_hz(box, t + 0.4) == pytest.approx(430.0, abs=0.5)


def test_write_flood_is_capped_and_control_stays_responsive(box):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    for i in range(3000):
        send_osc("/audio/settings/dsp/low/hi-hz", [300.0 + (i % 50)], sock=s)
    time.sleep(1.2)
    t = time.time()
    send_osc("/audio/settings/dsp/low/hi-hz", [444.0], sock=s)
    time.sleep(0.5)
    assert hi_hz(box, t + 0.4) == pytest.approx(444.0, abs=0.5)
    box.wait_log("osc_in_refused=", timeout=3)
    line = [l for l in box.text().splitlines() if "osc_in_refused=" in l][-1]
    ok = int(line.split(" osc_in=")[1].split()[0])
    refused = int(line.split("osc_in_refused=")[1].split()[0])
    # At most one second's budget (50) plus what refilled while sending.
    # Not every datagram is read: on a busy machine the kernel drops some
    # of the flood from the socket buffer before phase4 sees it (seen:
    # 465 of 3000), so only a clear majority is required to be refused.
    assert ok < 300 and refused > 1500, line
    assert box.proc.poll() is None


def test_control_characters_in_a_refused_address_cannot_forge_log_lines(box):
    # The refusal log names the address it refused; a LAN sender chooses it.
    forged = "phase4 ERROR forged by a stranger"
    send_osc("/audio/nothing\n" + forged + "\x1b[2J", [1.0], src=(LAN[1], 0), dst=(LAN[1], INPUT))
    box.wait_log("osc-in: refused", timeout=5)
    text = box.text()
    refusal = [l for l in text.splitlines() if "osc-in: refused" in l]
    assert len(refusal) == 1 and "\\nphase4 ERROR forged" in refusal[0], refusal
    assert not [l for l in text.splitlines() if l.startswith(forged)]
    assert "\x1b" not in text
    assert box.proc.poll() is None


def osc_message(addr, args):
    b = OscMessageBuilder(address=addr)
    for a in args:
        b.add_arg(a)
    return b.build()


def test_a_bundle_of_guesses_is_one_guess(box):
    lan = (LAN[0], INPUT)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LAN[0], 40200))
    # 29 wrong tokens, the right one, and a write: one datagram of ~1 KB.
    # Looked at one by one, the right token would open a session and the
    # write would be applied (and tell the guesser which guess was right).
    bundle = OscBundleBuilder(IMMEDIATELY)
    for i in range(29):
        bundle.add_content(osc_message("/phase4/auth", [f"guess{i:02d}"]))
    bundle.add_content(osc_message("/phase4/auth", ["t0ken-rig-s3cret"]))
    bundle.add_content(osc_message("/audio/settings/dsp/low/hi-hz", [321.0]))
    t = time.time()
    s.sendto(bundle.build().dgram, lan)
    box.wait_log("refused /phase4/auth from 192.0.2.21:40200", timeout=5)
    time.sleep(0.5)
    assert "192.0.2.21:40200 authenticated" not in box.text()
    assert hi_hz(box, t + 0.4) != pytest.approx(321.0, abs=0.5)
    # The right token first and a write after it, in one datagram: what a
    # client that knows the token does.
    bundle = OscBundleBuilder(IMMEDIATELY)
    bundle.add_content(osc_message("/phase4/auth", ["t0ken-rig-s3cret"]))
    bundle.add_content(osc_message("/audio/settings/dsp/low/hi-hz", [322.0]))
    t = time.time()
    s.sendto(bundle.build().dgram, lan)
    time.sleep(0.5)
    assert "192.0.2.21:40200 authenticated" in box.text()
    assert hi_hz(box, t + 0.4) == pytest.approx(322.0, abs=0.5)


def test_many_addresses_within_their_budgets_do_not_lock_a_host_out(box):
    attackers = [f"192.0.2.{i}" for i in range(100, 160)]
    for a in attackers:
        subprocess.run(["ip", "addr", "add", f"{a}/32", "dev", "lo"], check=True)
    socks = []
    junk = osc_message("/audio/settings/dsp/low/hi-hz", [1.0]).dgram
    ports = []
    try:
        for a in attackers:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((a, 0))
            socks.append(s)
        for k in range(5):
            # Sixty addresses, two datagrams each (within their own 5/s):
            # 120, more than twice the shared 50/s, right before the
            # host's one try. With one shared budget only, the try came
            # after the budget was spent and was never looked at (a steady
            # flood of 40 such addresses at 5/s let 0 of 11 tries through
            # in the report that found it).
            for _ in range(2):
                for s in socks:
                    s.sendto(junk, (LAN[0], INPUT))
            ports.append(40300 + k)
            send_osc("/phase4/auth", ["t0ken-rig-s3cret"], src=(LAN[1], ports[-1]),
                     dst=(LAN[0], INPUT)).close()
            time.sleep(1.1)
    finally:
        for s in socks:
            s.close()
        for a in attackers:
            subprocess.run(["ip", "addr", "del", f"{a}/32", "dev", "lo"], check=False)
    time.sleep(1.2)
    text = box.text()
    refused = int([l for l in text.splitlines() if "osc_in_refused=" in l][-1]
                  .split("osc_in_refused=")[1].split()[0])
    assert refused >= 5 * 120 * 0.9, refused
    missing = [p for p in ports if f"192.0.2.22:{p} authenticated" not in text]
    assert not missing, missing
    assert box.proc.poll() is None


def udp6_frame(dst_mac, src_mac, src, dst, dport, payload, sport=40000):
    """An Ethernet frame carrying one IPv6 UDP datagram, from any source."""
    import struct

    def csum(b):
        if len(b) % 2:
            b += b"\0"
        s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        while s >> 16:
            s = (s & 0xffff) + (s >> 16)
        return (~s) & 0xffff

    s, d = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    ulen = 8 + len(payload)
    pseudo = s + d + struct.pack("!I3xB", ulen, 17)
    c = csum(pseudo + struct.pack("!HHHH", sport, dport, ulen, 0) + payload) or 0xffff
    udp = struct.pack("!HHHH", sport, dport, ulen, c) + payload
    return dst_mac + src_mac + b"\x86\xdd" + struct.pack("!IHBB", 6 << 28, ulen, 17, 64) + s + d + udp


def test_a_mapped_loopback_sender_is_trusted_only_from_this_machine(run_phase4, tmp_path):
    """With `bind = "::"` a local IPv4 sender shows up as ::ffff:127.0.0.1
    and may write (tester x: it was refused). The same address in an IPv6
    packet from the network is forged (Linux delivers it, unlike ::1 or
    127/8) and may not (review y: such a write was applied once the first
    was fixed by the address alone)."""
    from urllib.request import urlopen

    def sh(*cmd):
        subprocess.run(cmd, check=True)

    sh("ip", "link", "add", "va", "type", "veth", "peer", "name", "vb")
    try:
        sh("ip", "link", "set", "va", "up")
        sh("ip", "link", "set", "vb", "up")
        sh("ip", "-6", "addr", "add", "fd00:9::2/64", "dev", "vb", "nodad")

        def mac(dev):
            # (Not /sys/class/net: sysfs shows the namespace it was mounted in.)
            out = subprocess.run(["ip", "-br", "link", "show", dev], capture_output=True,
                                 text=True, check=True).stdout.split()
            return bytes.fromhex(out[2].replace(":", ""))

        wav = tmp_path / "in.wav"
        write_wav(wav, beat_track(4.0))
        p4 = run_phase4({
            "audio": {"input": str(wav), "loop-input": True},
            "ws": {"enabled": True, "token": "t0ken-rig-s3cret", "http-port": UI},
            "osc": {"enabled": False},
            "oscquery": {"enabled": True, "bind": "::", "port": PORT, "input-port": INPUT},
        })
        wait_port(PORT)
        time.sleep(1.0)

        def hi_hz_now():
            url = f"http://127.0.0.1:{PORT}/audio/settings/dsp/low/hi-hz?VALUE"
            return json.loads(urlopen(url, timeout=5).read())["VALUE"][0]

        def settled(want):
            end = time.time() + 3
            while time.time() < end and hi_hz_now() != want:
                time.sleep(0.1)
            return hi_hz_now()

        first = hi_hz_now()
        # From this machine over IPv4, through the dual-stack socket.
        send_osc("/audio/settings/dsp/low/hi-hz", [first + 10.0]).close()
        assert settled(first + 10.0) == first + 10.0
        # Forged from the link: the mapped loopback and a LAN address.
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        tx.bind(("va", 0))
        for src, v in [("::ffff:127.0.0.1", first + 50.0), ("fd00:9::5", first + 60.0)]:
            b = OscMessageBuilder(address="/audio/settings/dsp/low/hi-hz")
            b.add_arg(v)
            tx.send(udp6_frame(mac("vb"), mac("va"), src, "fd00:9::2", INPUT, b.build().dgram))
        tx.close()
        time.sleep(1.0)
        assert hi_hz_now() == first + 10.0
        # They did arrive, and were refused (not lost on the way).
        p4.wait_log("from [::ffff:127.0.0.1]:40000: not allowed")
    finally:
        subprocess.run(["ip", "link", "del", "va"], check=False)
