"""The WebSocket protocol with a real client (Python websockets): every
inbound type's success path (answered by the new meta), and bad input
(answered by an error, with the settings unchanged)."""

import asyncio
import json
import os
import re
import time

import pytest
import websockets

from conftest import Server, fresh_meta, meta_now, pcm16, recv_any, recv_json, write_mono_wav, ws_frame, ws_handshake


def run(coro):
    return asyncio.run(coro)


def test_a_new_client_gets_meta_then_devices_presets_snapshots_and_fft(server):
    async def go():
        async with websockets.connect(server.url) as ws:
            first = json.loads(await ws.recv())
            assert first["type"] == "meta"
            for key in ["sr", "blocksize", "n_fft_bins", "bands", "fft_enabled", "fft_db_floor", "fft_db_ceiling",
                        "fft_f_min", "fft_send_raw_db", "fft_peak_smear_oct", "tau", "autoscale", "ws_snapshot_hz",
                        "device"]:
                assert key in first, key
            assert set(first["bands"]["mid"]) == {"lo_hz", "hi_hz"}
            # The Python server's keys (phase4's are additive).
            assert set(first["autoscale"]) >= {"tau_attack_s", "tau_release_s", "noise_floor", "strength",
                                               "master_gain"}
            assert set(first["device"]) == {"index", "name"}
            await recv_json(ws, "devices")
            await recv_json(ws, "presets")
            snap = await recv_json(ws, "snapshot")
            for key in ["seq", "low", "mid", "high", "low_raw", "mid_raw", "high_raw", "t", "level", "tempo",
                        "silent", "band_onsets", "onset_count", "beat_index", "spectral"]:
                assert key in snap, key
            st = await recv_json(ws, "server_status")
            for key in ["cb_overruns", "dsp_drops", "fft_drops", "perf", "xruns", "ring_drops", "latency_ms",
                        "realtime", "clients"]:
                assert key in st, key
            # realtime.cpu: the CPU the per-block threads share, or null.
            assert set(st["realtime"]) == {"capture", "workers", "mlock", "cpu"}
            assert st["realtime"]["cpu"] is None or st["realtime"]["cpu"] in os.sched_getaffinity(0)
            await ws.send(json.dumps({"type": "set_fft", "enabled": True}))
            while True:
                f = await asyncio.wait_for(ws.recv(), 5)
                if isinstance(f, bytes):
                    assert f[0] == 1 and f[1] == 0
                    n = int.from_bytes(f[2:4], "little")
                    assert n == first["n_fft_bins"] and len(f) == 4 + 4 * n
                    break

    run(go())


# (message, check on the meta that follows)
SUCCESS = [
    ({"type": "set_fft", "enabled": True}, lambda m: m["fft_enabled"] is True),
    ({"type": "set_band", "band": "mid", "lo_hz": 200, "hi_hz": 4000, "commit": True},
     lambda m: m["bands"]["mid"] == {"lo_hz": 200.0, "hi_hz": 4000.0}),
    ({"type": "set_band", "band": "low", "lo_hz": 40, "hi_hz": 180},
     lambda m: m["bands"]["low"] == {"lo_hz": 40.0, "hi_hz": 180.0}),
    ({"type": "set_smoothing", "tau": {"low": 0.3}, "commit": False},
     lambda m: m["tau"]["low"] == 0.3 and m["tau"]["mid"] == 0.06),
    ({"type": "set_autoscale", "tau_attack_s": 0.1, "strength": 0.5},
     lambda m: m["autoscale"]["tau_attack_s"] == 0.1 and m["autoscale"]["strength"] == 0.5
     and m["autoscale"]["tau_release_s"] == 60.0),
    ({"type": "set_fft_send_raw_db", "send_raw_db": True}, lambda m: m["fft_send_raw_db"] is True),
    ({"type": "set_fft_peak_smear", "peak_smear_oct": 1.25, "commit": True}, lambda m: m["fft_peak_smear_oct"] == 1.25),
    ({"type": "set_n_fft_bins", "n": 64}, lambda m: m["n_fft_bins"] == 64),
    ({"type": "set_ws_snapshot_hz", "hz": 30}, lambda m: m["ws_snapshot_hz"] == 30),
    ({"type": "set_onset", "sensitivity": 0.8}, lambda m: m["onset"]["sensitivity"] == 0.8),
    ({"type": "set_tempo", "enabled": False}, lambda m: m["tempo"]["enabled"] is False),
]


