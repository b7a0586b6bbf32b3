"""realtime.cpu (issue 10): the threads that run once per block share one CPU.

Read from /proc/PID/task/TID/status (`Cpus_allowed_list`), i.e. what the
kernel enforces, not what phase4 says about itself. The expected sets are
derived from the affinity the test gives phase4, so each case holds on any
number of CPUs; the two-CPU cases pin phase4's start to two CPUs of the
machine when it has them.
"""

import os
import signal
import subprocess
import time

import pytest

from conftest import free_tcp_port, render, tone, write_config, write_wav

HOT = {"p4-capture", "p4-bands", "p4-spectrum", "p4-osc"}
ALLOWED = sorted(os.sched_getaffinity(0))


def cpu_list(text):
    """`0-2,5` → {0, 1, 2, 5}."""
    cpus = set()
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def thread_cpus(pid):
    """{thread name: set of CPUs it may run on} for every thread of `pid`."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        except FileNotFoundError:
            continue
        name = "supervisor" if int(tid) == pid else fields["Name"]
        out[name] = cpu_list(fields["Cpus_allowed_list"])
    return out


def run(phase4_bin, tmp_path, cpus, **realtime):
    """Start phase4 restricted to `cpus`, read its threads' CPU sets while it
    runs, stop it; return (sets, stderr)."""
    wav = write_wav(tmp_path / "tone.wav", render(tone(440), 2.0))
    cfg = write_config(tmp_path / "c.toml", realtime=realtime,
                       ws={"enabled": True, "port": free_tcp_port(), "http-port": free_tcp_port()},
                       state={"dir": ""}, health={"interval-s": 60.0})
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    p = subprocess.Popen([str(phase4_bin), "--config", str(cfg), "--input", str(wav), "--loop"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    try:
        deadline = time.monotonic() + 10
        sets = {}
        while time.monotonic() < deadline and not HOT <= sets.keys():
            assert p.poll() is None, p.stderr.read()
            time.sleep(0.2)
            sets = thread_cpus(p.pid)
        time.sleep(0.5)  # every hot thread has run its start-up by now
        sets = thread_cpus(p.pid)
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    assert HOT <= sets.keys(), (sets, err)
    return sets, err


def health_rt_cpu(err):
    lines = [line for line in err.splitlines() if "health:" in line]
    assert lines, err
    return lines[-1].rsplit("rt_cpu=", 1)[1].split()[0]


@pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two CPUs to share one of them")
def test_auto_puts_the_per_block_threads_on_the_last_allowed_cpu(phase4_bin, tmp_path):
    two = set(ALLOWED[:2])
    sets, err = run(phase4_bin, tmp_path, two)
    last = max(two)
    for name in HOT:
        assert sets[name] == {last}, (name, sets)
    # Everything else stays free to move. The WAV reader is started by the
    # capture thread and inherits its CPU (as would a sound server's client
    # thread started inside alsa-lib): it feeds that thread.
    free = {name: cpus for name, cpus in sets.items() if name not in HOT | {"p4-wavread"}}
    assert {"supervisor", "p4-control", "p4-ws"} <= free.keys(), sets
    assert all(cpus == two for cpus in free.values()), sets
    assert f"share CPU {last} (realtime.cpu)" in err
    assert health_rt_cpu(err) == str(last)


@pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two CPUs to choose one")
def test_a_named_cpu_and_off(phase4_bin, tmp_path):
    two = set(ALLOWED[:2])
    first = min(two)
    sets, err = run(phase4_bin, tmp_path, two, cpu=first)
    assert all(sets[name] == {first} for name in HOT), sets
    assert health_rt_cpu(err) == str(first)
    sets, err = run(phase4_bin, tmp_path, two, cpu="off")
    assert all(cpus == two for cpus in sets.values()), sets
    assert "realtime.cpu" not in err.split("health:")[0]
    assert health_rt_cpu(err) == "off"


def test_one_allowed_cpu_or_a_cpu_not_allowed_changes_nothing(phase4_bin, tmp_path):
    one = {ALLOWED[0]}
    # auto with one CPU: nothing to choose, nothing pinned, nothing said.
    sets, err = run(phase4_bin, tmp_path, one)
    assert all(cpus == one for cpus in sets.values()), sets
    assert health_rt_cpu(err) == "off"
    # A CPU this process may not use: a warning naming it, and it runs.
    foreign = next(c for c in (ALLOWED[-1] if len(ALLOWED) > 1 else 1023, 1023) if c not in one)
    sets, err = run(phase4_bin, tmp_path, one, cpu=foreign)
    assert all(cpus == one for cpus in sets.values()), sets
    assert f"realtime.cpu: CPU {foreign} is not one this process may run on (allowed: {ALLOWED[0]})" in err
    assert health_rt_cpu(err) == "off"


@pytest.mark.parametrize("value", ["x", "", "1", -1, 1024, 70000, 1.5, True])
def test_bad_values_are_config_errors(phase4_bin, tmp_path, value):
    cfg = write_config(tmp_path / "c.toml", realtime={"cpu": value})
    c = subprocess.run([str(phase4_bin), "--check-config", str(cfg)],
                       capture_output=True, text=True, timeout=20)
    assert c.returncode == 78, (value, c.stdout, c.stderr)
    out = c.stdout + c.stderr
    assert "realtime.cpu" in out and '"auto", "off" or a CPU number 0..=1023' in out, out
