"""What phase4 sends, against what the Python server sends (issue 11): the
greeting, keys, value types and units of meta / snapshot / server_status /
devices, and the OSC census (addresses, type tags, rates) checked by
python-osc."""

import asyncio
import time

import websockets

from p4compat import OscServer, fresh_meta, osc_listen, recv_json, run, send

# Keys of the Python server's meta (server/main.py snapshot_meta) and the
# ones its UI reads, with their JSON types.
META = {
    "sr": int, "blocksize": int, "n_fft_bins": int, "bands": dict, "fft_enabled": bool,
    "fft_db_floor": (int, float), "fft_db_ceiling": (int, float), "fft_f_min": (int, float),
    "fft_send_raw_db": bool, "fft_peak_smear_oct": (int, float), "fft_tilt_db_per_oct": (int, float),
    "fft_window_size": int, "tau": dict, "tau_attack": dict, "filter_order": int, "autoscale": dict,
    "onset": dict, "ws_snapshot_hz": int, "ui_peak_decay_per_s": (int, float), "ui_show_onsets": bool,
    "ui_fft_view": str, "ui_fft3d_style": str, "ui_palette": str, "ui_layout": dict, "device": dict,
}
SNAPSHOT = {
    "seq": int, "low": (int, float), "mid": (int, float), "high": (int, float), "low_raw": (int, float),
    "mid_raw": (int, float), "high_raw": (int, float), "low_onset": int, "mid_onset": int, "high_onset": int,
    "bpm": (int, float), "t": (int, float),
}
PERF_ROWS = ["cb", "dsp", "fft", "ws", "lmh_e2e", "fft_e2e"]


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_meta(m):
    for k, t in META.items():
        assert k in m, k
        assert isinstance(m[k], t) and not (t is int and isinstance(m[k], bool)), (k, m[k])
    assert set(m["autoscale"]) >= {"tau_attack_s", "tau_release_s", "noise_floor", "strength", "master_gain"}
    for band in ["low", "mid", "high"]:
        assert set(m["bands"][band]) == {"lo_hz", "hi_hz"}
        assert is_num(m["tau"][band]) and is_num(m["tau_attack"][band])
        assert set(m["onset"][band]) == {"sensitivity", "refractory_s", "slow_tau_s", "abs_floor"}
    assert set(m["ui_layout"]) == {"split_x", "split_y", "quadrants"}
    assert sorted(m["ui_layout"]["quadrants"]) == ["bars", "fft", "lines", "scene"]
    assert set(m["device"]) >= {"index", "name"}


def test_the_greeting_comes_at_once_in_the_python_order(server):
    async def go():
        t0 = time.monotonic()
        async with websockets.connect(server.url) as ws:
            types = []
            while len(types) < 4:
                msg = await asyncio.wait_for(ws.recv(), 5)
                if isinstance(msg, str):
                    import json
                    m = json.loads(msg)
                    if m["type"] == "auth":  # phase4's addition
                        continue
                    types.append(m["type"])
                    if m["type"] == "meta":
                        check_meta(m)
            took = time.monotonic() - t0
        assert types == ["meta", "devices", "presets", "server_status"], types
        # No round trip to the control thread, no wait for the status tick
        # (was 65-140 ms for devices and up to 500 ms for server_status).
        assert took < 0.25, took

    run(go())


def test_snapshot_keys_types_and_units(server):
    async def go():
        async with websockets.connect(server.url) as ws:
            first = await recv_json(ws, "snapshot")
            t0 = time.monotonic()
            await asyncio.sleep(1.0)
            onsets = [0, 0, 0]
            last = first
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                last = await recv_json(ws, "snapshot")
                for i, b in enumerate(["low", "mid", "high"]):
                    assert last[f"{b}_onset"] in (0, 1)
                    onsets[i] += last[f"{b}_onset"]
            elapsed_ms = (time.monotonic() - t0) * 1000
            for k, t in SNAPSHOT.items():
                assert isinstance(last[k], t) and not isinstance(last[k], bool), (k, last[k])
            # t: milliseconds since the server started (> the 0.5 s the
            # fixture waited), advancing with the wall clock.
            assert first["t"] > 400, first["t"]
            dt = last["t"] - first["t"]
            assert 0.7 * elapsed_ms < dt < 1.3 * elapsed_ms + 100, (dt, elapsed_ms)
            # Stream time in seconds, under phase4's own key.
            assert is_num(last["t_stream"]) and last["t_stream"] < last["t"] / 100
            # The test WAV has a noise burst every 0.5 s.
            assert sum(onsets) > 0, onsets

    run(go())


