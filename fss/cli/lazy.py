"""A click group whose subcommands are imported when they are run, not when `fss` starts.

`fss scheduler` then loads the scheduler and not the web stack, the gRPC bridge or alembic
(1,110 modules and ~97 MB for every command before; see docs/performance.md "Idle memory").
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence

import click


class LazyGroup(click.Group):
    """`lazy_commands` maps a command name to "module:attribute" plus modules to import with it
    (commands that add subcommands to it, like `fss group apply`)."""

    def __init__(
        self,
        *args: object,
        lazy_commands: Mapping[str, Sequence[str]] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands and cmd_name not in self.commands:
            self.add_command(self._load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def _load(self, cmd_name: str) -> click.Command:
        target, *companions = self.lazy_commands[cmd_name]
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        for companion in companions:
            importlib.import_module(companion)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command
