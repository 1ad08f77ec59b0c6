"""`fss group ...`: define and manage task groups."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from typing import Any, BinaryIO

import click

from fss.cli.context import ID, CliContext, IdCommand, pass_cli
from fss.cli.output import emit_json, emit_record, emit_table
from fss.domain.clock import parse_time
from fss.domain.group_spec import (
    MAX_DATA_BYTES,
    OVERLAP_POLICIES,
    POLICY_DEFAULTS,
    ROUTES,
    GroupSpec,
    parse_data,
    parse_duration,
)
from fss.errors import InvalidField
from fss.store import backfills
from fss.store import groups as store
from fss.store.backfills import BackfillRow
from fss.store.rows import GroupRow


@click.group("group")
def group_cli() -> None:
    """Task groups: what runs, and when."""


def parse_start_at(value: str | None) -> datetime | None:
    return None if value is None else parse_time("start_at", value)


# Read this much at most: compact data is at most 64 KiB, a pretty-printed file a few times
# that; a larger file is refused without being read into memory.
MAX_DATA_FILE_BYTES = 16 * MAX_DATA_BYTES


def read_data_option(value: str) -> dict[str, Any]:
    """--data: the JSON itself, `@path` for the content of a file, `-` for stdin."""
    if value == "-":
        return parse_data_from("stdin", sys.stdin.buffer)
    if value.startswith("@"):
        path = value[1:]
        if not path:
            raise InvalidField("data", "give a file name after @, e.g. --data @data.json")
        try:
            with open(path, "rb") as stream:
                return parse_data_from(repr(path), stream)
        except OSError as exc:
            raise InvalidField(
                "data", f"cannot read {path!r} ({exc.strerror or exc})"
            ) from None
    return parse_data(value)


def parse_data_from(source: str, stream: BinaryIO) -> dict[str, Any]:
    raw = stream.read(MAX_DATA_FILE_BYTES + 1)
    if len(raw) > MAX_DATA_FILE_BYTES:
        raise InvalidField(
            "data", f"{source} is larger than {MAX_DATA_FILE_BYTES // 1024} KiB "
            f"(data may be at most {MAX_DATA_BYTES // 1024} KiB)"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidField("data", f"{source} is not UTF-8 ({exc.reason})") from None
    try:
        return parse_data(text)
    except InvalidField as exc:
        raise InvalidField("data", f"{source}: {exc.reason}") from None


def schedule_options(function: Any) -> Any:
    for option in reversed(
        [
            click.option("--interval-ms", type=int, help="Run every N milliseconds (fixed rate)."),
            click.option(
                "--cron",
                help="Cron: 5 fields (minute first) or 6 fields (seconds first, "
                "'*/2 * * * * *' = every 2 s); Quartz '?' accepted.",
            ),
            click.option(
                "--job-sets-next",
                is_flag=True,
                default=None,
                help="No schedule: the job sets its next time with ctx.set_next_at "
                "(30 s after it finishes otherwise).",
            ),
            click.option("--time-zone", help="IANA zone for cron, e.g. Asia/Shanghai (UTC)."),
            click.option(
                "--data",
                "data_json",
                help="JSON object handed to the job as ctx.data, at most 64 KiB as compact "
                "JSON: the JSON itself, @FILE to read it from a file, or - for stdin.",
            ),
            click.option(
                "--start-at", help="ISO 8601 time of the first run (UTC if no offset; now)."
            ),
            click.option(
                "--timeout-s",
                type=int,
                help="Fail a run that reports nothing (progress, log) for this long "
                "[default max(2.5 x average run time, FSS_HUNG_TIMEOUT_S=300)].",
            ),
            click.option(
                "--misfire",
                type=click.Choice(["run-once", "skip"]),
                help="After an outage: run a missed run once, then on schedule (run-once, "
                "the default), or skip it and wait for the next slot (skip).",
            ),
        ]
    ):
        function = option(function)
    return function


class _Cleared:
    """`none` given to an optional number: the edit clears the field."""


CLEARED = _Cleared()


class OptionalInt(click.ParamType):  # type: ignore[type-arg]
    """A whole number, or `none` to clear the setting (edit)."""

    name = "N|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | _Cleared):
            return value
        if str(value).strip().lower() == "none":
            return CLEARED
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is not a whole number or none", param, ctx)


class OptionalDuration(click.ParamType):  # type: ignore[type-arg]
    """Seconds, or a duration like 10m, 2h, 1d, 1h30m; `none` clears the setting (edit)."""

    name = "DURATION|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | _Cleared):
            return value
        if str(value).strip().lower() == "none":
            return CLEARED
        return parse_duration(param.name if param and param.name else "duration", str(value))


def name_list(text: str) -> list[str]:
    """`a,b` as ["a", "b"] (spaces around names dropped)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def alert_rules_option(text: str) -> tuple[str, ...] | None:
    """--alert-rules: `default` (every rule on globally), `none` (no alerts) or names."""
    raw = text.strip().lower()
    if raw == "default":
        return None
    if raw == "none":
        return ()
    names = name_list(text)
    if not names:
        raise InvalidField("alert_rules", "give rule names, none or default")
    return tuple(names)


