"""Issue 8, items 1, 5, 6 and 14: what a client on the network cannot make
phase4 do. Each test fails on 0ba3ca6.

- item 1: a device name from the network or the state file reaches alsa-lib
  only if phase4 listed it or the configuration names it (ALSA PCM names are
  a language: `file:'|cmd'` runs a shell command);
- item 5: presets are capped and their list always fits in one message;
- item 6: Host and Origin must name this machine (DNS rebinding);
- item 14: `tau` must be an object, a partial update must change something,
  protocol errors close with 1002/1007.
"""

import asyncio
import json
import socket
import time

import pytest
import websockets

from conftest import fresh_meta, recv_any, recv_json, ws_close_code, ws_frame, ws_handshake


def run(coro):
    return asyncio.run(coro)


def payloads(marker):
    """The reported payload and variants: the shell runs `touch marker`."""
    sh = f"touch {marker}"
    return [
        f"file:'|sh -c \"{sh}\"',raw",
        f"file:'|{sh}'",
        f"file:FILE={marker}",
        f"file:FILE='{marker}',FORMAT=raw",
        f"plug:'file:\"|{sh}\"'",
        f"plug:{{slave {{pcm {{type file slave.pcm null file \"|{sh}\"}}}}}}",
        f"{{type file slave.pcm null file \"|{sh}\"}}",
        f"dsnoop:'{marker}'",
        f"p4ws'\n{sh}",
        "p4ws ",
        "p4ws\n",
        "P4WS",
        "hw:0,0" + "x" * 10_000,
        "x" * 100_000,
    ]


def test_set_device_refuses_every_name_phase4_did_not_list(make_server, tmp_path):
    server = make_server()
    marker = tmp_path / "pwned"

    async def go():
        async with websockets.connect(server.url, max_size=None) as ws:
            await recv_json(ws, "presets")
            for name in payloads(marker):
                await ws.send(json.dumps({"type": "set_device", "name": name}))
                reply = await recv_any(ws, {"meta", "error"}, timeout=15)
                assert reply["type"] == "error", (name[:80], reply)
                assert len(reply["reason"]) < 400
                assert (await recv_any(ws, {"meta", "error"}))["type"] == "meta"  # snap-back
            # A listed device still works, by name and by index.
            await ws.send(json.dumps({"type": "set_device", "name": "p4ws"}))
            m = await recv_any(ws, {"meta", "error"}, timeout=15)
            assert m["type"] == "meta" and m["device"]["name"] == "p4ws", m

    run(go())
    time.sleep(0.5)
    assert not marker.exists(), "a shell command ran"
    assert not list(server.workdir.glob("*pwned*"))
    state = (server.state_dir / "state.toml").read_text()
    assert "file:" not in state and '"p4ws"' in state
    assert server.running()


def test_a_state_file_naming_an_unlisted_device_is_ignored(binary, wav, tmp_path):
    """The state file is not trusted either: the payload written into it (by
    the old bug, or by hand) must not run at start."""
    from conftest import Server

    marker = tmp_path / "pwned-at-start"
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    payload = f"file:'|sh -c \"touch {marker}\"',raw"
    (state_dir / "state.toml").write_text(
        f"[audio]\ndevice = {json.dumps(payload)}\nconfig-device = \"p4ws\"\n\n[fft]\nenabled = true\n")
    s = Server(binary, wav, tmp_path, state_dir=state_dir, input=False, audio='device = "p4ws"').start()
    try:
        m = run(fresh_meta(s.url))
        time.sleep(1.0)
        assert not marker.exists(), "the state file's device was opened"
        assert m["device"]["name"] == "p4ws"
        assert m["fft_enabled"] is True, "the rest of the state is still used"
        assert "ignoring the device in the state file" in s.log.read_text()
    finally:
        s.stop()
    assert not marker.exists()
    assert "file:" not in (state_dir / "state.toml").read_text()


