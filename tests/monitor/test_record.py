"""Issue 14, item 3: recordings and the replay buffer. A recording and a
saved replay buffer hold exactly the input samples (16-bit input: the WAV
is bit-exact); list, download (HTTP, with a ticket from the WebSocket) and
delete; the control token is needed; the quota and a full disk stop a
recording with an error and never the pipeline (a small tmpfs, mounted in a
private mount namespace so nothing leaks to the machine)."""

import asyncio
import email.utils
import http.client
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import websockets

from conftest import AUTH, SR, loop_of, login, matches_loop, music, record_cfg, recv_any, recv_json, wav_samples, write_wav


async def authed(url):
    ws = await websockets.connect(url, max_size=1 << 22)
    await login(ws)
    return ws


async def ask(ws, msg, want, timeout=10.0):
    await ws.send(json.dumps(msg))
    r = await recv_any(ws, {want, "error"}, timeout)
    assert r["type"] == want, f"{msg} -> {r}"
    return r


def download(server, ws_msg):
    with urllib.request.urlopen(server.http + ws_msg["url"], timeout=10) as r:
        assert r.headers["Content-Type"] == "audio/wav"
        assert ws_msg["name"] in r.headers["Content-Disposition"]
        # The room's audio: no browser or proxy cache may keep a copy.
        assert "no-store" in r.headers["Cache-Control"], r.headers["Cache-Control"]
        return r.read()


