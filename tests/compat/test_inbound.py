"""Every inbound message the Python server or its bundled UI sends, with
valid, boundary, out-of-range, wrong-type and extra-field variants
(issue 11). The rule, from its code (server/control/*.py): what it
accepts, phase4 accepts with the same effect; out-of-range values are
clamped (phase4 says so in an additive `clamped` key of the meta reply);
what it refuses is refused with an `error`, followed by the meta in force
(snap-back)."""

import json

import pytest
import websockets

from p4compat import answer, fresh_meta, recv_json, run, send


def near(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


# type -> list of (variant, message, check on the meta reply or None for
# "refused", clamped fields expected)
CASES = {
    "set_fft": [
        ("valid", {"enabled": True}, lambda m: m["fft_enabled"] is True, []),
        ("coerced 0", {"enabled": 0}, lambda m: m["fft_enabled"] is False, []),
        ("coerced 'no'", {"enabled": "no"}, lambda m: m["fft_enabled"] is True, []),  # bool("no")
        ("coerced null", {"enabled": None}, lambda m: m["fft_enabled"] is False, []),
        ("missing", {}, lambda m: m["fft_enabled"] is False, []),
        ("extra", {"enabled": True, "id": "req-1", "nested": {"a": [1]}}, lambda m: m["fft_enabled"] is True, []),
    ],
    "set_band": [
        ("valid", {"band": "mid", "lo_hz": 300, "hi_hz": 3000, "commit": True},
         lambda m: m["bands"]["mid"] == {"lo_hz": 300.0, "hi_hz": 3000.0}, []),
        ("boundary", {"band": "low", "lo_hz": 20, "hi_hz": 71},
         lambda m: m["bands"]["low"] == {"lo_hz": 20.0, "hi_hz": 71.0}, []),
        ("out of range", {"band": "high", "lo_hz": 4000, "hi_hz": 23000},
         lambda m: m["bands"]["high"]["hi_hz"] == 0.45 * m["sr"], ["hi_hz"]),
        ("out of range low", {"band": "low", "lo_hz": 5, "hi_hz": 200},
         lambda m: m["bands"]["low"] == {"lo_hz": 20.0, "hi_hz": 200.0}, ["lo_hz"]),
        ("wrong type", {"band": "mid", "lo_hz": "300", "hi_hz": 3000}, None, []),
        ("hi below lo", {"band": "mid", "lo_hz": 3000, "hi_hz": 300}, None, []),
        ("bad band", {"band": "sub", "lo_hz": 30, "hi_hz": 100}, None, []),
        ("extra", {"band": "low", "lo_hz": 30, "hi_hz": 250, "drag_id": 7},
         lambda m: m["bands"]["low"] == {"lo_hz": 30.0, "hi_hz": 250.0}, []),
    ],
    "set_smoothing": [
        ("valid tau", {"tau": {"low": 0.2, "mid": 0.08, "high": 0.03}, "commit": False},
         lambda m: m["tau"] == {"low": 0.2, "mid": 0.08, "high": 0.03}, []),
        ("tau_attack only", {"tau_attack": {"low": 0.01}},
         lambda m: m["tau_attack"]["low"] == 0.01 and m["tau"]["low"] == 0.2, []),
        ("boundary", {"tau": {"mid": 2.0}, "tau_attack": {"high": 0.001}},
         lambda m: m["tau"]["mid"] == 2.0 and m["tau_attack"]["high"] == 0.001, []),
        ("out of range", {"tau": {"low": 30.0}}, lambda m: m["tau"]["low"] == 2.0, ["tau.low"]),
        ("empty", {}, lambda m: True, []),
        ("wrong type", {"tau": {"low": "0.2"}}, None, []),
        ("not an object", {"tau": [0.1, 0.2, 0.3]}, None, []),
        ("unknown band", {"tau": {"sub": 0.1}}, None, []),
        ("extra", {"tau": {"high": 0.02}, "x": 1}, lambda m: m["tau"]["high"] == 0.02, []),
    ],
    "set_autoscale": [
        ("valid", {"tau_attack_s": 0.05, "strength": 0.5}, lambda m: m["autoscale"]["tau_attack_s"] == 0.05
         and m["autoscale"]["strength"] == 0.5, []),
        ("master_gain", {"master_gain": 1.25, "commit": False}, lambda m: m["autoscale"]["master_gain"] == 1.25, []),
        ("boundary", {"noise_floor": 0.0, "strength": 1.0}, lambda m: m["autoscale"]["noise_floor"] == 0.0
         and m["autoscale"]["strength"] == 1.0, []),
        ("out of range", {"strength": 1.5, "tau_release_s": 1}, lambda m: m["autoscale"]["strength"] == 1.0
         and m["autoscale"]["tau_release_s"] == 5.0, ["tau_release_s", "strength"]),
        ("empty", {"commit": True}, lambda m: True, []),
        ("wrong type", {"strength": True}, None, []),
        ("extra", {"master_gain": 1.0, "source": "slider"}, lambda m: m["autoscale"]["master_gain"] == 1.0, []),
    ],
    "set_fft_send_raw_db": [
        ("valid", {"send_raw_db": True}, lambda m: m["fft_send_raw_db"] is True, []),
        ("coerced", {"send_raw_db": []}, lambda m: m["fft_send_raw_db"] is False, []),
        ("extra", {"send_raw_db": False, "x": None}, lambda m: m["fft_send_raw_db"] is False, []),
    ],
    "set_fft_peak_smear": [
        ("valid", {"peak_smear_oct": 0.5}, lambda m: m["fft_peak_smear_oct"] == 0.5, []),
        ("boundary", {"peak_smear_oct": 0}, lambda m: m["fft_peak_smear_oct"] == 0.0, []),
        ("out of range", {"peak_smear_oct": 9}, lambda m: m["fft_peak_smear_oct"] == 3.0, ["peak_smear_oct"]),
        ("wrong type", {"peak_smear_oct": "0.3"}, None, []),
        ("extra", {"peak_smear_oct": 0.3, "commit": True, "y": 2}, lambda m: m["fft_peak_smear_oct"] == 0.3, []),
    ],
    "set_fft_tilt": [
        ("valid", {"tilt_db_per_oct": 3.0, "commit": True}, lambda m: m["fft_tilt_db_per_oct"] == 3.0, []),
        ("boundary", {"tilt_db_per_oct": -6}, lambda m: m["fft_tilt_db_per_oct"] == -6.0, []),
        ("out of range", {"tilt_db_per_oct": 40}, lambda m: m["fft_tilt_db_per_oct"] == 12.0, ["tilt_db_per_oct"]),
        ("wrong type", {"tilt_db_per_oct": None}, None, []),
        ("extra", {"tilt_db_per_oct": 1.5, "x": 1}, lambda m: m["fft_tilt_db_per_oct"] == 1.5, []),
    ],
    "set_filter_order": [
        ("valid", {"order": 2, "commit": True}, lambda m: m["filter_order"] == 2, []),
        ("boundary", {"order": 8}, lambda m: m["filter_order"] == 8, []),
        ("out of range", {"order": 12}, lambda m: m["filter_order"] == 8, ["order"]),
        ("wrong type", {"order": 4.5}, None, []),
        ("extra", {"order": 4, "x": 1}, lambda m: m["filter_order"] == 4, []),
    ],
    "set_onset": [
        ("valid", {"band": "mid", "sensitivity": 2.5, "commit": True},
         lambda m: m["onset"]["mid"]["sensitivity"] == 2.5 and m["onset"]["low"]["sensitivity"] == 1.8, []),
        ("all fields", {"band": "high", "sensitivity": 3, "refractory_s": 0.1, "slow_tau_s": 0.2, "abs_floor": 0.05},
         lambda m: m["onset"]["high"] == {"sensitivity": 3.0, "refractory_s": 0.1, "slow_tau_s": 0.2,
                                          "abs_floor": 0.05}, []),
        ("boundary", {"band": "low", "abs_floor": 0}, lambda m: m["onset"]["low"]["abs_floor"] == 0.0, []),
        ("out of range", {"band": "low", "sensitivity": 0.5}, lambda m: m["onset"]["low"]["sensitivity"] == 1.01,
         ["sensitivity"]),
        ("no field", {"band": "low"}, None, []),
        ("bad band", {"band": "sub", "sensitivity": 2}, None, []),
        ("wrong type", {"band": "low", "refractory_s": "0.2"}, None, []),
        ("extra", {"band": "low", "sensitivity": 1.8, "x": 1}, lambda m: m["onset"]["low"]["sensitivity"] == 1.8, []),
    ],
    "set_n_fft_bins": [
        ("valid", {"n": 64}, lambda m: m["n_fft_bins"] == 64, []),
        ("out of range", {"n": 100000}, lambda m: m["n_fft_bins"] == 1024, ["n"]),
        ("wrong type", {"n": 64.5}, None, []),
        ("extra", {"n": 128, "x": 1}, lambda m: m["n_fft_bins"] == 128, []),
    ],
    "set_ws_snapshot_hz": [
        ("valid", {"hz": 30, "commit": True}, lambda m: m["ws_snapshot_hz"] == 30, []),
        ("rounded", {"hz": 24.4}, lambda m: m["ws_snapshot_hz"] == 24, []),
        ("out of range", {"hz": 1000}, lambda m: m["ws_snapshot_hz"] == 240, ["hz"]),
        ("wrong type", {"hz": "60"}, None, []),
        ("extra", {"hz": 60, "x": 1}, lambda m: m["ws_snapshot_hz"] == 60, []),
    ],
    "set_peak_decay": [
        ("valid", {"peak_decay_per_s": 0.6, "commit": True}, lambda m: m["ui_peak_decay_per_s"] == 0.6, []),
        ("boundary", {"peak_decay_per_s": 0.01}, lambda m: m["ui_peak_decay_per_s"] == 0.01, []),
        ("out of range", {"peak_decay_per_s": 50}, lambda m: m["ui_peak_decay_per_s"] == 5.0, ["peak_decay_per_s"]),
        ("wrong type", {"peak_decay_per_s": [1]}, None, []),
        ("extra", {"peak_decay_per_s": 0.5, "x": 1}, lambda m: m["ui_peak_decay_per_s"] == 0.5, []),
    ],
    "set_show_onsets": [
        ("valid", {"show_onsets": True}, lambda m: m["ui_show_onsets"] is True, []),
        ("coerced", {"show_onsets": ""}, lambda m: m["ui_show_onsets"] is False, []),
        ("extra", {"show_onsets": 1, "x": 1}, lambda m: m["ui_show_onsets"] is True, []),
    ],
    "set_ui_layout": [
        ("valid", {"layout": {"split_x": 0.4, "split_y": 0.6, "quadrants": ["fft", "bars", "lines", "scene"]},
                   "commit": True},
         lambda m: m["ui_layout"] == {"split_x": 0.4, "split_y": 0.6,
                                      "quadrants": ["fft", "bars", "lines", "scene"]}, []),
        ("out of range", {"layout": {"split_x": 1.5, "split_y": 0.5, "quadrants": ["bars", "lines", "scene", "fft"]}},
         lambda m: m["ui_layout"]["split_x"] == 0.9, ["layout.split_x"]),
        ("not a permutation", {"layout": {"split_x": 0.5, "split_y": 0.5,
                                          "quadrants": ["bars", "bars", "scene", "fft"]}}, None, []),
        ("wrong type", {"layout": {"split_x": "0.5", "split_y": 0.5,
                                   "quadrants": ["bars", "lines", "scene", "fft"]}}, None, []),
        ("extra", {"layout": {"split_x": 0.5, "split_y": 0.5, "quadrants": ["bars", "lines", "scene", "fft"],
                              "version": 2}, "x": 1},
         lambda m: m["ui_layout"]["split_x"] == 0.5, []),
    ],
    "set_tempo": [  # phase4 only
        ("valid", {"min_bpm": 80, "max_bpm": 170}, lambda m: m["tempo"]["min_bpm"] == 80.0, []),
        ("out of range", {"lock_confidence": 3}, lambda m: m["tempo"]["lock_confidence"] == 1.0,
         ["lock_confidence"]),
        ("wrong type", {"min_bpm": "80"}, None, []),
    ],
}

PARAMS = [(t, v, msg, check, clamped) for t, cases in CASES.items() for v, msg, check, clamped in cases]


@pytest.mark.parametrize("type_,variant,msg,check,clamped", PARAMS,
                         ids=[f"{p[0]}-{p[1]}" for p in PARAMS])
def test_each_inbound_variant(server, type_, variant, msg, check, clamped):
    async def go():
        async with websockets.connect(server.url) as ws:
            before = await recv_json(ws, "meta")
            await recv_json(ws, "server_status")
            await send(ws, {"type": type_, **msg})
            err, m = await answer(ws)
            assert m["type"] == "meta", m
            if check is None:
                # Refused: an error with a reason, then the meta in force.
                assert err is not None, m
                assert isinstance(err["reason"], str) and err["reason"]
                assert "clamped" not in m
                assert m == before
                return
            assert err is None, err
            assert check(m), m
            got = [c["field"] for c in m.get("clamped", [])]
            assert got == clamped, m.get("clamped")
            for c in m.get("clamped", []):
                assert isinstance(c["requested"], (int, float)) and isinstance(c["applied"], (int, float))
                assert c["requested"] != c["applied"]
        # Everyone else sees the value in force, without the clamped key.
        fresh = await fresh_meta(server.url)
        assert "clamped" not in fresh
        assert fresh == {k: v for k, v in m.items() if k != "clamped"}

    run(go())


@pytest.mark.parametrize("text", [
    "not json", "[1, 2]", '"set_fft"', json.dumps({"enabled": True}), json.dumps({"type": "no_such_type"}),
    json.dumps({"type": 5}), '{"type": "set_ws_snapshot_hz", "hz": NaN}', '{"type": "set_ws_snapshot_hz", "hz": 1e999}',
])
def test_unreadable_messages_are_refused_then_snapped_back(server, text):
    async def go():
        before = await fresh_meta(server.url)
        async with websockets.connect(server.url) as ws:
            await recv_json(ws, "server_status")
            await send(ws, text)
            err, m = await answer(ws)
            assert err is not None and err["reason"], m
            assert m == before

    run(go())


def test_list_and_preset_messages_answer_like_the_python_server(server):
    async def go():
        async with websockets.connect(server.url) as ws:
            await recv_json(ws, "server_status")
            await send(ws, {"type": "list_presets", "x": 1})
            p = await recv_json(ws, "presets")
            assert isinstance(p["items"], list)
            await send(ws, {"type": "save_preset", "name": "  Gig 1  ", "req": 3})
            p = await recv_json(ws, "presets")
            item = next(i for i in p["items"] if i["name"] == "Gig 1")
            import re
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", item["saved_at"]), item
            await send(ws, {"type": "load_preset", "name": "Gig 1"})
            err, m = await answer(ws)
            assert err is None and m["type"] == "meta"
            await send(ws, {"type": "load_preset", "name": "missing"})
            err, m = await answer(ws)
            assert err is not None and m["type"] == "meta"
            await send(ws, {"type": "save_preset", "name": 7})
            err, _ = await answer(ws)
            assert err is not None
            await send(ws, {"type": "list_devices", "probe": 1, "x": 1})
            d = await recv_json(ws, "devices", timeout=30)
            for item in d["items"]:
                assert isinstance(item["index"], int) and isinstance(item["name"], str)
                assert "probed_signal" in item
                assert re.fullmatch(r"\d\d:\d\d:\d\d", item["probed_at"]), item

    run(go())
