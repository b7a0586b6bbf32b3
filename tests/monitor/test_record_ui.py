"""Issue 14, item 3, from the page: the dashboard's recording controls
clicked in headless Chromium (Debian's package, driven by Playwright), no
hand-written WebSocket messages. Unlocked with the control token, the page
starts and stops a recording, saves the replay buffer ("Save the last
minute"), lists both under names carrying the capture time, downloads them
through its own download link (the bytes are a WAV holding exactly the
input samples) and deletes one (gone from the list and from disk). A
locked page cannot record: the click is refused with a visible message and
nothing is written; a page that locks itself drops the list it showed.
Chromium's own download manager resumes a download broken off halfway, after
an unused ticket would have expired."""

import asyncio
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import websockets
from conftest import (AUTH, SR, TOKEN, login, loop_of, matches_loop, music, recv_any, record_cfg, wav_samples,
                      write_wav)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ws"))
from browser import launch, watch  # noqa: E402

NAME = re.compile(r"^(rec|replay)-(\d{4})-(\d\d)-(\d\d)T(\d\d)-(\d\d)-(\d\d)\.(\d{3})Z\.wav$")


def captured_at(name):
    """The UTC time a recording's name says its first sample was captured."""
    m = NAME.match(name)
    assert m, f"{name!r} does not carry a capture time"
    y, mo, d, h, mi, s, ms = (int(g) for g in m.groups()[1:])
    return datetime(y, mo, d, h, mi, s, ms * 1000, tzinfo=timezone.utc).timestamp()


def open_page(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True,
                             bypass_csp=True)  # only so the test can poll its own expressions
    problems = watch(page)
    page.goto(server.http + "/")
    page.wait_for_selector("#conn.up", timeout=10000)
    page.wait_for_selector("#rec-toggle", timeout=10000)
    return page, problems


def listed(page):
    """The names in the page's recordings list."""
    return page.eval_on_selector_all(
        "#recordings li > span", "els => els.map(e => e.textContent.split(' · ')[0])")


