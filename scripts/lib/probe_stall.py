"""Client side of scripts/probe-stall.sh: client A asks for a device probe
three times; meanwhile client B changes a setting every 50 ms and times
each answer. Prints B's answer times without a probe and during each;
with --check, PASS or FAIL (exit 1) on how many answers B got during each
probe. Then FLOODERS read-only clients ask for the device list (no probe)
FLOOD_PER_S times a second each while B goes on for FLOOD_S seconds; with
--check B must get MIN_FLOOD_ANSWERS answers meanwhile (at most 80 fit:
one each 50 ms plus the answer's own time)."""

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
# The listing flood: clients, listings per second each (ws.max-messages-per-s
# is 200), seconds.
FLOODERS, FLOOD_PER_S, FLOOD_S = 4, 200, 4.0
# Fewest answers B must get during the flood (--check): 68 when a listing
# is reused for a second, 17 when each opened the devices again (ed2a695:
# median 204 ms each).
MIN_FLOOD_ANSWERS = 30


async def flood(url, b, qb):
    """B's answer times while FLOODERS clients ask for the device list
    FLOOD_PER_S times a second each; and how many lists they were sent."""
    clients = [await websockets.connect(url, max_size=None) for _ in range(FLOODERS)]
    queues = [reader(c) for c in clients]
    stop = asyncio.Event()

    async def ask(c):
        while not stop.is_set():
            for _ in range(FLOOD_PER_S // 20):
                await c.send(json.dumps({"type": "list_devices"}))
            await asyncio.sleep(0.05)

    tasks = [asyncio.ensure_future(ask(c)) for c in clients]
    ms = []
    end = time.monotonic() + FLOOD_S
    while time.monotonic() < end:
        ms.append(await answer_ms(b, qb, len(ms)))
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    await asyncio.sleep(0.5)
    lists = sum(sum(1 for j in q._queue if j.get("type") == "devices") for q in queues)
    for c in clients:
        await c.close()
    return ms, lists


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
            # The probe's answer: a `devices` list with probe fields (phase4
            # also sends everyone a plain one when capture's device opens).
            while True:
                j = await until(qa, {"devices"})
                if any("probed_at" in item for item in j["items"]):
                    break
            got["devices"] = j
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
    ms, lists = await flood(url, b, qb)
    print(line(f"{FLOODERS} clients listing devices {FLOOD_PER_S} times a second each "
               f"({lists} lists sent): the other client's setting", ms), flush=True)
    await a.close()
    await b.close()
    if check:
        verdict(min(during), MIN_ANSWERS, "during each probe", "the probe")
        verdict(len(ms), MIN_FLOOD_ANSWERS, "during the listing flood", "the listings")


def verdict(answers, least, when, what):
    """PASS, or FAIL and exit 1, on how often the other client was answered."""
    if answers >= least:
        print(f"PASS: another client was answered {answers} times {when}")
    else:
        print(f"FAIL: another client was answered only {answers} times {when} "
              f"(at least {least} expected): {what} held up control")
        sys.exit(1)

asyncio.run(main(sys.argv[1], "--check" in sys.argv[2:]))
