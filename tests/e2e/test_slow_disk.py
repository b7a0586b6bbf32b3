"""A slow disk never slows control. On storage whose fsync takes 600 ms (an
SD card on a bad day; made so by the fault-injection build's
PHASE4_FAULT_SLOW_FSYNC_MS, which sleeps before each fsync of the state and
preset files), a slider drag from a WebSocket client (Python websockets) is
answered at once while the state file is written on its own thread, and the
drag's last value reaches state.toml; and while another client saves
presets, which the presets' writer thread writes in order, answering each
save when its file is on disk and refusing what is more than it holds.

Before the writer thread, control wrote the state itself: every 250 ms of a
drag it stopped for two fsyncs, and answers waited 1.2 s. Before the presets'
writer, a preset save held every other client's commands for 1.2 s."""

import asyncio
import json
import os
import signal
import subprocess
import time

from conftest import free_tcp_port, render, tone, write_config, write_wav, ws_connect, ws_recv

SLOW_FSYNC_S = 0.6
DRAG_PER_S = 30
DRAG_S = 3.0


def start_on_a_slow_disk(fault_bin, tmp_path):
    """phase4 (the fault-injection build) on a WAV, its state directory on a
    disk whose fsyncs take SLOW_FSYNC_S: the process, its WebSocket port,
    its state directory and its log's path."""
    wav = write_wav(tmp_path / "w.wav", render(tone(440), 2.0))
    ws_port, http_port = free_tcp_port(), free_tcp_port()
    state = tmp_path / "state"
    cfg = write_config(
        tmp_path / "c.toml",
        osc={"enabled": False},
        ws={"port": ws_port, "http-port": http_port, "bind": "127.0.0.1"},
        state={"dir": str(state)},
        health={"interval-s": 3600.0},
    )
    env = dict(os.environ, PHASE4_FAULT_SLOW_FSYNC_MS=str(int(SLOW_FSYNC_S * 1000)))
    env.pop("NOTIFY_SOCKET", None)
    log_path = tmp_path / "phase4.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(fault_bin), "--config", str(cfg), "--input", str(wav), "--loop",
                                 "--log-level", "debug"], env=env, stderr=log)
    return proc, ws_port, state, log_path


async def drag_step(ws, i):
    """Move the mid band's low edge to 300 + i Hz without committing; the
    seconds until the meta that shows it arrives."""
    t = time.monotonic()
    await ws.send(json.dumps({"type": "set_band", "band": "mid", "lo_hz": 300 + i,
                              "hi_hz": 3500, "commit": False}))
    # Its meta (metas sent for other reasons may come first).
    while True:
        m = await ws_recv(ws, {"meta", "error"})
        assert m["type"] == "meta", m
        if m["bands"]["mid"]["lo_hz"] == 300 + i:
            break
    waits = time.monotonic() - t
    await asyncio.sleep(max(0.0, t + 1 / DRAG_PER_S - time.monotonic()))
    return waits


def test_a_slider_drag_is_answered_at_once_while_a_slow_disk_saves_it(fault_bin, tmp_path):
    proc, ws_port, state, log_path = start_on_a_slow_disk(fault_bin, tmp_path)
    n = int(DRAG_S * DRAG_PER_S)
    try:
        async def drag():
            ws = await ws_connect(ws_port)
            async with ws:
                await ws_recv(ws, {"presets"})
                return [await drag_step(ws, i) for i in range(n)]

        waits = asyncio.run(drag())
        # The last value is written once the write in progress ends: two
        # slow fsyncs for it, two for the last one.
        last = f"lo-hz = {300 + n - 1}.0"
        deadline = time.monotonic() + 8 * SLOW_FSYNC_S + 2
        while time.monotonic() < deadline:
            f = state / "state.toml"
            if f.exists() and last in f.read_text():
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"{last!r} not in state.toml after {8 * SLOW_FSYNC_S + 2:.1f} s")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
    assert rc == 0
    saves = log_path.read_text().count("state: saved")
    waits.sort()
    # The disk really was slow and written during the drag: at 600 ms a
    # fsync, 3 s hold at most 2 writes besides the last one, and the
    # slowest answer is still well under one fsync.
    assert saves >= 2, f"{saves} saves logged"
    assert waits[-1] < 0.4, f"slowest answer {waits[-1] * 1000:.0f} ms (median {waits[len(waits) // 2] * 1000:.0f} ms)"
    print(f"{len(waits)} drag changes; answers median {waits[len(waits) // 2] * 1000:.1f} ms, "
          f"slowest {waits[-1] * 1000:.1f} ms; {saves} state writes at {SLOW_FSYNC_S * 2:.1f} s each")


