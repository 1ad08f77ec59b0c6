"""`fss alert ...`: alerts and their targets (`fss alert target add|list|test|remove|apply`).

Secrets need not pass through the shell history: `--secret-env VAR` and `--password-env VAR`
read them from the environment, and an apply file writes `${VAR}` in place of a secret.
Nothing here prints a secret: targets are shown with their settings masked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from fss.cli.context import CliContext, pass_cli
from fss.cli.output import emit_json, emit_record, emit_table
from fss.domain.alert_targets import (
    EMAIL,
    KINDS,
    SECURITY_PORTS,
    TargetSpec,
    target_from_document,
)
from fss.domain.alerts import parse_rules
from fss.errors import InvalidField

DEFAULT_TEST_TIMEOUT_S = 10.0
FILE_SECTION = "alert_targets"


@click.group("alert")
def alert_cli() -> None:
    """Alerts (failed runs, late groups, lost workers) and the targets they go to."""


@alert_cli.group("target")
def target_cli() -> None:
    """Where alerts go: webhooks, Slack, DingTalk, WeCom, Feishu/Lark robots, email."""


def _env_secret(value: str | None, env_name: str | None, field_name: str) -> str | None:
    """The secret given directly, or read from the environment variable named."""
    if env_name is None:
        return value
    if value is not None:
        raise InvalidField(field_name, f"give --{field_name} or --{field_name}-env, not both")
    found = os.environ.get(env_name)
    if not found:
        raise InvalidField(f"{field_name}-env", f"environment variable {env_name} is not set")
    return found


def _parse_headers(values: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, colon, text = value.partition(":")
        if not colon or not name.strip():
            raise InvalidField("header", "write it as 'Name: value'")
        headers[name.strip()] = text.strip()
    return headers


def _rules(text: str | None) -> frozenset[str] | None:
    """None (every rule) unless a list is given."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    return parse_rules(text, "rules")


@target_cli.command("add")
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(KINDS), help="The receiver's kind.")
@click.option("--url", help="Webhook / robot URL (http kinds). The robots' token sits in it.")
@click.option(
    "--secret",
    help="Signing secret (webhook HMAC, DingTalk SEC..., Feishu); see --secret-env.",
)
@click.option(
    "--secret-env", metavar="VAR", help="Read the signing secret from env VAR (not history)."
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="Extra header of a webhook (repeatable); values are never shown.",
)
@click.option("--host", help="SMTP server (email).")
@click.option("--port", type=int, help="SMTP port [default: 587 starttls, 465 tls, 25 none].")
@click.option("--security", type=click.Choice(list(SECURITY_PORTS)), help="[default: starttls]")
@click.option("--user", help="SMTP login user (email).")
@click.option("--password", help="SMTP password; see --password-env.")
@click.option(
    "--password-env", metavar="VAR", help="Read the SMTP password from env VAR (not history)."
)
@click.option("--from", "sender", help="Sender address (email).")
@click.option("--to", "recipients", help="Recipients, comma-separated (email).")
@click.option("--rules", help="Comma-separated rules this target is told about [default: all].")
@click.option(
    "--default/--no-default",
    "is_default",
    default=True,
    show_default=True,
    help="Used for every group that names no targets of its own.",
)
@click.option("--rate-per-min", type=int, default=20, show_default=True)
@pass_cli
def add_target_command(
    cli: CliContext,
    name: str,
    kind: str,
    url: str | None,
    secret: str | None,
    secret_env: str | None,
    headers: tuple[str, ...],
    host: str | None,
    port: int | None,
    security: str | None,
    user: str | None,
    password: str | None,
    password_env: str | None,
    sender: str | None,
    recipients: str | None,
    rules: str | None,
    is_default: bool,
    rate_per_min: int,
) -> None:
    """Add a target NAME (fails if one of that name exists; `apply` overwrites)."""
    secret = _env_secret(secret, secret_env, "secret")
    password = _env_secret(password, password_env, "password")
    config: dict[str, Any]
    given: dict[str, Any]
    if kind == EMAIL:
        given = {"url": url, "secret": secret, "header": headers or None}
        config = {
            "host": host,
            "port": port,
            "security": security,
            "user": user,
            "password": password,
            "from": sender,
            "to": recipients,
        }
    else:
        given = {
            "host": host,
            "port": port,
            "security": security,
            "user": user,
            "password": password,
            "from": sender,
            "to": recipients,
        }
        config = {"url": url, "secret": secret}
        if headers:
            config["headers"] = _parse_headers(headers)
    for option, value in given.items():
        if value is not None:
            raise InvalidField(option, f"is no setting of a {kind} target")
    spec = TargetSpec(
        name=name,
        kind=kind,
        config={k: v for k, v in config.items() if v is not None},
        is_default=is_default,
        rules=_rules(rules),
        rate_per_min=rate_per_min,
    ).validated()
    from fss.store.alert_targets import add_target

    row = add_target(cli.engine, spec, cli.clock.now(), cli.actor)
    click.echo(f"added alert target {row.name} ({row.kind})")


