"""The command line: bad input gets a clear error, nothing panics, and the
paced WAV input keeps the block rate."""

import math
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (
    BLOCK,
    RATE,
    OscReceiver,
    free_tcp_port,
    minimal_config,
    render,
    run_phase4,
    sigterm,
    tone,
    write_config,
    write_wav,
)


def test_bad_config_names_every_problem_and_exits_78(phase4_bin, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        "[audio]\nblock-frames = 7\nfromat = \"S16_LE\"\n\n"
        "[dsp.mid]\nlo-hz = 10.0\n\n[autoscale]\nstrength = 1.5\n\n"
        "[fft]\nwindow-frames = 1000\n\n[osc]\nprefix = \"audio\"\n"
    )
    for args in (["--check-config", str(cfg)], ["--config", str(cfg)]):
        p = subprocess.run([str(phase4_bin), *args], capture_output=True, text=True, timeout=20)
        assert p.returncode == 78, p
        out = p.stderr
        for key in ["audio.block-frames", "audio.fromat", "dsp.mid.lo-hz", "autoscale.strength",
                    "fft.window-frames", "osc.prefix"]:
            assert key in out, f"{key} not named in:\n{out}"
        assert "line 2:" in out and "line 9:" in out, out
        assert "panicked" not in out


def test_check_config_keeps_its_exit_code_when_the_reader_went_away(phase4_bin, tmp_path):
    # `phase4 --check-config x | head -1`: stderr is a pipe nobody reads.
    # Printing to it panicked (exit 101) instead of exiting 78.
    cfg = tmp_path / "bad.toml"
    # (A 60 KB key: the file stays under the 64 KiB cap, so it is parsed.)
    cfg.write_text("[audio]\nblock-frames = 7\n" + "a." * 30_000 + "a = 1\n")
    r, w = os.pipe()
    os.close(r)
    p = subprocess.run([str(phase4_bin), "--check-config", str(cfg)], stderr=w, stdout=w, timeout=20)
    os.close(w)
    assert p.returncode == 78
    # A problem's key is clipped like its value: no 300 KB error line.
    q = subprocess.run([str(phase4_bin), "--check-config", str(cfg)], capture_output=True, text=True, timeout=20)
    assert q.returncode == 78 and max(len(line) for line in q.stderr.splitlines()) < 400, q.stderr[:500]