def test_presets_are_capped_and_their_list_always_fits(make_server):
    server = make_server()
    name = lambda i: f"{i:04d}".ljust(64, "p")

    async def flood():
        async with websockets.connect(server.url, max_size=None) as ws:
            await recv_json(ws, "presets")
            refused = 0
            for i in range(230):
                await ws.send(json.dumps({"type": "save_preset", "name": name(i)}))
                r = await recv_any(ws, {"presets", "error"}, timeout=10)
                if r["type"] == "error":
                    assert "delete one first" in r["reason"], r
                    refused += 1
                else:
                    assert len(r["items"]) == i + 1
            return refused

    assert run(flood()) == 30

    async def newcomer():
        # A client connecting afterwards gets the list and keeps streaming
        # (0ba3ca6 closed every client after 5 s once the list outgrew the
        # write buffer).
        async with websockets.connect(server.url, max_size=None) as ws:
            p = await recv_json(ws, "presets")
            assert len(p["items"]) == 200 and p["truncated"] is False
            end = time.monotonic() + 6.5
            n = 0
            while time.monotonic() < end:
                await recv_json(ws, "snapshot", timeout=2)
                n += 1
            assert n > 300
            await ws.send(json.dumps({"type": "delete_preset", "name": name(0)}))
            p = await recv_json(ws, "presets")
            assert len(p["items"]) == 199

    run(newcomer())


def test_a_folder_full_of_presets_from_before_does_not_lock_anyone_out(binary, wav, tmp_path):
    from conftest import Server

    state_dir = tmp_path / "state"
    (state_dir / "presets").mkdir(parents=True)
    for i in range(2500):
        (state_dir / "presets" / f"{i:05d}{'x' * 59}.toml").write_text("[fft]\nenabled = true\n")
    s = Server(binary, wav, tmp_path, state_dir=state_dir).start()
    try:
        async def go():
            async with websockets.connect(s.url, max_size=None) as ws:
                p = await recv_json(ws, "presets")
                assert p["truncated"] is True and len(p["items"]) == 200
                end = time.monotonic() + 6.5
                while time.monotonic() < end:
                    await recv_json(ws, "snapshot", timeout=2)

        run(go())
    finally:
        s.stop()


REBINDING = [
    ("evil.example:{ws}", "http://evil.example:{http}"),
    ("evil.example:{ws}", None),
    ("127.0.0.1:{ws}", "http://evil.example:{http}"),
    ("localhost.evil.example:{ws}", "http://localhost.evil.example:{http}"),
    ("127.0.0.1.nip.io:{ws}", "http://127.0.0.1.nip.io:{http}"),
]


@pytest.mark.parametrize("host,origin", REBINDING)
def test_dns_rebinding_is_refused_on_the_websocket(server, host, origin):
    host = host.format(ws=server.ws_port, http=server.http_port)
    origin = origin and origin.format(ws=server.ws_port, http=server.http_port)
    with pytest.raises(ConnectionRefusedError) as info:
        ws_handshake(server.ws_port, host=host, origin=origin)
    assert " 403 " in str(info.value)
    # The box's own names pass.
    ws_handshake(server.ws_port, host=f"localhost:{server.ws_port}",
                 origin=f"http://localhost:{server.http_port}").close()


