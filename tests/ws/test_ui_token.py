"""The browser UI's control token and connection against hostile or failing
servers (notes/s51 hostile-e F1, F2, F5, F6, F7): a link's token replaces
the kept one only once the server confirmed it; a kept token is forgotten
only on a definite "wrong token", never on the rate-limit answer; the page
connects only to the WebSocket port the server named, keeps presenting the
token while the server is down, and backs off (with jitter) against a
server that accepts and closes at once. Real headless Chromium; phase4
where it can show the case, else tests/ws/fake_server.py."""

import asyncio
import json
import time

import pytest

from browser import launch, watch
from fake_server import FakeServer, greet, token_of

GOOD = "ui-token-test-good-0123"
AUTH_TEXT = "document.getElementById('auth').textContent"
KEPT = "localStorage.getItem('phase4-control-token')"

# Logs every WebSocket URL the page opens (window.__ws), before its scripts run.
LOG_WS = """(() => {
  const Real = window.WebSocket;
  window.__ws = [];
  window.WebSocket = function (url, ...rest) { window.__ws.push(String(url)); return new Real(url, ...rest); };
  window.WebSocket.prototype = Real.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})();"""


def wait_auth(page, text, timeout=15000):
    page.wait_for_function(f"{AUTH_TEXT} === {json.dumps(text)}", timeout=timeout)


@pytest.mark.parametrize("trust_loopback", [False, True])
def test_a_link_token_replaces_the_kept_one_only_once_the_server_confirms_it(make_server, trust_loopback):
    """F6: any page can send the operator to `/#token=junk`. The junk is
    tried, refused and dropped; the token kept before stays kept and in
    force. (With trust-loopback on, the handshake says nothing about a
    token, so the page asks with `auth`.)"""
    from playwright.sync_api import sync_playwright

    server = make_server(extra=f'token = "{GOOD}"\ntrust-loopback = {str(trust_loopback).lower()}')
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(bypass_csp=True)
        page = context.new_page()
        page.goto(server.http + f"/#token={GOOD}")
        wait_auth(page, "control: yes")
        page.wait_for_function(f"{KEPT} === {json.dumps(GOOD)}", timeout=10000)
        # The "attacker's" navigation: a fresh load of the dashboard in the
        # same browser, with a junk token in the link.
        lured = context.new_page()
        lured.goto(server.http + "/#token=not-the-token-0000")
        assert "token" not in lured.url
        lured.wait_for_function(
            f"document.getElementById('toast').textContent.includes('wrong token') || {KEPT} !== {json.dumps(GOOD)}",
            timeout=15000)
        assert lured.evaluate(KEPT) == GOOD
        wait_auth(lured, "control: yes")
        # Every tab opened afterwards is still in control.
        later = context.new_page()
        later.goto(server.http + "/")
        wait_auth(later, "control: yes")
        assert later.evaluate(KEPT) == GOOD
        browser.close()


def test_a_kept_token_survives_the_rate_limit_answer_and_is_used_once_it_ends(make_server):
    """F5: a neighbour on the operator's address spent its wrong-token
    budget: `?token=` gets 429 and `auth` the "too many wrong control
    tokens" error, without the token being checked. The page keeps the
    token, says it is rate-limited, and gets control once the budget is
    back; only a real "wrong token" verdict forgets it."""
    from playwright.sync_api import sync_playwright

    state = {"limited": True, "good": GOOD}

    def refuse(fake, path):
        return 429 if token_of(path) and state["limited"] else None

    async def handler(fake, ws):
        await greet(ws, token_of(ws.request.path) == state["good"])
        async for text in ws:
            msg = json.loads(text)
            if msg.get("type") != "auth":
                continue
            if state["limited"]:
                reason = "auth: too many wrong control tokens from this address; the next is checked in 1 s"
                await ws.send(json.dumps({"type": "error", "reason": reason}))
            elif msg.get("token") == state["good"]:
                await ws.send(json.dumps({"type": "auth", "authorized": True, "required": True}))
            else:
                await ws.send(json.dumps({"type": "error", "reason": "auth: wrong token"}))

    fake = FakeServer(handler, refuse).start()
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(bypass_csp=True)
            page.goto(fake.http + "/favicon.svg")  # the origin, without the page's scripts
            page.evaluate(f"localStorage.setItem('phase4-control-token', {json.dumps(GOOD)})")
            page.goto(fake.http + "/")
            page.wait_for_function(f"{AUTH_TEXT}.includes('rate-limited') || {KEPT} !== {json.dumps(GOOD)}",
                                   timeout=15000)
            assert page.evaluate(KEPT) == GOOD
            assert "rate-limited" in page.evaluate(AUTH_TEXT)
            # Still limited a while later (answers repeat): still kept.
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                assert page.evaluate(KEPT) == GOOD
                time.sleep(0.25)
            state["limited"] = False
            wait_auth(page, "control: yes", timeout=30000)
            assert page.evaluate(KEPT) == GOOD
            # The token was changed on the server: the handshake's verdict
            # is definite, and the kept token is forgotten.
            state["good"] = "the-new-token-4567"
            fake.close_all()
            wait_auth(page, "watch only", timeout=20000)
            page.wait_for_function(f"{KEPT} === null", timeout=10000)
            browser.close()
    finally:
        fake.stop()


