"""The abuse classes: one async function each, registered with the issue
item it covers. A class attacks the running phase4 described by `Ctx`,
raises `Failed` when something it checks itself goes wrong (a shell command
ran, a port stayed closed), and returns a short note for the report. The
runner measures, around every class, the good client's snapshot rate and the
watchdog pings.

To add a class: write `async def my_attack(ctx) -> str` and decorate it with
`@abuse("my-attack", item, "what it does")`. Blocking socket work goes
through `asyncio.to_thread` so the runner stays responsive."""

import asyncio
import json
import os
import socket
import threading
import time

import websockets

from wire import http_request, recv_any, send_all, ws_close_code, ws_frame, ws_handshake

CLASSES = []


class Failed(Exception):
    """The class's own check failed."""


def abuse(name, item, what):
    def register(fn):
        CLASSES.append((name, item, what, fn))
        return fn
    return register


class Ctx:
    """What a class needs to know about the phase4 under attack."""

    def __init__(self, ws_port, http_port, server, attackers, newcomer, trusted, token, workdir, state_dir, pid):
        self.ws_port, self.http_port = ws_port, http_port
        self.server = server          # address phase4 is reached at
        self.attackers = attackers    # source addresses for attackers (LAN)
        self.newcomer = newcomer      # a well-behaved client's address (not an attacker's)
        self.trusted = trusted        # a source address phase4 trusts (loopback)
        self.token = token
        self.workdir, self.state_dir = workdir, state_dir
        self.pid = pid
        self._next = 0

    def attacker(self):
        """The next attacker address (round robin)."""
        a = self.attackers[self._next % len(self.attackers)]
        self._next += 1
        return a

    def url(self, host=None):
        return f"ws://{host or self.server}:{self.ws_port}/"

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_s(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def alive(self):
        try:
            os.kill(self.pid, 0)
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def host(self, port):
        return f"{self.server}:{port}"


class TrustedWs:
    """A client phase4 trusts (on its own machine), past its greeting (meta,
    auth, devices, presets)."""

    def __init__(self, ctx):
        self.connect = websockets.connect(ctx.url("127.0.0.1"), max_size=None)

    async def __aenter__(self):
        self.ws = await self.connect.__aenter__()
        await reply(self.ws, {"presets"})
        return self.ws

    async def __aexit__(self, *exc):
        return await self.connect.__aexit__(*exc)


async def reply(ws, types, timeout=10.0):
    """The next text message whose type is in `types` (raises TimeoutError,
    which is asyncio.TimeoutError)."""
    return await recv_any(ws, types, timeout)


# ---------------------------------------------------------------- item 1


def rce_payloads(marker):
    sh = f"touch {marker}"
    return [
        f"file:'|sh -c \"{sh}\"',raw",
        f"file:'|{sh}'",
        f"file:FILE={marker}",
        f"plug:'file:\"|{sh}\"'",
        f"{{type file slave.pcm null file \"|{sh}\"}}",
        f"plug:{{slave {{pcm {{type file slave.pcm null file \"|{sh}\"}}}}}}",
        f"p4ws'\n{sh}",
        "p4ws ",
        "x" * 100_000,
    ]


@abuse("set-device-rce", 1, "set_device with ALSA plugin strings that run a shell command, from a trusted client")
async def set_device_rce(ctx):
    marker = os.path.join(ctx.workdir, "pwned")
    async with TrustedWs(ctx) as ws:
        for name in rce_payloads(marker):
            await ws.send(json.dumps({"type": "set_device", "name": name}))
            r = await reply(ws, {"meta", "error"}, timeout=15)
            if r["type"] != "error":
                raise Failed(f"set_device {name[:40]!r} was accepted")
            # Every refusal is followed by the meta in force (snap-back).
            await reply(ws, {"meta"}, timeout=15)
    await asyncio.sleep(0.5)
    if os.path.exists(marker):
        raise Failed("a shell command ran")
    return f"{len(rce_payloads(marker))} payloads refused, nothing ran"


# ---------------------------------------------------------------- item 2


def rss_guard(ctx, before, what, limit_kib=16 * 1024):
    if not ctx.alive():
        raise Failed(f"phase4 died ({what})")
    grew = ctx.rss_kib() - before
    if grew > limit_kib:
        raise Failed(f"RSS grew by {grew // 1024} MiB ({what})")
    return grew


@abuse("http-content-length", 2, "GET / declaring Content-Length: 99999999999, 20 times")
async def http_content_length(ctx):
    before = ctx.rss_kib()
    statuses = await asyncio.gather(*[
        asyncio.to_thread(http_request, ctx.http_port, ctx.host(ctx.http_port), "/",
                          "Content-Length: 99999999999\r\n", ctx.attacker(), ctx.server)
        for _ in range(20)])
    grew = rss_guard(ctx, before, "huge Content-Length")
    return f"answers {sorted(set(map(str, statuses)))}, RSS +{max(grew, 0)} KiB"


@abuse("http-huge-header", 2, "a 64 MB header line")
async def http_huge_header(ctx):
    before = ctx.rss_kib()

    def attack():
        s = socket.create_connection((ctx.server, ctx.http_port), timeout=5, source_address=(ctx.attacker(), 0))
        s.sendall(f"GET / HTTP/1.1\r\nHost: {ctx.host(ctx.http_port)}\r\nX-A: ".encode())
        sent = send_all(s, b"a" * (64 << 20), timeout=5)
        s.close()
        return sent

    sent = await asyncio.to_thread(attack)
    grew = rss_guard(ctx, before, "huge header")
    if sent >= 64 << 20:
        raise Failed("the whole 64 MB header was taken")
    return f"cut off after {sent >> 10} KiB sent (socket buffers included), RSS +{max(grew, 0)} KiB"


@abuse("http-stalled-body", 2, "16 requests whose body never comes and one client pipelining 5000 requests without reading")
async def http_stalled_body(ctx):
    def open_stalled():
        socks = []
        for _ in range(16):
            s = socket.create_connection((ctx.server, ctx.http_port), timeout=5,
                                         source_address=(ctx.attacker(), 0))
            s.sendall(f"GET / HTTP/1.1\r\nHost: {ctx.host(ctx.http_port)}\r\nContent-Length: 1000\r\n\r\n".encode())
            socks.append(s)
        p = socket.create_connection((ctx.server, ctx.http_port), timeout=5, source_address=(ctx.attacker(), 0))
        req = f"GET /app.js HTTP/1.1\r\nHost: {ctx.host(ctx.http_port)}\r\n\r\n".encode()
        send_all(p, req * 5000, timeout=2)
        socks.append(p)
        return socks

    socks = await asyncio.to_thread(open_stalled)
    worst = 0.0
    try:
        for _ in range(10):
            t0 = time.monotonic()
            status = await asyncio.to_thread(http_request, ctx.http_port, ctx.host(ctx.http_port), "/", "",
                                             ctx.trusted, ctx.server, 2.0)
            dt = time.monotonic() - t0
            worst = max(worst, dt)
            if status != 200 or dt > 1.0:
                raise Failed(f"a good GET / got {status} after {dt:.2f} s")
            await asyncio.sleep(0.2)
    finally:
        for s in socks:
            s.close()
    return f"good GET / answered within {worst * 1000:.0f} ms every time"


@abuse("fd-exhaustion", 2, "1100 idle connections to each port (beyond a 1024 open-file limit), then gone")
async def fd_exhaustion(ctx):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))

    def open_many(port, n):
        socks = []
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.bind((ctx.attacker(), 0))
            try:
                s.connect((ctx.server, port))
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                continue
            socks.append(s)
        return socks

    cpu0, t0 = ctx.cpu_s(), time.monotonic()
    socks = await asyncio.to_thread(open_many, ctx.http_port, 1100)
    socks += await asyncio.to_thread(open_many, ctx.ws_port, 1100)
    await asyncio.sleep(4)
    cpu = 100 * (ctx.cpu_s() - cpu0) / (time.monotonic() - t0)
    for s in socks:
        s.close()
    # Both ports answer again, promptly.
    deadline = time.monotonic() + 3
    http_ok = ws_ok = False
    while time.monotonic() < deadline and not (http_ok and ws_ok):
        http_ok = http_ok or await asyncio.to_thread(
            http_request, ctx.http_port, ctx.host(ctx.http_port), "/", "", ctx.trusted, ctx.server, 1.0) == 200
        if not ws_ok:
            try:
                (await asyncio.to_thread(ws_handshake, ctx.ws_port, None, None, "/", ctx.trusted, 1.0,
                                         ctx.server)).close()
                ws_ok = True
            except OSError:
                await asyncio.sleep(0.2)
    if not (http_ok and ws_ok):
        raise Failed(f"after the connections left: HTTP {'ok' if http_ok else 'closed'}, "
                     f"WebSocket {'ok' if ws_ok else 'closed'}")
    if cpu > 60:
        raise Failed(f"phase4 used {cpu:.0f} % CPU while the connections were held (spinning?)")
    return f"{len(socks)} connections held 4 s; phase4 CPU {cpu:.0f} %; both ports answer after"