def test_server_status_perf_is_all_floats(server):
    async def go():
        async with websockets.connect(server.url) as ws:
            await recv_json(ws, "server_status")
            st = await recv_json(ws, "server_status")
            for k in ["cb_overruns", "dsp_drops", "fft_drops"]:
                assert isinstance(st[k], int)
            perf = st["perf"]
            for row in PERF_ROWS:
                for k in ["avg_ms", "p95_ms", "load_pct"]:
                    assert is_num(perf[row][k]), (row, k, perf[row][k])
            assert isinstance(perf["fft"]["enabled"], bool)
            assert isinstance(perf["fft_e2e"]["enabled"], bool)
            for k in ["block_period_ms", "hop_period_ms", "ws_period_ms"]:
                assert is_num(perf[k])

    run(go())


def test_meta_names_the_listed_device_by_index(make_server):
    # Capture from a listed ALSA device (the file plugin), not a WAV path.
    server = make_server(input=False, audio='device = "p4ws"')

    async def go():
        async with websockets.connect(server.url) as ws:
            m = await recv_json(ws, "meta")
            d = await recv_json(ws, "devices")
            assert isinstance(m["device"]["index"], int), m["device"]
            listed = next(i for i in d["items"] if i["index"] == m["device"]["index"])
            assert listed["name"] == m["device"]["name"] == "p4ws"
            # set_device answers meta and re-broadcasts devices to everyone.
            async with websockets.connect(server.url) as other:
                await recv_json(other, "server_status")
                await send(ws, {"type": "set_device", "index": m["device"]["index"]})
                await recv_json(ws, "meta", timeout=15)
                assert (await recv_json(other, "devices", timeout=15))["items"]

    run(go())


def test_osc_census(make_server):
    """Addresses, type tags and rates on OSC, decoded by python-osc; raw-dB
    spectrum bins are never below fft.db_floor (the Python server clamps
    empty bins; the binary WebSocket frame keeps the -1000 sentinel)."""
    server = make_server(cls=OscServer)
    msgs = osc_listen(server.osc_port, 2.5)
    by = {}
    for t, addr, tags, params in msgs:
        by.setdefault(addr, []).append((t, tags, params))
    span = msgs[-1][0] - msgs[0][0]
    rate = lambda a: len(by.get(a, [])) / span  # noqa: E731
    block_hz, hop_hz = 48000 / 256, 48000 / 512
    assert 0.6 * block_hz < rate("/audio/lmh") < 1.4 * block_hz, rate("/audio/lmh")
    assert all(tags == "fff" for _, tags, _ in by["/audio/lmh"])
    assert all(tags == "f" for _, tags, _ in by["/audio/bpm"])
    assert 0.6 * block_hz < rate("/audio/bpm") < 1.4 * block_hz
    assert 0.5 * hop_hz < rate("/audio/fft") < 1.5 * hop_hz, rate("/audio/fft")
    floor = run(fresh_meta(server.url))["fft_db_floor"]
    for _, tags, params in by["/audio/fft"]:
        assert tags == "f" * 256
        assert min(params) >= floor - 1e-3, min(params)
    assert any(min(p) == floor for _, _, p in by["/audio/fft"]), "no empty bin clamped (n-bins 256 has some)"
    for a in ["/audio/onset/low", "/audio/onset/mid", "/audio/onset/high"]:
        assert all(tags == "i" for _, tags, _ in by.get(a, []))
    assert sum(len(by.get(a, [])) for a in ["/audio/onset/low", "/audio/onset/mid", "/audio/onset/high"]) > 0
    if "/audio/meta" in by:
        assert all(tags == "iiiffffff" for _, tags, _ in by["/audio/meta"])