@target_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@pass_cli
def list_targets_command(cli: CliContext, as_json: bool) -> None:
    """Every target with its settings, secrets masked."""
    from fss.store.alert_targets import list_targets

    with cli.engine.connect() as conn:
        rows = list_targets(conn)
    if as_json:
        emit_json([row.public() for row in rows])
        return
    emit_table(
        ["name", "kind", "default", "rules", "rate_per_min", "config"],
        [
            [
                r.name,
                r.kind,
                r.is_default,
                "all" if r.rules is None else ",".join(sorted(r.rules)) or "none",
                r.rate_per_min,
                _config_cell(r.spec.public_config()),
            ]
            for r in rows
        ],
    )


def _config_cell(config: dict[str, Any]) -> str:
    parts = []
    for key, value in config.items():
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={value}")
    return " ".join(parts)


@target_cli.command("test")
@click.argument("name")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0.1, 300),
    default=DEFAULT_TEST_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the receiver.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@pass_cli
def test_target_command(cli: CliContext, name: str, timeout_s: float, as_json: bool) -> None:
    """Send a test message to NAME now and print the receiver's answer. Exit 1 if it failed."""
    from fss.alerting.deliver import send_test
    from fss.store.alert_targets import get_target

    with cli.engine.connect() as conn:
        row = get_target(conn, name)
    result = send_test(row.spec, cli.clock.now(), timeout_s)
    fields: list[tuple[str, Any]] = [
        ("target", row.name),
        ("kind", row.kind),
        ("ok", result.ok),
        ("status", result.status_code),
        ("duration_ms", result.duration_ms),
        ("answer", result.answer or None),
        ("error", result.error),
    ]
    if as_json:
        emit_json(dict(fields))
    else:
        emit_record(fields)
    if not result.ok:
        raise SystemExit(1)


@target_cli.command("remove")
@click.argument("name")
@pass_cli
def remove_target_command(cli: CliContext, name: str) -> None:
    """Remove the target NAME (groups naming it no longer send to it)."""
    from fss.store.alert_targets import remove_target

    remove_target(cli.engine, name, cli.clock.now(), cli.actor)
    click.echo(f"removed alert target {name}")


@target_cli.command("apply")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check the file; write nothing.")
@pass_cli
def apply_targets_command(cli: CliContext, path: str, dry_run: bool) -> None:
    """Create or overwrite the targets of FILE's `alert_targets:` list, all in one
    transaction; nothing is written when any entry is invalid.

    An entry: {name, kind, default, rules, rate_per_min} plus the kind's settings (url,
    secret, headers; host, port, security, user, password, from, to). `${VAR}` in secret,
    password, user, url or header values is read from the environment.
    """
    specs = read_target_file(path, dict(os.environ))
    if dry_run:
        click.echo(f"dry run, nothing written: {len(specs)} alert targets are valid")
        return
    from fss.store.alert_targets import replace_target_in

    now = cli.clock.now()
    with cli.engine.begin() as conn:
        for spec in specs:
            replace_target_in(conn, spec, now, cli.actor)
    click.echo(f"applied {len(specs)} alert targets")


def read_target_file(path: str, env: dict[str, str]) -> list[TargetSpec]:
    """The file's targets, validated; InvalidField naming the entry and field otherwise."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InvalidField("file", f"cannot read {path!r} ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise InvalidField("file", f"{path!r} is not UTF-8 ({exc.reason})") from None
    document = _load(path, text)
    if not isinstance(document, dict) or FILE_SECTION not in document:
        raise InvalidField(
            FILE_SECTION, "missing: the file needs a top-level `alert_targets:` list"
        )
    entries = document[FILE_SECTION]
    if not isinstance(entries, list):
        raise InvalidField(FILE_SECTION, "must be a list")
    specs: list[TargetSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{FILE_SECTION}[{index}]"
        spec = target_from_document(entry, where, env)
        if spec.name in seen:
            raise InvalidField(f"{where}.name", f"{spec.name!r} is listed twice")
        seen.add(spec.name)
        specs.append(spec)
    return specs


def _load(path: str, text: str) -> Any:
    if path.lower().endswith(".json"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise InvalidField("file", f"{path!r} is not JSON ({exc})") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        # The problem and its line, not the snippet YAML quotes: that line may hold a secret.
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else "?"
        raise InvalidField("file", f"{path!r} line {line}: {exc.problem}") from None
    except yaml.YAMLError:
        raise InvalidField("file", f"{path!r} is not YAML") from None