def test_while_the_server_is_down_the_page_keeps_its_port_and_presents_its_token(make_server):
    """F1, F2: with phase4 stopped (ui-config.json unreachable) the page
    goes on trying the WebSocket port the server named, never a default
    one, with the token in every handshake (a refused connection says
    nothing about the token), and claims no control while disconnected;
    after the restart it is back in control."""
    from playwright.sync_api import sync_playwright

    server = make_server(extra=f'token = "{GOOD}"\ntrust-loopback = false')
    ws_port, http_port = server.ws_port, server.http_port
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(bypass_csp=True)
        page.add_init_script(LOG_WS)
        page.goto(server.http + f"/#token={GOOD}")
        wait_auth(page, "control: yes")
        before = page.evaluate("window.__ws.length")
        server.stop()
        page.wait_for_selector("#conn.down", timeout=10000)
        page.wait_for_function(f"window.__ws.length >= {before + 3}", timeout=30000)
        tried = page.evaluate("window.__ws")[before:]
        assert all(f":{ws_port}/" in u for u in tried), tried
        assert all(f"token={GOOD}" in u for u in tried), tried
        assert page.evaluate(AUTH_TEXT) != "control: yes"
        make_server(extra=f'token = "{GOOD}"\ntrust-loopback = false', ws_port=ws_port, http_port=http_port)
        wait_auth(page, "control: yes", timeout=30000)
        assert all(f":{ws_port}/" in u for u in page.evaluate("window.__ws"))
        browser.close()


def test_a_full_server_gets_the_token_at_least_every_other_attempt():
    """F2: the browser does not say why a handshake failed (503: full; 429:
    the address spent its wrong-token budget). Only a try without the token
    can get past a 429, but only one with it can get a place kept for token
    holders, so while the server is up and refusing the page alternates;
    it never goes on without the token."""
    from playwright.sync_api import sync_playwright

    async def handler(fake, ws):
        await ws.close()

    fake = FakeServer(handler, refuse=lambda fake, path: 503).start()
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(bypass_csp=True)
            page.goto(fake.http + "/favicon.svg")
            page.evaluate(f"localStorage.setItem('phase4-control-token', {json.dumps(GOOD)})")
            page.goto(fake.http + "/")
            deadline = time.monotonic() + 30
            while len(fake.ws_log) < 5 and time.monotonic() < deadline:
                time.sleep(0.1)
            with_token = [token_of(path) == GOOD for path in fake.attempts()]
            assert len(with_token) >= 5, with_token
            assert with_token[0], with_token
            assert not any(not a and not b for a, b in zip(with_token, with_token[1:])), with_token
            assert page.evaluate(KEPT) == GOOD
            browser.close()
    finally:
        fake.stop()


