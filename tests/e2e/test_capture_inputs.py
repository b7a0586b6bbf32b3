"""Input files and capture failures, as a user meets them: bad WAV headers
get a clear error and the configuration exit status (78, which systemd does
not restart), nothing panics, `analyze` never prints null lines, memory does
not grow with the file's length, a FIFO streams, and `--duration` counts
seconds of the input's own audio."""

import json
import math
import os
import resource
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import (OscReceiver, free_tcp_port, minimal_config, render, run_phase4, sigterm, tone,
                      write_config, write_wav)

EXIT_CONFIG = 78


def wav_header(rate, channels=1, bits=16, data_len=None, frames=0, tag=1):
    block = channels * bits // 8
    if data_len is None:
        data_len = frames * block
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    return (b"RIFF" + struct.pack("<I", 36 + data_len & 0xFFFFFFFF) + b"WAVE"
            + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_len))


def tone_frames(rate, seconds, freq=440.0, channels=1):
    out = bytearray()
    for i in range(int(rate * seconds)):
        v = int(12000 * math.sin(2 * math.pi * freq * i / rate))
        out += struct.pack("<h", v) * channels
    return bytes(out)


def config(tmp_path, port=9, **audio):
    return minimal_config(tmp_path, port, health_s=3600.0, **audio)


