"""Client side of scripts/probe-stall.sh: client A asks for a device probe
three times; meanwhile client B changes a setting every 50 ms and times
each answer. Prints B's answer times without a probe and during each;
with --check, PASS or FAIL (exit 1) on how many answers B got during each
probe."""

import asyncio
import json
import statistics
import sys
import time

import websockets


def reader(ws):
    """Every text message of `ws`, parsed, in a queue (read all the time, so
    the server never sees a client that stopped reading)."""
    q = asyncio.Queue()

    async def run():
        async for m in ws:
            if isinstance(m, str):
                q.put_nowait(json.loads(m))

    asyncio.ensure_future(run())
    return q


async def until(q, types, timeout=60):
    while True:
        j = await asyncio.wait_for(q.get(), timeout)
        if j.get("type") in types:
            return j


async def answer_ms(ws, q, i):
    t = time.monotonic()
    await ws.send(json.dumps({"type": "set_fft_tilt", "tilt_db_per_oct": 1.0 + i % 2}))
    j = await until(q, {"meta", "error"})
    if j["type"] != "meta":
        raise SystemExit(f"probe-stall: the setting was refused: {j}")
    return (time.monotonic() - t) * 1000


def line(what, ms):
    return f"{what}: {len(ms)} answers, median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms"


# Fewest answers the other client must get while a probe runs (--check).
MIN_ANSWERS = 5


async def main(url, check):
    for _ in range(100):
        try:
            a = await websockets.connect(url, max_size=None)
            break
        except OSError:
            await asyncio.sleep(0.1)
    else:
        raise SystemExit(f"probe-stall: nothing listens on {url}")
    b = await websockets.connect(url, max_size=None)
    qa, qb = reader(a), reader(b)
    await until(qa, {"presets"})
    await until(qb, {"presets"})
    base = []
    for i in range(40):
        base.append(await answer_ms(b, qb, i))
        await asyncio.sleep(0.05)
    print(line("no probe: the other client's setting", base), flush=True)
    during = []
    for rnd in range(3):
        t0 = time.monotonic()
        await a.send(json.dumps({"type": "list_devices", "probe": True}))
        got = {}

        async def probe():
            got["devices"] = await until(qa, {"devices"})
            got["s"] = time.monotonic() - t0

        task = asyncio.ensure_future(probe())
        ms = []
        while not task.done():
            ms.append(await answer_ms(b, qb, len(ms)))
            await asyncio.sleep(0.05)
        await task
        n = len(got["devices"]["items"])
        during.append(len(ms))
        print(f"probe {rnd + 1}: answered in {got['s']:.2f} s ({n} devices); "
              + line("the other client's setting meanwhile", ms), flush=True)
        await asyncio.sleep(2.2)  # past the two seconds a probe is reused
    await a.close()
    await b.close()
    if check:
        if min(during) >= MIN_ANSWERS:
            print(f"PASS: another client was answered {min(during)}+ times during each probe")
        else:
            print(f"FAIL: another client was answered only {min(during)} time(s) during a probe "
                  f"(at least {MIN_ANSWERS} expected): the probe held up control")
            sys.exit(1)


asyncio.run(main(sys.argv[1], "--check" in sys.argv[2:]))