# ---------------------------------------------------------------- item 3


def flood(ctx, frames, what):
    """Send `frames` from one attacker connection; report how it ended."""
    s = ws_handshake(ctx.ws_port, src=ctx.attacker(), server=ctx.server)
    sent = send_all(s, frames, timeout=10)
    code = ws_close_code(s, timeout=5)
    s.close()
    return f"{what}: {sent // 1024} KiB taken, closed with {code}"


@abuse("ws-empty-binary", 3, "100 000 empty binary frames (600 KB) from one client")
async def ws_empty_binary(ctx):
    return await asyncio.to_thread(flood, ctx, ws_frame(0x2) * 100_000, "100k empty binary frames")


@abuse("ws-ping-flood", 3, "100 000 pings from one client")
async def ws_ping_flood(ctx):
    return await asyncio.to_thread(flood, ctx, ws_frame(0x9) * 100_000, "100k pings")


@abuse("ws-fragment-flood", 3, "one message in 100 000 empty continuation frames")
async def ws_fragment_flood(ctx):
    frames = ws_frame(0x1, b"", fin=False) + ws_frame(0x0, b"", fin=False) * 100_000
    return await asyncio.to_thread(flood, ctx, frames, "100k continuation frames")


@abuse("ws-text-flood", 3, "20 000 list_presets as fast as possible from a trusted client")
async def ws_text_flood(ctx):
    def attack():
        s = ws_handshake(ctx.ws_port, src=ctx.trusted, server=ctx.server)
        msg = ws_frame(0x1, b'{"type":"list_presets"}')
        sent = send_all(s, msg * 20_000, timeout=10)
        code = ws_close_code(s, timeout=5)
        s.close()
        return f"{sent // 1024} KiB taken, closed with {code}"
    return await asyncio.to_thread(attack)