@pytest.mark.parametrize("msg,check", SUCCESS, ids=[m["type"] + str(i) for i, (m, _) in enumerate(SUCCESS)])
def test_each_setting_change_is_answered_by_the_new_meta(server, msg, check):
    async def go():
        async with websockets.connect(server.url) as ws:
            before = await recv_json(ws, "meta")
            await recv_json(ws, "presets")
            await ws.send(json.dumps(msg))
            after = await recv_any(ws, {"meta", "error"})
            assert after["type"] == "meta", after
            assert check(after), after
            assert after != before
            # Everyone else sees it too.
            assert await fresh_meta(server.url) == after

    run(go())


def test_a_16_khz_input_still_takes_changes(binary, tmp_path):
    # At 16 kHz the default high band (to 16 kHz) is over the 7.2 kHz
    # ceiling; the DSP clamps it. Every change used to be refused for it.
    sr = 16000
    frames = b"".join(pcm16(0.3 * ((i // 40) % 2 * 2 - 1)) for i in range(sr * 2))
    wav16 = write_mono_wav(tmp_path / "in16.wav", sr, frames)
    s = Server(binary, wav16, tmp_path).start()
    try:
        async def go():
            async with websockets.connect(s.url) as ws:
                before = await recv_json(ws, "meta")
                await recv_json(ws, "presets")
                await ws.send(json.dumps({"type": "set_fft", "enabled": not before["fft_enabled"]}))
                after = await recv_any(ws, {"meta", "error"})
                assert after["type"] == "meta" and after["fft_enabled"] != before["fft_enabled"], after
        run(go())
    finally:
        s.stop()


def test_list_devices_answers_devices_with_and_without_probe(server):
    async def go():
        async with websockets.connect(server.url) as ws:
            await recv_json(ws, "presets")
            for probe in (False, True):
                await ws.send(json.dumps({"type": "list_devices", "probe": probe}))
                d = await recv_json(ws, "devices", timeout=30)
                assert isinstance(d["items"], list)
                for item in d["items"]:
                    for key in ["index", "name", "hostapi", "default_samplerate", "max_input_channels"]:
                        assert key in item
                    if probe:
                        assert "probed_signal" in item and "probed_at" in item

    run(go())


def test_every_probe_request_is_answered_and_repeats_leak_no_request_places(server):
    """Tester ad AD3: a client's repeated probing `list_devices` while its
    probe ran got no answer, and each one kept its place in the server's
    shared count of 256 requests for good: after nine such clients every
    client was told "busy". Every request now gets one answer."""
    async def collect(ws, n, seconds):
        got = []
        deadline = time.monotonic() + seconds
        while len(got) < n and time.monotonic() < deadline:
            try:
                m = await asyncio.wait_for(ws.recv(), max(0.05, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if isinstance(m, str) and json.loads(m)["type"] in ("devices", "error"):
                got.append(json.loads(m))
        return got

    async def go():
        for _ in range(9):
            async with websockets.connect(server.url) as ws:
                await recv_json(ws, "presets")
                for _ in range(30):
                    await ws.send(json.dumps({"type": "list_devices", "probe": True}))
                got = await collect(ws, 30, 20)
                assert len(got) == 30, [g.get("reason", g["type"]) for g in got]
                assert any(g["type"] == "devices" for g in got), got
        async with websockets.connect(server.url) as ws:
            await recv_json(ws, "presets")
            for _ in range(20):
                await ws.send(json.dumps({"type": "set_band", "band": "low", "lo_hz": 300, "hi_hz": 100}))
            got = await collect(ws, 20, 10)
            assert len(got) == 20 and not any("busy" in g.get("reason", "") for g in got), got

    run(go())


def probed_devices(s):
    """Server `s`'s answer to a probing `list_devices`, by device name."""
    async def go():
        async with websockets.connect(s.url) as ws:
            await recv_json(ws, "presets")
            await ws.send(json.dumps({"type": "list_devices", "probe": True}))
            return {i["name"]: i for i in (await recv_json(ws, "devices", timeout=60))["items"]}

    return run(go())


def test_a_probe_never_opens_a_pcm_that_writes_a_file_or_runs_a_command(make_server, tmp_path):
    # Opening a `file` PCM runs its pipe's command (or creates its file)
    # as phase4's user: a client allowed to probe could make it do so every
    # 2 s. Such PCMs, directly or anywhere in their chain, are listed
    # without being opened; the others are still probed.
    ran, wrote = tmp_path / "ran", tmp_path / "wrote"
    conf = tmp_path / "sidefx.conf"
    conf.write_text(
        f'pcm.p4cmd {{ type file; slave.pcm "null"; file "|touch {ran}"; format "raw" }}\n'
        f'pcm.p4tee {{ type plug; slave {{ pcm {{ type file; slave.pcm "null"; file "{wrote}"; format "raw" }} }} }}\n'
        'pcm.p4chain { type plug; slave.pcm "p4cmd" }\n'
        'pcm.p4circle { type plug; slave.pcm "p4circle2" }\n'
        'pcm.p4circle2 { type plug; slave.pcm "p4circle" }\n'
        'pcm.p4plain { type plug; slave.pcm "null" }\n'
        # A multi whose slave is a pcm_slave named by a string.
        f'pcm_slave.p4sl {{ pcm {{ type file; slave.pcm "null"; file "|touch {ran}"; format "raw" }} channels 1 }}\n'
        'pcm.p4multi { type multi; slaves.a "p4sl"; bindings.0.slave a; bindings.0.channel 0 }\n'
        # The file plugin under a type name of its own.
        'pcm_type.p4tee { lib "libasound.so.2" open "_snd_pcm_file_open" }\n'
        f'pcm.p4alias {{ type p4tee; slave.pcm "null"; file "|touch {ran}"; format "raw" }}\n'
        # Wide but harmless: 24 null slaves, each bound (no circle).
        'pcm.p4wide { type multi; '
        + " ".join(f'slaves.s{i} {{ pcm "null" channels 1 }} bindings.{i} {{ slave s{i} channel 0 }}'
                   for i in range(24))
        + ' }\n')
    s = make_server(env={"ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{conf}"})

    items = probed_devices(s)
    assert not ran.exists() and not wrote.exists()
    for name in ("p4cmd", "p4tee", "p4chain", "p4circle", "p4multi", "p4alias"):
        assert name in items, sorted(items)
        assert (items[name].get("error") or "").startswith("not probed:"), items[name]
        assert items[name].get("probed_at") is None, items[name]
    assert "file" in items["p4chain"]["error"] and "more than 64" in items["p4circle"]["error"]
    for name in ("p4plain", "p4wide"):
        assert items[name].get("probed_at") is not None and items[name].get("error") is None, items[name]
    assert items["p4wide"]["max_input_channels"] == 24, items["p4wide"]
    assert s.proc.poll() is None


def test_a_probe_of_a_deeply_nested_pcm_definition_is_refused_not_a_crash(make_server, tmp_path):
    # The probe walks a PCM's definition before opening it, one call per
    # level: a definition nested 1 500 deep overflowed the probe thread's
    # stack and aborted the process (tester u). Deeper than 32 levels is
    # not looked into, and the PCM is left unopened.
    conf = tmp_path / "deep.conf"
    n = 1500
    conf.write_text('pcm.p4deep {\n type null\n hint { show on description "deep" }\n'
                    + "x { " * n + "}" * n + "\n}\n"
                    'pcm.p4shallow { type null; hint { show on description "shallow" } x { y { z 1 } } }\n')
    s = make_server(env={"ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{conf}"})

    items = probed_devices(s)
    assert "nested too deeply" in (items["p4deep"].get("error") or ""), items.get("p4deep")
    assert items["p4shallow"].get("probed_at") is not None, items["p4shallow"]
    assert s.proc.poll() is None


def test_an_alsa_config_that_hangs_costs_one_listing_not_every_one(make_server, tmp_path):
    # A config that includes a FIFO nobody writes: alsa-lib's hints wait on
    # it for good (f081928 never became ready). The child that asks is
    # killed after 5 s, and for a minute after that the listing says
    # "default" alone at once instead of holding the control thread again.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    conf = tmp_path / "hang.conf"
    conf.write_text(f"<{fifo}>\n")
    s = make_server(env={"ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{conf}"})

    async def go():
        async with websockets.connect(s.url) as ws:
            await recv_json(ws, "presets")
            for _ in range(3):
                # Past the 1 s a listing is reused for: each asks anew.
                await asyncio.sleep(1.5)
                t0 = time.monotonic()
                await ws.send(json.dumps({"type": "list_devices"}))
                d = await recv_json(ws, "devices", timeout=30)
                took = time.monotonic() - t0
                assert [i["name"] for i in d["items"]] == ["default"], d
                assert took < 4, f"a listing waited {took:.1f} s"

    run(go())
    assert s.proc.poll() is None
    log = s.log.read_text()
    assert log.count("no answer within 5 s") == 1, log[-3000:]


def test_presets_are_saved_listed_and_loaded(server):
    async def go():
        async with websockets.connect(server.url) as ws:
            await recv_json(ws, "presets")
            await ws.send(json.dumps({"type": "set_fft_peak_smear", "peak_smear_oct": 2.0}))
            await recv_json(ws, "meta")
            await ws.send(json.dumps({"type": "save_preset", "name": "Wide smear_1"}))
            p = await recv_json(ws, "presets")
            assert [i["name"] for i in p["items"]] == ["Wide smear_1"]
            # Local time as a string, as the Python server sends it.
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", p["items"][0]["saved_at"])
            await ws.send(json.dumps({"type": "set_fft_peak_smear", "peak_smear_oct": 0.0}))
            assert (await recv_json(ws, "meta"))["fft_peak_smear_oct"] == 0.0
            await ws.send(json.dumps({"type": "list_presets"}))
            assert (await recv_json(ws, "presets"))["items"][0]["name"] == "Wide smear_1"
            await ws.send(json.dumps({"type": "load_preset", "name": "Wide smear_1"}))
            m = await recv_any(ws, {"meta", "error"})
            assert m["type"] == "meta" and m["fft_peak_smear_oct"] == 2.0
        assert (server.state_dir / "presets" / "Wide smear_1.toml").exists()

    run(go())


def test_set_device_to_a_device_that_fails_rolls_back(server):
    async def go():
        async with websockets.connect(server.url) as ws:
            before = await recv_json(ws, "meta")
            await recv_json(ws, "presets")
            await ws.send(json.dumps({"type": "set_device", "name": "p4broken"}))
            e = await recv_any(ws, {"meta", "error"}, timeout=15)
            assert e["type"] == "error" and "previous" in e["reason"], e
            # Still streaming from the WAV input.
            # Still streaming from the WAV input (reopened, so its time
            # starts again).
            s1 = await recv_json(ws, "snapshot")
            # On a loaded machine two snapshots in a row may carry the same
            # block: wait (bounded) for one with a newer block.
            s2 = await recv_json(ws, "snapshot")
            deadline = time.monotonic() + 15
            while s2["t_stream"] == s1["t_stream"] and time.monotonic() < deadline:
                s2 = await recv_json(ws, "snapshot")
            assert s2["seq"] > s1["seq"] and s2["t_stream"] != s1["t_stream"]
        assert await fresh_meta(server.url) == before

    run(go())


def test_set_device_by_index_switches_to_a_listed_device(server):
    async def go():
        async with websockets.connect(server.url) as ws:
            await recv_json(ws, "presets")
            await ws.send(json.dumps({"type": "list_devices"}))
            d = await recv_json(ws, "devices", timeout=30)
            # The fixture defines `p4ws`, a file-plugin device that opens.
            target = next(i for i in d["items"] if i["name"] == "p4ws")
            assert target["available"], target
            await ws.send(json.dumps({"type": "set_device", "index": target["index"]}))
            m = await recv_any(ws, {"meta", "error"}, timeout=15)
            assert m["type"] == "meta", m
            assert m["device"] == {"index": target["index"], "name": target["name"]}

    run(go())


def test_set_device_with_an_index_outside_the_listing_is_refused(server):
    async def go():
        async with websockets.connect(server.url) as ws:
            before = await recv_json(ws, "meta")
            await recv_json(ws, "devices")
            await ws.send(json.dumps({"type": "set_device", "index": 999}))
            assert (await recv_any(ws, {"meta", "error"}))["type"] == "error"
        assert await fresh_meta(server.url) == before

    run(go())


# What the Python server refuses too. What it accepts (extra fields,
# bool() coercion, out-of-range values, which are clamped) is in
# tests/compat.
BAD = [
    "this is not json",
    "[1, 2]",
    '"set_fft"',
    json.dumps({"enabled": True}),
    json.dumps({"type": "set_everything"}),
    json.dumps({"type": 5}),
    json.dumps({"type": "set_band", "band": "mid", "lo_hz": "200", "hi_hz": 4000}),
    json.dumps({"type": "set_band", "band": "bass", "lo_hz": 30, "hi_hz": 200}),
    json.dumps({"type": "set_band", "band": "low", "lo_hz": 200, "hi_hz": 150}),
    json.dumps({"type": "set_fft_tilt", "tilt_db_per_oct": "3"}),
    json.dumps({"type": "set_onset", "band": "bass", "sensitivity": 2}),
    json.dumps({"type": "set_onset", "band": "low"}),
    json.dumps({"type": "set_smoothing", "tau": {"sub": 0.1}}),
    json.dumps({"type": "set_n_fft_bins", "n": 64.5}),
    '{"type": "set_ws_snapshot_hz", "hz": NaN}',
    '{"type": "set_ws_snapshot_hz", "hz": Infinity}',
    '{"type": "set_fft_peak_smear", "peak_smear_oct": -Infinity}',
    '{"type": "set_ws_snapshot_hz", "hz": 1e999}',
    json.dumps({"type": "save_preset", "name": "../x"}),
    json.dumps({"type": "save_preset", "name": "a/b"}),
    json.dumps({"type": "save_preset", "name": ""}),
    json.dumps({"type": "save_preset", "name": "x" * 65}),
    json.dumps({"type": "save_preset", "name": "dots.toml"}),
    json.dumps({"type": "save_preset", "name": "été"}),
    json.dumps({"type": "load_preset", "name": "../../etc/passwd"}),
    json.dumps({"type": "load_preset", "name": "missing"}),
    json.dumps({"type": "set_device"}),
]


@pytest.mark.parametrize("text", BAD)
def test_bad_input_gets_an_error_and_changes_nothing(server, text):
    async def go():
        before = await fresh_meta(server.url)
        async with websockets.connect(server.url) as ws:
            await recv_json(ws, "presets")
            await ws.send(text)
            reply = await recv_any(ws, {"meta", "error"})
            assert reply["type"] == "error", reply
            assert isinstance(reply["reason"], str) and reply["reason"]
            # Then the meta in force, so a UI control snaps back.
            assert json.loads(await ws.recv()) == before | {"type": "meta"}
        assert await fresh_meta(server.url) == before
        assert not (server.state_dir / "presets").exists() or not any(
            p.name.startswith("..") for p in (server.state_dir / "presets").iterdir())

    run(go())


def test_an_oversize_message_gets_an_error(make_server):
    server = make_server(extra="max-message-bytes = 4096")

    async def go():
        before = await fresh_meta(server.url)
        async with websockets.connect(server.url) as ws:
            await ws.send(json.dumps({"type": "set_fft", "enabled": True, "pad": "x" * 8000}))
            e = await recv_json(ws, "error")
            assert "too large" in e["reason"]
            # Far beyond the limit: the connection is closed (1009).
            await ws.send("x" * 100_000)
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd.code == 1009
        assert await fresh_meta(server.url) == before

    run(go())


def test_a_binary_frame_from_a_client_gets_an_error(server):
    async def go():
        before = await fresh_meta(server.url)
        async with websockets.connect(server.url) as ws:
            await ws.send(b"\x01\x00\x02\x00")
            e = await recv_json(ws, "error")
            assert "binary" in e["reason"]
        assert await fresh_meta(server.url) == before

    run(go())


def test_without_the_token_a_client_may_watch_but_not_change(make_server):
    # Loopback clients are trusted by default; this one is treated like a
    # client from the LAN (test_abuse.py's lan-control class uses a real LAN
    # address, in a network namespace).
    server = make_server(extra='token = "s3cret-token"\ntrust-loopback = false')

    async def go():
        before = await fresh_meta(server.url)
        async with websockets.connect(server.url) as ws:
            a = await recv_json(ws, "auth")
            assert a == {"type": "auth", "authorized": False, "required": True}
            await recv_json(ws, "presets")
            await recv_json(ws, "snapshot")
            # Nothing but auth is looked at before auth, read-only requests
            # included.
            for msg in [{"type": "set_fft", "enabled": True}, {"type": "list_presets"},
                        {"type": "list_devices"}, "not json"]:
                await ws.send(msg if isinstance(msg, str) else json.dumps(msg))
                assert "not authorized" in (await recv_json(ws, "error"))["reason"]
                assert (await recv_any(ws, {"meta", "error"}))["type"] == "meta"  # snap-back
            await ws.send(json.dumps({"type": "auth", "token": "wrong"}))
            assert (await recv_any(ws, {"auth", "error"}))["type"] == "error"
            await ws.send(json.dumps({"type": "auth", "token": "s3cret-token"}))
            assert (await recv_json(ws, "auth"))["authorized"] is True
            await ws.send(json.dumps({"type": "set_fft", "enabled": True}))
            assert (await recv_any(ws, {"meta", "error"}))["fft_enabled"] is True
        async with websockets.connect(server.url + "/?token=s3cret-token") as ws:
            assert (await recv_json(ws, "auth"))["authorized"] is True
            await ws.send(json.dumps({"type": "set_fft", "enabled": False}))
            m = await recv_any(ws, {"meta", "error"})
            assert m["type"] == "meta" and m == before | {"fft_enabled": False}
        # Three wrong tokens close the connection (policy, 1008).
        async with websockets.connect(server.url) as ws:
            with pytest.raises(websockets.ConnectionClosed) as info:
                for _ in range(5):
                    await ws.send(json.dumps({"type": "auth", "token": "guess"}))
                    await recv_any(ws, {"auth", "error"})
            assert info.value.rcvd.code == 1008

    run(go())


def test_foreign_browser_origins_are_refused_and_the_uis_own_accepted(server):
    async def go():
        for origin in ["http://evil.example", f"http://127.0.0.1:{server.ws_port + 1 if server.ws_port + 1 != server.http_port else 1}", "null"]:
            with pytest.raises(websockets.InvalidStatus) as info:
                async with websockets.connect(server.url, origin=origin):
                    pass
            assert info.value.response.status_code == 403
        async with websockets.connect(server.url, origin=f"http://127.0.0.1:{server.http_port}") as ws:
            await recv_json(ws, "meta")

    run(go())


def test_clients_beyond_the_cap_are_refused(make_server):
    server = make_server(extra="max-clients = 2")

    async def go():
        async with websockets.connect(server.url) as a, websockets.connect(server.url) as b:
            await recv_json(a, "meta")
            await recv_json(b, "meta")
            with pytest.raises(websockets.InvalidStatus) as info:
                async with websockets.connect(server.url):
                    pass
            assert info.value.response.status_code == 503

    run(go())


def test_a_client_over_the_message_rate_gets_errors_not_changes(make_server):
    server = make_server(extra="max-messages-per-s = 20")

    async def go():
        async with websockets.connect(server.url) as ws:
            await recv_json(ws, "presets")
            for _ in range(100):
                await ws.send(json.dumps({"type": "list_presets"}))
            e = await recv_json(ws, "error")
            assert "rate limit" in e["reason"]

    run(go())


def test_a_burst_in_one_write_is_applied_to_its_last_message_without_more_traffic(server):
    # More messages than one turn reads (32) in one write: what one turn
    # leaves waits in tungstenite's buffer, where poll() cannot see it, and
    # used to wait there until the client sent something else.
    # 100 of them: three turns' worth, and three times the 32 requests one
    # client may have waiting at the control thread (the rest must wait,
    # not be refused as busy). Only the last one sets 49.
    s = ws_handshake(server.ws_port)
    burst = b"".join(ws_frame(1, json.dumps({"type": "set_ws_snapshot_hz", "hz": 49 if i == 99 else 20 + i % 2}).encode())
                     for i in range(100))
    s.sendall(burst)
    deadline = time.monotonic() + 5.0
    hz = None
    while time.monotonic() < deadline:
        hz = meta_now(server.url)["ws_snapshot_hz"]
        if hz == 49:
            break
        time.sleep(0.2)
    s.close()
    assert hz == 49