def test_preset_saves_on_a_slow_disk_hold_up_no_other_client(fault_bin, tmp_path):
    proc, ws_port, state, _ = start_on_a_slow_disk(fault_bin, tmp_path)
    saves = [f"slow {i}" for i in range(6)]
    # The writer holds 4 jobs (presets::MAX_QUEUED); all six are sent at once,
    # so the first four are written and the last two refused.
    queued = 4
    try:
        async def saver(started):
            ws = await ws_connect(ws_port)
            async with ws:
                await ws_recv(ws, {"presets"})
                t0 = time.monotonic()
                for name in saves:
                    await ws.send(json.dumps({"type": "save_preset", "name": name}))
                started.set()
                lists, errors = [], []
                while len(lists) + len(errors) < len(saves):
                    m = await asyncio.wait_for(ws_recv(ws, {"presets", "error"}), 30)
                    if m["type"] == "presets":
                        lists.append((time.monotonic() - t0, [i["name"] for i in m["items"]]))
                    else:
                        errors.append(m)
                return lists, errors

        async def dragger(started):
            ws = await ws_connect(ws_port)
            async with ws:
                await ws_recv(ws, {"presets"})
                await started.wait()
                return [await drag_step(ws, i) for i in range(int(2.0 * DRAG_PER_S))]

        async def both():
            started = asyncio.Event()
            return await asyncio.gather(saver(started), dragger(started))

        (lists, errors), waits = asyncio.run(both())
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
    assert rc == 0
    waits.sort()
    # The other client is answered at once while the saves are written.
    assert waits[-1] < 0.4, f"slowest answer {waits[-1] * 1000:.0f} ms (median {waits[len(waits) // 2] * 1000:.0f} ms)"
    # Each accepted save is answered once its file is written (two slow
    # fsyncs each, one after the other), listing the presets as of that save.
    assert len(lists) == queued and len(errors) == len(saves) - queued, (lists, errors)
    assert all("try again" in e["reason"] for e in errors), errors
    assert lists[0][0] >= 2 * SLOW_FSYNC_S * 0.9, lists
    assert lists[-1][0] >= queued * 2 * SLOW_FSYNC_S * 0.9, lists
    assert [n for _, n in lists] == [sorted(saves[:k + 1]) for k in range(queued)], lists
    on_disk = sorted(f.stem for f in (state / "presets").glob("*.toml"))
    assert on_disk == sorted(saves[:queued]), on_disk
    print(f"{len(waits)} drag changes while {queued} presets were written; answers median "
          f"{waits[len(waits) // 2] * 1000:.1f} ms, slowest {waits[-1] * 1000:.1f} ms; saves answered at "
          + ", ".join(f"{t:.2f}" for t, _ in lists) + " s")


def test_sigterm_waits_for_the_saves_in_progress(fault_bin, tmp_path):
    """A change committed and a preset saved just before SIGTERM are on the
    disk after the exit, on a disk whose writes take 1.2 s (two slow fsyncs).
    The exit waited 0.8 s for every thread, and control was still writing
    them: it logged "p4-control did not stop in time" and the process ended
    mid-write, the old state file and no preset left."""
    proc, ws_port, state, log_path = start_on_a_slow_disk(fault_bin, tmp_path)
    try:
        async def change_and_save():
            ws = await ws_connect(ws_port)
            async with ws:
                await ws_recv(ws, {"presets"})
                await ws.send(json.dumps({"type": "set_band", "band": "mid", "lo_hz": 321,
                                          "hi_hz": 3500, "commit": True}))
                while (await ws_recv(ws, {"meta"}))["bands"]["mid"]["lo_hz"] != 321:
                    pass
                await ws.send(json.dumps({"type": "save_preset", "name": "at the end"}))
                await asyncio.sleep(0.1)

        asyncio.run(change_and_save())
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = log_path.read_text()
    assert rc == 0
    assert "did not stop in time" not in log, log[-2000:]
    assert "lo-hz = 321.0" in (state / "state.toml").read_text()
    assert (state / "presets" / "at the end.toml").exists()
    # Bounded: the unit's TimeoutStopSec is 5 s.
    assert took < 4.5, f"exit took {took:.2f} s"
    print(f"exit after SIGTERM with a state write and a preset save in progress: {took:.2f} s")
