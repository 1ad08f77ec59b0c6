"""Deadlocks and serialization failures: the database gave up one transaction so another
could go on. Retrying it is the answer, not an outage: nothing is unreachable."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

T = TypeVar("T")

# PostgreSQL SQLSTATEs: deadlock_detected, serialization_failure.
PG_RETRYABLE = frozenset({"40P01", "40001"})
# MySQL/MariaDB: ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT.
MYSQL_RETRYABLE = frozenset({1213, 1205})
ATTEMPTS = 6


def is_deadlock(exc: BaseException) -> bool:
    """True for a deadlock or serialization failure (the transaction may simply be retried)."""
    if not isinstance(exc, DBAPIError):
        return False
    error = exc.orig
    if getattr(error, "pgcode", None) in PG_RETRYABLE:
        return True
    if error is not None and type(error).__module__.startswith(("pymysql", "MySQLdb")):
        code = error.args[0] if error.args else None
        return code in MYSQL_RETRYABLE
    return False


def deadlock_pause(attempt: int) -> float:
    """A short random pause before retry `attempt` (1, 2, ...): the two losers of a
    deadlock must not meet again in step."""
    return random.uniform(0.005, 0.03) * attempt


def in_transaction_retrying(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run `work` in a transaction of its own, again (from the start) after a deadlock or a
    serialization failure, up to ATTEMPTS times; any other error propagates at once."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                return work(conn)
        except DBAPIError as exc:
            if attempt == ATTEMPTS or not is_deadlock(exc):
                raise
            time.sleep(deadlock_pause(attempt))
    raise AssertionError("unreachable")
