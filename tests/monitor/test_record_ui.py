"""Issue 14, item 3, from the page: the dashboard's recording controls
clicked in headless Chromium (Debian's package, driven by Playwright), no
hand-written WebSocket messages. Unlocked with the control token, the page
starts and stops a recording, saves the replay buffer ("Save the last
minute"), lists both under names carrying the capture time, downloads them
through its own download link (the bytes are a WAV holding exactly the
input samples) and deletes one (gone from the list and from disk). A
locked page cannot record: the click is refused with a visible message and
nothing is written; a page that locks itself drops the list it showed."""

import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from conftest import AUTH, SR, TOKEN, loop_of, matches_loop, music, record_cfg, wav_samples, write_wav

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
        # Locked until the token is given (trust-loopback is off).
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
