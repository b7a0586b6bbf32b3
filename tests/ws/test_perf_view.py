"""Issue 14 item 4: the performance view (perf.html) and the dashboard's
fixes, in headless Chromium against the real server on a click track.

- The beat flash follows OSC /audio/beat: each beat the server sends over
  OSC (decoded by python-osc) lights the disc once, with the same index,
  white, soon after the datagram; no flash without a beat.
- Each band's onset light flashes, the phase ring moves, and the view fits
  a phone without scrolling; the shapes are big.
- Dashboard: beat/onset lights are big; the spectrum's axis labels never
  overlap ("20k" and "Hz"); in raw-dB mode the low end is a continuous
  shape, not a comb of spikes with gaps.

Screenshots go to $P4_ARTIFACTS (perf-desktop.png, perf-phone.png,
spectrum-raw-db.png); docs/images holds copies for the README."""

import asyncio
import json
import math
import os
import random
import socket
import statistics
import threading
import time

import pytest
import websockets

from browser import launch, watch
from conftest import ARTIFACTS, Server, pcm16, recv_json, write_mono_wav

BPM = 120
WINDOW_S = 6.0


@pytest.fixture(scope="module")
def click_wav(tmp_path_factory):
    """8 s at 48 kHz, 120 BPM: a kick (low thump) and a hi-hat-like noise
    burst on every beat, a snare-like mid burst on beats 2 and 4, and a
    quiet pad so the band levels move."""
    path = tmp_path_factory.mktemp("click") / "click.wav"
    sr, seconds = 48000, 8
    period = int(sr * 60 / BPM)
    rnd = random.Random(14)
    out = bytearray()
    for i in range(sr * seconds):
        k, beat = i % period, i // period
        t = i / sr
        v = 0.08 * math.sin(2 * math.pi * 220 * t) + 0.05 * math.sin(2 * math.pi * 3300 * t)
        v += 0.7 * math.sin(2 * math.pi * (60 + 90 * math.exp(-k / 900)) * k / sr) * math.exp(-k / 5000)
        v += 0.25 * rnd.uniform(-1, 1) * math.exp(-k / 400)
        if beat % 2 == 1:
            v += 0.35 * math.sin(2 * math.pi * 900 * k / sr) * rnd.uniform(0.5, 1) * math.exp(-k / 2500)
        out += pcm16(v)
    return write_mono_wav(path, sr, out)


@pytest.fixture(scope="module")
def click_server(binary, click_wav, tmp_path_factory):
    s = Server(binary, click_wav, tmp_path_factory.mktemp("perf")).start()
    yield s
    s.stop()