# ---------------------------------------------------------------- item 4


@abuse("ws-slowloris", 4, "100 handshakes trickling one byte every 3 s; a new client must get in within 1 s")
async def ws_slowloris(ctx):
    request = f"GET / HTTP/1.1\r\nHost: {ctx.host(ctx.ws_port)}\r\n".encode()
    socks, stop = [], time.monotonic() + 10

    def trickle():
        while time.monotonic() < stop:
            live = []
            for s, pos in socks:
                try:
                    s.send(request[pos:pos + 1])
                    live.append((s, (pos + 1) % len(request)))
                except OSError:
                    s.close()
            socks[:] = live
            while len(socks) < 100:  # reconnect what was dropped
                try:
                    s = socket.create_connection((ctx.server, ctx.ws_port), timeout=1,
                                                 source_address=(ctx.attacker(), 0))
                except OSError:
                    break
                socks.append((s, 0))
            time.sleep(3)

    t = asyncio.create_task(asyncio.to_thread(trickle))
    await asyncio.sleep(0.5)
    worst, n = 0.0, 0
    try:
        while time.monotonic() < stop - 0.5:
            t0 = time.monotonic()
            try:
                await asyncio.to_thread(lambda: ws_handshake(ctx.ws_port, src=ctx.newcomer, timeout=2,
                                                             server=ctx.server).close())
            except OSError as e:
                raise Failed(f"a new client was refused: {e}")
            dt = time.monotonic() - t0
            worst, n = max(worst, dt), n + 1
            if dt > 1.0:
                raise Failed(f"a new client waited {dt:.2f} s")
            await asyncio.sleep(0.5)
    finally:
        await t
        for s, _ in socks:
            s.close()
    return f"{n} new clients got in, slowest in {worst * 1000:.0f} ms"


