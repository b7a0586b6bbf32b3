"""What phase4 inherits from whoever starts it (tester ag): a wrapper, a
supervisor or a shell can hand it a blocked signal mask, an ignored
SIGCHLD, a umask without the owner's bits, a real-time policy, or almost no
file descriptors. systemd hands it none of these; a show's own launcher
may. Each is given here through `preexec_fn`, as such a parent would."""

import json
import os
import signal
import socket
import stat
import subprocess
import time

import pytest

from conftest import free_tcp_port, free_udp_port, render, tone, write_config, write_wav


def config(tmp_path, state_dir="", ws=False, realtime=None):
    ws_section = {"enabled": False}
    if ws:
        ws_section = {"port": free_tcp_port(), "http-port": free_tcp_port()}
    sections = dict(
        osc={"destinations": [{"host": "127.0.0.1", "port": free_udp_port()}]},
        ws=ws_section,
        state={"dir": str(state_dir)},
    )
    if realtime is not None:
        sections["realtime"] = realtime
    return write_config(tmp_path / "c.toml", **sections), ws_section


def start(phase4_bin, cfg, wav, preexec):
    return subprocess.Popen([str(phase4_bin), "--config", str(cfg), "--input", str(wav), "--loop"],
                            stderr=subprocess.PIPE, text=True, preexec_fn=preexec)


def test_a_blocked_signal_mask_does_not_keep_phase4_from_stopping(phase4_bin, tmp_path):
    # AG1: the mask survives exec; SIGTERM stayed pending and only SIGKILL
    # ended phase4, losing what it writes at stop.
    wav = write_wav(tmp_path / "in.wav", render(tone(440), 1.0))
    cfg, _ = config(tmp_path)

    def block():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                                                  signal.SIGUSR1, signal.SIGQUIT})

    p = start(phase4_bin, cfg, wav, block)
    try:
        time.sleep(1.0)
        p.send_signal(signal.SIGUSR1)  # a health line on demand
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=5)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err[-1000:]
    assert "stopping" in err and err.count("health:") >= 2, err[-1500:]


def test_an_ignored_sigchld_does_not_throw_the_device_list_away(phase4_bin):
    # AG3: the kernel reaped the listing's child itself, its wait failed,
    # and the whole list read from it was discarded ("listing only default").
    p = subprocess.run([str(phase4_bin), "devices", "--all"], capture_output=True, text=True, timeout=30,
                       preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    assert "device list failed" not in p.stderr, p.stderr[-1000:]
    assert p.returncode == 0, p.stderr[-1000:]


def test_a_umask_without_the_owners_bits_leaves_phase4_its_own_files(phase4_bin, tmp_path):
    # AG5: `umask 0777` made the state folder, the token and the state file
    # mode 000, unreadable to phase4 itself at its next start.
    wav = write_wav(tmp_path / "in.wav", render(tone(440), 1.0))
    state = tmp_path / "state"
    cfg, _ = config(tmp_path, state_dir=state, ws=True)
    p = start(phase4_bin, cfg, wav, lambda: os.umask(0o777))
    time.sleep(1.5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=10)
    assert p.returncode == 0, err[-1000:]
    token = state / "control-token"
    assert stat.S_IMODE(state.stat().st_mode) & 0o700 == 0o700, oct(state.stat().st_mode)
    assert stat.S_IMODE(token.stat().st_mode) == 0o600, oct(token.stat().st_mode)
    # What the umask withholds from group and others stays withheld.
    assert stat.S_IMODE(state.stat().st_mode) & 0o077 == 0, oct(state.stat().st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="a real-time policy to inherit needs root (CAP_SYS_NICE)")
def test_an_inherited_real_time_policy_is_dropped_when_real_time_is_off(phase4_bin, tmp_path):
    # AG10: started under `chrt -f`, every thread (the network-facing ones
    # too) ran SCHED_FIFO with `realtime.enabled = false`.
    wav = write_wav(tmp_path / "in.wav", render(tone(440), 1.0))
    cfg, _ = config(tmp_path, ws=True, realtime={"enabled": False})
    p = start(phase4_bin, cfg, wav, lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10)))
    try:
        time.sleep(1.5)
        policies = {}
        for tid in os.listdir(f"/proc/{p.pid}/task"):
            try:
                name = open(f"/proc/{p.pid}/task/{tid}/comm").read().strip()
                policies[name] = os.sched_getscheduler(int(tid))
            except (FileNotFoundError, ProcessLookupError):
                pass
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=10)
    assert len(policies) > 5, policies
    assert all(v == os.SCHED_OTHER for v in policies.values()), policies


