"""The box renamed while phase4 runs (tester aa): mDNS goes on announcing
the name phase4 started with, but the Host check followed the new one, so
a browser following phase4's own announcement got 421 (HTTP and OSCQuery)
and an open UI's WebSocket 403, until a restart. The name at start stays
one of this box's names.

phase4 runs in a UTS namespace of its own (`unshare -u`), so the rename
changes nothing outside the test.
"""

import subprocess
import time
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from conftest import beat_track, free_port, private_network, write_config, write_wav

private_network()  # only in conftest.py's namespace (unshare(CLONE_NEWNET)): nothing leaves it


def status(port, host):
    req = Request(f"http://127.0.0.1:{port}/", headers={"Host": f"{host}:{port}"})
    try:
        return urlopen(req, timeout=5).status
    except HTTPError as e:
        return e.code


def test_the_name_phase4_started_with_stays_a_name_of_the_box(phase4_bin, tmp_path):
    wav = tmp_path / "in.wav"
    write_wav(wav, beat_track(2.0))
    ui, oq = free_port(), free_port()
    cfg = tmp_path / "phase4.toml"
    write_config(cfg, {
        "state": {"dir": ""},
        "audio": {"input": str(wav), "loop-input": True},
        "osc": {"enabled": False},
        "ws": {"enabled": True, "bind": "0.0.0.0", "port": free_port(), "http-port": ui},
        "oscquery": {"enabled": True, "bind": "0.0.0.0", "port": oq},
    })
    log = open(tmp_path / "phase4.log", "w")
    p = subprocess.Popen(["unshare", "-u", "sh", "-c", f"hostname p4old && exec {phase4_bin} --config {cfg}"],
                         stdout=subprocess.DEVNULL, stderr=log)
    try:
        end = time.time() + 10
        while time.time() < end:
            try:
                if status(ui, "p4old.local") == 200:
                    break
            except OSError:
                time.sleep(0.1)
        assert status(ui, "p4old.local") == 200
        subprocess.run(["nsenter", "-t", str(p.pid), "-u", "hostname", "p4new"], check=True)
        time.sleep(1.2)
        # A name it does not know makes it read its names again.
        assert status(ui, "elsewhere.example") == 421
        for port in (ui, oq):
            assert status(port, "p4new.local") == 200, port
            assert status(port, "p4old.local") == 200, (port, Path(log.name).read_text()[-800:])
        assert status(ui, "elsewhere.example") == 421
    finally:
        p.terminate()
        p.wait(10)
        log.close()
