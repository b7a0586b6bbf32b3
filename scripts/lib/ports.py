"""Free 127.0.0.1 ports for the tests and the measuring scripts.

A port from bind(0) is only known to be free while that socket is open, and
once it is closed Linux may give the same port to the next bind(0): in a CI
run two calls in a row gave phase4 the same `ws.port` and `ws.http-port`, and
it refused the config ("must differ from ws.port"). So one process never
hands out the same port twice."""

import socket

_given = set()


def free_port(kind=socket.SOCK_STREAM):
    """A port of `kind` (TCP by default, or socket.SOCK_DGRAM) free now on
    127.0.0.1 and not handed out before by this process."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given:
            _given.add(port)
            return port
    raise RuntimeError("no free port that was not handed out already")
