"""Shared CLI options and the lazily connected context object every command receives."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click
from sqlalchemy.engine import Engine

from fss.config import Settings
from fss.domain.clock import Clock, SystemClock
from fss.store.engine import create_engine

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliContext:
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    _engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.settings.database_url)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


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
        return function(cli, **kwargs)

    return wrapper  # type: ignore[return-value]