def fetch(url, headers):
    """Status, headers and body of a GET, error statuses included."""
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def fetch_from(source, url, headers):
    """Status and body of a GET sent from the local address `source`."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", f"{u.path}?{u.query}", headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def fetch_pairs(url, pairs):
    """Status and body of a GET with the header fields `pairs`, in order
    (a name may repeat)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.putrequest("GET", f"{u.path}?{u.query}")
        for name, value in pairs:
            conn.putheader(name, value)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def check_ranges(url, data):
    """A download resumes: one byte range is 206 with exactly those bytes,
    a range past the end 416, several ranges, a stale If-Range or a
    repeated field the whole file; and curl resumes a file cut short into the whole of it. The ticket,
    used from 127.0.0.1, is refused from any other address."""
    n = len(data)
    status, h, body = fetch(url, {})
    assert status == 200 and h["Accept-Ranges"] == "bytes" and body == data
    etag = h["ETag"]
    assert etag and etag.startswith('"'), etag
    modified = h["Last-Modified"]
    assert email.utils.parsedate_to_datetime(modified).tzname() == "UTC", modified
    for source in ("127.0.0.2", "127.9.9.9"):
        status, body = fetch_from(source, url, {"Range": "bytes=100-199"})
        assert status == 403 and b"ticket" in body, (source, status)
    for rng, first, last in (("bytes=100-199", 100, 199), (f"bytes={n - 10}-", n - 10, n - 1),
                             ("bytes=-44", n - 44, n - 1), (f"bytes=7-{n + 1000}", 7, n - 1)):
        status, h, body = fetch(url, {"Range": rng})
        assert status == 206, (rng, status)
        assert h["Content-Range"] == f"bytes {first}-{last}/{n}", (rng, h["Content-Range"])
        assert int(h["Content-Length"]) == last - first + 1 and body == data[first:last + 1], rng
    status, h, body = fetch(url, {"Range": f"bytes={n}-"})
    assert status == 416 and h["Content-Range"] == f"bytes */{n}" and body == b""
    for headers in ({"Range": "bytes=0-9,20-29"}, {"Range": "bytes=9-0"},
                    {"Range": "bytes=5-", "If-Range": '"stale"'}):
        status, _, body = fetch(url, headers)
        assert status == 200 and body == data, headers
    status, _, body = fetch(url, {"Range": "bytes=5-", "If-Range": etag})
    assert status == 206 and body == data[5:]
    # Two Range (or If-Range) fields are no range: read first-wins, a cache
    # keeping the last would splice the wrong bytes.
    for pairs in ([("Range", "bytes=0-1"), ("Range", "bytes=5-6")],
                  [("Range", "bytes=5-"), ("If-Range", etag), ("If-Range", '"stale"')]):
        status, body = fetch_pairs(url, pairs)
        assert status == 200 and body == data, pairs
    # The date validates too once it is strong (the file last written more
    # than a second ago); another date does not.
    time.sleep(1.1)
    status, _, body = fetch(url, {"Range": "bytes=5-", "If-Range": modified})
    assert status == 206 and body == data[5:], status
    status, _, body = fetch(url, {"Range": "bytes=5-", "If-Range": "Sat, 01 Jan 2000 00:00:00 GMT"})
    assert status == 200 and body == data
    status, body = fetch_from("127.0.0.1", url, {"Range": "bytes=100-199"})
    assert status == 206 and body == data[100:200]
    with tempfile.TemporaryDirectory() as d:
        part = os.path.join(d, "part.wav")
        with open(part, "wb") as f:
            f.write(data[: n // 3])
        subprocess.run(["curl", "-sS", "--fail", "-C", "-", "-o", part, url], check=True, timeout=30)
        with open(part, "rb") as f:
            assert f.read() == data, "curl -C - did not resume into the whole file"


@pytest.fixture
def music_wav(tmp_path):
    return write_wav(tmp_path / "in.wav", music(3.0))


def test_recording_and_replay_hold_the_input_bit_for_bit(make_server, music_wav):
    server = make_server(music_wav, extra=AUTH + record_cfg())
    loop = loop_of(music_wav)

    async def go():
        ws = await authed(server.url)
        # The replay buffer fills at real time once audio flows; wait for it
        # to hold 3 s (a fixed sleep lost to a slow start on a busy machine).
        end = time.monotonic() + 20
        while time.monotonic() < end:
            st = (await recv_json(ws, "server_status", 5.0)).get("monitor", {}).get("recording")
            if st and st["replay_s"] >= 3.2:
                break
        else:
            raise AssertionError("the replay buffer did not fill")
        saved = await ask(ws, {"type": "save_replay", "seconds": 3}, "replay_saved")
        assert saved["name"].startswith("replay-") and abs(saved["seconds"] - 3) < 0.05
        # The announcement that follows counts the new file in the bytes used
        # (it said 0 until the next command: the status was taken before the
        # listing).
        after = await recv_any(ws, {"recordings"}, 5.0)
        assert after["state"]["used_bytes"] == sum(i["bytes"] for i in after["items"]) > 0
        await ask(ws, {"type": "start_recording"}, "recordings")
        await asyncio.sleep(2.5)
        await ask(ws, {"type": "stop_recording"}, "recordings")
        listing = await ask(ws, {"type": "list_recordings"}, "recordings")
        names = [i["name"] for i in listing["items"]]
        assert listing["state"]["used_bytes"] == sum(i["bytes"] for i in listing["items"])
        assert any(n.startswith("rec-") for n in names) and saved["name"] in names
        out = {}
        for item in listing["items"]:
            assert item["sample_rate"] == SR and item["bits"] == 16
            t = await ask(ws, {"type": "download_recording", "name": item["name"]}, "recording_download")
            out[item["name"]] = (item, t)
        await ws.close()
        return out

    got = asyncio.run(go())
    for name, (item, ticket) in got.items():
        data = download(server, ticket)
        assert len(data) == item["bytes"]
        width, rec = wav_samples(data)
        assert width == 2
        secs = len(rec) / SR
        print(f"record: {name}: {secs:.2f} s, {len(data)} bytes, bit-exact: {matches_loop(rec, loop)}")
        assert (1.5 if name.startswith("rec-") else 2.9) < secs < 4.0
        assert matches_loop(rec, loop), f"{name} is not the input sample for sample"
        check_ranges(server.http + ticket["url"], data)
        # A ticket is for one name: another name with it is refused.
        other = [n for n in got if n != name][0]
        bad = server.http + f"/recordings/{other}?" + ticket["url"].split("?")[1]
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bad, timeout=5)
        assert e.value.code == 403
    assert server.running()


def test_recording_needs_the_token_and_names_are_checked(make_server, music_wav):
    server = make_server(music_wav, extra=AUTH + record_cfg())

    async def go():
        async with websockets.connect(server.url) as ws:
            for m in ({"type": "start_recording"}, {"type": "list_recordings"},
                      {"type": "save_replay"}, {"type": "delete_recording", "name": "x"}):
                await ws.send(json.dumps(m))
                assert "token" in (await recv_json(ws, "error"))["reason"]
        ws = await authed(server.url)
        for name in ["../state.toml", "control-token", "rec-2026-11-30T16-24-48.123Z.wav/../x",
                     "a" * 100_000, "rec-2026-11-30T16-24-48.123Z.wav"]:
            for t in ("delete_recording", "download_recording"):
                await ws.send(json.dumps({"type": t, "name": name}))
                err = await recv_json(ws, "error")
                assert len(err["reason"]) < 400
        for s in (0, -1, 1e9, "x"):
            await ws.send(json.dumps({"type": "save_replay", "seconds": s}))
            await recv_json(ws, "error")
        await ws.close()

    asyncio.run(go())
    # No ticket, a made-up ticket, a path outside: refused.
    for path in ["/recordings/rec-2026-11-30T16-24-48.123Z.wav",
                 "/recordings/rec-2026-11-30T16-24-48.123Z.wav?ticket=" + "0" * 32,
                 "/recordings/..%2fstate.toml", "/recordings/../state.toml"]:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(server.http + path, timeout=5)
        assert e.value.code in (403, 404)
    assert server.running()


DOWNLOAD_NAME = "rec-2026-11-30T16-24-48.123Z.wav"


def download_url(server, data):
    """The download path (with its ticket) of a recording holding `data`,
    put in the state directory by hand. 40 MiB is more than loopback's
    socket buffers hold, so a client that reads nothing stalls it."""

    async def ticket():
        ws = await authed(server.url)
        folder = server.state_dir / "recordings"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        (folder / DOWNLOAD_NAME).write_bytes(data)
        t = await ask(ws, {"type": "download_recording", "name": DOWNLOAD_NAME}, "recording_download")
        await ws.close()
        return t["url"]

    return asyncio.run(ticket())


def test_a_full_ui_server_keeps_a_download_and_closes_an_idle_connection(make_server, music_wav):
    """With all 64 HTTP places taken by one address, one of them a download
    its client has stopped reading, a newcomer from another address is served, and
    the place it gets is an idle connection's: the download goes on to its
    last byte (the oldest connection, which the room-making used to close).
    The idle connection closed is the oldest, one whose own download (a
    range) has ended: a keep-alive connection that has finished a download
    is idle again (it used to count as a download until its idle limit)."""
    server = make_server(music_wav, extra=AUTH + record_cfg())
    # 24 MiB: more than loopback's socket buffers hold (about 10 MiB), so
    # the download is still streaming while the test does not read.
    data = os.urandom(24 << 20)
    url = urllib.parse.urlsplit(server.http + download_url(server, data))
    hog = "127.0.0.2"
    dl = socket.socket()
    dl.bind((hog, 0))
    dl.settimeout(10)
    dl.connect((url.hostname, url.port))
    dl.sendall(f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n\r\n".encode())
    got = dl.recv(65536)
    assert got.startswith(b"HTTP/1.1 200"), got[:100]
    # 63 more, each answered once (so the server holds all 64 before the
    # newcomer comes, however slow the machine) and then idle (keep-alive);
    # the first with a download of its own, a kilobyte, read to its end.
    idle = []
    for i in range(63):
        s = socket.socket()
        s.bind((hog, 0))
        s.settimeout(10)
        s.connect((url.hostname, url.port))
        ask_for = (f"{url.path}?{url.query}", "Range: bytes=0-1023\r\n") if i == 0 else ("/ui-config.json", "")
        s.sendall(f"GET {ask_for[0]} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n{ask_for[1]}\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(4096) or pytest.fail("an idle connection was closed before its answer")
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        while len(body) < length:
            body += s.recv(4096) or pytest.fail("an idle connection was closed before its answer")
        assert head.startswith(b"HTTP/1.1 206" if i == 0 else b"HTTP/1.1 200"), head
        assert i or body == data[:1024]
        idle.append(s)
    status, body = fetch_from("127.0.0.3", f"http://{url.hostname}:{url.port}/", {})
    assert status == 200 and b"<html" in body.lower()
    # Exactly one idle connection was closed to make the room: the oldest,
    # whose download had ended.
    time.sleep(0.3)
    closed = []
    for i, s in enumerate(idle):
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed.append(i)
        except BlockingIOError:
            pass
        except OSError:
            closed.append(i)
        s.close()
    assert closed == [0], closed
    while True:
        chunk = dl.recv(1 << 20)
        if not chunk:
            break
        got += chunk
        if len(got) >= len(data) and got.endswith(data[-4096:]):
            break
    dl.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert body == data, f"the download was cut at {len(body)} of {len(data)} bytes"
    assert server.running()


def test_a_download_nobody_reads_gives_its_connection_back(make_server, music_wav):
    """A client that asks for a recording and then reads nothing: the
    download gives up after 30 s without progress, and so must its
    connection (0b8575b held it, with its place among the 64 and its
    buffers, for the 20 minutes a download may last)."""
    server = make_server(music_wav, extra=AUTH + record_cfg())
    name = DOWNLOAD_NAME
    url = urllib.parse.urlsplit(server.http + download_url(server, os.urandom(40 << 20)))
    dl = socket.socket()
    dl.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    dl.settimeout(10)
    dl.connect((url.hostname, url.port))
    mine = dl.getsockname()[1]
    dl.sendall(f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n\r\n".encode())
    assert dl.recv(4096).startswith(b"HTTP/1.1 200")

    def server_side_open():
        out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{url.port} )"],
                             capture_output=True, text=True, check=True).stdout
        return any(l.split()[-1].rsplit(":", 1)[1] == str(mine) for l in out.splitlines() if l.strip())

    try:
        t0 = time.monotonic()
        assert server_side_open()
        while server_side_open():
            assert time.monotonic() - t0 < 75, "the connection of a download nobody reads is still open after 75 s"
            time.sleep(1)
        took = time.monotonic() - t0
        print(f"stalled download: connection closed after {took:.0f} s")
        assert took >= 25, f"closed after {took:.0f} s: a client is given 30 s"
        assert "its download took nothing for 30 s" in server.log.read_text()
        # Someone who reads gets the whole file.
        assert urllib.request.urlopen(server.http + download_url(server, os.urandom(40 << 20)), timeout=30).read().__len__() \
            == os.path.getsize(server.state_dir / "recordings" / name)
    finally:
        dl.close()
    assert server.running()


def test_the_recording_state_goes_only_to_token_holders(make_server, music_wav):
    """`server_status.monitor.recording` names the running recording's file
    and the disk figures: a client without the token gets the monitor's
    health figures without it, in its greeting and in every periodic status,
    while a recording runs; after `auth` the same connection gets it."""
    server = make_server(music_wav, extra=AUTH + record_cfg())

    async def statuses(ws, n):
        out = []
        while len(out) < n:
            out.append((await recv_json(ws, "server_status", 5.0))["monitor"])
        return out

    async def go():
        owner = await authed(server.url)
        await ask(owner, {"type": "start_recording"}, "recordings")
        async with websockets.connect(server.url) as watcher:
            seen = await statuses(watcher, 4)  # the greeting, then 2 Hz
            for m in seen:
                assert "recording" not in m, m
                assert "listeners" in m and "cpu_pct" in m
            # The owner's queue still holds statuses from before the start.
            mine = [m["recording"] for m in await statuses(owner, 8)]
            running = [r for r in mine if r["active"] and r["file"]]
            assert running, mine
            assert running[-1]["file"] not in json.dumps(seen)
            await login(watcher)
            after = await statuses(watcher, 1)
            assert after[0]["recording"]["active"] is True
        await ask(owner, {"type": "stop_recording"}, "recordings")
        await owner.close()

    asyncio.run(go())
    assert server.running()


def in_tmpfs(binary, tmp_path, state_dir, size):
    """A wrapper that runs phase4 in its own mount namespace with a tmpfs of
    `size` on the state directory (nothing is mounted on this machine)."""
    wrapper = tmp_path / f"in-tmpfs-{size}.sh"
    sudo = "" if os.geteuid() == 0 else "sudo -n "
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec {sudo}unshare -m --propagation private sh -c "
        f"'mount -t tmpfs -o size={size} p4mon \"$0\" && exec \"$@\"' {state_dir} {binary} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


async def record_until_stopped(url, timeout=20.0):
    ws = await authed(url)
    await ask(ws, {"type": "start_recording"}, "recordings")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        msg = await recv_any(ws, {"server_status", "recordings"}, 5.0)
        rec = msg.get("monitor", {}).get("recording") if msg["type"] == "server_status" else msg["state"]
        if rec and not rec["active"] and rec.get("error"):
            frames = 0
            # The pipeline goes on: feature snapshots keep coming.
            t = time.monotonic()
            while time.monotonic() - t < 1.0:
                f = await asyncio.wait_for(ws.recv(), 2.0)
                frames += isinstance(f, str) and '"type":"snapshot"' in f
            listing = await ask(ws, {"type": "list_recordings"}, "recordings")
            await ws.close()
            return rec, frames, listing
    raise AssertionError("the recording did not stop")


@pytest.mark.parametrize("case", ["quota", "min-free", "full-disk"])
def test_quota_and_a_full_disk_stop_recording_not_the_pipeline(make_server, binary, tmp_path, case):
    # 32-bit float at 48 kHz: 192 kB/s, so 1 MiB is ~5.5 s.
    wav = write_wav(tmp_path / "in.wav", music(2.0))
    state = tmp_path / f"state-{case}"
    state.mkdir()
    cfg = {"quota": dict(format="f32", **{"max-total-mb": 1, "min-free-mb": 0}),
           "min-free": dict(format="f32", **{"max-total-mb": 100, "min-free-mb": 3}),
           "full-disk": dict(format="f32", **{"max-total-mb": 100, "min-free-mb": 0})}[case]
    size = {"quota": "8m", "min-free": "4m", "full-disk": "1m"}[case]
    server = make_server(wav, state_dir=state, extra=AUTH + record_cfg(**{"replay-s": 1.0}, **cfg),
                         wrap=lambda s: in_tmpfs(s.binary, tmp_path, state, size))
    t0 = time.monotonic()
    rec, frames, listing = asyncio.run(record_until_stopped(server.url))
    took = time.monotonic() - t0
    print(f"record {case}: stopped after {took:.1f} s: {rec['error']}; used {listing['state']['used_bytes']} B, "
          f"{frames} snapshots in the next second")
    want = {"quota": "quota", "min-free": "disk nearly full", "full-disk": "No space left"}[case]
    assert want in rec["error"], rec["error"]
    assert frames > 10, "the pipeline must go on"
    assert server.running()
    items = listing["items"]
    assert len(items) == 1 and items[0]["bits"] == 32
    if case == "quota":
        assert listing["state"]["used_bytes"] <= 1 << 20
    # The file is closed with a valid header: its length reads back.
    assert items[0]["seconds"] > 0.5
    if case == "full-disk":
        # and the header counts every frame that reached the disk (it was
        # left at the last one-second checkpoint: up to 192 kB on disk that
        # a player never reached); only the 68-byte float header is not audio.
        frames = round(items[0]["seconds"] * items[0]["sample_rate"])
        assert items[0]["bytes"] - frames * 4 == 68, items[0]


def test_a_recording_deleted_while_it_records_stops_with_an_error(make_server, music_wav, tmp_path):
    """The file removed while it records (`rm`, or another instance's
    `delete_recording`): phase4 went on writing into the unlinked inode,
    showed it active and logged "done" at stop, with nothing on disk
    (tester ah AH3). Now it stops within a checkpoint (a second) with the
    error in the recording state, and the pipeline goes on."""
    state = tmp_path / "state"
    server = make_server(music_wav, state_dir=state, extra=AUTH + record_cfg())

    async def go():
        ws = await authed(server.url)
        await ask(ws, {"type": "start_recording"}, "recordings")
        await asyncio.sleep(1.5)
        [name] = os.listdir(state / "recordings")
        os.unlink(state / "recordings" / name)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            msg = await recv_any(ws, {"server_status", "recordings"}, 5.0)
            rec = msg.get("monitor", {}).get("recording") if msg["type"] == "server_status" else msg["state"]
            if rec and not rec["active"]:
                await ws.close()
                return name, rec, time.monotonic() - (end - 5)
        raise AssertionError("the recording of a deleted file went on")

    name, rec, took = asyncio.run(go())
    print(f"stopped {took:.2f} s after the delete: {rec['error']}")
    assert rec["error"] and "deleted while it recorded" in rec["error"], rec
    assert took < 3.0
    assert server.running()
    log = server.log.read_text()
    assert f"record: {name} done" not in log, log
    assert "deleted while it recorded" in log


def test_a_symlinked_recordings_folder_is_refused_not_followed(make_server, music_wav, tmp_path):
    # The state directory belongs to the service user; a symlink planted as
    # its recordings folder would send recordings (and deletions) elsewhere.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "state" / "recordings").symlink_to(elsewhere)
    server = make_server(music_wav, extra=AUTH + record_cfg())

    async def go():
        ws = await authed(server.url)
        await asyncio.sleep(1.5)
        for m in ({"type": "save_replay", "seconds": 1}, {"type": "start_recording"}):
            await ws.send(json.dumps(m))
            assert "symbolic link" in (await recv_json(ws, "error"))["reason"]
        await ws.close()

    asyncio.run(go())
    assert list(elsewhere.iterdir()) == []
    assert server.running()


def test_what_root_makes_in_the_services_state_dir_stays_the_services(make_server, music_wav, tmp_path):
    """phase4 run by hand as root on the service's state directory (owned
    by `phase4`): the presets and recordings folders, a preset, the state
    file and a recording it made were root's, and the service could then
    no longer save presets or record, for good."""
    if os.geteuid() != 0:
        pytest.skip("needs root (files made by root in a folder another user owns)")
    owner = (65534, 65534)
    state = tmp_path / "svc-state"
    state.mkdir(mode=0o750)
    os.chown(state, *owner)
    server = make_server(music_wav, state_dir=state, extra=AUTH + record_cfg())

    async def go():
        ws = await authed(server.url)
        await ask(ws, {"type": "save_preset", "name": "by root"}, "presets")
        await ws.send(json.dumps({"type": "set_autoscale", "strength": 0.25}))
        await ask(ws, {"type": "start_recording"}, "recordings")
        await asyncio.sleep(1.5)
        await ask(ws, {"type": "stop_recording"}, "recordings")
        await ws.close()

    asyncio.run(go())
    end = time.monotonic() + 10
    while not (state / "state.toml").exists() and time.monotonic() < end:
        time.sleep(0.1)
    made = sorted(p for p in state.rglob("*"))
    names = {p.relative_to(state).as_posix() for p in made}
    assert {"presets", "recordings", "state.toml"} <= names, names
    assert any(n.startswith("recordings/rec-") for n in names), names
    assert any(n.startswith("presets/") and n.endswith(".toml") for n in names), names
    wrong = {p.relative_to(state).as_posix(): (p.lstat().st_uid, p.lstat().st_gid)
             for p in made if (p.lstat().st_uid, p.lstat().st_gid) != owner}
    assert not wrong, f"not the state directory's owner's: {wrong}"
    assert server.running()


def test_a_download_outlives_the_server_being_stopped_for_a_while(make_server, music_wav):
    """The server stopped (SIGSTOP, a frozen cgroup, a paused VM) for longer
    than the 30 s a download that takes nothing is given: its client could
    take nothing meanwhile, and f081928 closed every download the moment
    the server resumed ("its download took nothing for 30 s")."""
    import signal

    server = make_server(music_wav, extra=AUTH + record_cfg())
    import threading

    url = server.http + download_url(server, os.urandom(40 << 20))
    got = [0]

    def reader():
        # A client reading steadily at ~4 MB/s the whole time.
        with urllib.request.urlopen(url, timeout=60) as r:
            while chunk := r.read(256 << 10):
                got[0] += len(chunk)
                time.sleep(0.0625)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(2)
    server.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(33)
    finally:
        server.proc.send_signal(signal.SIGCONT)
    t.join(timeout=60)
    got = got[0]
    assert got == 40 << 20, f"{got} of {40 << 20} bytes"
    assert "took nothing" not in server.log.read_text()
    assert server.running()
