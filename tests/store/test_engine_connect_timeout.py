"""A PostgreSQL host that accepts and never answers (or drops packets) must not hold a page or
a loop for the OS's minutes: the engine gives libpq a connect timeout, the URL's own wins."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from fss.store import engine as engine_module
from fss.store.engine import create_engine


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


def _seconds_to_fail(url: str) -> float:
    engine = create_engine(url)
    started = time.monotonic()
    try:
        with pytest.raises(sa.exc.OperationalError, match="timeout"):
            engine.connect()
        return time.monotonic() - started
    finally:
        engine.dispose()


def test_a_silent_postgresql_host_fails_after_the_connect_timeout(
    silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "CONNECT_TIMEOUT_S", 1)
    assert _seconds_to_fail(f"postgresql://fss@127.0.0.1:{silent_port}/fss") < 5


def test_the_urls_own_connect_timeout_wins(
    silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "CONNECT_TIMEOUT_S", 60)
    took = _seconds_to_fail(f"postgresql://fss@127.0.0.1:{silent_port}/fss?connect_timeout=2")
    assert 1.5 < took < 6