def test_the_page_waits_for_ui_config_rather_than_guess_a_port():
    """F1: a page that could not read ui-config.json yet opens no WebSocket
    at all (the old default, 8765, could be anyone's), and connects to the
    named port once it can."""
    from playwright.sync_api import sync_playwright

    async def handler(fake, ws):
        await greet(ws, True)
        await ws.wait_closed()

    fake = FakeServer(handler).start()
    fake.config_ok = False
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(bypass_csp=True)
            page.add_init_script(LOG_WS)
            page.goto(fake.http + "/")
            deadline = time.monotonic() + 20
            while fake.http_log.count("/ui-config.json") < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert fake.http_log.count("/ui-config.json") >= 2
            assert page.evaluate("window.__ws") == []
            fake.config_ok = True
            page.wait_for_selector("#conn.up", timeout=20000)
            assert all(f":{fake.ws_port}/" in u for u in page.evaluate("window.__ws"))
            browser.close()
    finally:
        fake.stop()


def test_reconnects_back_off_against_a_server_that_accepts_and_closes_at_once():
    """F7: the backoff starts again only after a connection stayed up, so a
    server (or proxy) that accepts and closes at once sees the delays grow
    to about 5 s, not two attempts a second forever."""
    from playwright.sync_api import sync_playwright

    async def handler(fake, ws):
        await ws.close()

    fake = FakeServer(handler).start()
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(bypass_csp=True)
            page.goto(fake.http + "/")
            deadline = time.monotonic() + 20
            while not fake.ws_log and time.monotonic() < deadline:
                time.sleep(0.05)
            assert fake.ws_log
            first = fake.ws_log[0][0]
            time.sleep(12)
            n = len(fake.attempts(first))
            # 0.5, 1, 2, 4, 5 s (each ±25 %): at most 7 in 12 s; without the
            # growing backoff, about 24.
            assert 2 <= n <= 9, n
            browser.close()
    finally:
        fake.stop()


def test_the_page_bounds_what_a_server_sends():
    """F3: malformed FFT frames and a server_status without a device cost
    only themselves (no uncaught errors), long lists and strings are cut, a
    huge message is not even parsed, and a recording_download is followed
    only to this origin's /recordings/<name>?ticket=."""
    from playwright.sync_api import sync_playwright

    async def handler(fake, ws):
        await greet(ws, True)
        for _ in range(200):
            await ws.send(bytes([1, 0, 0xFF, 0xFF, 0, 0, 0, 0]))
            await ws.send(json.dumps({"type": "server_status", "device": None}))
        await ws.send(json.dumps({"type": "devices", "items": [{"index": 0, "name": "x"}] * 60000}))
        items = [{"index": i, "name": "D" * 600, "description": "d" * 300, "available": True} for i in range(600)]
        await ws.send(json.dumps({"type": "devices", "items": items}))
        await ws.send(json.dumps({"type": "presets", "items": [{"name": "P" * 600, "saved_at": "s" * 300}] * 600}))
        elsewhere = f"http://localhost:{fake.http_port}/phish"
        await ws.send(json.dumps({"type": "recording_download", "name": "a.wav", "url": elsewhere}))
        await ws.send(json.dumps({"type": "recording_download", "name": "b.wav",
                                  "url": f"http://localhost:{fake.http_port}/recordings/b.wav?ticket=t"}))
        await ws.send(json.dumps({"type": "recording_download", "name": "rec-1.wav",
                                  "url": "/recordings/rec-1.wav?ticket=abc"}))
        await ws.wait_closed()

    fake = FakeServer(handler).start()
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(accept_downloads=True, bypass_csp=True)
            problems = watch(page)
            page.goto(fake.http + "/")
            deadline = time.monotonic() + 30
            while "/recordings/rec-1.wav?ticket=abc" not in fake.http_log and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "/recordings/rec-1.wav?ticket=abc" in fake.http_log, fake.http_log
            assert "/phish" not in fake.http_log and "/recordings/b.wav?ticket=t" not in fake.http_log
            assert page.url.startswith(fake.http), page.url
            options = page.evaluate("[...document.querySelectorAll('#device option')].map(o => o.textContent.length)")
            assert 0 < len(options) <= 500 and max(options) <= 1000, (len(options), max(options or [0]))
            presets = page.evaluate("[...document.querySelectorAll('#presets li')].map(li => li.textContent.length)")
            assert 0 < len(presets) <= 501 and max(presets) <= 1000, (len(presets), max(presets or [0]))
            assert problems == [], problems[:5]
            browser.close()
    finally:
        fake.stop()