def wait_listed(page, pred, what, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        names = listed(page)
        if pred(names):
            return names
        time.sleep(0.1)
    raise AssertionError(f"the list never showed {what}: {listed(page)}")


def row_button(page, name, label):
    return page.locator("#recordings li", has_text=name).get_by_role("button", name=label)


def click(page, name, label):
    row_button(page, name, label).click(timeout=5000)


def test_the_page_records_saves_lists_downloads_and_deletes(make_server, tmp_path):
    from playwright.sync_api import sync_playwright

    wav = write_wav(tmp_path / "in.wav", music(3.0))
    loop = loop_of(wav)
    server = make_server(wav, extra=AUTH + record_cfg())
    folder = server.state_dir / "recordings"
    with sync_playwright() as p:
        browser = launch(p)
        page, problems = open_page(browser, server)
        # Locked until the token is given (trust-loopback is off): once the
        # greeting's `auth` has come (the socket opens before it does).
        page.wait_for_function("document.getElementById('auth').textContent === 'watch only'", timeout=10000)
        assert page.is_visible("#unlock")
        page.fill("#token", TOKEN)
        page.click("#token-use")
        page.wait_for_function("document.getElementById('auth').textContent === 'control: yes'", timeout=10000)
        page.wait_for_selector("#recordings li", timeout=10000)
        assert listed(page) == [], "a fresh state directory has no recordings"

        # Record about two seconds.
        clicked = time.time()
        page.click("#rec-toggle")
        page.wait_for_function("document.getElementById('rec-toggle').textContent.includes('Stop')", timeout=10000)
        page.wait_for_function("/recording [0-9]+ s/.test(document.getElementById('rec-state').textContent)",
                               timeout=10000)
        time.sleep(2.0)
        page.click("#rec-toggle")
        page.wait_for_function("document.getElementById('rec-toggle').textContent.includes('Record')", timeout=10000)
        rec = wait_listed(page, lambda n: any(x.startswith("rec-") for x in n), "the recording")[0]
        assert abs(captured_at(rec) - clicked) < 3.0, f"{rec} vs a click at {clicked:.3f}"

        # The replay buffer (5 s here) fills from start-up: the page says when.
        page.wait_for_function("/replay 5\\/5 s/.test(document.getElementById('rec-state').textContent)",
                               timeout=10000)
        clicked = time.time()
        page.click("#rec-replay")
        page.wait_for_function("document.getElementById('rec-note').textContent.startsWith('saved replay-')",
                               timeout=10000)
        names = wait_listed(page, lambda n: any(x.startswith("replay-") for x in n), "the saved replay")
        replay = next(x for x in names if x.startswith("replay-"))
        note = page.inner_text("#rec-note")
        saved = float(re.search(r"\(([0-9.]+) s\)", note).group(1))
        assert replay in note and 4.4 < saved <= 5.0, note
        # Named after its first sample: `saved` seconds before the click.
        assert abs(clicked - saved - captured_at(replay)) < 2.0, f"{replay}: {saved} s back from {clicked:.3f}"

        # The rows' buttons lie inside the card (a long name once pushed them
        # under the Status card, where no click reached them).
        card = page.locator("#listen-card").bounding_box()
        for name in (rec, replay):
            for label in ("Download", "Delete"):
                b = row_button(page, name, label).bounding_box()
                assert b["x"] + b["width"] <= card["x"] + card["width"], (name, label, b, card)
        # Download both through the page's own link; the bytes are the input.
        for name in (rec, replay):
            with page.expect_download(timeout=10000) as dl:
                click(page, name, "Download")
            d = dl.value
            assert d.suggested_filename == name
            data = Path(d.path()).read_bytes()
            assert data == (folder / name).read_bytes()
            width, pcm = wav_samples(data)
            secs = len(pcm) / SR
            print(f"record ui: downloaded {name}: {len(data)} bytes, {secs:.2f} s, 16-bit: {width == 2}")
            assert width == 2 and (1.5 < secs < 4.0 if name == rec else abs(secs - saved) < 0.05)
            assert matches_loop(pcm, loop), f"{name} is not the input sample for sample"

        # Delete asks first: dismissed, nothing goes; accepted, it is gone.
        page.once("dialog", lambda dlg: dlg.dismiss())
        click(page, replay, "Delete")
        time.sleep(1.0)
        assert replay in listed(page) and (folder / replay).exists()
        page.once("dialog", lambda dlg: dlg.accept())
        click(page, replay, "Delete")
        wait_listed(page, lambda n: replay not in n and rec in n, f"{replay} deleted")
        assert not (folder / replay).exists() and (folder / rec).exists()

        # Lock: the page goes watch-only and the list it showed is dropped.
        page.click("#lock")
        page.wait_for_function("document.getElementById('auth').textContent === 'watch only'", timeout=10000)
        page.wait_for_function("document.getElementById('recordings').textContent.includes('need the control token')",
                               timeout=5000)
        assert listed(page) == []
        # The recorder's state goes with it, and the server sends it no more.
        time.sleep(1.5)
        assert page.inner_text("#rec-state") == "", page.inner_text("#rec-state")
        assert not problems, problems
        browser.close()
    assert server.running()


def test_a_locked_page_cannot_record(make_server, tmp_path):
    from playwright.sync_api import sync_playwright

    wav = write_wav(tmp_path / "in.wav", music(1.0))
    server = make_server(wav, extra=AUTH + record_cfg())
    folder = server.state_dir / "recordings"
    with sync_playwright() as p:
        browser = launch(p)
        page, problems = open_page(browser, server)
        page.wait_for_function("document.getElementById('auth').textContent === 'watch only'", timeout=10000)
        for button in ("#rec-toggle", "#rec-replay"):
            page.click(button)
            page.wait_for_selector("#toast.show", timeout=5000)
            shown = page.inner_text("#toast")
            assert "token" in shown, shown
            page.evaluate("document.getElementById('toast').classList.remove('show')")
        time.sleep(1.0)
        assert page.inner_text("#rec-toggle") == "● Record"
        # The recorder's state (file, disk figures) is not sent to it.
        assert page.inner_text("#rec-state") == "", page.inner_text("#rec-state")
        assert listed(page) == [] and "need the control token" in page.inner_text("#recordings")
        assert not folder.exists() or not any(folder.iterdir()), list(folder.iterdir())
        assert not problems, problems
        browser.close()
    assert server.running()


class CuttingProxy:
    """A TCP proxy in front of phase4's UI port that breaks the first
    recording download after `cut_after` bytes and then drops every
    connection until `up()` (the venue's Wi-Fi gone for a while), and keeps
    every request head it forwarded and every status line it returned."""

    def __init__(self, upstream, cut_after):
        self.upstream, self.cut_after = upstream, cut_after
        self.heads, self.statuses = [], []
        self.cut = False
        self.down = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def up(self):
        self.down = False

    def serve(self, c):
        if self.down:
            c.close()
            return
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.recv(65536)
            if not d:
                c.close()
                return
            head += d
        self.heads.append(head.split(b"\r\n\r\n")[0].decode("latin-1"))
        u = socket.create_connection(self.upstream, timeout=30)
        u.sendall(head)
        cut = not self.cut and b" /recordings/" in head
        self.cut |= cut

        def upstream():
            try:
                while d := c.recv(65536):
                    u.sendall(d)
            except OSError:
                pass

        threading.Thread(target=upstream, daemon=True).start()
        sent, first = 0, b""
        try:
            while d := u.recv(65536):
                if b"\r\n" not in first:
                    first += d[:200]
                    if b"\r\n" in first:
                        self.statuses.append(first.split(b"\r\n")[0].decode("latin-1"))
                c.sendall(d)
                sent += len(d)
                if cut and sent > self.cut_after:
                    self.down = True
                    break
        except OSError:
            pass
        # shutdown() first: a close() alone waits for the other thread's
        # recv, and the browser would see nothing.
        for s in (c, u):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.listener.close()


def downloads_item(page, js):
    """Evaluate `js` on the first item of chrome://downloads (`i`: its
    shadow root)."""
    return page.evaluate("() => { const i = document.querySelector('downloads-manager').shadowRoot"
                         f".querySelector('downloads-item').shadowRoot; return {js}; }}")


def test_chromium_resumes_a_broken_download_after_an_unused_ticket_would_have_expired(make_server, tmp_path):
    """A download broken off at 2 MiB (a proxy cuts it) is resumed by
    Chromium's own download manager (the Resume of chrome://downloads) after
    its ticket's unused lifetime (`[record] link-s`, a minute by default,
    10 s here) has passed: Chromium asks for the rest with `Range` and the
    `If-Range` of phase4's ETag, gets 206, and the file on disk is the
    recording, byte for byte. A ticket issued with it and never used is
    refused by then."""
    from playwright.sync_api import sync_playwright

    link_s = 10
    wav = write_wav(tmp_path / "in.wav", music(3.0))
    server = make_server(wav, extra=AUTH + record_cfg(**{"link-s": link_s}))
    name = "rec-2026-11-30T16-24-48.123Z.wav"
    data = os.urandom(8 << 20)

    async def ticket():
        async with websockets.connect(server.url) as ws:
            await login(ws)
            folder = server.state_dir / "recordings"
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
            got = []
            for _ in range(2):
                await ws.send(json.dumps({"type": "download_recording", "name": name}))
                t = await recv_any(ws, {"recording_download", "error"}, 10.0)
                assert t["type"] == "recording_download", t
                assert t["expires_s"] == link_s, t
                got.append(t)
            return got

    proxy = CuttingProxy(("127.0.0.1", server.http_port), 2 << 20)
    saved = tmp_path / "downloads"
    try:
        with sync_playwright() as p:
            # Chromium first: its start must not eat into the ticket's seconds.
            browser = launch(p, downloads_path=str(saved))
            ctx = browser.new_context(accept_downloads=True)
            page = ctx.new_page()
            # (asyncio.run cannot run in Playwright's own loop: a thread.)
            with ThreadPoolExecutor(1) as pool:
                t, unused = pool.submit(asyncio.run, ticket()).result(30)
            issued = time.monotonic()
            url = f"http://127.0.0.1:{proxy.port}{t['url']}"
            page.set_content(f'<a id="get" href="{url}">{name}</a>')
            with page.expect_download(timeout=10000):
                page.click("#get")
            manager = ctx.new_page()
            manager.goto("chrome://downloads")
            end = time.monotonic() + 15
            while time.monotonic() < end:
                state = downloads_item(manager, "[i.querySelector('#pause-or-resume').textContent.trim(),"
                                                " i.textContent.includes('Failed')]")
                if state == ["Resume", True]:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"the download did not break off: {state}, {proxy.statuses}")
            assert proxy.statuses == ["HTTP/1.1 200 OK"], proxy.statuses
            # Past the time an unused ticket lasts: the unused one is refused,
            # the used one still works.
            time.sleep(max(0.0, issued + link_s + 2 - time.monotonic()))
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}{unused['url']}", timeout=10)
                raise AssertionError("an unused ticket was admitted after link-s")
            except urllib.error.HTTPError as e:
                assert e.code == 403, e
            proxy.up()
            downloads_item(manager, "i.querySelector('#pause-or-resume').click()")
            # Finished: renamed from its `.crdownload` name (read before the
            # context closes: Playwright deletes its downloads then).
            end = time.monotonic() + 30
            got = None
            while got is None and time.monotonic() < end:
                done = [f for f in saved.iterdir() if not f.name.endswith(".crdownload")]
                got = done[0].read_bytes() if done else None
                time.sleep(0.2)
            browser.close()
    finally:
        proxy.close()
    resumed = proxy.heads[1].lower()
    print(f"record ui: Chromium resumed {time.monotonic() - issued:.0f} s after the ticket: "
          f"{proxy.statuses}; {[h for h in resumed.splitlines() if 'range' in h]}")
    assert "\r\nrange: bytes=" in resumed and "\r\nif-range: \"" in resumed, resumed
    assert proxy.statuses[1] == "HTTP/1.1 206 Partial Content", proxy.statuses
    assert got == data, f"the resumed file is not the recording ({len(got or b'')} bytes)"
