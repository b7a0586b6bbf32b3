"""WLED Audio Sync v2: phase4's multicast packets to 239.0.0.1:11988,
decoded here with the field layout of WLED's audio-reactive usermod
(usermods/audioreactive/audio_reactive.cpp, struct audioSyncPacket, "V2",
44 bytes, packed, little endian; WLED-MM names the spare bytes), by a
decoder written for this test (not phase4's encoder). A tone inside one of
WLED's 16 GEQ channels lights that channel.

Runs inside the network namespace conftest.py creates: the multicast never
reaches a real interface.
"""

import socket
import subprocess
import struct
import time

import pytest

from conftest import private_network, tone, write_wav

private_network()  # only in conftest.py's namespace (unshare(CLONE_NEWNET)): nothing leaves it

GROUP = "239.0.0.1"

# WLED's channel table: FFT bins (22050 Hz, 512 points) first..last.
WLED_BINS = [
    (1, 2), (2, 3), (3, 5), (5, 7), (7, 10), (10, 13), (13, 19), (19, 26),
    (26, 33), (33, 44), (44, 56), (56, 70), (70, 86), (86, 104), (104, 165), (165, 215),
]
BIN_HZ = 22050 / 512


def decode(p):
    """The v2 packet, field by field, from WLED's struct."""
    assert len(p) == 44, len(p)
    header = p[0:6]
    pressure = p[6] + p[7] / 256
    sample_raw, sample_smth = struct.unpack_from("<ff", p, 8)
    sample_peak, frame_counter = p[16], p[17]
    fft = list(p[18:34])
    (zero_crossings,) = struct.unpack_from("<H", p, 34)
    magnitude, major_peak = struct.unpack_from("<ff", p, 36)
    return dict(
        header=header, pressure=pressure, sample_raw=sample_raw, sample_smth=sample_smth,
        sample_peak=sample_peak, frame_counter=frame_counter, fft=fft,
        zero_crossings=zero_crossings, magnitude=magnitude, major_peak=major_peak,
    )


