"""Issue 14, item 2: the page's listen control in headless Chromium
(Debian's package, driven by Playwright): it subscribes, decodes the Opus
stream with WebCodecs' AudioDecoder, plays it through the AudioWorklet
jitter buffer, and what the worklet played contains the input tone (read
back from the page); the delay, buffer depth and losses it shows are
printed."""

import os
import sys
import time
from pathlib import Path

import numpy as np

from conftest import SR, longest_run, peak_hz, tone, write_wav

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ws"))
from browser import ARGS, CHROMIUM, watch  # noqa: E402


def test_the_page_plays_the_input_tone(make_server, tmp_path):
    from playwright.sync_api import sync_playwright

    wav = write_wav(tmp_path / "in.wav", tone(880.0, 2.0))
    # The page is on 127.0.0.1 (a secure context, where WebCodecs and
    # AudioWorklet exist), trusted as loopback.
    server = make_server(wav)
    assert os.path.exists(CHROMIUM)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=ARGS + ["--autoplay-policy=no-user-gesture-required"])
        # bypass_csp: only so the test can evaluate its own expressions.
        page = browser.new_page(viewport={"width": 1280, "height": 1000}, bypass_csp=True)
        problems = watch(page)
        page.goto(server.http + "/")
        page.wait_for_selector("#conn.up", timeout=10000)
        page.wait_for_selector("#listen-toggle", timeout=10000)
        support = page.evaluate("""async () => ({
            secure: window.isSecureContext,
            decoder: typeof AudioDecoder === 'function',
            worklet: typeof AudioWorkletNode === 'function',
            opus: typeof AudioDecoder === 'function' &&
                (await AudioDecoder.isConfigSupported({codec: 'opus', sampleRate: 48000, numberOfChannels: 1})).supported,
        })""")
        print(f"listen: headless Chromium support: {support}")
        assert all(support.values()), f"headless Chromium here lacks {support}"
        page.click("#listen-toggle")
        page.wait_for_function("window.phase4Listen.state().played > 48000 * 3", timeout=20000)
        time.sleep(0.5)
        pcm = np.array(page.evaluate("async () => Array.from(await window.phase4Listen.tap(48000))"))
        st = page.evaluate("window.phase4Listen.state()")
        shown = page.inner_text("#listen-stats")
        path_text = page.inner_text("#listen-path")
        page.screenshot(path=str(tmp_path / "listen.png"))
        page.click("#listen-toggle")
        browser.close()
    run = longest_run(pcm)
    assert len(run) > SR // 4, f"only {len(run)} samples played without a gap"
    hz = peak_hz(run)
    rms = float(np.sqrt(np.mean(run ** 2)))
    print(f"listen: played {hz:.2f} Hz over {len(run) / SR:.2f} s, rms {rms:.3f}; state {st}; page shows: {shown!r}")
    assert abs(hz - 880.0) < 1.0, f"the worklet played {hz:.2f} Hz"
    assert 0.2 < rms < 0.5, "a 0.5-amplitude tone has rms 0.35"
    assert st["packets"] > 100 and st["lost"] == 0
    assert 20 <= st["buffer_ms"] <= 520 and st["delay_ms"] > 0
    assert "delay" in shown and "lost 0" in shown
    # Feature detection chose WebCodecs here (a secure page): the phone's
    # path (WebAssembly + ScriptProcessor) is tests/phone's.
    assert st["path"] == "webcodecs" and "WebCodecs" in path_text, (st["path"], path_text)
    assert not problems, problems
