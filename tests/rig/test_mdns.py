"""mDNS / DNS-SD: phase4's services found by browsers we did not write:
python-zeroconf against phase4's own responder (no avahi-daemon), and
avahi-browse against a private avahi-daemon that already runs on 5353 (phase4
registers through avahi's D-Bus API and avahi keeps working). Each service
with its port and TXT records; withdrawn when phase4 stops.

Runs inside the network namespace conftest.py creates (mDNS multicast
224.0.0.251:5353 never reaches a real interface), with its own D-Bus.
"""

import re
import subprocess
import time

from zeroconf import IPVersion, ServiceBrowser, ServiceListener, Zeroconf

from conftest import beat_track, private_network, write_wav

private_network()  # only in conftest.py's namespace (unshare(CLONE_NEWNET)): nothing leaves it

TYPES = ["_oscjson._tcp.local.", "_osc._udp.local.", "_http._tcp.local."]


def sections(wav, name, backend):
    return {
        "audio": {"input": str(wav), "loop-input": True},
        "osc": {"enabled": False},
        "ws": {"enabled": True, "bind": "0.0.0.0"},
        "oscquery": {"enabled": True, "bind": "0.0.0.0", "input-port": 9102},
        "discovery": {"enabled": True, "name": name, "backend": backend},
    }


class Seen(ServiceListener):
    def __init__(self):
        self.added, self.removed = {}, set()

    def add_service(self, zc, t, n):
        self.added[n] = zc.get_service_info(t, n, timeout=3000)

    def update_service(self, zc, t, n):
        self.added[n] = zc.get_service_info(t, n, timeout=3000)

    def remove_service(self, zc, t, n):
        self.removed.add(n)


def browse(timeout):
    """A python-zeroconf browser of TYPES, once it has found three services
    (or after `timeout` seconds). The caller closes it."""
    zc = Zeroconf(ip_version=IPVersion.V4Only)
    seen = Seen()
    ServiceBrowser(zc, TYPES, seen)
    end = time.time() + timeout
    while len(seen.added) < 3 and time.time() < end:
        time.sleep(0.1)
    return zc, seen


def check_services(found, name):
    """found: {type: (port, {key: value})}"""
    assert set(found) == {"_oscjson._tcp", "_osc._udp", "_http._tcp"}, found
    port, txt = found["_oscjson._tcp"]
    assert port == 8767 and txt["app"] == "phase4" and txt["osc"] == "9102", txt
    port, txt = found["_osc._udp"]
    assert port == 9102 and txt["oscquery"] == "8767", txt
    port, txt = found["_http._tcp"]
    assert port == 8766 and txt["ws"] == "8765" and txt["path"] == "/", txt
    for _, (_, txt) in found.items():
        assert txt["txtvers"] == "1" and txt["version"]


def test_builtin_responder_found_by_python_zeroconf(run_phase4, tmp_path):
    wav = tmp_path / "in.wav"
    write_wav(wav, beat_track(2.0))
    p4 = run_phase4(sections(wav, "p4 test box", "auto"))
    p4.wait_log("through builtin")
    zc, seen = browse(8)
    found = {}
    for n, info in seen.added.items():
        assert n.startswith("p4 test box."), n
        assert info is not None and info.parsed_addresses(), n
        kind = n[len("p4 test box."):].replace(".local.", "")
        props = {k.decode(): v.decode() for k, v in info.properties.items()}
        found[kind] = (info.port, props)
    check_services(found, "p4 test box")
    # Goodbye packets: the browser drops the services when phase4 stops.
    p4.stop()
    end = time.time() + 5
    while len(seen.removed) < 3 and time.time() < end:
        time.sleep(0.1)
    zc.close()
    assert len(seen.removed) == 3, seen.removed


def start_bound(run_phase4, tmp_path, name, address):
    """phase4 with the builtin responder, its UI and OSCQuery bound to
    `address`, once the responder runs."""
    wav = tmp_path / "in.wav"
    write_wav(wav, beat_track(2.0))
    cfg = sections(wav, name, "builtin")
    cfg["ws"]["bind"] = address
    cfg["oscquery"]["bind"] = address
    p4 = run_phase4(cfg)
    p4.wait_log("through builtin")
    return p4


def test_a_service_bound_to_one_address_is_announced_at_that_address_only(run_phase4, tmp_path):
    """Tester aa: bound to one interface's address, the UI and OSCQuery were
    announced at every address of the box, including ones nothing listened
    on (a browser following the announcement got "connection refused")."""
    extra = ["10.80.0.1/24", "10.81.0.5/24"]
    for cidr in extra:
        subprocess.run(["ip", "addr", "add", cidr, "dev", "lo"], check=True)
    try:
        start_bound(run_phase4, tmp_path, "p4 one address", "10.80.0.1")
        zc, seen = browse(8)
        try:
            assert len(seen.added) == 3, seen.added
            for n, info in seen.added.items():
                assert info is not None, n
                assert info.parsed_addresses() == ["10.80.0.1"], (n, info.parsed_addresses())
        finally:
            zc.close()
    finally:
        for cidr in extra:
            subprocess.run(["ip", "addr", "del", cidr, "dev", "lo"], check=False)


