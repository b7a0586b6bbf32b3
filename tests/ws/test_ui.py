"""The browser UI in headless Chromium while the WAV input plays: it loads
without console errors, draws the spectrum, and a band control changes the
server's meta. Screenshots go to $P4_ARTIFACTS (default target/ws-artifacts)."""

import asyncio
import json
import time

import websockets

from browser import launch, watch
from conftest import ARTIFACTS, meta_now, recv_json


def http_get(port, path):
    """(status, content type, body) of GET `path` on 127.0.0.1:`port`."""
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.getheader("Content-Type"), r.read()


def drag_mid_lo(page, server):
    """Move the "mid lo" slider like a user (input while dragging, change on
    release); the meta before, and the first that differs (or the last seen
    after 30 s)."""
    before = meta_now(server.url)
    page.evaluate("""() => {
        const row = [...document.querySelectorAll('#c-bands .ctl')].find(r => r.querySelector('label').textContent === 'mid lo');
        const s = row.querySelector('input');
        s.value = String(+s.value + 60);
        s.dispatchEvent(new Event('input', {bubbles: true}));
        s.dispatchEvent(new Event('change', {bubbles: true}));
    }""")
    deadline = time.time() + 30
    after = before
    while time.time() < deadline and after["bands"]["mid"] == before["bands"]["mid"]:
        time.sleep(0.2)
        after = meta_now(server.url)
    return before, after


def test_ui_draws_the_spectrum_and_its_controls_change_the_server(server):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    async def enable_fft():
        async with websockets.connect(server.url) as ws:
            await ws.send(json.dumps({"type": "set_fft", "enabled": True}))
            await recv_json(ws, "meta")
            await recv_json(ws, "meta")

    asyncio.run(enable_fft())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 1000}, bypass_csp=True)
        problems = watch(page)
        page.goto(server.http + "/")
        page.wait_for_selector("#conn.up", timeout=10000)
        page.wait_for_function("document.querySelectorAll('#status dt').length > 3", timeout=10000)
        # Spectrum bars are drawn in blue over the dark background. Wait for
        # them (bounded) rather than a fixed time: a loaded machine draws late.
        lit_js = """() => {
            const c = document.getElementById('spectrum');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 120 && d[i + 2] > d[i] + 40) n++;
            return n / (c.width * c.height);
        }"""
        try:
            page.wait_for_function(f"({lit_js})() > 0.02", timeout=30000)
        except PlaywrightTimeout:
            pass  # the assert below says how much was lit
        lit = page.evaluate(lit_js)
        assert lit > 0.02, f"spectrum canvas nearly empty ({lit:.3%} lit)"
        # Move the "mid lo" slider like a user: input while dragging, change on release.
        before, after = drag_mid_lo(page, server)
        assert after["bands"]["mid"]["lo_hz"] > before["bands"]["mid"]["lo_hz"], (before["bands"], after["bands"])
        # The UI shows what meta says.
        shown_js = """() => [...document.querySelectorAll('#c-bands .ctl')]
            .find(r => r.querySelector('label').textContent === 'mid lo').querySelector('output').textContent"""
        want = str(round(after["bands"]["mid"]["lo_hz"]))
        try:
            page.wait_for_function(f"({shown_js})().startsWith({json.dumps(want)})", timeout=30000)
        except PlaywrightTimeout:
            pass  # the assert below shows what the UI says
        shown = page.evaluate(shown_js)
        assert shown.startswith(want), (shown, want)
        page.screenshot(path=str(ARTIFACTS / "ui.png"), full_page=True)
        phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, bypass_csp=True)
        phone.goto(server.http + "/")
        phone.wait_for_selector("#conn.up", timeout=10000)
        time.sleep(1)
        width = phone.evaluate("document.documentElement.scrollWidth")
        phone.screenshot(path=str(ARTIFACTS / "ui-phone.png"))
        browser.close()
    assert not problems, problems
    assert width <= 390, f"the page is {width} px wide on a 390 px phone"


def test_ui_server_answers_with_types_404s_and_no_traversal(server):
    import http.client

    def get(path, method="GET"):
        c = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=5)
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read()

    assert get("/")[:2] == (200, "text/html; charset=utf-8")
    assert get("/app.js")[:2] == (200, "text/javascript; charset=utf-8")
    assert get("/style.css")[:2] == (200, "text/css; charset=utf-8")
    status, ctype, body = get("/ui-config.json")
    assert status == 200 and json.loads(body)["ws_port"] == server.ws_port
    assert json.loads(body)["ws_refused"] is None
    assert get("/nope.js")[0] == 404
    for bad in ["/../Cargo.toml", "/..%2fCargo.toml", "/%2e%2e/Cargo.toml", "/.git/config", "//etc/passwd",
                "/web/../../etc/passwd"]:
        status, _, body = get(bad)
        assert status == 404 and b"[package]" not in body and b"root:" not in body, bad
    assert get("/", "POST")[0] == 405
    status, _, body = get("/", "HEAD")
    assert status == 200 and body == b""


