"""`fss completion bash|zsh|fish`: the shell script that completes fss commands and options."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

PROG_NAME = "fss"
# click's convention: _<PROG>_COMPLETE; `fss` answers completion requests through it.
COMPLETE_VAR = "_FSS_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


def completion_script(root: click.Command, shell: str) -> str:
    complete_class = get_completion_class(shell)
    if complete_class is None:  # click.Choice has refused it already; kept for mypy
        raise click.BadParameter(f"no completion for {shell!r}", param_hint="shell")
    return complete_class(root, {}, PROG_NAME, COMPLETE_VAR).source()


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion_command(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash:  eval "$(fss completion bash)"        (in ~/.bashrc)
    zsh:   eval "$(fss completion zsh)"         (in ~/.zshrc)
    fish:  fss completion fish > ~/.config/fish/completions/fss.fish
    """
    click.echo(completion_script(ctx.find_root().command, shell))
