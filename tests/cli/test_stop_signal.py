"""stop_on_signal (fss bridge, scheduler, web): one stop, logged once, however many SIGINT or
SIGTERM arrive (one Ctrl-C arrives twice when a wrapper passes the terminal's on)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator

import pytest

from fss.cli.processes import stop_on_signal


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def fss_log() -> Iterator[list[str]]:
    """What the fss logger says (its own handler: setup_logging may stop propagation)."""
    logger, handler = logging.getLogger("fss"), Lines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def own_handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_two_sigints_then_one_stop_logged_once(fss_log: list[str], own_handlers: None) -> None:
    stopped = stop_on_signal()
    assert not stopped.is_set()
    signal.raise_signal(signal.SIGINT)  # the handler runs before the next line
    assert stopped.is_set()
    signal.raise_signal(signal.SIGINT)
    signal.raise_signal(signal.SIGTERM)
    assert [line for line in fss_log if "received" in line] == ["SIGINT received, stopping"]
