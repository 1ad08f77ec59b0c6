"""Fixtures shared by the end-to-end tests: a workdir with the e2e jobs, a fresh PostgreSQL
database and Redis db, migrated, whose fss processes are killed afterwards."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fss_processes import FssProcesses, dispose_engines
from servers import SchemaTemplates

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _query_connections_closed() -> Iterator[None]:
    """query()'s pooled connections end with the test (fss_env closes them before its
    database is dropped; this catches the databases of other fixtures)."""
    yield
    dispose_engines()


@pytest.fixture
def fss_env(
    tmp_path: Path,
    pg_database_url: str,
    fresh_redis_url: Callable[[], str],
    schema_templates: SchemaTemplates,
) -> Iterator[FssProcesses]:
    shutil.copy(HERE / "e2e_jobs.py", tmp_path / "e2e_jobs.py")
    # the schema: a copy of the session's migrated template; migrate() then finds it at head
    schema_templates.fill(pg_database_url)
    env = FssProcesses(tmp_path, pg_database_url, fresh_redis_url())
    env.migrate()
    yield env
    env.kill_all()
    dispose_engines()
