"""The store tests' engine: one migrated database per backend and module, emptied per test.

A module that needs other backends or its own database defines these fixtures itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine
from store_helpers import BACKENDS, emptied, module_engine


@pytest.fixture(scope="module", params=BACKENDS)
def store_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    yield from module_engine(request, tmp_path_factory)


@pytest.fixture
def engine(store_engine: Engine) -> Engine:
    return emptied(store_engine)


@pytest.fixture(scope="module", params=["postgres"])
def pg_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A migrated PostgreSQL database of the module's own, for tests of PostgreSQL's plans."""
    yield from module_engine(request, tmp_path_factory)
