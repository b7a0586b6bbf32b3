"""Fixtures for the compatibility suite (issue 11); helpers are in
p4compat.py (a module name of its own: tests/ws has a conftest too)."""

import time

import pytest

from p4compat import ws

binary = ws.binary
wav = ws.wav


@pytest.fixture(scope="module")
def server(binary, wav, tmp_path_factory):
    s = ws.Server(binary, wav, tmp_path_factory.mktemp("compat")).start()
    # The first listing is made by control at start; a client that connects
    # later gets the whole greeting at once.
    time.sleep(0.5)
    yield s
    s.stop()


@pytest.fixture
def make_server(binary, wav, tmp_path):
    started = []

    def make(cls=ws.Server, **kw):
        s = cls(binary, wav, tmp_path, **kw)
        started.append(s)
        return s.start()

    yield make
    for s in started:
        s.stop()


