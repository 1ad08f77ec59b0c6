"""Shared pytest fixtures. The server fixtures live in ``tests/servers.py`` (see DEVELOPERS.md)."""

from __future__ import annotations

import sys
from pathlib import Path

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
