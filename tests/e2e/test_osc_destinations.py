"""Each OSC destination fails alone, and name resolution never runs on the
send path (issue 8, item 8). Every scenario runs in a private network
namespace created here (`unshare -n -m`, only `lo` up): the unreachable
address has no route and the DNS server is our own silent socket, so
nothing leaves the machine."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
RATE = 48000 / 256


def run_in_netns(phase4_bin, scenario):
    env = dict(os.environ, PHASE4_BIN=str(phase4_bin))
    r = subprocess.run(
        ["unshare", "-n", "-m", "--propagation", "private", sys.executable, str(HERE / "netns_osc.py"), scenario],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="network namespaces need root and util-linux unshare",
)


def test_unreachable_destination_listed_first_does_not_silence_the_next(phase4_bin):
    r = run_in_netns(phase4_bin, "unreachable")
    assert r["ready_s"] is not None and r["ready_s"] < 2.0, r
    # The working receiver gets /audio/lmh at the block rate the whole time.
    expect = RATE * (r["run_s"] - r["ready_s"])
    assert r["lmh"] > 0.9 * expect, r
    assert r["lmh_max_gap_s"] < 0.5, r
    # The failing destination is reported, by name, with the reason.
    assert "192.0.2.1:9000 refuses datagrams" in r["log"], r["log"][-2000:]
    assert "osc_down=192.0.2.1:9000(" in r["log"], r["log"][-2000:]


def test_a_dns_server_that_never_answers_delays_nothing(phase4_bin):
    r = run_in_netns(phase4_bin, "stuck-dns")
    # READY does not wait for the lookup (it takes 10 s here).
    assert r["ready_s"] is not None and r["ready_s"] < 2.0, r
    # The working destination keeps its block rate through every re-resolve,
    assert r["lmh_max_gap_s"] < 0.5, r
    assert r["lmh"] > 0.9 * RATE * (r["run_s"] - r["ready_s"]), r
    # and the watchdog is fed every half period (WATCHDOG_USEC = 1 s).
    assert r["watchdog_max_gap_s"] < 1.0, r
    assert "cannot resolve stuck.p4test:9000" in r["log"], r["log"][-2000:]
