"""Fixtures of the CLI tests: `fss` runs the CLI in-process on the test's database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cli_support import Fss, invoke
from servers import SchemaTemplates
from sqlalchemy.engine import Engine

from fss.store.engine import create_engine


@pytest.fixture
def fss(database_url: str, schema_templates: SchemaTemplates) -> Fss:
    """`fss ARGS --database-url <this test's database>`, schema upgraded, asserting success.

    The schema is a copy of the session's migrated template (tests/servers.py), then
    `fss db upgrade` runs on it as before (at head: it only reports the installation)."""
    schema_templates.fill(database_url)
    invoke(database_url, "db", "upgrade")
    return lambda *args: invoke(database_url, *args)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = create_engine(database_url)
    try:
        yield eng
    finally:
        eng.dispose()