def analyze(phase4_bin, path, *args, timeout=60):
    return subprocess.run([str(phase4_bin), "analyze", str(path), *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("rate", [0, 1, 999, 4_000_000])
def test_a_wav_with_an_impossible_sample_rate_is_refused(phase4_bin, tmp_path, rate):
    path = tmp_path / f"r{rate}.wav"
    path.write_bytes(wav_header(rate, frames=4800) + bytes(9600))
    p = run_phase4(phase4_bin, config(tmp_path), ["--input", str(path)], timeout=20)
    assert p.returncode == EXIT_CONFIG, p
    assert f"sample rate of {rate} Hz" in p.stderr and str(path) in p.stderr, p.stderr
    a = analyze(phase4_bin, path)
    assert a.returncode != 0, a
    assert f"sample rate of {rate} Hz" in a.stderr
    assert "null" not in a.stdout and a.stdout == ""
    assert "panicked" not in p.stderr + a.stderr


@pytest.mark.parametrize("kind", ["missing", "directory", "not_wav", "eight_bit", "empty", "channel"])
def test_unusable_inputs_are_configuration_errors(phase4_bin, tmp_path, kind):
    path = tmp_path / f"{kind}.wav"
    audio = {}
    if kind == "missing":
        want = "No such file"
    elif kind == "directory":
        path.mkdir()
        want = "not a regular file or a FIFO"
    elif kind == "not_wav":
        path.write_text("hello, this is not audio")
        want = "not a valid WAV"
    elif kind == "eight_bit":
        path.write_bytes(wav_header(8000, bits=8, frames=100) + bytes(100))
        want = "8-bit"
    elif kind == "empty":
        path.write_bytes(wav_header(48000, frames=0))
        want = "no audio frames"
    else:
        path.write_bytes(wav_header(48000, channels=2, frames=4800) + tone_frames(48000, 0.1, channels=2))
        audio = {"channel": 2}
        want = "audio.channel = 2 but the file has 2 channel(s)"
    p = run_phase4(phase4_bin, config(tmp_path, **audio), ["--input", str(path)], timeout=20)
    assert p.returncode == EXIT_CONFIG, p
    assert want in p.stderr and str(path) in p.stderr, p.stderr
    assert "panicked" not in p.stderr
    # --check-config finds the same problem in a config that names the file.
    c = subprocess.run([str(phase4_bin), "--check-config", str(config(tmp_path, input=str(path), **audio))],
                       capture_output=True, text=True, timeout=20)
    assert c.returncode == EXIT_CONFIG and want in c.stderr, c


def test_a_missing_device_with_fail_is_a_configuration_error(phase4_bin, tmp_path):
    cfg = config(tmp_path, device="p4_no_such_device", **{"on-missing-device": "fail"})
    p = run_phase4(phase4_bin, cfg, timeout=20)
    assert p.returncode == EXIT_CONFIG, p
    assert "p4_no_such_device" in p.stderr and "cannot open" in p.stderr


def test_duration_counts_seconds_of_the_inputs_audio(phase4_bin, tmp_path):
    """An 8 kHz file with --duration 1 plays one second, not 6 (48000/8000)."""
    path = tmp_path / "8k.wav"
    path.write_bytes(wav_header(8000, frames=8000 * 10) + tone_frames(8000, 10))
    rx = OscReceiver()
    t0 = time.monotonic()
    p = run_phase4(phase4_bin, config(tmp_path, port=rx.port), ["--input", str(path), "--duration", "1"], timeout=30)
    wall = time.monotonic() - t0
    rx.stop(0.2)
    assert p.returncode == 0, p.stderr
    lmh = [m for m in rx.messages() if m[1] == "/audio/lmh"]
    # 8000 frames in 256-frame blocks: 32 blocks (the last one completes the second).
    assert 31 <= len(lmh) <= 33, len(lmh)
    assert wall < 2.5, f"1 s of audio took {wall:.2f} s"


def two_hour_wav(path, rate=8000):
    """A 2-hour mono WAV: a second of tone, then (sparse) silence."""
    frames = rate * 7200
    head = wav_header(rate, frames=frames)
    with open(path, "wb") as f:
        f.write(head)
        f.write(tone_frames(rate, 1.0))
        f.truncate(len(head) + 2 * frames)
    return path


def test_analyze_streams_a_two_hour_file_in_bounded_memory(phase4_bin, tmp_path):
    path = two_hour_wav(tmp_path / "long.wav")
    rss = tmp_path / "rss"
    # GNU time's %M: the child's peak resident set, in KiB.
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss), str(phase4_bin), "analyze", str(path)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "7200.0 s of audio" in p.stderr, p.stderr
    peak_kib = int(rss.read_text().split()[-1])
    assert peak_kib <= 32 * 1024, f"peak RSS {peak_kib} KiB > 32 MiB"


def test_input_streams_a_two_hour_file_in_bounded_memory(phase4_bin, tmp_path):
    path = two_hour_wav(tmp_path / "long.wav", rate=48000)
    proc = subprocess.Popen([str(phase4_bin), "--config", str(config(tmp_path)), "--input", str(path)],
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        status = open(f"/proc/{proc.pid}/status").read()
        hwm = int(next(l.split()[1] for l in status.splitlines() if l.startswith("VmHWM")))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "rate 48000 Hz" in err
    assert hwm <= 32 * 1024, f"peak RSS {hwm} KiB > 32 MiB"


def feed_fifo(fifo, payload, chunk=4096, pause=0.0, delay=0.0):
    """Write `payload` into `fifo` from a thread; `.broken` tells whether the
    reader closed its end first (phase4 refusing the input does)."""
    def run():
        time.sleep(delay)
        try:
            with open(fifo, "wb") as f:
                for i in range(0, len(payload), chunk):
                    f.write(payload[i:i + chunk])
                    if pause:
                        f.flush()
                        time.sleep(pause)
        except BrokenPipeError:
            t.broken = True
    t = threading.Thread(target=run, daemon=True)
    t.broken = False
    t.start()
    return t


def test_a_fifo_streams_into_the_live_input_and_into_analyze(phase4_bin, tmp_path):
    fifo = tmp_path / "in.wav"
    os.mkfifo(fifo)
    # Written the way a recorder writes to a pipe: no data length, and the
    # writer shows up late.
    payload = wav_header(16000, data_len=0xFFFFFFFF) + tone_frames(16000, 2.0, 1000)
    rx = OscReceiver()
    w = feed_fifo(fifo, payload, delay=0.5)
    p = run_phase4(phase4_bin, config(tmp_path, port=rx.port), ["--input", str(fifo)], timeout=30)
    rx.stop(0.2)
    w.join()
    assert p.returncode == 0, p.stderr
    assert not w.broken, "phase4 stopped reading before the end"
    lmh = [m for m in rx.messages() if m[1] == "/audio/lmh"]
    assert abs(len(lmh) - 2 * 16000 / 256) <= 2, len(lmh)
    w = feed_fifo(fifo, payload)
    a = analyze(phase4_bin, fifo)
    w.join()
    assert a.returncode == 0, a.stderr
    assert "2.0 s of audio" in a.stderr
    bands = [json.loads(l) for l in a.stdout.splitlines() if '"bands"' in l]
    assert len(bands) == -(-2 * 16000 // 256)


def test_a_fifo_cannot_be_looped_and_says_so(phase4_bin, tmp_path):
    fifo = tmp_path / "in.wav"
    os.mkfifo(fifo)
    w = feed_fifo(fifo, wav_header(16000, data_len=0xFFFFFFFF) + tone_frames(16000, 0.5))
    p = run_phase4(phase4_bin, config(tmp_path), ["--input", str(fifo), "--loop"], timeout=20)
    w.join(timeout=5)
    assert p.returncode == EXIT_CONFIG, p
    assert "a FIFO cannot be looped" in p.stderr


@pytest.mark.parametrize("cut", ["truncated", "emptied"])
def test_a_looped_file_cut_while_playing_is_a_failure_not_an_end(phase4_bin, tmp_path, cut):
    """A looped input never ends by design: a file emptied or truncated to
    its header while it plays is a fault, said as an ERROR, with an exit
    status systemd restarts on (891053d stopped with "input ended" at INFO
    level and exit 0, which `Restart=on-failure` does not restart)."""
    wav = tmp_path / "in.wav"
    frames = tone_frames(16000, 1.0)
    wav.write_bytes(wav_header(16000, data_len=len(frames)) + frames)
    proc = subprocess.Popen([str(phase4_bin), "--config", str(config(tmp_path)), "--input", str(wav), "--loop"],
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.5)  # past the first loop
        assert proc.poll() is None
        os.truncate(wav, 44 if cut == "truncated" else 0)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert proc.returncode not in (0, EXIT_CONFIG), (proc.returncode, err[-2000:])
    assert "ERROR" in err and "the looped file has no audio left to play" in err and str(wav) in err, err[-2000:]
    assert "input ended" not in err, err[-2000:]


def test_a_looped_file_overwritten_with_another_format_is_reopened_at_it(phase4_bin, tmp_path):
    """Tester aa W1: a file overwritten in place (`cp`, the same inode) kept
    being read with the header it had at the start, so one of another
    format played as noise for ever. Now the input is reopened at the new
    format, and the service goes on."""
    wav = tmp_path / "in.wav"
    frames = tone_frames(16000, 1.0)
    wav.write_bytes(wav_header(16000, data_len=len(frames)) + frames)
    log = tmp_path / "err.log"
    cfg = minimal_config(tmp_path, 9, health_s=1.0)
    with open(log, "w") as err:
        proc = subprocess.Popen([str(phase4_bin), "--config", str(cfg), "--input", str(wav), "--loop"],
                                stderr=err, text=True)
    try:
        time.sleep(2.0)
        assert proc.poll() is None, log.read_text()[-2000:]
        frames = tone_frames(22050, 1.5, channels=2)
        with open(wav, "r+b") as f:  # in place, as cp does
            f.truncate(0)
            f.write(wav_header(22050, channels=2, data_len=len(frames)) + frames)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "rate=22050" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        time.sleep(1.5)
        text = log.read_text()
        assert proc.poll() is None, text[-2000:]
    finally:
        sigterm(proc)
    assert "the file changed format while it played" in text, text[-2000:]
    healths = [l for l in text.splitlines() if "health:" in l]
    assert "rate=22050" in healths[-1] and "up=yes" in healths[-1], healths[-3:]


def test_sigterm_while_a_fifo_waits_for_its_writer(phase4_bin, tmp_path):
    fifo = tmp_path / "in.wav"
    os.mkfifo(fifo)
    cfg = minimal_config(tmp_path, 9, health_s=1.0)
    proc = subprocess.Popen([str(phase4_bin), "--config", str(cfg), "--input", str(fifo)],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    assert proc.poll() is None, "waiting for a writer is not an error"
    took, err = sigterm(proc)
    assert took < 1.0, f"SIGTERM took {took:.2f} s"
    assert proc.returncode == 0, err
    # The health lines name the input being opened (they said "device=-").
    health = [l for l in err.splitlines() if "health: " in l]
    assert health and all(f"device={fifo} " in l and " up=no " in l for l in health), health


def test_alsa_lib_messages_go_through_the_rate_limited_log(phase4_bin, tmp_path):
    """A device that stays away: alsa-lib complains on every retry; the log
    says it once, not once per retry."""
    cfg = config(tmp_path, device="p4_no_such_device", **{"retry-initial-s": 0.02, "retry-max-s": 0.05})
    proc = subprocess.Popen([str(phase4_bin), "--config", str(cfg)], stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    raw = [l for l in err.splitlines() if l.startswith("ALSA lib")]
    routed = [l for l in err.splitlines() if "alsa-lib: " in l and "p4_no_such_device" in l]
    assert not raw, f"alsa-lib printed to stderr directly: {raw[:3]}"
    assert 1 <= len(routed) <= 2, routed


def test_a_deeply_nested_alsa_configuration_is_parsed_as_alsa_tools_parse_it(phase4_bin, tmp_path):
    """A block nested 3 000 deep anywhere in the ALSA configuration (not in
    the device used): alsa-lib's parser recursed through the capture
    thread's 256 KiB stack and aborted the process (tester u); `arecord`,
    with a main thread's stack, reads it. So does phase4 now."""
    conf = tmp_path / "deep.conf"
    n = 3000
    conf.write_text('pcm.p4deep {\n type null\n hint { show on description "deep" }\n'
                    + "x { " * n + "}" * n + "\n}\n")
    cfg = minimal_config(tmp_path, device="null")
    r = run_phase4(phase4_bin, cfg, ["--duration", "1"],
                   env_extra={"ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{conf}"})
    assert r.returncode == 0 and "overflow" not in r.stderr, (r.returncode, r.stderr[-500:])
    assert "capture: null open" in r.stderr, r.stderr[-500:]


def no_sound_card():
    try:
        with open("/proc/asound/cards") as f:
            return "no soundcards" in f.read()
    except OSError:
        return True


def test_listing_devices_at_start_warns_about_nothing(phase4_bin, tmp_path):
    """The control thread lists the devices for its greeting at start; what
    alsa-lib says while it expands the PCM definitions (on a machine without
    a card: "cannot find card '$CARD'") is not a warning about the input the
    service runs on. It is kept at debug level, labelled as a listing's."""
    wav = tmp_path / "in.wav"
    wav.write_bytes(wav_header(48000, frames=48000) + tone_frames(48000, 1.0))
    cfg = write_config(tmp_path / "c.toml", osc={"destinations": [{"host": "127.0.0.1", "port": 9}]},
                       ws={"enabled": True, "port": free_tcp_port(), "http-port": free_tcp_port()},
                       state={"dir": ""}, health={"interval-s": 3600.0})

    def start(*level):
        r = run_phase4(phase4_bin, cfg, ["--input", str(wav), "--duration", "1", *level])
        assert r.returncode == 0, r.stderr
        assert "ready" in r.stderr, r.stderr
        return r.stderr.splitlines()

    lines = start()
    assert not [l for l in lines if "alsa-lib" in l or l.startswith("ALSA lib")], lines
    assert not [l for l in lines if "card" in l.lower()], lines
    if no_sound_card():
        debug = start("--log-level", "debug")
        listed = [l for l in debug if "alsa-lib (listing devices):" in l]
        assert listed and all(" DEBUG " in l for l in listed), debug


@pytest.mark.skipif(os.geteuid() != 0, reason="runs phase4 as nobody under a thread limit (needs root)")
def test_a_thread_that_cannot_start_is_no_configuration_error(phase4_bin):
    # Exit 78 means "fix the configuration": the unit does not restart on
    # it. A thread phase4 cannot start (a limit on tasks, for a moment) is
    # not that: 0b8575b exited 78 when the WAV reader's thread failed.
    # phase4 runs as `nobody` (root is not held to RLIMIT_NPROC) under
    # every limit from 1 to 40 tasks, so each of its threads is the one
    # that fails in some run.
    if not os.access(phase4_bin, os.X_OK) or shutil.which("setpriv") is None:
        pytest.skip("needs setpriv")
    d = Path(tempfile.mkdtemp(prefix="p4-nproc-"))
    try:
        d.chmod(0o755)
        wav = write_wav(d / "w.wav", render(tone(440), 0.3))
        cfg = minimal_config(d)
        for f in (wav, cfg):
            f.chmod(0o644)
        seen = {}
        for n in range(1, 41):
            with open(d / "err", "w+") as err:
                proc = subprocess.Popen(
                    ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                     "--", str(phase4_bin), "--config", str(cfg), "--input", str(wav)],
                    preexec_fn=lambda n=n: resource.setrlimit(resource.RLIMIT_NPROC, (n, n)),
                    stderr=err, text=True, cwd=d)
                try:
                    rc = proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    # Still up: retrying the input as it would a device
                    # that went away, and stopping cleanly when told.
                    took, _ = sigterm(proc)
                    rc = "retrying"
                    assert proc.returncode == 0 and took < 2.0, (n, proc.returncode, took)
                err.seek(0)
                text = err.read()
            seen.setdefault(rc, []).append(n)
            assert rc != 78, f"tasks limited to {n}: exit 78\n{text[-1500:]}"
            if rc == "retrying":
                assert "retrying in" in text, text[-1500:]
        if 126 in seen or 127 in seen:
            pytest.skip(f"nobody cannot run {phase4_bin}: {seen}")
        # The limits bit (some runs failed to start a thread) and the
        # highest let it run through.
        assert 1 in seen and seen.get(0, [0])[-1] == 40, seen
    finally:
        shutil.rmtree(d, ignore_errors=True)
