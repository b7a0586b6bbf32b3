"""Configuration and command-line input as an attacker or a careless admin
would give it (issue 8, items 12, 13 and 14): loading is bounded and linear,
only regular files are read, an unusable input WAV is a configuration problem
(exit 78, found by --check-config), usage errors are one line with a hint,
and settings the opened device cannot carry are named at start."""

import os
import subprocess
import time

import pytest

from conftest import render, tone, write_config, write_wav


def run(bin_path, *args, timeout=20):
    return subprocess.run([str(bin_path), *args], capture_output=True, text=True, timeout=timeout)


def test_a_file_full_of_unknown_sections_is_checked_in_linear_time(phase4_bin, tmp_path):
    cfg = tmp_path / "many.toml"
    text = ""
    i = 0
    while len(text) < 64 * 1024 - 32:
        text += f"[bogus{i}]\nx = 1\n"
        i += 1
    cfg.write_text(text)
    # Quadratic re-parsing took 23 s for 10 000 sections; a file holds about
    # 3 800 under the 64 KiB cap (the unit test
    # `every_unknown_section_is_reported_and_the_list_is_capped` parses 5 000
    # without it). The bound only guards against that, it is not a speed test.
    p = run(phase4_bin, "--check-config", str(cfg), timeout=15)
    assert p.returncode == 78
    assert "line 1: bogus0: unknown key" in p.stderr, p.stderr[:500]
    assert "more problem(s) not listed" in p.stderr


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom", "/"])
def test_files_that_are_not_regular_are_not_read(phase4_bin, path):
    p = run(phase4_bin, "--check-config", path, timeout=10)
    assert p.returncode == 78
    assert "not a regular file" in p.stderr or "is a directory" in p.stderr.lower(), p.stderr


def test_a_fifo_config_is_refused_without_waiting_for_a_writer(phase4_bin, tmp_path):
    fifo = tmp_path / "cfg.fifo"
    os.mkfifo(fifo)
    p = run(phase4_bin, "--config", str(fifo), timeout=10)
    assert p.returncode == 78 and "not a regular file" in p.stderr, p.stderr


def test_a_huge_config_is_refused(phase4_bin, tmp_path):
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 200_000)
    p = run(phase4_bin, "--check-config", str(big))
    assert p.returncode == 78 and "larger than" in p.stderr, p.stderr


@pytest.mark.parametrize(
    "section,addr",
    [("ws", "224.0.0.1"), ("ws", "255.255.255.255"), ("oscquery", "ff02::1"), ("ws", "::ffff:239.1.2.3")],
)
def test_a_multicast_or_broadcast_bind_address_is_refused(phase4_bin, tmp_path, section, addr):
    # Linux binds a TCP listener to these without complaint, and nobody can
    # ever connect: a UI out of reach with no word said (stop 57's last look).
    cfg = tmp_path / "bind.toml"
    cfg.write_text(f'[{section}]\nbind = "{addr}"\n')
    p = run(phase4_bin, "--check-config", str(cfg))
    assert p.returncode == 78, p.stderr
    assert f"{section}.bind" in p.stderr and "multicast" in p.stderr, p.stderr


def test_a_subnet_broadcast_bind_address_is_refused_at_start(phase4_bin, tmp_path):
    # The configuration check cannot know the subnets; the start does
    # (review ae AE5: 127.255.255.255 bound, and nobody could connect).
    # Nothing leaves the machine: the address is loopback's own broadcast,
    # refused before any listener exists, and the only OSC destination is
    # the default 127.0.0.1:9000.
    wav = write_wav(tmp_path / "in.wav", render(tone(440), 1.0))
    cfg = write_config(tmp_path / "c.toml", ws={"bind": "127.255.255.255"}, state={"dir": ""})
    t = time.monotonic()
    p = run(phase4_bin, "--config", str(cfg), "--input", str(wav), "--loop", timeout=20)
    assert time.monotonic() - t < 15
    assert p.returncode not in (0, None), p.stderr[-1000:]
    assert "127.255.255.255 is the broadcast address of lo" in p.stderr, p.stderr[-1000:]


def test_a_missing_or_bad_input_wav_is_a_configuration_problem(phase4_bin, tmp_path):
    missing = write_config(tmp_path / "m.toml", audio={"input": str(tmp_path / "nope.wav")})
    notwav = tmp_path / "x.wav"
    notwav.write_bytes(b"this is not audio at all")
    bad = write_config(tmp_path / "b.toml", audio={"input": str(notwav)})
    for cfg, why in [(missing, "No such file"), (bad, "not a valid WAV file")]:
        p = run(phase4_bin, "--check-config", str(cfg))
        assert p.returncode == 78, p
        assert "audio.input" in p.stderr and why in p.stderr, p.stderr
        p = run(phase4_bin, "--config", str(cfg), "--duration", "1")
        assert p.returncode == 78, p
    p = run(phase4_bin, "--input", str(tmp_path / "nope.wav"), "--duration", "1")
    assert p.returncode == 78, p


@pytest.mark.parametrize("args", [["analyse", "x.wav"], ["--duration", "-1"], ["--duration", "nan"],
                                  ["--duration", "0"], ["--bogus"], ["analyze"], ["devices", "extra"],
                                  ["--device", "hw:9", "devices"], ["devices", "--config", "a.toml"],
                                  ["--duration", "3", "analyze", "x.wav"], ["--loop", "token"]])
def test_usage_errors_are_one_line_and_a_hint(phase4_bin, args):
    p = run(phase4_bin, *args)
    assert p.returncode == 64, p
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert lines[0].startswith("error:"), p.stderr
    assert len(lines) <= 5, p.stderr
    assert "--help" in p.stderr
    # A service option given with a command did nothing (stop 56): named.
    given = [a for a in args if a in ("--device", "--duration", "--loop")]
    if given and {"devices", "analyze", "token"} & set(args):
        assert given[0] in lines[0] and "does not use it" in lines[0], p.stderr
    if args[0] == "analyse":
        assert "'analyse'" in lines[0] and "x.wav" not in lines[0]
        assert "analyze" in p.stderr


def test_band_edges_beyond_the_devices_nyquist_are_named_at_start(phase4_bin, tmp_path):
    wav = write_wav(tmp_path / "8k.wav", render(tone(440), 1.0, rate=8000), rate=8000)
    cfg = write_config(tmp_path / "c.toml", osc={"enabled": False}, ws={"enabled": False}, state={"dir": ""})
    p = run(phase4_bin, "--config", str(cfg), "--input", str(wav), "--duration", "0.5")
    assert p.returncode == 0, p.stderr
    assert "dsp.high.hi-hz = 16000" in p.stderr and "8000 Hz the device opened at" in p.stderr, p.stderr
