"""The abuse runner's eyes, in a process of their own so that attack code
never delays them: a well-behaved WebSocket client that watches the feature
stream (it never sends anything, so it needs no token) and a stand-in for
systemd's notify socket. Prints one line per event, with CLOCK_MONOTONIC
time stamps (shared by every process on the machine):

    S <t>    a snapshot arrived
    W <t>    WATCHDOG=1 arrived
    R <t>    READY=1 arrived
    D <t>    the WebSocket connection ended (it reconnects)

Usage: observer.py NOTIFY_SOCKET_PATH WS_URL [SOURCE_ADDRESS]
(it binds the socket, prints "bound", then connects when phase4 is up)."""

import asyncio
import os
import socket
import sys
import threading
import time

import websockets


def out(kind):
    sys.stdout.write(f"{kind} {time.monotonic():.4f}\n")
    sys.stdout.flush()


def notify_loop(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    out("bound")
    while True:
        data = s.recv(4096)
        if b"WATCHDOG=1" in data:
            out("W")
        if b"READY=1" in data:
            out("R")


async def watch(url, src):
    kw = {"max_size": None, "open_timeout": 2}
    if src:
        kw["local_addr"] = (src, 0)
    while True:
        try:
            async with websockets.connect(url, **kw) as ws:
                async for frame in ws:
                    if isinstance(frame, str) and frame.startswith('{"type":"snapshot"'):
                        out("S")
        except (OSError, asyncio.TimeoutError, websockets.WebSocketException):
            pass
        out("D")
        await asyncio.sleep(0.2)


def main():
    path, url = sys.argv[1], sys.argv[2]
    src = sys.argv[3] if len(sys.argv) > 3 else None
    if os.path.exists(path):
        os.unlink(path)
    threading.Thread(target=notify_loop, args=(path,), daemon=True).start()
    asyncio.run(watch(url, src))


if __name__ == "__main__":
    main()