# ---------------------------------------------------------------- item 5


# The attacker keeps under ws.max-messages-per-s (200 by default) so that
# every save reaches the preset store, the thing this class attacks: a
# client over the message rate has its messages dropped (error replies are
# rate-limited too, so it would wait for answers that never come) and is
# closed when it keeps at it; ws-text-flood covers that. Waiting for each
# answer alone is not enough: on a loaded machine answers came within 0.5 ms
# and the client sent 2000 a second. Nor is a fixed schedule: after a stall
# (a slow fsync of a preset, or this process descheduled) it sent the
# messages it was behind on back to back, went over the rate and waited for
# an answer the limit had dropped (CI, twice). So each save waits for its
# answer and then for 1/PRESET_FLOOD_PER_S after the one before it.
PRESET_FLOOD_PER_S = 150


@abuse("preset-flood", 5, "2500 save_preset with 64-character names, then a new client must stay connected")
async def preset_flood(ctx):
    saved = refused = 0
    slowest = 0.0
    async with TrustedWs(ctx) as ws:
        sent = 0.0
        for i in range(2500):
            await asyncio.sleep(max(0.0, sent + 1 / PRESET_FLOOD_PER_S - time.monotonic()))
            sent = time.monotonic()
            await ws.send(json.dumps({"type": "save_preset", "name": f"{i:05d}".ljust(64, "z")}))
            try:
                r = await reply(ws, {"presets", "error"})
            except asyncio.TimeoutError:
                raise Failed(f"save {i} was not answered within 10 s ({saved} saved, {refused} refused)")
            slowest = max(slowest, time.monotonic() - sent)
            saved, refused = (saved + 1, refused) if r["type"] == "presets" else (saved, refused + 1)
    async with websockets.connect(ctx.url(), max_size=None, local_addr=(ctx.newcomer, 0)) as ws:
        p = await reply(ws, {"presets"})
        n = 0
        end = time.monotonic() + 6
        while time.monotonic() < end:
            try:
                await reply(ws, {"snapshot"}, timeout=2)
            except asyncio.TimeoutError:
                raise Failed(f"the new client got no snapshot for 2 s (after {n})")
            n += 1
    return (f"{saved} saved, {refused} refused, slowest answer {slowest * 1000:.0f} ms; "
            f"a new client got {len(p['items'])} presets and {n} snapshots in 6 s")


# ---------------------------------------------------------------- item 6


@abuse("dns-rebinding", 6, "Host: evil.com and Origin: http://evil.com on the WebSocket and the UI")
async def dns_rebinding(ctx):
    src = ctx.attacker()
    try:
        ws_handshake(ctx.ws_port, host=f"evil.com:{ctx.ws_port}", origin=f"http://evil.com:{ctx.http_port}",
                     src=src, server=ctx.server).close()
        raise Failed("WebSocket accepted Host evil.com")
    except ConnectionRefusedError as e:
        ws_status = str(e)
    status = http_request(ctx.http_port, f"evil.com:{ctx.http_port}", "/", "", src, ctx.server)
    if status != 421:
        raise Failed(f"HTTP answered Host evil.com with {status}")
    if http_request(ctx.http_port, ctx.host(ctx.http_port), "/", "", src, ctx.server) != 200:
        raise Failed("the UI's own address was refused")
    return f"WebSocket: {ws_status}; HTTP: {status}"


# ---------------------------------------------------------------- item 7


