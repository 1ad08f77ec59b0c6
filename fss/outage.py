"""How a long-running loop reports what goes wrong, without flooding the log.

A dependency that goes away (database, broker) is an outage: one line when it goes, one when
it is back. Anything else is a bug or bad data: logged at ERROR with its traceback, at most
once per minute for the same error, and the loop goes on. A missing package is neither: one
line naming the module that needs it and the package.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType

ERROR_REPEAT_S = 60.0

# Connection errors of the libraries fss talks through, by qualified name so this module
# imports none of them (workers need not have a database driver).
_CONNECTION_ERRORS = frozenset(
    {
        "kombu.exceptions.OperationalError",
        "amqp.exceptions.ConnectionError",
        "redis.exceptions.ConnectionError",
        "redis.exceptions.TimeoutError",
        "sqlalchemy.exc.OperationalError",
        "sqlalchemy.exc.DisconnectionError",
        "sqlalchemy.exc.TimeoutError",
    }
)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_connection_error(exc: BaseException) -> bool:
    """True when `exc` (or what it was raised from) says a server could not be reached."""
    seen: BaseException | None = exc
    for _ in range(5):  # a short chain: libraries wrap once or twice
        if seen is None:
            return False
        if _is_connection_error_itself(seen):
            return True
        seen = seen.__cause__
    return False


def _is_connection_error_itself(exc: BaseException) -> bool:
    if isinstance(exc, OSError):  # ConnectionError, TimeoutError, socket errors
        return True
    if getattr(exc, "connection_invalidated", False):  # SQLAlchemy: the DBAPI lost it
        return True
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}
    return not names.isdisjoint(_CONNECTION_ERRORS)


def describe_import_error(exc: ImportError) -> str:
    """One line: which module could not be imported and which package it misses."""
    missing = exc.name or first_line(exc)
    package = missing.split(".")[0]  # what pip installs: packaging, not packaging.version
    importer = _importing_module(exc.__traceback__, missing)
    if importer is None or importer.split(".")[0] == package:
        return f"cannot import {missing!r}: {first_line(exc)} (is the package installed?)"
    return (
        f"module {importer} cannot be imported: it needs package {package!r}, which is not "
        f"installed ({first_line(exc)})"
    )


def _importing_module(tb: TracebackType | None, missing: str) -> str | None:
    """The innermost module whose top level was running when the import failed."""
    importer = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "<module>":
            name = frame.f_globals.get("__name__")
            if isinstance(name, str) and name != missing:
                importer = name
        tb = tb.tb_next
    return importer


class OutageLog:
    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._logger = logger
        self._what = what
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, exc: BaseException, consequence: str = "retrying with backoff") -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._logger.warning(
                "%s unreachable (%s); %s", self._what, first_line(exc), consequence
            )
        else:
            self._logger.debug("%s still unreachable: %s", self._what, first_line(exc))

    def recovered(self) -> None:
        if self._down_since is not None:
            down_s = time.monotonic() - self._down_since
            self._down_since = None
            self._logger.warning("%s is back after %.1f s", self._what, down_s)


class ErrorLog:
    """ERROR with traceback for an unexpected exception, the same one at most once per window."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        repeat_s: float = ERROR_REPEAT_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._what = what
        self._repeat_s = repeat_s
        self._monotonic = monotonic
        # error signature -> (when it was last logged, how often it recurred since)
        self._seen: dict[str, tuple[float, int]] = {}

    def failed(self, exc: BaseException, consequence: str = "it goes on") -> None:
        now = self._monotonic()
        if isinstance(exc, ImportError):
            key, line, exc_info = "import", describe_import_error(exc), False
        else:
            key = f"{type(exc).__qualname__}: {first_line(exc)}"
            line, exc_info = key, True
        logged_at, repeats = self._seen.get(key, (None, 0))
        if logged_at is not None and now - logged_at < self._repeat_s:
            self._seen[key] = (logged_at, repeats + 1)
            return
        self._seen[key] = (now, 0)
        again = f" (and {repeats} more times since)" if repeats else ""
        self._logger.error(
            "%s failed: %s%s; %s",
            self._what,
            line,
            again,
            consequence,
            exc_info=exc if exc_info else None,
        )


class LoopErrors:
    """One place a loop hands every exception to: outages to OutageLog, the rest to ErrorLog."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        dependency: str,
        repeat_s: float = ERROR_REPEAT_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outage = OutageLog(logger, f"{dependency} ({what})")
        self.errors = ErrorLog(logger, what, repeat_s, monotonic)

    def failed(self, exc: BaseException, consequence: str) -> bool:
        """Log `exc`; True if it was a connection error (an outage)."""
        if is_connection_error(exc):
            self.outage.failed(exc, consequence)
            return True
        self.errors.failed(exc, consequence)
        return False

    def succeeded(self) -> None:
        self.outage.recovered()
