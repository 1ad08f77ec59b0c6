"""Shared pytest fixtures. The server fixtures live in ``tests/servers.py`` (see DEVELOPERS.md)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# ``servers`` sits beside this file; make it importable under any --import-mode.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from servers import (  # noqa: E402
    _pg_reusable_database,
    database_backend,
    database_url,
    fresh_redis_url,
    mysql_database_url,
    mysql_server,
    mysql_url,
    pg_database_url,
    postgres_server,
    postgres_url,
    redis_pool,
    redis_reservation,
    redis_url,
    sqlite_url,
)

__all__ = [
    "_pg_reusable_database",
    "database_backend",
    "database_url",
    "fresh_redis_url",
    "mysql_database_url",
    "mysql_server",
    "mysql_url",
    "pg_database_url",
    "postgres_server",
    "postgres_url",
    "redis_pool",
    "redis_reservation",
    "redis_url",
    "sqlite_url",
]


# Long tests first. pytest-xdist hands tests out in collection order, and the end-to-end and
# browser tests (real processes; 5-35 s each) sat in the middle and near the end, where the
# last of them kept one worker busy while the other idled. Under `--dist loadgroup`
# (scripts/test) each browser module is one group: its module-scoped `fss dev` and Chromium
# start on one worker, not on both.
_FIRST_FILES = ("tests/test_install.py",)  # builds a venv (~20 s) without FSS_TEST_RUNTIME_PYTHON


def _runs_long(item: pytest.Item) -> bool:
    return (
        item.get_closest_marker("e2e") is not None
        or "browser" in item.path.parts
        or item.nodeid.startswith(_FIRST_FILES)
    )


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.pluginmanager.hasplugin("xdist"):  # which registers the mark
        for item in items:
            if "browser" in item.path.parts:
                item.add_marker(pytest.mark.xdist_group(f"browser-{item.path.stem}"))
    items.sort(key=lambda item: not _runs_long(item))  # stable: the order within stays


@pytest.fixture(autouse=True)
def _root_logger_level() -> Iterator[None]:
    """Each test leaves the root logger's level as it found it. Celery's in-process test worker
    (celery.contrib.testing.worker.start_worker in tests/scheduler/test_publish.py) sets it
    to ERROR for good, and a later test in the same xdist worker saw no WARNING of a logger
    of its own (tests/test_logsafe.py): whether it failed depended on the test order."""
    level = logging.root.level
    yield
    logging.root.setLevel(level)