def receiver(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", port))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton(GROUP) + socket.inet_aton("127.0.0.1"))
    s.settimeout(5)
    return s


def collect(sock, seconds):
    out = []
    end = time.time() + seconds
    while time.time() < end:
        try:
            data, _ = sock.recvfrom(256)
        except socket.timeout:
            break
        out.append((time.time(), data))
    return out


def channel_of(freq):
    return [i for i, (a, b) in enumerate(WLED_BINS) if a * BIN_HZ <= freq <= b * BIN_HZ]


@pytest.mark.parametrize("freq", [70.0, 1000.0, 3300.0])
def test_a_tone_lights_its_geq_channels(run_phase4, tmp_path, freq):
    wav = tmp_path / "tone.wav"
    write_wav(wav, tone(freq, 4.0))
    sock = receiver(11988)
    p4 = run_phase4({
        "audio": {"input": str(wav)},
        "osc": {"enabled": False},
        "ws": {"enabled": False},
        "wled": {"enabled": True, "host": GROUP, "port": 11988},
    })
    packets = collect(sock, 3.5)
    # An address is used as it is, and the start line names it.
    assert f"wled: Audio Sync v2 to {GROUP}:11988 every 20 ms" in p4.text()
    assert len(packets) > 100, len(packets)
    # WLED's rate: one packet every 20 ms.
    times = [t for t, _ in packets]
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 40 <= rate <= 55, rate
    decoded = [decode(d) for _, d in packets]
    assert all(p["header"] == b"00002\x00" for p in decoded)
    counters = [p["frame_counter"] for p in decoded]
    assert all((b - a) % 256 == 1 for a, b in zip(counters, counters[1:])), "rolling counter"
    late = decoded[len(decoded) // 2:]
    want = channel_of(freq)
    for p in late:
        best = max(range(16), key=lambda i: p["fft"][i])
        assert best in want or any(abs(best - w) == 1 for w in want), (freq, p["fft"])
        assert max(p["fft"][w] for w in want) >= 150, (freq, p["fft"])
        far = [v for i, v in enumerate(p["fft"]) if min(abs(i - w) for w in want) > 2]
        assert max(far) < 40, (freq, p["fft"])
        assert abs(p["major_peak"] - freq) < 0.03 * freq + 10, (freq, p["major_peak"])
        assert p["sample_raw"] > 100 and p["sample_smth"] > 100
        assert 0 < p["magnitude"] <= 4096
        # Two crossings per period over WLED's 23.2 ms batch.
        assert abs(p["zero_crossings"] - 2 * freq * 512 / 22050) <= 0.1 * 2 * freq * 512 / 22050 + 2


def test_silence_sends_wleds_muted_values_and_beats_set_the_peak(run_phase4, tmp_path):
    from conftest import beat_track

    wav = tmp_path / "beats.wav"
    write_wav(wav, beat_track(9.0, bpm=120.0, silence_after=6.0))
    sock = receiver(11988)
    run_phase4({
        "audio": {"input": str(wav)},
        "osc": {"enabled": False},
        "ws": {"enabled": False},
        "wled": {"enabled": True},
    })
    decoded = [decode(d) for _, d in collect(sock, 8.8)]
    music = decoded[100:280]
    assert sum(p["sample_peak"] for p in music) >= 4, "kicks are WLED peaks"
    quiet = decoded[-40:]
    assert all(p["fft"] == [0] * 16 for p in quiet), quiet[-1]
    assert all(p["sample_raw"] == 0 and p["sample_peak"] == 0 for p in quiet)
    assert all(abs(p["magnitude"] - 0.001) < 1e-6 and p["major_peak"] == 1.0 for p in quiet)


def test_an_interface_that_comes_late_is_waited_for_not_fatal(run_phase4, tmp_path):
    """`wled.interface` not (yet) a local address, as with a DHCP lease that
    comes late at boot: phase4 keeps running, sends by the default route,
    and takes the interface once it exists (stop 38 exited with 1)."""
    wav = tmp_path / "tone.wav"
    write_wav(wav, tone(1000.0, 30.0))
    sock = receiver(11988)
    late = "10.9.7.7"
    subprocess.run(["ip", "addr", "del", f"{late}/32", "dev", "lo"], stderr=subprocess.DEVNULL)
    p4 = run_phase4({
        "audio": {"input": str(wav)},
        "osc": {"enabled": False},
        "ws": {"enabled": False},
        "wled": {"enabled": True, "host": GROUP, "port": 11988, "interface": late},
    })
    p4.wait_log(f"wled: cannot send from wled.interface {late}")
    assert len(collect(sock, 1.0)) > 20, "packets go out by the default route meanwhile"
    assert p4.proc.poll() is None
    subprocess.run(["ip", "addr", "add", f"{late}/32", "dev", "lo"], check=True)
    try:
        p4.wait_log(f"wled: sending from wled.interface {late} now", timeout=15)
        assert len(collect(sock, 1.0)) > 20
        assert p4.proc.poll() is None
    finally:
        subprocess.run(["ip", "addr", "del", f"{late}/32", "dev", "lo"], stderr=subprocess.DEVNULL)


def test_refused_packets_are_counted_and_said_once_a_minute(run_phase4, tmp_path):
    wav = tmp_path / "tone.wav"
    write_wav(wav, tone(1000.0, 10.0))
    # No route to it in this namespace: every send fails (ENETUNREACH).
    p4 = run_phase4({
        "audio": {"input": str(wav)},
        "osc": {"enabled": False},
        "ws": {"enabled": False},
        "wled": {"enabled": True, "host": "10.255.255.1", "port": 11988},
    })
    p4.wait_log("wled: cannot send to 10.255.255.1:11988")
    time.sleep(2.0)
    assert p4.proc.poll() is None
    assert p4.text().count("wled: cannot send to") == 1, p4.text()
    health = [line for line in p4.text().splitlines() if "wled_failed=" in line]
    assert health and int(health[-1].split("wled_failed=")[1].split()[0].split("(")[0]) > 20, health[-1:]


def failed_count(text, key):
    health = [line for line in text.splitlines() if f"{key}=" in line]
    return int(health[-1].split(f"{key}=")[1].split()[0].split("(")[0]) if health else -1


def test_a_host_that_refuses_the_packets_is_counted(run_phase4, tmp_path):
    """A host that answers every packet with ICMP "port unreachable" (here
    127.0.0.1 on a port nothing is bound to): the socket is connected, so
    the kernel reports it as the error of a later send and `wled_failed`
    counts it (an unconnected socket never heard of it: 0, tester s). The
    same for the Link feed with no phase4-link listening."""
    wav = tmp_path / "tone.wav"
    write_wav(wav, tone(1000.0, 10.0))
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    p4 = run_phase4({
        "audio": {"input": str(wav)},
        "osc": {"enabled": False},
        "ws": {"enabled": False},
        "health": {"interval-s": 1.0},
        "wled": {"enabled": True, "host": "127.0.0.1", "port": port},
        "link": {"enabled": True, "feed-port": port},
    })
    time.sleep(3.5)
    assert p4.proc.poll() is None
    text = p4.text()
    assert failed_count(text, "wled_failed") > 10, [l for l in text.splitlines() if "health" in l][-1:]
    assert failed_count(text, "link_failed") > 3, [l for l in text.splitlines() if "health" in l][-1:]
