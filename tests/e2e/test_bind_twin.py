"""Each port phase4 listens on is held in both address families (tester ah
AH1): with `bind = "127.0.0.1"` or `"0.0.0.0"` phase4 listened on IPv4
only, and any local user could listen on `[::1]:port` or `[::]:port` (the
kernel allows it: the other family's side was free) and get every client
that reaches the machine over IPv6 (`localhost` resolved as ::1, the host
name's AAAA record), with the control token it presents. The other side is
now held and answers nothing, so a client gets "connection refused" at once
and tries the address phase4 answers on; a side someone already holds is a
start error, as a taken port is.

The other user is `nobody` (setpriv); everything runs on loopback inside a
network namespace of the test's own (`unshare -n`: OSCQuery is on)."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import free_tcp_port, render, tone, write_config, write_wav

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("setpriv") is None,
    reason="another user and a network namespace need root, util-linux unshare and setpriv",
)

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# Run as nobody: try to take each port's IPv6 side, TCP and UDP, on ::1 and
# on ::, as a squatter would (SO_REUSEADDR on); print one line per try.
SQUAT = textwrap.dedent("""
    import socket, sys
    for spec in sys.argv[1:]:
        proto, port = spec.split(":")
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        for addr in ("::1", "::"):
            s = socket.socket(socket.AF_INET6, kind)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((addr, int(port)))
                if kind == socket.SOCK_STREAM:
                    s.listen()
                print("taken", proto, addr, port)
            except OSError as e:
                print("refused", proto, addr, port, e.errno)
""")


def test_the_ipv6_side_of_every_port_is_held_and_refuses_at_once(phase4_bin, tmp_path):
    wav = write_wav(tmp_path / "in.wav", render(tone(440), 1.0))
    ws, http, oscq, osc_in = 47611, 47612, 47613, 47614
    for bind in ("127.0.0.1", "0.0.0.0"):
        cfg = write_config(
            tmp_path / "c.toml",
            osc={"destinations": [{"host": "127.0.0.1", "port": 47615}]},
            ws={"bind": bind, "port": ws, "http-port": http},
            oscquery={"enabled": True, "bind": bind, "port": oscq, "input-port": osc_in},
            state={"dir": ""},
        )
        script = f"""
            ip link set lo up
            {phase4_bin} --config {cfg} --input {wav} --loop 2>{tmp_path}/p4.log & P=$!
            for i in $(seq 100); do
              {sys.executable} -c 'import socket; socket.create_connection(("127.0.0.1", {oscq}), 0.2)' 2>/dev/null && break
              sleep 0.1
            done
            {' '.join(NOBODY)} /usr/bin/python3 -c '{SQUAT}' tcp:{ws} tcp:{http} tcp:{oscq} udp:{osc_in}
            {sys.executable} -c '
import socket
try:
    socket.create_connection(("::1", {ws}), timeout=2)
    print("connected ::1")
except OSError as e:
    print("connect ::1", e.errno)
'
            kill $P; wait $P
        """
        r = subprocess.run(["unshare", "-n", "bash", "-c", script], capture_output=True, text=True, timeout=60)
        lines = r.stdout.splitlines()
        tries = [l for l in lines if l.startswith(("taken", "refused"))]
        assert len(tries) == 8, (bind, r.stdout, r.stderr, (tmp_path / "p4.log").read_text()[-2000:])
        # EADDRINUSE (98) on each: nobody gets any side of any port.
        assert all(l.startswith("refused") and l.endswith(" 98") for l in tries), (bind, tries)
        # A client trying ::1 first is refused at once (ECONNREFUSED, 111),
        # not left waiting on a socket that never answers.
        assert "connect ::1 111" in lines, (bind, r.stdout)


def test_a_side_already_held_by_another_user_is_a_start_error(phase4_bin, tmp_path):
    wav = write_wav(tmp_path / "in.wav", render(tone(440), 1.0))
    port = free_tcp_port()
    hold = subprocess.Popen(
        NOBODY + ["/usr/bin/python3", "-c", textwrap.dedent(f"""
            import socket, sys, time
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(("::1", {port}))
            s.listen()
            print("held", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline().strip() == "held"
        cfg = write_config(tmp_path / "c.toml", ws={"port": port, "http-port": free_tcp_port()},
                           osc={"destinations": [{"host": "127.0.0.1", "port": 9}]}, state={"dir": ""})
        p = subprocess.run([str(phase4_bin), "--config", str(cfg), "--input", str(wav), "--loop"],
                           capture_output=True, text=True, timeout=20)
        assert p.returncode != 0, p.stderr[-1000:]
        assert f"(port {port} of IPv6) is held by another program" in p.stderr, p.stderr[-1000:]
    finally:
        hold.kill()
        hold.wait()


def test_addresses_that_hold_no_one_else_out_still_start(phase4_bin, tmp_path):
    # Review aj: a v4-mapped address (`::ffff:127.0.0.1`) collided with its
    # own twin (AJ1), and two instances on 127.0.0.1 and 127.0.0.2 with the
    # same ports refused each other (AJ3: a loopback's twin is the other
    # loopback, not the whole other family).
    wav = write_wav(tmp_path / "in.wav", render(tone(440), 1.0))
    ws, http = free_tcp_port(), free_tcp_port()
    procs = []
    try:
        for i, bind in enumerate(["::ffff:127.0.0.1", "127.0.0.2"]):
            cfg = write_config(tmp_path / f"c{i}.toml", ws={"bind": bind, "port": ws, "http-port": http},
                               osc={"destinations": [{"host": "127.0.0.1", "port": 9}]}, state={"dir": ""})
            procs.append(subprocess.Popen([str(phase4_bin), "--config", str(cfg), "--input", str(wav), "--loop"],
                                          stderr=subprocess.PIPE, text=True))
        import socket
        import time
        for host in ("127.0.0.1", "127.0.0.2"):
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection((host, http), timeout=0.5).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, [p.poll() for p in procs]
                    time.sleep(0.1)
        assert all(p.poll() is None for p in procs)
    finally:
        errs = []
        for p in procs:
            p.terminate()
            errs.append(p.communicate(timeout=10)[1])
    assert not [e for e in errs if "held by another program" in e], errs