@abuse("lan-control", 7, "a client on the LAN without the token tries to change settings")
async def lan_control(ctx):
    src = ctx.attacker()
    if src.startswith("127."):
        return "skipped: needs a LAN address (run inside the abuse network namespace)"
    async with websockets.connect(ctx.url(), local_addr=(src, 0)) as ws:
        meta = await reply(ws, {"meta"})
        if (await reply(ws, {"auth"}))["authorized"]:
            raise Failed("a LAN client was authorized without the token")
        await reply(ws, {"server_status"})  # the greeting's last message
        for msg in [{"type": "set_fft", "enabled": not meta["fft_enabled"]},
                    {"type": "set_device", "name": "p4ws"},
                    {"type": "save_preset", "name": "lan"}]:
            await ws.send(json.dumps(msg))
            r = await reply(ws, {"error", "meta", "presets"})
            if r["type"] != "error" or "not authorized" not in r["reason"]:
                raise Failed(f"{msg['type']} from the LAN without the token: {r}")
            # The meta in force follows every refusal (snap-back), unchanged.
            if await reply(ws, {"error", "meta", "presets"}) != meta:
                raise Failed(f"{msg['type']} from the LAN without the token changed meta")
        await ws.send(json.dumps({"type": "auth", "token": ctx.token}))
        if not (await reply(ws, {"auth"}))["authorized"]:
            raise Failed("the token from `phase4 token` was refused")
        await ws.send(json.dumps({"type": "set_fft", "enabled": meta["fft_enabled"]}))
        if (await reply(ws, {"error", "meta"}))["type"] != "meta":
            raise Failed("an authorized LAN client could not change settings")
    return "refused without the token, accepted with it"


def handshake_status(ctx, src, path="/"):
    """101 when a handshake from `src` is taken (the socket is returned
    open), else the refusal's status code and None."""
    try:
        return 101, ws_handshake(ctx.ws_port, path=path, src=src, server=ctx.server)
    except ConnectionRefusedError as e:
        line = str(e).split()
        return (int(line[1]) if len(line) > 1 and line[1].isdigit() else None), None


@abuse("lan-place-squat", 7, "watchers from four LAN addresses fill every place they may take")
async def lan_place_squat(ctx):
    if ctx.newcomer.startswith("127."):
        return "skipped: needs LAN addresses (run inside the abuse network namespace)"
    squatters, held = ctx.attackers[:4], []
    try:
        statuses = []
        for src in squatters:
            for _ in range(8):
                st, s = await asyncio.to_thread(handshake_status, ctx, src)
                statuses.append(st)
                if s:
                    held.append(s)
        refused = statuses.count(503)
        if refused == 0:
            raise Failed(f"32 watchers from 4 addresses all got in ({len(held)} held): no place is kept")
        # The operator at the box and a LAN client with the token still get
        # in; a plain watcher from a fifth address does not.
        async with websockets.connect(ctx.url(ctx.trusted), max_size=None) as ws:
            if not (await reply(ws, {"auth"}))["authorized"]:
                raise Failed("the loopback client was not authorized")
        phone = ctx.attackers[4]
        async with websockets.connect(ctx.url() + f"?token={ctx.token}", local_addr=(phone, 0),
                                      max_size=None) as ws:
            if not (await reply(ws, {"auth"}))["authorized"]:
                raise Failed("a LAN client with the token was not authorized")
        st, s = await asyncio.to_thread(handshake_status, ctx, ctx.attackers[5])
        if s:
            s.close()
            raise Failed("a watcher got a place kept for the token")
        return f"{len(held)} watchers in, {refused} refused; loopback and the token still got in, a fifth address {st}"
    finally:
        for s in held:
            s.close()


@abuse("http-connection-squat", 7, "keep-alive connections from four LAN addresses fill the UI server's 64")
async def http_connection_squat(ctx):
    if ctx.newcomer.startswith("127."):
        return "skipped: needs LAN addresses (run inside the abuse network namespace)"
    stop = threading.Event()
    held = []

    def hold(src):
        # A connection that asks for a small file every 2 s, kept alive.
        try:
            s = socket.create_connection((ctx.server, ctx.http_port), timeout=5, source_address=(src, 0))
            held.append(s)
            req = f"GET /favicon.svg HTTP/1.1\r\nHost: {ctx.host(ctx.http_port)}\r\n\r\n".encode()
            while not stop.is_set():
                s.sendall(req)
                if not s.recv(65536):
                    return
                stop.wait(2)
        except OSError:
            pass

    # Threads of their own: 64 blocking holders would fill asyncio's pool.
    threads = [threading.Thread(target=hold, args=(src,), daemon=True)
               for src in ctx.attackers[:4] for _ in range(16)]
    for t in threads:
        t.start()
    try:
        await asyncio.sleep(2)
        t0 = time.monotonic()
        status = await asyncio.to_thread(http_request, ctx.http_port, ctx.host(ctx.http_port), "/", "",
                                         ctx.attackers[4], ctx.server, 10.0)
        took = time.monotonic() - t0
        if status != 200 or took > 2.0:
            raise Failed(f"a newcomer's GET / with 64 connections held: {status} after {took:.1f} s")
        return f"64 held from 4 addresses; a fifth address's GET / answered {status} in {took:.2f} s"
    finally:
        stop.set()
        for s in list(held):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in threads:
            t.join(timeout=6)


