"""Opening the database a command names, with one-line errors for every way it can be wrong."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from fss.cli.context import first_line
from fss.errors import InvalidField
from fss.store.engine import create_engine, normalize_url


class DatabaseFileMissing(InvalidField):
    """A SQLite URL naming a file that does not exist: almost always the wrong database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            "database_url",
            f"no SQLite database at {path}; point at yours with "
            "FSS_DATABASE_URL or --database-url (`fss dev` keeps its tables in fss-dev.db), "
            "or create this one with `fss db upgrade`"
        )


def open_engine(url: str, may_create: bool, pre_ping: bool = True) -> Engine:
    """The engine for `url`, or one line saying why SQLAlchemy cannot use it."""
    try:
        parsed = sa.engine.make_url(normalize_url(url))
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise InvalidField("database_url", f"cannot be parsed ({first_line(exc)})") from None
    try:
        parsed.get_dialect()
        if not may_create:
            require_existing_sqlite_file(parsed)
        return create_engine(url, pre_ping=pre_ping)
    except NoSuchModuleError:
        raise InvalidField(
            "database_url", f"unknown database or driver {parsed.drivername!r}"
        ) from None
    except ImportError as exc:
        raise InvalidField("database_url", f"its driver is not installed ({exc})") from None


def require_existing_sqlite_file(url: sa.engine.URL) -> None:
    if url.get_backend_name() != "sqlite" or url.query.get("uri"):
        return
    database = url.database or ""
    if database in ("", ":memory:"):
        return
    path = Path(database).resolve()
    if not path.exists():
        raise DatabaseFileMissing(path)
