"""`fss group next`: the next fire times of a group, a cron or an interval, before they happen.

The times come from fss.domain.schedule (`initial_run_at`, then `next_run_at` as the recorder
calls it), so the preview is what the scheduler will run, daylight saving time included.
"""

from __future__ import annotations

from datetime import datetime

import click

from fss.cli.context import ID, CliContext, IdCommand, pass_cli
from fss.cli.groups import group_cli, parse_start_at
from fss.cli.output import emit_json
from fss.domain.clock import as_utc
from fss.domain.cron import validate_cron
from fss.domain.preview import first_run, next_fire_times, preview_schedule
from fss.domain.schedule import Schedule, initial_run_at
from fss.errors import InvalidField
from fss.store import groups as store
from fss.store.rows import GroupRow

MAX_PREVIEW = 1000


@group_cli.command("next", cls=IdCommand)
@click.argument("group_id", type=ID, required=False)
@click.option("--cron", help="Preview this cron instead of a group's schedule.")
@click.option("--interval-ms", type=int, help="Preview this interval instead.")
@click.option(
    "--time-zone",
    help="IANA zone, e.g. Europe/Berlin (UTC): a cron is evaluated in it; an interval's "
    "times are shown in it.",
)
@click.option(
    "--start-at", help="ISO 8601: preview from this time instead of now (UTC if no offset)."
)
@click.option(
    "-n",
    "count",
    type=click.IntRange(1, MAX_PREVIEW),
    default=5,
    show_default=True,
    help="How many times.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@pass_cli
def next_runs(
    cli: CliContext,
    group_id: int | None,
    cron: str | None,
    interval_ms: int | None,
    time_zone: str | None,
    start_at: str | None,
    count: int,
    as_json: bool,
) -> None:
    """The next fire times (ISO 8601 with the zone's offset) of group ID, or of --cron /
    --interval-ms as `fss group add` would schedule them."""
    since = parse_start_at(start_at)
    now = cli.clock.now()
    if group_id is not None:
        schedule, first = _group_preview(cli, group_id, cron, interval_ms, time_zone, since, now)
    else:
        schedule = _ad_hoc_schedule(cron, interval_ms, time_zone)
        first = first_run(schedule, since or now)
    times = next_fire_times(schedule, first, count)
    if as_json:
        emit_json({"schedule": schedule.describe(), "time_zone": schedule.time_zone, "next": times})
        return
    for moment in times:
        click.echo(moment)
    if schedule.kind == "job":
        click.echo("note: the job sets its next times (ctx.set_next_at)", err=True)


def _ad_hoc_schedule(cron: str | None, interval_ms: int | None, time_zone: str | None) -> Schedule:
    if (cron is None) == (interval_ms is None):
        raise InvalidField("schedule", "give a group ID, --cron or --interval-ms (one of them)")
    return preview_schedule(cron, interval_ms, time_zone)


def _group_preview(
    cli: CliContext,
    group_id: int,
    cron: str | None,
    interval_ms: int | None,
    time_zone: str | None,
    since: datetime | None,
    now: datetime,
) -> tuple[Schedule, datetime]:
    """The group's schedule and its next run: the waiting task's time, or from `since`, the
    first slot the scheduler would give the group if it were enabled then."""
    if cron is not None or interval_ms is not None or time_zone:
        raise InvalidField("schedule", "a group ID previews the group's own schedule and zone")
    with cli.engine.connect() as conn:
        group = store.get_group(conn, group_id)
    _warn_if_refused_today(group)
    if since is None and group.is_enable:
        return group.schedule, as_utc(group.next_at)
    return group.schedule, initial_run_at(group.schedule, as_utc(group.start_at), since or now)


def _warn_if_refused_today(group: GroupRow) -> None:
    """A cron stored before fss refused it still runs (as before); say so, do not fail."""
    if not group.cron:
        return
    try:
        validate_cron(group.cron)
    except InvalidField as exc:
        click.echo(
            f"warning: group {group.id}: {exc} — it runs as stored; `fss group edit` "
            "needs a valid cron",
            err=True,
        )
