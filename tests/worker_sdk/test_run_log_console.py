"""A run's log lines: every one goes to the run log; the copy on the process's console follows
the level the process logs at (`fss worker -l WARNING` prints no INFO line of a job), as a
record of any other logger does."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from fss.domain.clock import ManualClock
from fss.events import JOB_LOGGER, Event, TaskLogged
from fss.worker_sdk import JobContext

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=timezone.utc)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, record.getMessage()))


@pytest.fixture
def console() -> Iterator[tuple[Lines, logging.Logger]]:
    """A handler on the root logger, as Celery's worker installs one, at the root's level."""
    root = logging.getLogger()
    handler, level = Lines(), root.level
    # Loggers above a job's own left with a level by an earlier test in this process (`fss
    # dev`, run in-process by the CLI tests, sets fss.jobs to INFO) would decide instead.
    chain = [logging.getLogger(name) for name in ("fss", JOB_LOGGER)]
    levels = [logger.level for logger in chain]
    for logger in chain:
        logger.setLevel(logging.NOTSET)
    root.addHandler(handler)
    try:
        yield handler, root
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for logger, kept in zip(chain, levels, strict=True):
            logger.setLevel(kept)


def _context(sent: list[Event]) -> JobContext:
    return JobContext(task_id=7, attempt=2, group_id=3, job_name="j", data={}, start_at=T0,
                      client_id="c", emit=sent.append, clock=ManualClock(T0))


def test_at_warning_the_console_gets_no_info_line_and_the_run_log_gets_every_line(
    console: tuple[Lines, logging.Logger],
) -> None:
    handler, root = console
    root.setLevel(logging.WARNING)
    sent: list[Event] = []
    ctx = _context(sent)
    ctx.log.debug("d")
    ctx.log.info("i %s", 1)
    ctx.log.warning("w")
    ctx.log.error("e")
    assert [e.content for e in sent if isinstance(e, TaskLogged)] == ["d", "i 1", "w", "e"]
    assert handler.lines == [("WARNING", "w"), ("ERROR", "e")]


def test_at_info_the_console_gets_the_info_lines_too(
    console: tuple[Lines, logging.Logger],
) -> None:
    handler, root = console
    root.setLevel(logging.INFO)
    sent: list[Event] = []
    ctx = _context(sent)
    ctx.log.debug("d")
    ctx.log.info("i")
    assert [e.content for e in sent if isinstance(e, TaskLogged)] == ["d", "i"]
    assert handler.lines == [("INFO", "i")]


def test_the_job_logger_s_own_level_and_propagation_are_followed(
    console: tuple[Lines, logging.Logger],
) -> None:
    handler, root = console
    root.setLevel(logging.DEBUG)
    jobs = logging.getLogger(JOB_LOGGER)
    jobs.setLevel(logging.ERROR)
    try:
        sent: list[Event] = []
        ctx = _context(sent)
        ctx.log.warning("w")
        ctx.log.error("e")
        assert handler.lines == [("ERROR", "e")]
        jobs.propagate = False
        ctx.log.error("not on the console")
        assert handler.lines == [("ERROR", "e")]
        assert [e.content for e in sent if isinstance(e, TaskLogged)] == [
            "w", "e", "not on the console"
        ]
    finally:
        jobs.setLevel(logging.NOTSET)
        jobs.propagate = True


def test_with_no_handler_above_a_line_goes_to_the_run_log_only_not_to_stderr(
    console: tuple[Lines, logging.Logger], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """logging's lastResort (stderr, for WARNING and up) is for records no handler took: the
    run log's handler took this one, as it always did."""
    _, root = console
    root.setLevel(logging.DEBUG)
    last_resort = Lines()
    monkeypatch.setattr(logging, "lastResort", last_resort)
    jobs = logging.getLogger(JOB_LOGGER)
    jobs.propagate = False  # nothing above fss.jobs, which has no handler of its own
    try:
        sent: list[Event] = []
        ctx = _context(sent)
        ctx.log.warning("w")
        ctx.log.error("e")
    finally:
        jobs.propagate = True
    assert [e.content for e in sent if isinstance(e, TaskLogged)] == ["w", "e"]
    assert last_resort.lines == []