def test_a_service_bound_to_an_address_that_arrives_later_is_announced_once_it_does(run_phase4, tmp_path):
    """The box bound to its Wi-Fi address and started before DHCP gave it
    (the listeners are bound with IP_FREEBIND): review ac found such a
    service never announced, nor answered for, once the address came."""
    start_bound(run_phase4, tmp_path, "p4 late address", "10.82.0.1")
    zc, seen = browse(3)
    try:
        assert not any(i and i.parsed_addresses() for i in seen.added.values()), seen.added
        subprocess.run(["ip", "addr", "add", "10.82.0.1/24", "dev", "lo"], check=True)
        # The daemon looks at the interfaces every few seconds.
        end = time.time() + 15
        while len(seen.added) < 3 and time.time() < end:
            time.sleep(0.1)
        assert len(seen.added) == 3, seen.added
        for n, info in seen.added.items():
            assert info is not None and info.parsed_addresses() == ["10.82.0.1"], (n, info)
    finally:
        zc.close()
        subprocess.run(["ip", "addr", "del", "10.82.0.1/24", "dev", "lo"], check=False)


def unescape(s):
    """avahi-browse --parsable writes some characters as \\DDD (decimal)."""
    return re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1))), s)


def avahi_browse(env, seconds=4):
    r = subprocess.run(
        ["avahi-browse", "--all", "--resolve", "--parsable", "--terminate", "--no-db-lookup"],
        env=env, capture_output=True, text=True, timeout=seconds + 10,
    )
    rows = [[unescape(f) for f in l.split(";")] for l in r.stdout.splitlines() if l.startswith("=")]
    return {(row[3], row[4]): row for row in rows}


def txt_of(row):
    return dict(t.strip('"').split("=", 1) for t in row[9].split('" "'))


def start_beside_avahi(run_phase4, tmp_path, avahi, service, name, backend):
    """avahi already announces `service` (avahi-publish args); then phase4
    starts with `backend` and says which one it uses."""
    own = subprocess.Popen(["avahi-publish", "-s", *service], env=avahi)
    time.sleep(1.0)
    wav = tmp_path / "in.wav"
    write_wav(wav, beat_track(2.0))
    p4 = run_phase4(sections(wav, name, backend))
    p4.wait_log("through avahi" if backend == "auto" else "through builtin")
    time.sleep(1.5)
    return own, p4


def test_registered_through_a_running_avahi_daemon(run_phase4, tmp_path, avahi):
    # avahi is already up (on 5353) and announces something of its own.
    own, p4 = start_beside_avahi(
        run_phase4, tmp_path, avahi, ["printer", "_ipp._tcp", "631", "rp=ipp"], "stage left", "auto"
    )
    try:
        rows = avahi_browse(avahi)
        found = {}
        for (name, kind), row in rows.items():
            if name == "stage left":
                kind = {"Web Site": "_http._tcp"}.get(kind, kind)
                found[kind] = (int(row[8]), txt_of(row))
        check_services(found, "stage left")
        # avahi still works: its own service is still there.
        assert ("printer", "Internet Printer") in rows or any(k[0] == "printer" for k in rows), rows.keys()
        p4.stop()
        time.sleep(1.5)
        gone = avahi_browse(avahi)
        assert not any(k[0] == "stage left" for k in gone), gone.keys()
        assert any(k[0] == "printer" for k in gone), "avahi keeps serving after phase4 left"
    finally:
        own.terminate()
        own.wait(5)


def test_builtin_responder_beside_avahi_breaks_nothing(run_phase4, tmp_path, avahi):
    """backend = "builtin" on a box where avahi runs: both answer on 5353
    (shared port), both are found, avahi keeps resolving its own names."""
    own, _ = start_beside_avahi(
        run_phase4, tmp_path, avahi, ["mixer", "_osc._udp", "7000"], "side box", "builtin"
    )
    try:
        rows = avahi_browse(avahi)
        names = {k[0] for k in rows}
        assert "side box" in names and "mixer" in names, names
        zc = Zeroconf(ip_version=IPVersion.V4Only)
        try:
            info = zc.get_service_info("_osc._udp.local.", "mixer._osc._udp.local.", timeout=3000)
            assert info is not None and info.port == 7000
            mine = zc.get_service_info("_oscjson._tcp.local.", "side box._oscjson._tcp.local.", timeout=3000)
            assert mine is not None and mine.port == 8767
        finally:
            zc.close()
    finally:
        own.terminate()
        own.wait(5)