def test_a_device_name_with_a_nul_byte_is_a_config_error_not_a_panic(phase4_bin, tmp_path):
    # TOML's \u0000 escape puts a real NUL into the string; alsa-lib's
    # PCM::new panicked on it in the capture thread (the service never
    # became ready and systemd restarted it into the same panic).
    for name in ["hw:0\\u0000x", "default\\nx", "\\u0000"]:
        cfg = tmp_path / "nul.toml"
        cfg.write_text(f'[audio]\ndevice = "{name}"\n')
        for args in (["--check-config", str(cfg)], ["--config", str(cfg)]):
            p = subprocess.run([str(phase4_bin), *args], capture_output=True, text=True, timeout=20)
            assert p.returncode == 78, (name, args, p)
            assert "audio.device" in p.stderr and "control characters" in p.stderr, p.stderr
            assert "panicked" not in p.stderr
    # The same name given with --device (it skipped the file's check, and
    # a newline in it reached systemd's STATUS= as a line of its own).
    p = subprocess.run([str(phase4_bin), "--device", "x\nWATCHDOG=trigger"], capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 78 and "--device" in p.stderr and "control characters" in p.stderr, p


def test_a_device_name_longer_than_256_bytes_is_refused_and_not_echoed_whole(phase4_bin, tmp_path):
    # A 100 kB name was taken, and went whole into every log line and
    # systemd's STATUS= (set_device from a client was already held to 256).
    # (60 kB here: a file over 64 KiB is refused before it is read.)
    name = "plug:" + "x" * 60_000
    cfg = tmp_path / "long.toml"
    cfg.write_text(f'[audio]\ndevice = "{name}"\n')
    for args in (["--check-config", str(cfg)], ["--config", str(cfg)], ["--device", name]):
        p = subprocess.run([str(phase4_bin), *args], capture_output=True, text=True, timeout=20)
        assert p.returncode == 78, (args[0], p.returncode, p.stderr[:300])
        assert "at most 256 bytes" in p.stderr and len(p.stderr) < 2000, p.stderr[:300]
    # 256 bytes exactly is still a name (alsa-lib then says whether it exists).
    cfg.write_text(f'[audio]\ndevice = "{"y" * 256}"\n')
    p = subprocess.run([str(phase4_bin), "--check-config", str(cfg)], capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr[:300]


def test_token_to_a_closed_stdout_is_not_a_panic(phase4_bin, tmp_path):
    # `phase4 token | true`: print! panicked (exit 101) on the closed pipe.
    cfg = write_config(tmp_path / "t.toml", audio={"device": "null"}, state={"dir": str(tmp_path / "state")})
    r, w = os.pipe()
    os.close(r)
    p = subprocess.run([str(phase4_bin), "token", "--config", str(cfg)], stdout=w, stderr=subprocess.PIPE,
                       text=True, timeout=20)
    os.close(w)
    assert p.returncode == 0 and "panicked" not in p.stderr, p
    q = subprocess.run([str(phase4_bin), "token", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=20)
    assert q.returncode == 0 and q.stdout.strip(), q


def test_token_says_when_it_replaced_a_corrupt_token_and_names_the_uis_field(phase4_bin, tmp_path):
    # A corrupt token file is moved aside and a new token made: the old one
    # no longer opens anything, and `phase4 token` (what the docs tell the
    # admin to run) said nothing about it. Its hint named a "Control" field
    # the UI does not have.
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "control-token").write_text("not a token\n")
    (state / "control-token").chmod(0o600)
    cfg = write_config(tmp_path / "t.toml", audio={"device": "null"}, state={"dir": str(state)},
                       ws={"bind": "0.0.0.0"})
    p = subprocess.run([str(phase4_bin), "token", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 0, p
    assert "moved aside" in p.stderr and "not a usable token" in p.stderr, p.stderr
    assert list(state.glob("control-token.corrupt-*")), list(state.iterdir())
    field = re.search(r'"(\w+)" field of the UI', p.stdout)
    assert field, p.stdout
    html = (Path(__file__).resolve().parents[2] / "web" / "index.html").read_text()
    assert f">{field.group(1)}<" in html, field.group(1)
    q = subprocess.run([str(phase4_bin), "token", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=20)
    assert q.returncode == 0 and q.stderr == "", q.stderr


def test_a_state_dir_made_under_umask_000_is_not_writable_by_others(phase4_bin, tmp_path):
    # A root shell with umask 000 running `phase4 token` before the first
    # start made the state directory 0777: any local user could plant the
    # control token the service then took.
    state = tmp_path / "a" / "state"
    cfg = write_config(tmp_path / "t.toml", audio={"device": "null"}, state={"dir": str(state)})
    p = subprocess.run(["sh", "-c", 'umask 000; exec "$0" token --config "$1"', str(phase4_bin), str(cfg)],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p
    for d in (state, state.parent):
        assert os.stat(d).st_mode & 0o022 == 0, (d, oct(os.stat(d).st_mode))
    assert os.stat(state / "control-token").st_mode & 0o077 == 0


def test_a_token_in_a_config_every_user_can_read_is_warned_about(phase4_bin, tmp_path):
    cfg = write_config(tmp_path / "t.toml", audio={"device": "null"}, osc={"enabled": False},
                       ws={"token": "a-token-set-by-the-admin-123", "port": free_tcp_port(),
                           "http-port": free_tcp_port()})
    warned = []
    for mode in (0o644, 0o640):
        os.chmod(cfg, mode)
        p = subprocess.run([str(phase4_bin), "--check-config", str(cfg)], capture_output=True, text=True,
                           timeout=20)
        assert p.returncode == 0, p
        warned.append("every user of this machine can read" in p.stderr)
    assert warned == [True, False], warned
    os.chmod(cfg, 0o644)
    # The service says it too, once, at start.
    p = subprocess.Popen([str(phase4_bin), "--config", str(cfg), "--duration", "0.5"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    _, err = p.communicate(timeout=30)
    assert err.count("ws.token is set in") == 1, err[-2000:]
    # An empty token (the generated one) is nothing to warn about.
    write_config(cfg, audio={"device": "null"})
    p = subprocess.run([str(phase4_bin), "--check-config", str(cfg)], capture_output=True, text=True, timeout=20)
    assert p.returncode == 0 and "ws.token" not in p.stderr, p


def test_an_alsa_config_that_makes_alsa_lib_abort_does_not_take_phase4_down(phase4_bin, tmp_path):
    # alsa-lib 1.2.8's snd_device_name_hint overflows a buffer on a PCM
    # name of 127 characters or more and aborts (as `arecord -L` does):
    # phase4 asked for the hints in its own process at every start and died
    # with it. Now a child process asks.
    conf = tmp_path / "long.conf"
    conf.write_text('pcm."' + "L" * 130 + '" { type null hint { show on description "long" } }\n')
    env = dict(os.environ, ALSA_CONFIG_PATH=f"/usr/share/alsa/alsa.conf:{conf}")
    p = subprocess.run([str(phase4_bin), "devices", "--all"], capture_output=True, text=True, timeout=30, env=env)
    assert p.returncode == 0, p
    assert "device list failed" in p.stderr and "default" in p.stdout, p
    cfg = write_config(tmp_path / "t.toml", audio={"device": "null"}, osc={"enabled": False},
                       ws={"port": free_tcp_port(), "http-port": free_tcp_port()},
                       state={"dir": str(tmp_path / "state")})
    p = subprocess.run([str(phase4_bin), "--config", str(cfg), "--duration", "0.5"], capture_output=True, text=True,
                       timeout=30, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stderr.count("device list failed") == 1, p.stderr[-2000:]


def test_good_config_checks_ok(phase4_bin):
    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    p = subprocess.run([str(phase4_bin), "--check-config", os.path.join(root, "configs", "phase4.toml")],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr


def test_missing_device_fails_clearly_when_told_to(phase4_bin, tmp_path):
    cfg = minimal_config(tmp_path, device="no_such_device_p4", **{"on-missing-device": "fail"})
    p = run_phase4(phase4_bin, cfg, timeout=20)
    # A configuration problem: 78, which the unit does not restart.
    assert p.returncode == 78, p
    assert "no_such_device_p4" in p.stderr and "cannot open" in p.stderr
    assert "panicked" not in p.stderr


def test_missing_device_is_retried_and_the_service_stays_up(phase4_bin, tmp_path):
    cfg = minimal_config(tmp_path, device="no_such_device_p4", **{"retry-initial-s": 0.05, "retry-max-s": 0.2})
    proc = subprocess.Popen([str(phase4_bin), "--config", str(cfg)], stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    assert proc.poll() is None, "a missing device must not be fatal"
    took, err = sigterm(proc)
    assert took < 1.0, "SIGTERM to exit within 1 s"
    assert proc.returncode == 0, err
    assert "no_such_device_p4" in err and "retrying" in err
    assert "panicked" not in err


@pytest.mark.parametrize("kind", ["not_wav", "eight_bit", "empty"])
def test_bad_wav_inputs_get_clear_errors(phase4_bin, tmp_path, kind):
    path = tmp_path / f"{kind}.wav"
    if kind == "not_wav":
        path.write_text("hello, this is not audio")
        want = "not a valid WAV"
    elif kind == "eight_bit":
        write_wav(path, render(tone(440), 0.1), bits=8)
        want = "8-bit"
    else:
        write_wav(path, [])
        want = "no audio frames"
    cfg = minimal_config(tmp_path)
    p = run_phase4(phase4_bin, cfg, ["--input", str(path)], timeout=20)
    assert p.returncode == 78, p
    assert want in p.stderr and str(path) in p.stderr, p.stderr
    a = subprocess.run([str(phase4_bin), "analyze", str(path)], capture_output=True, text=True, timeout=20)
    assert a.returncode == 1 and want in a.stderr, a.stderr
    assert "panicked" not in p.stderr + a.stderr


def test_paced_wav_input_sends_lmh_at_the_block_rate(phase4_bin, tmp_path):
    wav = write_wav(tmp_path / "tone.wav", render(tone(440), 5.0))
    rx = OscReceiver()
    cfg = minimal_config(tmp_path, port=rx.port)
    t0 = time.monotonic()
    p = run_phase4(phase4_bin, cfg, ["--input", str(wav)], timeout=30)
    wall = time.monotonic() - t0
    rx.stop(0.2)
    assert p.returncode == 0, p.stderr
    times = [m[0] for m in rx.messages() if m[1] == "/audio/lmh"]
    rate = (len(times) - 1) / (times[-1] - times[0])
    expected = RATE / BLOCK
    assert abs(rate - expected) / expected < 0.02, f"{rate:.2f}/s vs {expected}"
    assert 4.9 < wall < 6.5, f"5 s of audio took {wall:.2f} s"


def clicks(bpm, start=0.25):
    """A 2 ms decaying 3 kHz burst on every beat of `bpm`."""
    period = 60.0 / bpm

    def f(t):
        d = (t - start) % period if t >= start else 1.0
        return 0.8 * math.sin(2 * math.pi * 3000 * d) * math.exp(-d / 0.002) if d < 0.01 else 0.0

    return f


@pytest.mark.parametrize("block", [1024, 2048])
def test_blocks_longer_than_the_hop_send_a_spectrum_frame_every_hop(phase4_bin, tmp_path, block):
    """audio.block-frames longer than fft.hop-frames (512): the spectrum and
    the beat tracker run every hop, as with short blocks. (They ran once per
    block: 128 BPM clicks read 170 BPM with 2048-frame blocks, and the
    development corpus scored beat F 0.23 instead of 0.87.)"""
    wav = write_wav(tmp_path / "clicks.wav", render(clicks(128), 12.0))
    rx = OscReceiver()
    cfg = minimal_config(tmp_path, port=rx.port, **{"block-frames": block})
    p = run_phase4(phase4_bin, cfg, ["--input", str(wav)], timeout=40)
    rx.stop(0.2)
    assert p.returncode == 0, p.stderr
    assert "frame_drops=0" in p.stderr, p.stderr
    msgs = rx.messages()
    spectral = [m[0] for m in msgs if m[1] == "/audio/spectral"]
    lmh = [m[0] for m in msgs if m[1] == "/audio/lmh"]
    hops = RATE / 512
    assert abs(len(spectral) / 12.0 / hops - 1) < 0.03, f"{len(spectral)} frames in 12 s"
    assert abs(len(lmh) / 12.0 / (RATE / block) - 1) < 0.03, f"{len(lmh)} blocks in 12 s"
    bpms = [m[2][1] for m in msgs if m[1] == "/audio/beat"][-8:]
    assert len(bpms) == 8, bpms
    assert all(abs(b / 128 - 1) < 0.015 for b in bpms), bpms


def test_analyze_writes_frames_with_times(phase4_bin, tmp_path):
    import json

    wav = write_wav(tmp_path / "a.wav", render(tone(2000), 2.0))
    p = subprocess.run([str(phase4_bin), "analyze", str(wav)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(l) for l in p.stdout.splitlines()]
    bands = [l for l in lines if l["type"] == "bands"]
    assert len(bands) == -(-2 * RATE // BLOCK)
    assert bands[1]["t"] == pytest.approx(BLOCK / RATE)
    assert bands[-1]["mid"] > bands[-1]["low"]
    spectral = [l for l in lines if l["type"] == "spectral"]
    assert abs(spectral[-1]["centroid_hz"] - 2000) < 100
    c = subprocess.run([str(phase4_bin), "analyze", str(wav), "--format", "csv"], capture_output=True, text=True, timeout=30)
    rows = c.stdout.splitlines()
    header = rows[0].split(",")
    assert header[:3] == ["type", "t", "low"]
    assert all(len(r.split(",")) == len(header) for r in rows), "every CSV row has every column"


def test_analyze_output_errors_say_so_and_a_closed_pipe_is_not_one(phase4_bin, tmp_path):
    wav = write_wav(tmp_path / "a.wav", render(tone(2000), 20.0))
    # A full disk: the error says it was writing the output; no summary.
    with open("/dev/full", "wb") as full:
        p = subprocess.run([str(phase4_bin), "analyze", str(wav)], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=30)
    assert p.returncode == 1
    assert "writing the analysis to standard output: No space left" in p.stderr, p.stderr
    assert "real time" not in p.stderr, p.stderr
    # The reader takes one line and goes (`| head -1`): not an error.
    p = subprocess.Popen([str(phase4_bin), "analyze", str(wav)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=30) == 0, err
    assert "Broken pipe" not in err, err


def test_analyze_bins_prints_the_spectrum_with_the_default_config(phase4_bin, tmp_path):
    import json

    wav = write_wav(tmp_path / "a.wav", render(tone(2000), 1.0))
    # The built-in defaults have the FFT off: --bins turns it on for the run.
    p = subprocess.run([str(phase4_bin), "analyze", str(wav), "--bins"], capture_output=True, text=True,
                       timeout=30, env=dict(os.environ, HOME=str(tmp_path)))
    assert p.returncode == 0, p.stderr
    spectral = [json.loads(l) for l in p.stdout.splitlines() if '"spectral"' in l]
    with_bins = [l for l in spectral if "bins" in l]
    assert spectral and len(with_bins) >= len(spectral) - 2, (len(with_bins), len(spectral))
    bins = with_bins[-1]["bins"]
    assert len(bins) == 128 and max(bins) > 0.5, bins
    c = subprocess.run([str(phase4_bin), "analyze", str(wav), "--bins", "--format", "csv"],
                       capture_output=True, text=True, timeout=30)
    assert c.returncode == 64 and "--bins needs --format jsonl" in c.stderr and not c.stdout, c
