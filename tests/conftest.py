"""Shared pytest fixtures. The server fixtures live in ``tests/servers.py`` (see DEVELOPERS.md)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    schema_templates,
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
    "schema_templates",
    "sqlite_url",
]


# Long tests first. pytest-xdist hands tests out in collection order, and the end-to-end and
# browser tests (real processes; 5-35 s each) sat in the middle and near the end, where the
# last of them kept one worker busy while the other idled.
_FIRST_FILES = ("tests/test_install.py",)  # builds a venv (~20 s) without FSS_TEST_RUNTIME_PYTHON
# The files whose tests stay on one worker under `--dist loadgroup` (scripts/test): a browser
# module's module-scoped `fss dev` and Chromium start once, not on each worker; so do the
# install tests' venv and the plan tests' bulk-loaded tables (test_search_plans' 300,000
# tasks took 23-25 s to load, on each of the three workers that got one of its tests).
_GROUPED_FILES = (
    "tests/web/browser/", "tests/store/test_search_plans.py",
    "tests/store/test_claim_plans.py", *_FIRST_FILES,
)


def _runs_long(item: pytest.Item) -> bool:
    return (
        item.get_closest_marker("e2e") is not None
        or "browser" in item.path.parts
        or item.nodeid.startswith(_FIRST_FILES)
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not _runs_long(item))  # stable: the order within stays


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, absent under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` with the groups named here, by file. xdist groups tests by an
    "@<group>" its workers append to the node ids of `xdist_group` tests, which pytest 9 no
    longer shows (xdist 3.8 sets Item._nodeid, pytest 9 reads Item._id): every test was a
    group of its own. Groups go out first (the largest first), then the other tests one at
    a time in collection order, each worker keeping two or three in hand."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ByFile(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            if path.startswith(_GROUPED_FILES):
                return path
            return str(super()._split_scope(nodeid))

    return ByFile(config, log)


@pytest.fixture(scope="session", autouse=True)
def _schema_templates_for_helpers(schema_templates: Any) -> None:
    """servers.migrated_copy works in helpers that take no fixtures (nothing is built until
    a test asks for a copy)."""


@pytest.fixture(autouse=True)
def _root_logger_level() -> Iterator[None]:
    """Each test leaves the root logger's level as it found it. Celery's in-process test worker
    (celery.contrib.testing.worker.start_worker in tests/scheduler/test_publish.py) sets it
    to ERROR for good, and a later test in the same xdist worker saw no WARNING of a logger
    of its own (tests/test_logsafe.py): whether it failed depended on the test order."""
    level = logging.root.level
    yield
    logging.root.setLevel(level)