def group_ref(value: str) -> str | int:
    """--on-success KEY_OR_ID: digits are a group id, anything else a group key."""
    text = value.strip()
    return int(text) if text.isascii() and text.isdigit() else value


def policy_options(function: Any) -> Any:
    """The run-policy options of add and edit (README "Run policies")."""
    for option in reversed(
        [
            click.option("--retries", type=int,
                         help="Run a failed attempt again up to N times [0, at most 100]."),
            click.option("--retry-delay-ms", type=int,
                         help="Delay before the first retry [1000]."),
            click.option("--retry-backoff", type=float,
                         help="Each further retry waits this many times longer, 1..10 [2]."),
            click.option("--retry-delay-max-ms", type=OptionalInt(),
                         help="Cap of the retry delay (none: no cap) [none]."),
            click.option("--retry-jitter/--no-retry-jitter", default=None,
                         help="Wait a random 0..delay instead of the delay [on]."),
            click.option("--max-run-s", type=OptionalInt(),
                         help="Stop a run still going after N seconds (none: never) [none]."),
            click.option("--overlap", type=click.Choice(list(OVERLAP_POLICIES)),
                         help="A slot that comes while a run goes on: skip it [skip], run it "
                         "right after (buffer_one), or stop the run and start (replace)."),
            click.option("--route", type=click.Choice(list(ROUTES)),
                         help="Which client runs it [round_robin]; broadcast: every client."),
            click.option("--client-tag",
                         help="Only clients started with `fss worker --tag T` ('' clears)."),
            click.option("--on-success", "on_success", multiple=True, metavar="KEY_OR_ID",
                         help="Run this group (key, or id if all digits) when a run ends "
                         "Success; repeatable."),
            click.option("--no-on-success", is_flag=True, default=None,
                         help="Edit: run no group on success."),
            click.option("--jitter-ms", type=int,
                         help="Push each planned start later by 0..N ms, the same on every "
                         "scheduler [0]."),
            click.option("--alert-targets", metavar="NAME,NAME|default",
                         help="Alert targets this group's alerts go to, comma separated "
                         "(default or '': the default targets)."),
            click.option("--alert-rules", metavar="RULE,RULE|none|default",
                         help="Alert rules on for this group (run_failed, time_limit, hung, "
                         "group_late, job_unserved); none: no alerts; default: every rule "
                         "on globally."),
            click.option("--late-after", "late_after_s", type=OptionalDuration(),
                         help="Late (group_late) this long after a planned run without "
                         "success: seconds or 90s, 10m, 2h, 1d (none: one period plus the "
                         "grace) [none]."),
        ]
    ):
        function = option(function)
    return function


def policy_values(options: dict[str, Any]) -> dict[str, Any]:
    """GroupSpec fields from the policy options given (pops them from `options`)."""
    values: dict[str, Any] = {}
    for name in POLICY_OPTIONS:
        value = options.pop(name, None)
        if value is None or value == ():
            continue
        values[name] = None if isinstance(value, _Cleared) else value
    if values.get("client_tag") == "":
        values["client_tag"] = None
    if "on_success" in values:
        values["on_success"] = tuple(group_ref(ref) for ref in values["on_success"])
    if "alert_targets" in values:
        text = values["alert_targets"]
        values["alert_targets"] = () if text.strip().lower() == "default" else tuple(
            name_list(text)
        )
    if "alert_rules" in values:
        values["alert_rules"] = alert_rules_option(values["alert_rules"])
    if options.pop("no_on_success", None):
        if "on_success" in values:
            raise InvalidField("on_success", "give --on-success or --no-on-success, not both")
        values["on_success"] = ()
    return values


POLICY_OPTIONS = (
    "retries", "retry_delay_ms", "retry_backoff", "retry_delay_max_ms", "retry_jitter",
    "max_run_s", "overlap", "route", "client_tag", "on_success", "jitter_ms",
    "alert_targets", "alert_rules", "late_after_s",
)