@abuse("http-reconnect-squat", 7, "half-sent requests from five LAN addresses, re-opened as soon as closed")
async def http_reconnect_squat(ctx):
    if ctx.newcomer.startswith("127."):
        return "skipped: needs LAN addresses (run inside the abuse network namespace)"
    import selectors
    stop = threading.Event()
    opened = [0]

    def squat():
        # 20 connections from each of five addresses (the UI server has 64
        # places, 16 per address), each with half a request; re-opened the
        # moment the server closes it, so with every place taken there are
        # always some from addresses under their cap in the backlog.
        sel = selectors.DefaultSelector()

        def open_one(src):
            s = socket.socket()
            s.setblocking(False)
            s.bind((src, 0))
            try:
                s.connect((ctx.server, ctx.http_port))
            except BlockingIOError:
                pass
            sel.register(s, selectors.EVENT_WRITE, src)
            opened[0] += 1

        for src in ctx.attackers[:5]:
            for _ in range(20):
                open_one(src)
        while not stop.is_set():
            for key, ev in sel.select(0.1):
                s, src = key.fileobj, key.data
                if ev & selectors.EVENT_WRITE:
                    try:
                        s.send(f"GET / HTTP/1.1\r\nHost: {ctx.host(ctx.http_port)}\r\n".encode())
                    except OSError:
                        pass
                    sel.modify(s, selectors.EVENT_READ, src)
                    continue
                try:
                    gone = not s.recv(4096)
                except OSError:
                    gone = True
                if gone:
                    sel.unregister(s)
                    s.close()
                    open_one(src)
        for key in list(sel.get_map().values()):
            key.fileobj.close()

    t = threading.Thread(target=squat, daemon=True)
    t.start()
    try:
        await asyncio.sleep(6)  # past one header timeout: the backlog is full of re-opened ones
        took = []
        for _ in range(5):
            t0 = time.monotonic()
            status = await asyncio.to_thread(http_request, ctx.http_port, ctx.host(ctx.http_port), "/", "",
                                             ctx.attackers[5], ctx.server, 10.0)
            took.append(time.monotonic() - t0)
            if status != 200:
                raise Failed(f"a newcomer's GET / while 5 addresses re-open half requests: {status}")
            await asyncio.sleep(0.5)
        if max(took) > 2.0:
            raise Failed("a newcomer's GET / while 5 addresses re-open half requests took "
                         + ", ".join(f"{x:.1f}" for x in took) + " s")
        return f"{opened[0]} connections opened from 5 addresses; a sixth address's 5 GETs took at most {max(took):.2f} s"
    finally:
        stop.set()
        t.join(timeout=5)


