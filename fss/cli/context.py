"""Shared CLI options, parameter types and the lazily connected context object."""

from __future__ import annotations

import functools
import getpass
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from fss.config import Settings
from fss.domain.clock import Clock, SystemClock
from fss.errors import InvalidField

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from fss.store.audit import Actor

F = TypeVar("F", bound=Callable[..., Any])

MAX_ID = 2**63 - 1  # BIGINT on every backend
NEGATIVE_NUMBER = re.compile(r"^-\d+$")


@dataclass
class CliContext:
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    # Only `fss db upgrade` (and `fss dev`) may create a SQLite file that is not there yet.
    may_create_database: bool = False
    # False for `fss scheduler`: see fss.store.engine.create_engine.
    pre_ping: bool = True
    _engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            # Imported here: `fss worker` never opens the database, and SQLAlchemy is ~24 MB.
            from fss.cli.database import open_engine

            self._engine = open_engine(
                self.settings.database_url, self.may_create_database, pre_ping=self.pre_ping
            )
        return self._engine

    @property
    def actor(self) -> Actor:
        """Who the audit trail records for this command's changes: the OS user, from this
        host (no login name, as in a container without a passwd entry: "unknown")."""
        from fss.store.audit import Actor

        return Actor(os_user(), "cli", socket.gethostname())

    def explain(self, exc: Exception) -> Exception | None:
        """A one-line error for a database failure whose cause the URL tells (the database
        is not on its server), None otherwise."""
        if self._engine is None:
            return None
        from fss.cli.database import missing_database

        return missing_database(exc, self._engine.url)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return "unknown"


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class IdType(click.ParamType):  # type: ignore[type-arg]
    """A row id: a whole number from 1 to 2^63-1 (BIGINT), refused as InvalidField otherwise."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        field_name = param.name if param is not None and param.name else "id"
        try:
            number = int(str(value).strip())
        except ValueError:
            raise InvalidField(field_name, f"{value!r} is not an id (a whole number)") from None
        if not 1 <= number <= MAX_ID:
            raise InvalidField(field_name, f"{value} is not an id: ids go from 1 to {MAX_ID}")
        return number


ID = IdType()


class IdCommand(click.Command):
    """A command taking an id argument: `-5` there is a (bad) id, not an unknown option."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        argument = self._id_argument()
        if argument is not None:
            for token in self._positional_negative_numbers(ctx, args):
                ID.convert(token, argument, ctx)
        return super().parse_args(ctx, args)

    def _id_argument(self) -> click.Argument | None:
        for param in self.params:
            if isinstance(param, click.Argument) and isinstance(param.type, IdType):
                return param
        return None

    def _positional_negative_numbers(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Tokens like `-5` that are neither an option nor the value of the option before."""
        takes_value = {
            name
            for param in self.get_params(ctx)
            if isinstance(param, click.Option) and not param.is_flag and not param.count
            for name in param.opts
        }
        found = []
        previous = ""
        for token in args:
            if token == "--":
                break
            if NEGATIVE_NUMBER.match(token) and previous not in takes_value:
                found.append(token)
            previous = token
        return found


def connection_options(function: F) -> F:
    """--database-url / --broker-url on any command, read from FSS_* when not given."""
    function = click.option(
        "--broker-url",
        envvar="FSS_BROKER_URL",
        help="Celery broker URL [env FSS_BROKER_URL; default redis://127.0.0.1:6379/0]",
    )(function)
    function = click.option(
        "--database-url",
        envvar="FSS_DATABASE_URL",
        help="SQLAlchemy URL, e.g. postgresql://user@host/fss [env FSS_DATABASE_URL; "
        "default sqlite:///fss.db]",
    )(function)
    return function


def pass_cli(function: F) -> F:
    """Build the CliContext from the connection options and hand it to the command."""

    @connection_options
    @click.pass_context  # type: ignore[arg-type]
    @functools.wraps(function)
    def wrapper(
        ctx: click.Context, database_url: str | None, broker_url: str | None, **kwargs: Any
    ) -> Any:
        settings = Settings.from_env(database_url=database_url, broker_url=broker_url)
        cli = CliContext(settings)
        ctx.call_on_close(cli.close)
        try:
            return function(cli, **kwargs)
        except Exception as exc:
            explained = cli.explain(exc)
            if explained is None:
                raise
            raise explained from exc

    return wrapper  # type: ignore[return-value]