def http_get(port, host, path="/", origin=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    if origin:
        req += f"Origin: {origin}\r\n"
    s.sendall((req + "\r\n").encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return int(data.split(b" ", 2)[1]), data


def status_of_head(port, lines):
    """The status a raw request head gets (the connection closed after)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return int(data.split(b" ", 2)[1])


def test_a_header_given_twice_is_refused_not_read_first_wins(server):
    ui = f"http://localhost:{server.http_port}"
    evil = "Origin: http://evil.example"
    page = ["GET / HTTP/1.1", f"Host: localhost:{server.http_port}", "Connection: close"]
    assert status_of_head(server.http_port, page + [f"Origin: {ui}"]) == 200
    assert status_of_head(server.http_port, page + [f"Origin: {ui}", evil]) == 403
    upgrade = [f"Host: localhost:{server.ws_port}", "Upgrade: websocket",
               "Connection: Upgrade", "Sec-WebSocket-Version: 13",
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
    ws = ["GET / HTTP/1.1"] + upgrade
    assert status_of_head(server.ws_port, ws + [f"Origin: {ui}"]) == 101
    assert status_of_head(server.ws_port, ws + [f"Origin: {ui}", evil]) == 403
    assert status_of_head(server.ws_port, ws + ["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="]) == 400
    # The absolute form names its own authority, past the Host check.
    assert status_of_head(server.ws_port, ["GET http://evil.example/ HTTP/1.1"] + upgrade) == 400


def test_dns_rebinding_is_refused_on_the_http_server(server):
    for host in ["evil.example", f"evil.example:{server.http_port}", "localhost.evil.example"]:
        status, _ = http_get(server.http_port, host, "/ui-config.json")
        assert status == 421, host
    status, _ = http_get(server.http_port, f"localhost:{server.http_port}", "/ui-config.json",
                         origin="http://evil.example")
    assert status == 403
    status, body = http_get(server.http_port, f"localhost:{server.http_port}", "/ui-config.json")
    assert status == 200 and b"ws_port" in body


def send_and_wait(port, payload, wait):
    """One raw WebSocket connection: send `payload`, run `wait(sock)`, close."""
    s = ws_handshake(port)
    try:
        s.sendall(payload)
        wait(s)
    finally:
        s.close()


def flood_for_two_seconds(server, line, attempt):
    """Call `attempt` (which returns how many refusals it caused) for 2 s,
    wait a second more and one call more (the line that says how many were
    held back), and return the refusals, the log lines containing `line`
    written meanwhile, and the seconds it all took. The log must say that
    lines were held back."""
    before = server.log.read_text().count(line)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 2.0:
        n += attempt()
    time.sleep(1.1)
    n += attempt()
    seconds = time.monotonic() - t0
    text = server.log.read_text()
    assert "similar line(s) held back" in text
    return n, text.count(line) - before, seconds


def test_a_flood_of_refused_requests_writes_a_few_log_lines_a_second(server):
    # Every refusal is logged; unbounded, one client wrote ~14 500 lines a
    # second, and journald's own rate limit then drops the service's other
    # messages (the health lines among them).
    def refused():
        assert http_get(server.http_port, "evil.example", "/")[0] == 421
        return 1

    n, lines, seconds = flood_for_two_seconds(server, "http: refused a request", refused)
    assert n > 100, n
    assert 1 <= lines <= 5 * (int(seconds) + 2), (n, lines)
    # Refused, not ignored: the UI itself is still served.
    assert http_get(server.http_port, f"localhost:{server.http_port}", "/ui-config.json")[0] == 200


def test_floods_at_several_places_at_once_write_a_few_log_lines_a_second_together(server):
    # Each place in the code that a peer can make log is held to 5 lines a
    # second, but there are over 30 such places: tester x had eleven at
    # their cap at once (55 lines a second from one client). All of them
    # together are held to 10.
    upgrade = [f"Host: localhost:{server.ws_port}", "Upgrade: websocket",
               "Connection: Upgrade", "Sec-WebSocket-Version: 13",
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
    ws = ["GET / HTTP/1.1"] + upgrade
    kinds = [
        lambda: http_get(server.http_port, "evil.example", "/")[0] == 421,
        lambda: status_of_head(server.ws_port, ws + ["Origin: http://evil.example"]) == 403,
        lambda: status_of_head(server.ws_port, ws + ["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="]) == 400,
        lambda: status_of_head(server.ws_port, ["GET http://evil.example/ HTTP/1.1"] + upgrade) == 400,
        lambda: status_of_head(server.ws_port, ["GET / HTTP/1.1", "Host: evil.example"] + upgrade[1:]) == 403,
    ]
    before = len(server.log.read_text().splitlines())
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 3.0:
        for refused in kinds:
            assert refused()
            n += 1
    seconds = time.monotonic() - t0
    time.sleep(0.5)
    new = server.log.read_text().splitlines()[before:]
    # (The suite's servers log at debug level: the libraries' own debug
    # lines are not the service's, and a service logs at info.)
    peer = [l for l in new if "health:" not in l and " DEBUG " not in l and " TRACE " not in l]
    assert n > 150, n
    # Five places at 5 a second each would be 25 a second.
    assert len(peer) <= 10 * (int(seconds) + 2), (n, len(peer), peer[:40])


def test_lines_held_back_at_the_end_of_a_burst_are_counted_in_the_health_line(make_server):
    # A place's held-back count comes with its next line; the last burst
    # at that place has none (review z: 18 of 23 refusals in one burst
    # were never counted). The health line counts every line held back.
    server = make_server(extra="[health]\ninterval-s = 1")
    before = len(server.log.read_text().splitlines())
    n = 0
    for _ in range(40):
        assert http_get(server.http_port, "evil.example", "/")[0] == 421
        n += 1
    time.sleep(2.5)
    new = server.log.read_text().splitlines()[before:]
    written = [l for l in new if "evil.example" in l and "health:" not in l]
    held = [int(l.split("peer_lines_held=")[1].split("(")[0]) for l in new if "peer_lines_held=" in l]
    assert n > len(written), (n, written)
    assert held and held[-1] >= n - len(written), (n, len(written), held)


def test_a_token_file_deleted_while_running_is_written_back_and_a_new_one_is_taken(make_server, binary):
    """Tester aa T1: with the state directory deleted while the service ran,
    the service kept its token and never wrote it back; `phase4 token` then
    made a new one, which the service refused. The service looks every 10 s."""
    import shutil
    import subprocess

    server = make_server(extra="trust-loopback = false")
    path = server.state_dir / "control-token"
    first = path.read_text().strip()
    cfg = next(server.workdir.glob("phase4-*.toml"))

    async def authorized(token):
        async with websockets.connect(server.url) as ws:
            await recv_json(ws, "auth")
            await ws.send(json.dumps({"type": "auth", "token": token}))
            said = await recv_any(ws, {"auth", "error"})
            return said["type"] == "auth" and said["authorized"]

    def within(seconds, ok):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if ok():
                return True
            time.sleep(0.2)
        return False

    shutil.rmtree(server.state_dir)
    assert within(15, path.exists), "the token file was not written back"
    assert path.read_text().strip() == first
    assert "was gone; the control token in force was written back" in server.log.read_text()
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert run(authorized(first)) is True

    # Deleted again, and `phase4 token` is first: its token is the one in
    # force (or, had the service written its own back first, that one).
    path.unlink()
    shown = subprocess.run([binary, "token", "--config", str(cfg)], capture_output=True, text=True,
                           check=True).stdout.splitlines()[0]
    if shown != first:
        # Waited for in the log: wrong tokens spend the address's budget.
        assert within(15, lambda: "holds another control token" in server.log.read_text())
        assert run(authorized(first)) is False
    assert run(authorized(shown)) is True
    assert server.running()


def test_wrong_tokens_from_many_connections_write_a_few_log_lines_a_second(make_server):
    # Three wrong tokens close a connection, but a peer can reconnect as
    # often as it likes: the line each wrong token wrote was not limited.
    server = make_server(extra='token = "s3cret-token"\ntrust-loopback = false')
    guess = ws_frame(0x1, json.dumps({"type": "auth", "token": "guess"}).encode())

    def three_guesses():
        send_and_wait(server.ws_port, guess * 3, lambda s: ws_close_code(s, timeout=2))
        return 3

    guesses, lines, seconds = flood_for_two_seconds(server, "sent a wrong control token", three_guesses)
    assert guesses > 60, guesses
    assert 1 <= lines <= 5 * (int(seconds) + 2), (guesses, lines)


def test_token_holders_reconnecting_and_repeating_auth_write_a_few_log_lines_a_second(make_server):
    # "authorized" was logged unlimited, once per connection and again for
    # every repeated `auth` (tester o: 75 000 lines a minute from a token
    # holder's connection churn, more than journald keeps for a service).
    server = make_server(extra='token = "s3cret-token"\ntrust-loopback = false')
    auth = ws_frame(0x1, json.dumps({"type": "auth", "token": "s3cret-token"}).encode())

    def five_answers(s):
        s.settimeout(2)
        got = b""
        while got.count(b'"authorized":true') < 5:
            chunk = s.recv(4096)
            assert chunk, got
            got += chunk

    def authorize_five_times():
        send_and_wait(server.ws_port, auth * 5, five_answers)
        return 5

    n, lines, seconds = flood_for_two_seconds(server, "authorized", authorize_five_times)
    assert n > 100, n
    assert 1 <= lines <= 5 * (int(seconds) + 2), (n, lines)


def test_clients_that_send_and_leave_cannot_queue_more_than_the_cap_at_control(make_server):
    # A client that leaves takes its requests still at the control thread
    # with it from the broadcaster's count, but control still has them:
    # connecting, sending 32 saves and leaving, over and over, queued
    # without bound. They now count until control answers them, and the
    # count comes back down: a client afterwards is served, not refused as
    # busy for ever.
    server = make_server()
    save = b"".join(ws_frame(0x1, json.dumps({"type": "save_preset", "name": f"p{k:02d}"}).encode())
                    for k in range(32))
    for _ in range(40):
        # Clients that just left may still hold their places (503) for a
        # moment: wait for one.
        deadline = time.monotonic() + 10
        while True:
            try:
                s = ws_handshake(server.ws_port)
                break
            except ConnectionRefusedError as e:
                assert "503" in str(e) and time.monotonic() < deadline, e
                time.sleep(0.05)
        s.sendall(save)
        s.close()

    async def connect():
        # The last of them may still hold its place for a moment (503), as
        # in the loop above (ci93: refused once, the machine loaded).
        deadline = time.monotonic() + 10
        while True:
            try:
                return await websockets.connect(server.url)
            except websockets.exceptions.InvalidStatus as e:
                assert e.response.status_code == 503 and time.monotonic() < deadline, e
                await asyncio.sleep(0.05)

    async def served():
        deadline = time.monotonic() + 30
        async with await connect() as ws:
            await recv_json(ws, "presets")
            while True:
                await ws.send(json.dumps({"type": "save_preset", "name": "after"}))
                r = await recv_any(ws, {"presets", "error"}, timeout=30)
                if r["type"] == "presets":
                    return r
                assert r["reason"].startswith("busy"), r
                assert time.monotonic() < deadline, "still busy after 30 s"
                await asyncio.sleep(0.2)

    r = asyncio.run(served())
    assert any(p["name"] == "after" for p in r["items"]), r
    assert server.proc.poll() is None


def test_configured_host_names_are_accepted(make_server):
    server = make_server(extra='allowed-hosts = ["stage-pi.venue.lan"]')
    status, _ = http_get(server.http_port, f"stage-pi.venue.lan:{server.http_port}")
    assert status == 200
    ws_handshake(server.ws_port, host=f"stage-pi.venue.lan:{server.ws_port}",
                 origin=f"http://stage-pi.venue.lan:{server.http_port}").close()


@pytest.mark.parametrize("msg", [
    {"type": "set_smoothing", "tau": [0.1]},
    {"type": "set_smoothing", "tau": [0.1, 0.2, 0.3]},
    {"type": "set_smoothing", "tau": 0.1},
    {"type": "set_onset"},
    {"type": "set_tempo", "commit": False},
])
def test_loose_messages_are_refused(server, msg):
    async def go():
        before = await fresh_meta(server.url)
        async with websockets.connect(server.url) as ws:
            await recv_json(ws, "presets")
            await ws.send(json.dumps(msg))
            r = await recv_any(ws, {"meta", "error"})
            assert r["type"] == "error", r
        assert await fresh_meta(server.url) == before

    run(go())


@pytest.mark.parametrize("frames,code", [
    ([ws_frame(0x1, b'{"type":"list_presets"}', mask=False)], 1002),  # unmasked
    ([bytes([0x81 | 0x40, 0x80]) + b"\0\0\0\0"], 1002),               # reserved bit
    ([ws_frame(0x3, b"x")], 1002),                                     # reserved opcode
    ([ws_frame(0x0, b"x")], 1002),                                     # continuation first
    ([ws_frame(0x9, b"x", fin=False)], 1002),                          # fragmented ping
    ([ws_frame(0x1, b"\xff\xfe{}")], 1007),                            # not UTF-8
    ([ws_frame(0x1, b"\xc3", fin=False), ws_frame(0x0, b"\x28")], 1007),  # split bad UTF-8
])
def test_protocol_errors_close_with_the_rfc_code(server, frames, code):
    s = ws_handshake(server.ws_port)
    for f in frames:
        s.sendall(f)
    assert ws_close_code(s) == code
    s.close()
    assert server.running()


def test_a_fresh_install_generates_a_private_token(make_server, binary):
    """Issue 8, item 7: with no ws.token, the first start writes one (mode
    0600) that `phase4 token` shows; clients on this machine need none."""
    import os
    import subprocess

    server = make_server()
    path = server.state_dir / "control-token"
    assert path.exists()
    assert os.stat(path).st_mode & 0o777 == 0o600
    token = path.read_text().strip()
    cfg = next(server.workdir.glob("phase4-*.toml"))
    shown = subprocess.run([binary, "token", "--config", str(cfg)], capture_output=True, text=True, check=True)
    assert shown.stdout.splitlines()[0] == token
    # The log names the file; `sudo phase4 token` (the default configuration,
    # /var/lib/phase4) would not find this one, so it is not suggested.
    said = [l for l in server.log.read_text().splitlines() if "ws: listening" in l]
    assert said and f"({path})" in said[0] and "sudo phase4 token" not in said[0], said

    async def go():
        async with websockets.connect(server.url) as ws:
            assert (await recv_json(ws, "auth"))["authorized"] is True  # loopback
            await recv_json(ws, "presets")
            await ws.send(json.dumps({"type": "set_fft", "enabled": True}))
            assert (await recv_any(ws, {"meta", "error"}))["type"] == "meta"

    run(go())