def test_a_server_that_cannot_start_fails_the_start_instead_of_going_missing(phase4_bin, tmp_path):
    # AG2: with almost no file descriptors the UI's HTTP server could not
    # build its runtime, logged one error and was gone for the whole run,
    # while READY, STATUS and the watchdog said all was well. Whatever the
    # limit: phase4 either fails its start (and systemd restarts it) or
    # serves both of its ports.
    wav = write_wav(tmp_path / "in.wav", render(tone(440), 1.0))
    cfg, ws = config(tmp_path, ws=True)
    outcomes = {}
    for limit in range(6, 22):
        def low(limit=limit):
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        p = subprocess.Popen([str(phase4_bin), "--config", str(cfg), "--input", str(wav), "--loop"],
                             stderr=subprocess.DEVNULL, preexec_fn=low, close_fds=True)
        try:
            deadline = time.monotonic() + 4.0
            serving = False
            while time.monotonic() < deadline and p.poll() is None:
                try:
                    for port in (ws["port"], ws["http-port"]):
                        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    serving = True
                    break
                except OSError:
                    time.sleep(0.1)
            outcomes[limit] = "serving" if serving else ("exit %s" % p.poll() if p.poll() is not None else "NEITHER")
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    assert "NEITHER" not in outcomes.values(), outcomes
    assert not [o for o in outcomes.values() if o == "exit 0"], outcomes
    # The configuration is fine at every limit: never its exit status (78),
    # which the unit does not restart (AG4: the input's check failing for
    # want of a descriptor was taken for a bad file).
    assert "exit 78" not in outcomes.values(), outcomes
    # The range covers both sides: too few to start, and enough to serve.
    assert "serving" in outcomes.values() and any(o.startswith("exit") for o in outcomes.values()), outcomes


def test_a_token_that_cannot_be_written_out_is_a_failure(phase4_bin, tmp_path):
    # AG12: `phase4 token > /dev/full` exited 0, so a script took the token
    # for saved. A reader that goes away (`| head -c1`) is no failure.
    cfg = write_config(tmp_path / "c.toml", state={"dir": str(tmp_path / "state")})
    with open("/dev/full", "w") as full:
        p = subprocess.run([str(phase4_bin), "token", "--config", str(cfg)], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=20)
    assert p.returncode == 1 and "cannot write the token" in p.stderr, (p.returncode, p.stderr)
    p = subprocess.run(f"{phase4_bin} token --config {cfg} | head -c1 >/dev/null; exit ${{PIPESTATUS[0]}}",
                       shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr


def test_a_tz_naming_a_fifo_hangs_no_client(phase4_bin, tmp_path):
    # AG9: glibc loaded the zone at the first local time asked for, on the
    # WebSocket thread when the first client came: a FIFO there blocked it,
    # every client hung and the watchdog restarted phase4.
    import asyncio

    import websockets

    wav = write_wav(tmp_path / "in.wav", render(tone(440), 1.0))
    cfg, ws = config(tmp_path, state_dir=tmp_path / "state", ws=True)
    fifo = tmp_path / "tz"
    os.mkfifo(fifo)
    p = subprocess.Popen([str(phase4_bin), "--config", str(cfg), "--input", str(wav), "--loop"],
                         stderr=subprocess.PIPE, text=True, env=dict(os.environ, TZ=f":{fifo}"))

    async def greeted():
        for _ in range(50):
            try:
                async with websockets.connect(f"ws://127.0.0.1:{ws['port']}", open_timeout=2) as c:
                    # A preset's save time is a local time.
                    await c.send(json.dumps({"type": "save_preset", "name": "tz"}))
                    while True:
                        m = json.loads(await asyncio.wait_for(c.recv(), 5))
                        if m.get("type") == "presets" and m["items"]:
                            return m["items"]
            except (OSError, websockets.exceptions.InvalidHandshake):
                await asyncio.sleep(0.1)
        return None

    try:
        got = asyncio.run(asyncio.wait_for(greeted(), 20))
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=10)
    assert got and got[0]["name"] == "tz" and got[0]["saved_at"], (got, err[-1000:])
    assert "is not a regular file: ignored" in err, err[-1000:]
    assert "did not stop in time" not in err, err[-1000:]


def test_an_input_path_that_is_not_utf8_is_a_usage_error_not_a_missing_file(phase4_bin, tmp_path):
    # AG8: the name was converted with U+FFFD in it, another name opened,
    # and the file that exists was said not to (exit 78).
    wav = write_wav(tmp_path / "in.wav", render(tone(440), 0.5))
    odd = os.path.join(os.fsencode(tmp_path), b"x\xff.wav")
    os.link(os.fsencode(wav), odd)
    p = subprocess.run([os.fsencode(str(phase4_bin)), b"--input", odd, b"--duration", b"1"],
                       capture_output=True, timeout=20)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 64, err
    assert "not UTF-8" in err and "No such file" not in err, err