class OscBeats:
    """OSC /audio/beat from the server, decoded by python-osc: (index,
    arrival time in Unix seconds)."""

    def __init__(self, port):
        from pythonosc.osc_packet import OscPacket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.beats, self.stop = [], threading.Event()

        def rx():
            while not self.stop.is_set():
                try:
                    dgram = self.sock.recv(65536)
                except socket.timeout:
                    continue
                at = time.time()
                for m in OscPacket(dgram).messages:
                    if m.message.address == "/audio/beat":
                        self.beats.append((int(m.message.params[0]), at))

        self.thread = threading.Thread(target=rx, daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


def set_fft(server, raw_db):
    async def go():
        async with websockets.connect(server.url) as ws:
            await recv_json(ws, "meta")
            await ws.send(json.dumps({"type": "set_fft", "enabled": True}))
            await recv_json(ws, "meta")
            await ws.send(json.dumps({"type": "set_fft_send_raw_db", "send_raw_db": raw_db}))
            await recv_json(ws, "meta")

    asyncio.run(go())


# Installed by the test, not by the page: records every time the disc and
# the band frames light up (class added), with the beat index the disc
# shows and its computed colour at that moment.
WATCH_JS = """() => {
    window.seen = {flashes: [], onsets: {low: 0, mid: 0, high: 0}};
    const disc = document.getElementById('p-beat');
    new MutationObserver(() => {
        if (!disc.classList.contains('on') || disc._was) { disc._was = disc.classList.contains('on'); return; }
        disc._was = true;
        window.seen.flashes.push({index: +disc.dataset.beat, t: Date.now(),
                                  bg: getComputedStyle(disc).backgroundColor});
    }).observe(disc, {attributes: true, attributeFilter: ['class', 'data-beat']});
    for (const b of ['low', 'mid', 'high']) {
        const el = document.getElementById('p-' + b);
        new MutationObserver(() => { if (el.classList.contains('onset')) window.seen.onsets[b]++; })
            .observe(el, {attributes: true, attributeFilter: ['class']});
    }
}"""


def wait_for(page, js, timeout=30.0):
    """Poll `js` (an expression) until it is truthy. Not wait_for_function:
    its polling evaluates strings inside the page, which the server's CSP
    (no 'unsafe-eval') rightly refuses."""
    deadline = time.time() + timeout
    while not page.evaluate(js):
        assert time.time() < deadline, f"not within {timeout} s: {js}"
        time.sleep(0.1)


def open_perf(browser, server, **kw):
    page = browser.new_page(**kw)  # under the server's real CSP
    problems = watch(page)
    page.goto(server.http + "/perf.html")
    page.wait_for_selector("#p-conn.up", timeout=10000)
    return page, problems


def test_the_beat_flash_follows_osc_beats(click_server):
    from playwright.sync_api import sync_playwright

    set_fft(click_server, raw_db=False)
    osc = OscBeats(click_server.osc_port)
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page, problems = open_perf(browser, click_server, viewport={"width": 1280, "height": 800})
            wait_for(page, "document.getElementById('p-lock').textContent === 'LOCKED'")
            page.evaluate(WATCH_JS)
            start = time.time()
            # A beat sent just before the window may flash inside it when the
            # page is slow (a loaded machine): it is a beat, not a spurious
            # flash, so its index is kept for that check.
            before = {i for i, _ in list(osc.beats)}
            osc.beats.clear()
            rings = set()
            while time.time() - start < WINDOW_S:
                rings.add(page.get_attribute("#p-ring-arc", "stroke-dasharray"))
                time.sleep(0.05)
            end = time.time()
            time.sleep(0.4)  # flashes for the last beats of the window
            seen = page.evaluate("window.seen")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "perf-desktop.png"))
            disc = page.eval_on_selector("#p-beat", "e => e.getBoundingClientRect().width")
            band_h = page.eval_on_selector("#p-low", "e => e.getBoundingClientRect().height")
            bpm_text = page.text_content("#p-bpm")
            browser.close()
    finally:
        osc.close()
    assert not problems, problems
    beats = [(i, t) for i, t in osc.beats if start + 0.2 <= t <= end - 0.2]
    assert len(beats) >= WINDOW_S * BPM / 60 * 0.6, f"too few OSC beats to compare: {osc.beats}"
    flashes = {f["index"]: f for f in seen["flashes"]}
    delays = []
    superseded = []
    for index, at in beats:
        f = flashes.get(index)
        if f is None and any(flashes.get(index + k) is not None for k in (1, 2)):
            # The page was stalled (a loaded machine) past the next beat, or
            # the next two (a CI run once stalled it for 1.2 s: beats 11 and
            # 12 both shown by 13's flash), and handled them in one task:
            # one flash, showing the newest index. Allowed now and then,
            # never a beat that just disappears.
            superseded.append(index)
            continue
        assert f is not None, f"OSC beat {index} never flashed; flashes {sorted(flashes)}"
        delays.append(f["t"] / 1000 - at)
        assert f["bg"] == "rgb(255, 255, 255)", f
    assert len(superseded) <= max(1, len(beats) // 10), (superseded, sorted(flashes))
    # No flash without a beat: every flash in the window is an OSC beat.
    osc_indices = {i for i, _ in osc.beats} | before
    spurious = [f for f in seen["flashes"] if f["index"] not in osc_indices and start <= f["t"] / 1000 <= end]
    assert not spurious, spurious
    assert len(seen["flashes"]) <= len(osc.beats) + 1
    med = statistics.median(delays)
    print(f"beat flash: {len(beats)} OSC beats, {len(seen['flashes'])} flashes "
          f"({len(superseded)} shown by the next beat's flash), "
          f"OSC datagram -> flash median {med * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms")
    # Timely: the median says how the page follows the beats. A page stalled
    # by a loaded machine (a CI run with the background lane: a busy qemu and
    # a fuzzer on both cores; 0.33 s once, 0.50 s once) may show one flash in
    # ten late, like the superseded ones above. Each flash shows its own
    # beat's index (checked above), so a late one is a stall, not a flash on
    # the wrong beat: a stall just under a beat long leaves beat i's flash
    # ~one beat late (0.503 s at 120 BPM once), one just over it makes the
    # flash show i + 1 (superseded). Never two beats late: by then the next
    # beat's event had long arrived and would have superseded it.
    late = [d for d in delays if d > 0.25]
    assert -0.05 <= med <= 0.1, delays
    assert len(late) <= max(1, len(delays) // 10) and max(delays) < 2 * 60 / BPM, delays
    # The other parts are alive: every band's onset light, the phase ring, the tempo.
    assert all(seen["onsets"][b] >= 2 for b in ("low", "mid", "high")), seen["onsets"]
    assert len(rings) >= 5, rings
    assert abs(float(bpm_text) - BPM) < 3, bpm_text
    # Big enough for across the room at 1280x800.
    assert disc >= 250 and band_h >= 250, (disc, band_h)


def test_the_perf_view_fits_a_phone(click_server):
    from playwright.sync_api import sync_playwright

    set_fft(click_server, raw_db=False)
    with sync_playwright() as p:
        browser = launch(p)
        page, problems = open_perf(browser, click_server, viewport={"width": 390, "height": 844},
                                   device_scale_factor=2, is_mobile=True)
        wait_for(page, "document.getElementById('p-lock').textContent === 'LOCKED'")
        # The spectrogram fills in with FFT frames: 3 s of history (the
        # whole 10 s with P4_DOC_IMAGES=1, for docs/images/perf-phone.png).
        time.sleep(10 if os.environ.get("P4_DOC_IMAGES") else 3)
        page.screenshot(path=str(ARTIFACTS / "perf-phone.png"))
        size = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        boxes = page.evaluate("""() => Object.fromEntries(['p-beat', 'p-bpm', 'p-lock', 'p-low', 'p-mid', 'p-high', 'p-hist']
            .map(id => { const r = document.getElementById(id).getBoundingClientRect();
                         return [id, [r.left, r.top, r.right, r.bottom]]; }))""")
        bpm_px = page.eval_on_selector("#p-bpm", "e => parseFloat(getComputedStyle(e).fontSize)")
        lit = page.evaluate("""() => {
            const c = document.getElementById('p-hist');
            // The newest 2.5 s (right quarter), upper half.
            const x0 = Math.round(c.width * 0.75);
            const d = c.getContext('2d').getImageData(x0, 0, c.width - x0, Math.round(c.height * 0.5)).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 120) n++;
            return n / (d.length / 4);
        }""")
        browser.close()
    assert not problems, problems
    assert size[0] <= 390 and size[1] <= 844, f"the view scrolls on a phone: {size}"
    for name, (left, top, right, bottom) in boxes.items():
        assert left >= 0 and top >= 0 and right <= 390 and bottom <= 844, (name, boxes[name])
    assert boxes["p-beat"][2] - boxes["p-beat"][0] >= 120, boxes["p-beat"]
    assert boxes["p-low"][3] - boxes["p-low"][1] >= 150, boxes["p-low"]
    assert bpm_px >= 40, bpm_px
    # The upper half of the history is the spectrogram: lit, not black.
    print(f"phone: spectrogram {lit:.1%} lit, page {size}, beat disc {boxes['p-beat'][2] - boxes['p-beat'][0]:.0f} px, BPM {bpm_px:.0f} px")
    assert lit > 0.3, f"spectrogram nearly empty ({lit:.1%} lit)"


SPECTRUM_LIT_COLUMNS = """([fLo, fHi]) => {
    const c = document.getElementById('spectrum'), m = window.phase4Meta;
    const w = c.width, dpr = window.devicePixelRatio || 1, plotH = c.height - 18 * dpr;
    const xOf = f => Math.log(f / m.fft_f_min) / Math.log(m.sr / 2 / m.fft_f_min) * w;
    const x0 = Math.ceil(xOf(Math.max(fLo, m.fft_f_min))), x1 = Math.floor(xOf(fHi));
    const d = c.getContext('2d').getImageData(x0, 0, x1 - x0, plotH).data;
    const cols = new Array(x1 - x0).fill(false);
    for (let i = 0; i < d.length; i += 4) {
        if (d[i + 2] > 120 && d[i + 2] > d[i] + 40) cols[(i / 4) % (x1 - x0)] = true;
    }
    return cols.filter(Boolean).length / cols.length;
}"""


def test_dashboard_lights_labels_and_raw_db_low_end(click_server):
    from playwright.sync_api import sync_playwright

    set_fft(click_server, raw_db=True)
    try:
        with sync_playwright() as p:
            browser = launch(p)
            labels = {}
            for width in (1280, 390, 320):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.goto(click_server.http + "/")
                page.wait_for_selector("#conn.up", timeout=10000)
                wait_for(page, "!!document.getElementById('spectrum').dataset.axisLabels", 10)
                labels[width] = (json.loads(page.get_attribute("#spectrum", "data-axis-labels")),
                                 page.evaluate("document.getElementById('spectrum').width"))
                if width == 1280:
                    lights = page.evaluate("""() => ['beat', 'onset'].map(id => {
                        const r = document.getElementById(id).getBoundingClientRect(); return [r.width, r.height]; })""")
                    # The low end over ~2 s of frames: the share of columns
                    # from f_min to 300 Hz with a bar (the worst frame).
                    shares = []
                    for _ in range(8):
                        time.sleep(0.25)
                        shares.append(page.evaluate(SPECTRUM_LIT_COLUMNS, [0, 300]))
                    page.locator("#spectrum").screenshot(path=str(ARTIFACTS / "spectrum-raw-db.png"))
                page.close()
            browser.close()
    finally:
        set_fft(click_server, raw_db=False)
    assert all(w >= 24 and h >= 24 for w, h in lights), lights
    for width, (boxes, canvas_w) in labels.items():
        texts = [b["text"] for b in boxes]
        assert "Hz" in texts and "1k" in texts, (width, texts)
        if width >= 1280:
            assert "20k" in texts, texts
        for a, b in zip(boxes, boxes[1:]):
            assert a["x1"] < b["x0"], f"labels overlap at {width} px: {a} {b}"
        assert boxes[0]["x0"] >= 0 and boxes[-1]["x1"] <= canvas_w, (width, boxes)
    print(f"raw-dB low end (f_min..300 Hz): columns with a bar, per frame: {[f'{s:.2f}' for s in shares]}")
    assert min(shares) >= 0.9, f"the raw-dB low end has gaps: {shares}"


def test_server_status_cpu_parts_are_real_and_add_up(click_server):
    """The per-thread CPU figures: every pipeline thread reads above 0.0
    (they used to be /proc clock ticks, 0.0 or 2.0 over half a second), and
    the parts, `other` included, add up to the process total."""

    async def statuses(n):
        out = []
        async with websockets.connect(click_server.url) as ws:
            await recv_json(ws, "server_status")  # its interval began before we came
            for _ in range(n):
                out.append(await recv_json(ws, "server_status"))
        return out

    got = asyncio.run(statuses(6))
    for st in got:
        parts = sum(st["cpu_pct"].values())
        assert abs(parts - st["process_cpu_pct"]) <= max(1.0, 0.1 * st["process_cpu_pct"]), st["cpu_pct"]
    for role in ("capture", "bands", "spectrum", "ws", "other"):
        values = [st["cpu_pct"][role] for st in got]
        assert statistics.median(values) > 0.0 and len(set(values)) > 1, (role, values)
    last = got[-1]
    print("cpu_pct:", {k: round(v, 2) for k, v in last["cpu_pct"].items()}, "process", round(last["process_cpu_pct"], 2))
