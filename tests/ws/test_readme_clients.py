"""The Python server README's minimal Python and JS clients, unchanged
(readme_client.py, readme_client.js), against phase4 on the default port:
they get meta, snapshots and binary FFT frames.

The clients are not modified; to see what they receive, the Python one runs
with websockets.connect wrapped to count frames, and the JS one in a page
whose WebSocket class counts messages. Each test waits until its client has
seen what it must see (bounded only to catch a broken server), never for a
fixed time: on a loaded machine the client's start-up alone can take tens of
seconds."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from browser import launch
from conftest import port_free

HERE = Path(__file__).parent

# Enough to show the client works: meta, 100 snapshots, 100 FFT frames.
WANT = {"meta": 1, "snapshot": 100, "fft": 100}

RUNNER = r"""
import asyncio, json, os, runpy, signal, sys, traceback
import websockets

want = json.loads(sys.argv[2])
seen = {"meta": 0, "snapshot": 0, "fft": 0}
real_connect = websockets.connect

def report(code):
    # Exit at once, flushing the client's own output first: stopping the
    # client by raising inside its event loop left websockets waiting out
    # its 10 s close timeout whenever the client was behind in reading.
    sys.stdout.flush()
    print("SEEN " + json.dumps(seen), flush=True)
    os._exit(code)

class Counting:
    def __init__(self, conn): self.conn = conn; self.it = None
    def __getattr__(self, k): return getattr(self.conn, k)
    def __aiter__(self):
        self.it = self.conn.__aiter__()
        return self
    async def __anext__(self):
        f = await self.it.__anext__()
        if isinstance(f, bytes):
            seen["fft"] += 1
        else:
            t = json.loads(f)["type"]
            if t in seen: seen[t] += 1
        if all(seen[k] >= n for k, n in want.items()):
            report(0)
        return f

class Connect:
    def __init__(self, *a, **k): self.cm = real_connect(*a, **k)
    async def __aenter__(self): return Counting(await self.cm.__aenter__())
    async def __aexit__(self, *e): return await self.cm.__aexit__(*e)

websockets.connect = Connect
# A bound for a server that stops sending, not a speed test.
signal.signal(signal.SIGALRM, lambda *_: report(1))
signal.alarm(int(sys.argv[3]))
try:
    runpy.run_path(sys.argv[1], run_name="__main__")
except BaseException:
    traceback.print_exc()
report(1)
"""


@pytest.fixture
def default_port_server(make_server):
    if not (port_free(8765) and port_free(8766)):
        pytest.fail("ports 8765/8766 are taken; the README clients hard-code ws://127.0.0.1:8765")
    return make_server(ws_port=8765, http_port=8766)


def test_readme_python_client_unchanged(default_port_server):
    out = subprocess.run([sys.executable, "-c", RUNNER, str(HERE / "readme_client.py"), json.dumps(WANT), "120"],
                         capture_output=True, text=True, timeout=180)
    seen = json.loads(out.stdout.split("SEEN ")[-1])
    print(seen)
    assert all(seen[k] >= n for k, n in WANT.items()), (seen, out.stderr)
    lines = [l for l in out.stdout.splitlines() if l and not l.startswith("SEEN")]
    assert len(lines[0].split()) == 3  # "low mid high"


def test_readme_js_client_unchanged_in_headless_chromium(default_port_server):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    snippet = (HERE / "readme_client.js").read_text()
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(bypass_csp=True)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # Served from phase4's own UI origin: the WebSocket accepts that Origin.
        page.goto("http://127.0.0.1:8766/")
        page.evaluate("""() => {
            window.seen = {meta: 0, snapshot: 0, fft: 0};
            const Real = window.WebSocket;
            window.WebSocket = class extends Real {
                constructor(...a) {
                    super(...a);
                    this.addEventListener("message", (ev) => {
                        if (typeof ev.data === "string") {
                            const t = JSON.parse(ev.data).type;
                            if (t in window.seen) window.seen[t]++;
                        } else window.seen.fft++;
                    });
                }
            };
        }""")
        page.add_script_tag(content=snippet)
        want = " && ".join(f"window.seen.{k} >= {n}" for k, n in WANT.items())
        try:
            page.wait_for_function(want, timeout=120_000)
        except PlaywrightTimeout:
            pass  # the assert below shows what arrived
        seen = page.evaluate("window.seen")
        browser.close()
    print(seen)
    assert not errors, errors
    assert all(seen[k] >= n for k, n in WANT.items()), seen