def test_the_ui_with_the_token_gets_in_when_watchers_hold_every_other_place(make_server):
    """Stop 38: watchers can fill every place but the quarter kept for
    clients with the token. The page sends the token it keeps in its
    handshake (`?token=`), so it gets one of those places; a page without
    the token does not. With trust-loopback off, loopback clients here are
    as privileged as the LAN's."""
    import threading

    from playwright.sync_api import sync_playwright
    from websockets.sync.client import connect

    server = make_server(extra='token = "ui-test-token-2"\ntrust-loopback = false\nmax-clients = 8')
    stop = threading.Event()
    held = []

    def watch_forever():
        with connect(server.url, open_timeout=5) as ws:
            held.append(ws)
            while not stop.is_set():
                try:
                    ws.recv(timeout=0.5)
                except TimeoutError:
                    pass

    watchers = [threading.Thread(target=watch_forever, daemon=True) for _ in range(6)]
    for t in watchers:
        t.start()
    deadline = time.monotonic() + 10
    while len(held) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert len(held) == 6
        # 8 places, 2 kept: a seventh watcher is refused...
        try:
            connect(server.url, open_timeout=5).close()
            assert False, "a seventh watcher got a kept place"
        except websockets.exceptions.InvalidStatus as e:
            assert e.response.status_code == 503
        with sync_playwright() as p:
            browser = launch(p)
            # ...and so is a page without the token (it keeps retrying),
            # which says why: the server tells pages in /ui-config.json what
            # a watcher from their address would be refused (tester x #9:
            # it said only "reconnecting").
            why = json.loads(http_get(server.http_port, "/ui-config.json")[2])["ws_refused"]
            assert "without the token" in why, why
            plain = browser.new_page(bypass_csp=True)
            plain.goto(server.http + "/")
            plain.wait_for_function("document.getElementById('conn').textContent === 'refused, retrying…'",
                                    timeout=10000)
            assert "without the token" in plain.evaluate("document.getElementById('conn').title")
            plain.wait_for_function("document.getElementById('toast').textContent.includes('phase4 refused this page')"
                                    " && document.getElementById('toast').textContent.includes('Unlock')",
                                    timeout=5000)
            perf = browser.new_page(bypass_csp=True)
            perf.goto(server.http + "/perf.html")
            perf.wait_for_function("document.getElementById('p-conn').textContent.startsWith('refused, retrying')",
                                   timeout=10000)
            # ...but the page with the token gets in, in control.
            page = browser.new_page(bypass_csp=True)
            page.goto(server.http + "/#token=ui-test-token-2")
            page.wait_for_function("document.getElementById('auth').textContent === 'control: yes'",
                                   timeout=10000)
            # (Read back through the other kept place: the test's own
            # client needs the token too.)
            import types
            with_token = types.SimpleNamespace(url=server.url + "/?token=ui-test-token-2")
            before, after = drag_mid_lo(page, with_token)
            assert after["bands"]["mid"] != before["bands"]["mid"]
            # Once the watchers leave: a kept token that no longer holds
            # goes in the handshake, is forgotten, and the page watches.
            stop.set()
            for t in watchers:
                t.join(timeout=5)
            page.evaluate("localStorage.setItem('phase4-control-token', 'stale-token-000')")
            page.reload()
            page.wait_for_function("localStorage.getItem('phase4-control-token') === null", timeout=10000)
            page.wait_for_function("document.getElementById('auth').textContent === 'watch only'", timeout=10000)
            # Places free again: nothing refused, and the waiting pages get in.
            assert json.loads(http_get(server.http_port, "/ui-config.json")[2])["ws_refused"] is None
            plain.wait_for_function("document.getElementById('conn').textContent === 'connected'", timeout=15000)
            perf.wait_for_function("document.getElementById('p-conn').textContent === 'live'", timeout=15000)
            browser.close()
    finally:
        stop.set()
        for t in watchers:
            t.join(timeout=5)


def test_ui_unlocks_with_the_token_once_and_keeps_it(make_server):
    """Issue 8, item 7: from another machine the UI watches until it is
    given the control token (from `phase4 token`'s #token= link, or typed
    into the Unlock field); the browser keeps it, and it leaves the address
    bar at once."""
    from playwright.sync_api import sync_playwright

    server = make_server(extra='token = "ui-test-token-1"\ntrust-loopback = false')
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(bypass_csp=True)
        page.goto(server.http + "/")
        page.wait_for_selector("#conn.up", timeout=10000)
        page.wait_for_function("document.getElementById('auth').textContent === 'watch only'", timeout=10000)
        assert page.is_visible("#unlock")
        # A wrong token is refused and not kept.
        page.fill("#token", "wrong-token-0000")
        page.click("#token-use")
        page.wait_for_function("document.getElementById('toast').textContent.includes('wrong token')", timeout=5000)
        assert page.evaluate("localStorage.getItem('phase4-control-token')") is None
        # The right one unlocks the controls and is kept across reloads.
        page.fill("#token", "ui-test-token-1")
        page.click("#token-use")
        page.wait_for_function("document.getElementById('auth').textContent === 'control: yes'", timeout=5000)
        assert not page.is_visible("#unlock")
        page.reload()
        page.wait_for_function("document.getElementById('auth').textContent === 'control: yes'", timeout=10000)
        # Lock forgets it.
        page.click("#lock")
        page.wait_for_function("document.getElementById('auth').textContent === 'watch only'", timeout=10000)
        # The link `phase4 token` prints: the token leaves the address bar.
        fresh = browser.new_page(bypass_csp=True)
        fresh.goto(server.http + "/#token=ui-test-token-1")
        fresh.wait_for_function("document.getElementById('auth').textContent === 'control: yes'", timeout=10000)
        assert "token" not in fresh.url
        before, after = drag_mid_lo(fresh, server)
        assert after["bands"]["mid"] != before["bands"]["mid"]
        browser.close()