@abuse("http-request-flood", 7, "one LAN address asks for a file on 8 kept-alive connections as fast as it can, 3 s")
async def http_request_flood(ctx):
    if ctx.newcomer.startswith("127."):
        return "skipped: needs LAN addresses (run inside the abuse network namespace)"
    src = ctx.attackers[0]
    stop = threading.Event()
    answered = [0]
    lock = threading.Lock()
    req = f"GET /favicon.svg HTTP/1.1\r\nHost: {ctx.host(ctx.http_port)}\r\n\r\n".encode()

    def ask():
        # Ten requests in flight on each connection; a new connection when
        # the server ends one (100 requests each).
        while not stop.is_set():
            try:
                s = socket.create_connection((ctx.server, ctx.http_port), timeout=1, source_address=(src, 0))
            except OSError:
                stop.wait(0.05)
                continue
            try:
                s.sendall(req * 10)
                while not stop.is_set():
                    data = s.recv(65536)
                    if not data:
                        break
                    n = data.count(b"HTTP/1.1 ")
                    if n:
                        with lock:
                            answered[0] += n
                        s.sendall(req * n)
            except OSError:
                pass
            finally:
                s.close()

    threads = [threading.Thread(target=ask, daemon=True) for _ in range(8)]
    cpu0 = ctx.cpu_s()
    t0 = time.monotonic()
    for t in threads:
        t.start()
    try:
        await asyncio.sleep(1.5)
        t1 = time.monotonic()
        status = await asyncio.to_thread(http_request, ctx.http_port, ctx.host(ctx.http_port), "/", "",
                                         ctx.newcomer, ctx.server, 10.0)
        took = time.monotonic() - t1
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - t0)))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=3)
    secs = time.monotonic() - t0
    cpu = ctx.cpu_s() - cpu0
    # 200 at once, then 100 a second (src/transport/http.rs), with room
    # for the second the threads take to stop.
    bound = 200 + 100 * (secs + 1)
    if answered[0] > bound:
        raise Failed(f"one address got {answered[0]} answers in {secs:.1f} s (at most {bound:.0f} expected), phase4 CPU {cpu:.2f} s")
    if status != 200 or took > 1.0:
        raise Failed(f"another address's GET / during the flood: {status} after {took:.2f} s")
    return (f"{answered[0]} answers in {secs:.1f} s to the flooding address, phase4 CPU {cpu:.2f} s; "
            f"another address's GET / answered {status} in {took:.3f} s")


@abuse("token-guessing", 7, "one LAN address guesses the control token over fresh connections")
async def token_guessing(ctx):
    if ctx.newcomer.startswith("127."):
        return "skipped: needs LAN addresses (run inside the abuse network namespace)"
    guesser = ctx.attackers[-1]
    statuses = []
    for i in range(40):
        st, s = await asyncio.to_thread(handshake_status, ctx, guesser, f"/?token=guess{i}")
        statuses.append(st)
        if s:
            s.close()
    checked = statuses.count(101)
    if checked > 6 or statuses.count(429) < 30:
        raise Failed(f"40 guesses from one address: {checked} checked, {statuses.count(429)} refused with 429")
    # Spent: even the right token is not checked from that address...
    st, s = await asyncio.to_thread(handshake_status, ctx, guesser, f"/?token={ctx.token}")
    if s:
        s.close()
        raise Failed("the right token was checked from an address that spent its budget")
    # ...nor through an `auth` message (a watcher needs no token to connect).
    async with websockets.connect(ctx.url(), local_addr=(guesser, 0), max_size=None) as ws:
        await reply(ws, {"server_status"})
        await ws.send(json.dumps({"type": "auth", "token": ctx.token}))
        r = await reply(ws, {"error", "auth"})
        if r["type"] != "error" or "too many wrong control tokens" not in r["reason"]:
            raise Failed(f"`auth` with the right token from the guesser: {r}")
    async with websockets.connect(ctx.url() + f"?token={ctx.token}", local_addr=(ctx.attackers[-2], 0),
                                  max_size=None) as ws:
        if not (await reply(ws, {"auth"}))["authorized"]:
            raise Failed("another address's right token was refused while one guessed")
    return f"{checked} of 40 guesses checked, {statuses.count(429)} answered 429; the right token from the guesser: {st}; another address got in"


# ---------------------------------------------------------------- item 9


@abuse("device-wedge", 9, "set_device to a clockless always-ready PCM, then another set_device")
async def device_wedge(ctx):
    async with TrustedWs(ctx) as ws:
        for name in ["p4null", "p4ws"]:
            await ws.send(json.dumps({"type": "set_device", "name": name}))
            try:
                await reply(ws, {"meta", "error"}, timeout=10)
            except asyncio.TimeoutError:
                raise Failed(f"no answer to set_device {name} within 10 s")
    return "both switches answered"