def test_a_name_taken_by_another_host_is_said_in_the_log(run_phase4, tmp_path):
    """Another host answers for phase4's service name while phase4 probes
    (RFC 6762 §9): the responder announces under a new name, and the log
    says which, instead of still claiming the old one (stop 38 said
    nothing)."""
    import socket
    import threading

    from zeroconf import DNSOutgoing, DNSService, const

    wav = tmp_path / "in.wav"
    write_wav(wav, beat_track(2.0))
    stop = threading.Event()

    def claim():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        while not stop.is_set():
            out = DNSOutgoing(const._FLAGS_QR_RESPONSE | const._FLAGS_AA)
            for t in TYPES:
                out.add_answer_at_time(DNSService(f"taken box.{t}", const._TYPE_SRV,
                                                  const._CLASS_IN | const._CLASS_UNIQUE, 120, 0, 0,
                                                  6666, "other.local."), 0)
            for packet in out.packets():
                s.sendto(packet, ("224.0.0.251", 5353))
            stop.wait(0.02)
        s.close()

    t = threading.Thread(target=claim, daemon=True)
    t.start()
    try:
        time.sleep(0.3)
        p4 = run_phase4(sections(wav, "taken box", "builtin"))
        p4.wait_log("through builtin")
        p4.wait_log("discovery: another host on the LAN answers for", timeout=10)
    finally:
        stop.set()
        t.join(timeout=2)
    line = next(x for x in p4.text().splitlines() if "another host on the LAN answers for" in x)
    assert "taken box" in line and "taken box (2)" in line, line


def test_a_host_that_claims_every_name_slows_the_renames_down(run_phase4, tmp_path):
    """A host that answers every probe with a record of its own (whatever
    the name): the published mdns-sd renamed itself with no pause (1 122
    names in 40 s, tester s). RFC 6762 §8.1: after 15 conflicts in 10 s,
    at most one probe per 5 s (vendor/mdns-sd/PHASE4.md)."""
    import socket
    import threading

    from zeroconf import DNSIncoming, DNSOutgoing, DNSService, DNSText, const

    wav = tmp_path / "in.wav"
    write_wav(wav, beat_track(2.0))
    stop = threading.Event()
    claimed = set()

    def claim_everything():
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        rx.bind(("224.0.0.251", 5353))
        rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                      socket.inet_aton("224.0.0.251") + socket.inet_aton("127.0.0.1"))
        rx.settimeout(0.2)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        while not stop.is_set():
            try:
                data = rx.recv(9000)
            except socket.timeout:
                continue
            try:
                m = DNSIncoming(data)
            except Exception:
                continue
            if not m.is_query():
                continue
            out = DNSOutgoing(const._FLAGS_QR_RESPONSE | const._FLAGS_AA)
            for q in m.questions:
                if q.name.startswith("greedy") and q.name not in claimed:
                    claimed.add(q.name)
                if q.name.startswith("greedy"):
                    unique = const._CLASS_IN | const._CLASS_UNIQUE
                    out.add_answer_at_time(DNSService(q.name, const._TYPE_SRV, unique, 120, 0, 0,
                                                      6666, "other.local."), 0)
                    out.add_answer_at_time(DNSText(q.name, const._TYPE_TXT, unique, 120, b"\x04evil"), 0)
            for packet in out.packets():
                tx.sendto(packet, ("224.0.0.251", 5353))
        rx.close()
        tx.close()

    t = threading.Thread(target=claim_everything, daemon=True)
    t.start()
    try:
        time.sleep(0.3)
        p4 = run_phase4(sections(wav, "greedy", "builtin"))
        p4.wait_log("through builtin")
        time.sleep(15)
    finally:
        stop.set()
        t.join(timeout=2)
    print(f"\n{len(claimed)} names probed in 15 s")
    assert p4.proc.poll() is None
    # 3 services: 15 conflicts quickly, then one probe per 5 s (a few more
    # names each); the published crate went through hundreds.
    assert 3 <= len(claimed) <= 45, sorted(claimed)


def test_a_system_bus_that_never_answers_gives_way_to_the_builtin_responder(run_phase4, tmp_path):
    # Tester ag AG14: zbus's blocking calls have no deadline, and a bus
    # that accepts and never answers (a hung dbus-daemon) held p4-mdns for
    # ever in `auto`: nothing announced, nothing said, `mdns=off`, and the
    # stop waited for the thread. Now each exchange has 5 s.
    import os
    import socket

    sock_path = tmp_path / "mute-bus"
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(str(sock_path))
    mute.listen(16)
    held = []

    def take():
        while True:
            try:
                held.append(mute.accept()[0])
            except OSError:
                return

    import threading
    threading.Thread(target=take, daemon=True).start()
    wav = tmp_path / "in.wav"
    write_wav(wav, beat_track(2.0))
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={sock_path}"
    try:
        p4 = run_phase4(sections(wav, "mute bus", "auto"))
    finally:
        del os.environ["DBUS_SYSTEM_BUS_ADDRESS"]
    try:
        p4.wait_log("discovery: avahi-daemon not usable: the system bus did not answer within 5 s", timeout=15)
        p4.wait_log("through builtin", timeout=10)
        assert held, "phase4 never reached the bus (the test shows nothing)"
        zc, seen = browse(10)
        try:
            assert len(seen.added) == 3, seen.added
        finally:
            zc.close()
        p4.wait_log("mdns=builtin", timeout=5)
        t = time.monotonic()
        p4.stop()
        assert time.monotonic() - t < 2.0
        assert "did not stop in time" not in p4.text(), p4.text()[-1500:]
    finally:
        mute.close()
