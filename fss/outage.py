"""One log line when a dependency goes away and one when it is back, not one per retry."""

from __future__ import annotations

import logging
import time


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class OutageLog:
    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._logger = logger
        self._what = what
        self._down_since: float | None = None

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
