"""A state directory is this run's alone (tester ah AH2, AH5).

- Two instances given one `[state] dir` (other ports: a second sound
  card's service, an operator's test config) each wrote their whole
  `state.toml` over the other's and deleted each other's temp files, without
  a word. Now the first holds `<dir>/.lock` for its run; the second says the
  directory is in use by another phase4 (naming its pid), runs with
  persistence off and writes nothing there.
- A state directory another user made first (under a directory anyone may
  write to, as /tmp) gave phase4 that user's control token and every file
  phase4 wrote there. Now it is not used: an ERROR naming the owner, and
  persistence off; `phase4 token` refuses rather than print their token."""

import asyncio
import json
import os
import signal
import subprocess
import time

import pytest
import websockets

from conftest import free_tcp_port, render, tone, write_config, write_wav


def config(tmp_path, name, state_dir):
    ws, http = free_tcp_port(), free_tcp_port()
    path = write_config(
        tmp_path / f"{name}.toml",
        realtime={"enabled": False, "lock-memory": False},
        osc={"enabled": False},
        ws={"port": ws, "http-port": http},
        state={"dir": str(state_dir)},
    )
    return path, ws, http


def start(phase4_bin, cfg, wav, log, ws_port):
    proc = subprocess.Popen([str(phase4_bin), "--config", str(cfg), "--input", str(wav), "--loop"],
                            stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    end = time.monotonic() + 15
    while time.monotonic() < end:
        assert proc.poll() is None, log.read_text()
        try:
            import socket
            socket.create_connection(("127.0.0.1", ws_port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise AssertionError("phase4 did not open its port:\n" + log.read_text())


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


async def change(ws_port, strength):
    """A change of settings from the UI (loopback: no token needed)."""
    async with websockets.connect(f"ws://127.0.0.1:{ws_port}/", max_size=None) as w:
        await w.send(json.dumps({"type": "set_autoscale", "strength": strength}))
        await asyncio.sleep(0.5)


def snapshot(d):
    """Every name in `d` with its inode, size and mtime."""
    return {p.relative_to(d).as_posix(): (p.lstat().st_ino, p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in sorted(d.rglob("*"))}


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_a_second_instance_on_the_same_state_dir_says_so_and_writes_nothing(phase4_bin, tmp_path):
    wav = write_wav(tmp_path / "in.wav", render(tone(440), 1.0))
    st = tmp_path / "st"
    cfg_a, ws_a, _ = config(tmp_path, "a", st)
    cfg_b, ws_b, _ = config(tmp_path, "b", st)
    a = start(phase4_bin, cfg_a, wav, tmp_path / "a.log", ws_a)
    b = None
    try:
        asyncio.run(change(ws_a, 0.25))
        state = st / "state.toml"
        assert wait_for(lambda: state.exists() and "0.25" in state.read_text()), "A never saved its state"
        a_state = state.read_text()
        before = snapshot(st)

        b = start(phase4_bin, cfg_b, wav, tmp_path / "b.log", ws_b)
        asyncio.run(change(ws_b, 0.75))
        time.sleep(3)  # past the state file's debounce
        stop(b)
        b_log = (tmp_path / "b.log").read_text()
        print(b_log)
        assert "ERROR" in b_log and "is in use by another phase4" in b_log, b_log
        assert f"pid {a.pid}" in b_log, b_log
        assert "its own [state] dir" in b_log, b_log
        # Nothing of B's in the directory: not the state, not a token.
        assert snapshot(st) == before, "the second instance wrote in the state directory"
        assert state.read_text() == a_state
        # and A goes on keeping its own.
        assert a.poll() is None
        asyncio.run(change(ws_a, 0.5))
        assert wait_for(lambda: "0.5" in state.read_text()), "A no longer saves its state"
        a_log = (tmp_path / "a.log").read_text()
        assert "ERROR" not in a_log, a_log
    finally:
        if b:
            stop(b)
        stop(a)
    # A's lock ended with it: the next instance uses the directory.
    b = start(phase4_bin, cfg_b, wav, tmp_path / "b2.log", ws_b)
    try:
        time.sleep(1)
    finally:
        stop(b)
    assert "in use" not in (tmp_path / "b2.log").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="a directory of another user's needs root")
def test_a_state_dir_another_user_made_first_is_not_used(phase4_bin, tmp_path):
    wav = write_wav(tmp_path / "in.wav", render(tone(440), 1.0))
    public = tmp_path / "pub"
    public.mkdir()
    public.chmod(0o1777)
    st = public / "st"
    planted = "attacker-known-token-1234"
    (st / "recordings").mkdir(parents=True)
    (st / "control-token").write_text(planted + "\n")
    for p in (st, st / "recordings", st / "control-token"):
        os.chown(p, 65534, 65534)
    st.chmod(0o777)
    cfg, ws, _ = config(tmp_path, "c", st)
    before = snapshot(st)

    t = subprocess.run([str(phase4_bin), "token", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert t.returncode != 0 and planted not in t.stdout, t.stdout
    assert "uid 65534" in t.stderr, t.stderr

    p = start(phase4_bin, cfg, wav, tmp_path / "c.log", ws)
    try:
        asyncio.run(change(ws, 0.25))
        time.sleep(3)
        assert p.poll() is None
    finally:
        stop(p)
    log = (tmp_path / "c.log").read_text()
    print(log)
    assert "ERROR" in log and "uid 65534" in log and "persistence off" in log, log
    assert snapshot(st) == before, "phase4 wrote in a directory another user made"
