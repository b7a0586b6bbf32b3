"""A stand-in for phase4 that the browser tests point the real UI at: it
serves web/ over HTTP (with /ui-config.json naming its WebSocket port) and
runs a Python WebSocket server whose behaviour each test writes. It logs
every HTTP request and WebSocket handshake, so a test can say where the
page went and with what."""

import asyncio
import http.server
import json
import threading
import time
from http import HTTPStatus
from pathlib import Path

from websockets.asyncio.server import serve

from conftest import ROOT, free_port

TYPES = {".js": "text/javascript", ".html": "text/html", ".css": "text/css", ".svg": "image/svg+xml"}


class FakeServer:
    """`handler(server, ws)`: an async function run for each accepted
    WebSocket (return to close it). `refuse(server, path)`: an HTTP status
    to answer a handshake with instead, or None to accept it."""

    def __init__(self, handler, refuse=None, web=ROOT / "web"):
        self.handler, self.refuse, self.web = handler, refuse, Path(web)
        self.ws_port, self.http_port = free_port(), free_port()
        self.config_ok = True       # False: /ui-config.json answers 503
        self.ws_log = []            # (monotonic time, request path) per handshake
        self.http_log = []          # request paths
        self.sockets = set()
        self.loop = None
        self._stop = None

    @property
    def http(self):
        return f"http://127.0.0.1:{self.http_port}"

    def start(self):
        ready = threading.Event()
        threading.Thread(target=lambda: asyncio.run(self._ws_main(ready)), daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the fake WebSocket server did not start")
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.http_port), self._http_handler())
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.loop:
            self.loop.call_soon_threadsafe(self._stop.set_result, None)

    def close_all(self):
        """Close every open WebSocket (the page reconnects)."""
        async def close():
            for ws in list(self.sockets):
                await ws.close()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)

    def attempts(self, since=0.0):
        return [p for t, p in self.ws_log if t >= since]

    async def _ws_main(self, ready):
        self.loop = asyncio.get_running_loop()
        self._stop = self.loop.create_future()

        def process_request(connection, request):
            self.ws_log.append((time.monotonic(), request.path))
            status = self.refuse(self, request.path) if self.refuse else None
            if status:
                return connection.respond(HTTPStatus(status), "refused\n")
            return None

        async def handle(ws):
            self.sockets.add(ws)
            try:
                await self.handler(self, ws)
            except Exception:  # noqa: BLE001  (the page closing mid-send)
                pass
            finally:
                self.sockets.discard(ws)

        async with serve(handle, "127.0.0.1", self.ws_port, process_request=process_request,
                         max_size=None, compression=None):
            ready.set()
            await self._stop

    def _http_handler(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.http_log.append(self.path)
                path = self.path.split("?")[0]
                if path == "/ui-config.json":
                    if not fake.config_ok:
                        return self._send(503, b"busy\n", "text/plain")
                    return self._send(200, json.dumps({"ws_port": fake.ws_port}).encode(), "application/json")
                if path.startswith("/recordings/"):
                    return self._send(200, b"RIFF", "audio/wav")
                name = "index.html" if path == "/" else path.lstrip("/")
                f = (fake.web / name).resolve()
                if fake.web.resolve() not in f.parents or not f.is_file():
                    return self._send(404, b"not found\n", "text/plain")
                self._send(200, f.read_bytes(), TYPES.get(f.suffix, "application/octet-stream"))

            def _send(self, status, body, ctype):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        return Handler


async def greet(ws, authorized):
    """phase4's greeting as far as the token is concerned."""
    await ws.send(json.dumps({"type": "auth", "authorized": authorized, "required": True}))


def token_of(path):
    """The `?token=` of a handshake path, or None."""
    from urllib.parse import parse_qs, urlsplit
    return (parse_qs(urlsplit(path).query).get("token") or [None])[0]
