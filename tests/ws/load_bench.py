"""20 WebSocket clients at 60 Hz snapshots with FFT frames: phase4's added
CPU and every client's rates. Run by scripts/ws-load.sh; prints figures and
exits non-zero when a client does not keep its rate."""

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import websockets  # noqa: E402

import conftest  # noqa: E402

N_CLIENTS = int(os.environ.get("WS_LOAD_CLIENTS", "20"))
SECONDS = float(os.environ.get("WS_LOAD_SECONDS", "10"))


def cpu_s(pid):
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def cpu_pct(pid, seconds):
    c0, t0 = cpu_s(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_s(pid) - c0) / (time.monotonic() - t0)


async def client(url, seconds, out):
    async with websockets.connect(url, max_queue=None) as ws:
        await conftest.recv_json(ws, "snapshot")
        snaps = ffts = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            f = await ws.recv()
            if isinstance(f, bytes):
                ffts += 1
            elif json.loads(f)["type"] == "snapshot":
                snaps += 1
        out.append((snaps / seconds, ffts / seconds))


async def run_clients(url, n, seconds, out):
    await asyncio.gather(*(client(url, seconds, out) for _ in range(n)))


def main():
    binary = os.environ.get("PHASE4_BIN") or str(Path(os.environ.get("CARGO_TARGET_DIR", conftest.ROOT / "target")) / "release" / "phase4")
    with tempfile.TemporaryDirectory() as tmp:
        class F:  # tmp_path_factory stand-in
            @staticmethod
            def mktemp(name):
                p = Path(tmp) / name
                p.mkdir()
                return p
        wav = conftest.wav.__wrapped__(F) if hasattr(conftest.wav, "__wrapped__") else None
        if wav is None:
            raise SystemExit("cannot build the test WAV")
        s = conftest.Server(binary, wav, tmp).start()
        try:
            async def setup():
                async with websockets.connect(s.url) as ws:
                    await ws.send(json.dumps({"type": "set_fft", "enabled": True}))
                    await conftest.recv_json(ws, "meta")
                    await conftest.recv_json(ws, "meta")
            asyncio.run(setup())
            time.sleep(1)
            base = cpu_pct(s.proc.pid, SECONDS)
            rates = []
            import threading
            th = threading.Thread(target=lambda: asyncio.run(run_clients(s.url, N_CLIENTS, SECONDS + 2, rates)))
            th.start()
            time.sleep(1.5)
            loaded = cpu_pct(s.proc.pid, SECONDS)
            th.join()
        finally:
            s.stop()
    snaps = [r[0] for r in rates]
    ffts = [r[1] for r in rates]
    added = loaded - base
    print(f"ws-load: phase4 CPU (percent of one core) with FFT on, WAV input at 48 kHz/256:")
    print(f"ws-load:   0 clients:  {base:.2f} %")
    print(f"ws-load:   {N_CLIENTS} clients: {loaded:.2f} %  (added {added:.2f} %, {added / max(1, N_CLIENTS):.3f} % per client; target <= 0.5 %)")
    print(f"ws-load: snapshots/s per client: min {min(snaps):.1f} max {max(snaps):.1f} (asked 60)")
    print(f"ws-load: FFT frames/s per client: min {min(ffts):.1f} max {max(ffts):.1f} (hop rate 93.75)")
    ok = len(rates) == N_CLIENTS and min(snaps) >= 57 and min(ffts) >= 89
    print("ws-load: every client kept its rate" if ok else "ws-load: FAIL: a client lost its rate")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