@group_cli.command("add")
@click.option("--caption", required=True, help="Display name (up to 64 characters).")
@click.option("--job-name", required=True, help="The @job name a worker registers.")
@schedule_options
@policy_options
@click.option("--disabled", is_flag=True, help="Create it disabled (no task until enabled).")
@click.option(
    "--key",
    help="Stable key that makes a groups file (`fss group apply`) own this group.",
)
@pass_cli
def add_group(
    cli: CliContext,
    caption: str,
    job_name: str,
    interval_ms: int | None,
    cron: str | None,
    job_sets_next: bool | None,
    time_zone: str | None,
    data_json: str | None,
    start_at: str | None,
    timeout_s: int | None,
    misfire: str | None,
    disabled: bool,
    key: str | None,
    **policies: Any,
) -> None:
    """Create a task group; prints its id."""
    spec = GroupSpec(
        **policy_values(policies),
        caption=caption,
        job_name=job_name,
        interval_ms=interval_ms,
        cron=cron,
        job_sets_next=bool(job_sets_next),
        time_zone=time_zone,
        data=read_data_option(data_json) if data_json is not None else {},
        start_at=parse_start_at(start_at),
        is_enable=not disabled,
        timeout_s=timeout_s,
        misfire=misfire or "run-once",
    ).validated()
    click.echo(store.add_group(cli.engine, spec, cli.clock.now(), key=key, actor=cli.actor))


@group_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@pass_cli
def list_groups(cli: CliContext, as_json: bool) -> None:
    """All task groups with schedule and stats."""
    with cli.engine.connect() as conn:
        rows = store.list_groups(conn)
    if as_json:
        emit_json([g.to_json() for g in rows])
        return
    emit_table(
        [
            "id",
            "caption",
            "job_name",
            "schedule",
            "is_enable",
            "next_at",
            "run_count",
            "run_speed_avg",
            "task_id",
            "disabled_note",
        ],
        [
            [
                g.id,
                g.caption,
                g.job_name,
                g.schedule.describe(),
                g.is_enable,
                g.next_at,
                g.run_count,
                g.run_speed_avg,
                g.task_id,
                disabled_text(g),
            ]
            for g in rows
        ],
    )


def disabled_text(group: GroupRow) -> str | None:
    """Why a disabled group is off and until when ("-" when neither is known)."""
    if group.is_enable:
        return None
    parts = [group.disabled_note] if group.disabled_note else []
    if group.enable_at is not None:
        parts.append(f"until {group.enable_at.isoformat()}")
    return "; ".join(parts) or None


# Shown by the compact `fss group show` only when not at their default (--json shows all).
QUIET_DEFAULTS = {
    **POLICY_DEFAULTS, "on_success": [], "alert_targets": [], "disabled_note": None,
    "enable_at": None,
}


def show(group: GroupRow, as_json: bool, backfill: BackfillRow | None = None) -> None:
    """The group; with `backfill`, its unfinished backfill too (window, slots done/total)."""
    if as_json:
        extra = {} if backfill is None else {"backfill": backfill.to_json()}
        emit_json(group.to_json() | extra)
        return
    fields = [
        (k, v) for k, v in group.to_json().items()
        if k not in QUIET_DEFAULTS or v != QUIET_DEFAULTS[k]
    ]
    if backfill is not None:
        fields.append(("backfill", backfill.describe()))
    emit_record(fields)


@group_cli.command("show", cls=IdCommand)
@click.argument("group_id", type=ID)
@click.option("--json", "as_json", is_flag=True)
@pass_cli
def show_group(cli: CliContext, group_id: int, as_json: bool) -> None:
    """One group in full."""
    with cli.engine.connect() as conn:
        group = store.get_group(conn, group_id)
        show(group, as_json, backfills.current_backfill(conn, group_id))


@group_cli.command("edit", cls=IdCommand)
@click.argument("group_id", type=ID)
@click.option("--caption")
@click.option("--job-name")
@schedule_options
@policy_options
@click.option(
    "--key",
    help="Give the group a stable key, so a groups file (`fss group apply`) owns it.",
)
@click.option("--json", "as_json", is_flag=True)
@pass_cli
def edit_group(
    cli: CliContext,
    group_id: int,
    as_json: bool,
    data_json: str | None,
    start_at: str | None,
    **fields: Any,
) -> None:
    """Change fields; a new schedule reschedules the waiting task."""
    policies = policy_values(fields)
    changes = {k: v for k, v in fields.items() if v is not None} | policies
    if data_json is not None:
        changes["data"] = read_data_option(data_json)
    if start_at is not None:
        changes["start_at"] = parse_start_at(start_at)
    if not changes:
        raise InvalidField("edit", "nothing to change; give at least one option")
    show(store.edit_group(cli.engine, group_id, changes, cli.clock.now(), actor=cli.actor),
         as_json)


