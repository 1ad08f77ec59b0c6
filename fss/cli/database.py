"""Opening the database a command names, with one-line errors for every way it can be wrong."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

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
        hint = "; install it with `pip install 'fss[mysql]'`" if parsed.get_backend_name() in (
            "mysql", "mariadb") else ""
        raise InvalidField("database_url", f"its driver is not installed ({exc}){hint}") from None


def require_existing_sqlite_file(url: sa.engine.URL) -> None:
    if url.get_backend_name() != "sqlite" or url.query.get("uri"):
        return
    database = url.database or ""
    if database in ("", ":memory:"):
        return
    path = Path(database).resolve()
    if not path.exists():
        raise DatabaseFileMissing(path)


# PostgreSQL's "FATAL:  database "x" does not exist" (no SQLSTATE reaches the client at
# connect time); MySQL/MariaDB's error 1049 "Unknown database 'x'".
PG_MISSING_DATABASE = re.compile(r'database "(?P<name>.*)" does not exist')
MYSQL_UNKNOWN_DATABASE = 1049


class DatabaseMissing(InvalidField):
    """The server answers but the database the URL names is not there. `fss db upgrade`
    creates tables, not databases: the message gives the command that creates it."""

    def __init__(self, url: sa.engine.URL) -> None:
        self.url = url
        super().__init__(
            "database_url",
            f"database {url.database!r} does not exist on {url.host or 'localhost'}"
            f":{url.port or default_port(url)}; create it with `{create_database_command(url)}`, "
            "then run `fss db upgrade`",
        )


def default_port(url: sa.engine.URL) -> int:
    return 5432 if url.get_backend_name() == "postgresql" else 3306


def create_database_command(url: sa.engine.URL) -> str:
    """The shell command that creates the database `url` names, as its own login."""
    host = shlex.quote(url.host or "localhost")
    port = url.port or default_port(url)
    user = shlex.quote(url.username or "")
    name = url.database or ""
    if url.get_backend_name() == "postgresql":
        login = f" -U {user}" if url.username else ""
        return f"createdb -h {host} -p {port}{login} {shlex.quote(name)}"
    login = f" -u {user}" if url.username else ""
    password = " -p" if url.password else ""
    create = f"CREATE DATABASE `{name.replace('`', '``')}` CHARACTER SET utf8mb4"
    return f"mysql -h {host} -P {port}{login}{password} -e {shlex.quote(create)}"


def missing_database(exc: BaseException, url: sa.engine.URL) -> DatabaseMissing | None:
    """A DatabaseMissing when `exc` says the database `url` names is not on its server."""
    if not isinstance(exc, DBAPIError) or url.get_backend_name() not in ("postgresql", "mysql"):
        return None
    orig = exc.orig
    if url.get_backend_name() == "mysql":
        code = orig.args[0] if orig is not None and orig.args else None
        return DatabaseMissing(url) if code == MYSQL_UNKNOWN_DATABASE else None
    match = PG_MISSING_DATABASE.search(str(orig))
    return DatabaseMissing(url) if match and match.group("name") == url.database else None