@group_cli.command("enable", cls=IdCommand)
@click.argument("group_id", type=ID)
@pass_cli
def enable_group(cli: CliContext, group_id: int) -> None:
    """Enable; creates the waiting task at the next scheduled time."""
    group = store.set_enabled(cli.engine, group_id, True, cli.clock.now(), actor=cli.actor)
    click.echo(f"group {group.id} enabled; next run at {group.next_at.isoformat()}")


@group_cli.command("disable", cls=IdCommand)
@click.argument("group_id", type=ID)
@click.option("--note", help="Why (up to 512 characters); shown wherever the group shows.")
@click.option(
    "--until", help="ISO 8601 time when the group enables itself again (UTC if no offset)."
)
@pass_cli
def disable_group(cli: CliContext, group_id: int, note: str | None, until: str | None) -> None:
    """Disable; the waiting task is withdrawn, a running one finishes."""
    enable_at = None if until is None else parse_time("--until", until)
    group = store.set_enabled(
        cli.engine, group_id, False, cli.clock.now(), note=note, until=enable_at,
        actor=cli.actor, until_field="--until",
    )
    suffix = f" until {group.enable_at.isoformat()}" if group.enable_at else ""
    click.echo(f"group {group_id} disabled{suffix}")


@group_cli.command("delete", cls=IdCommand)
@click.argument("group_id", type=ID)
@pass_cli
def delete_group(cli: CliContext, group_id: int) -> None:
    """Delete the group with its tasks and run logs."""
    store.delete_group(cli.engine, group_id, cli.clock.now(), cli.actor)
    click.echo(f"group {group_id} deleted")


@group_cli.command("run", cls=IdCommand)
@click.argument("group_id", type=ID)
@click.option(
    "--data",
    "data_json",
    help="JSON object for this run only (ctx.data; the group's data stays unless the job "
    "changes it): the JSON itself, @FILE, or - for stdin.",
)
@pass_cli
def run_group(cli: CliContext, group_id: int, data_json: str | None) -> None:
    """Run now: the waiting task becomes due immediately; prints its task id."""
    data = read_data_option(data_json) if data_json is not None else None
    task_id = store.run_now(cli.engine, group_id, cli.clock.now(), data, cli.actor)
    click.echo(task_id)


@group_cli.command("backfill", cls=IdCommand)
@click.argument("group_id", type=ID)
@click.option("--from", "from_at", help="ISO 8601 time: the window's first moment.")
@click.option("--to", "to_at", help="ISO 8601 time: the window's last moment (not later than now).")
@click.option("--cancel", is_flag=True, help="End the group's unfinished backfill.")
@click.option("--json", "as_json", is_flag=True)
@pass_cli
def backfill_group(
    cli: CliContext,
    group_id: int,
    from_at: str | None,
    to_at: str | None,
    cancel: bool,
    as_json: bool,
) -> None:
    """Run the group's slots of a past window, one at a time, in order, between its regular
    runs (each with ctx.start_at = its slot)."""
    if cancel:
        if from_at is not None or to_at is not None:
            raise InvalidField("cancel", "--cancel takes no --from or --to")
        row = backfills.cancel_backfill(cli.engine, group_id, cli.clock.now(), cli.actor)
        if as_json:
            emit_json(row.to_json())
            return
        click.echo(f"group {group_id}: backfill cancelled after {row.slots_done} of "
                   f"{row.slots_total} slots")
        return
    if from_at is None or to_at is None:
        raise InvalidField("from" if from_at is None else "to", "give both --from and --to")
    row = backfills.create_backfill(
        cli.engine,
        group_id,
        parse_time("from", from_at),
        parse_time("to", to_at),
        cli.clock.now(),
        timedelta(seconds=cli.settings.lookahead_s),
        cli.actor,
    )
    if as_json:
        emit_json(row.to_json() | {"started": row.started})
        return
    when = "runs now" if row.started else "runs when the group's current run ends"
    first = row.next_at.isoformat() if row.next_at else "-"
    click.echo(f"group {group_id}: backfill of {row.slots_total} slots; the first, {first}, {when}")
