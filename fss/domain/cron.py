"""Cron expressions as FSS, Quartz and XXL-JOB write them, evaluated in a time zone.

Five fields are classic cron (minute first). Six fields put **seconds first**
(`*/2 * * * * *` fires every two seconds). Quartz's `?` (no specific value) is read as `*`.
Times are evaluated in the given time zone and returned as aware UTC.

Daylight saving time follows Vixie/Debian cron (and cronsim, which the tests compare with),
which splits jobs in two. A *wildcard* job has a time field (second, minute or hour) that
starts with `*` (`*/15 * * * *`, `0 * * * *`, `* 2 * * *`); any other job is *fixed-time*
(`30 2 * * *`, `0 1-3 * * *`, `0,30 1 * * *`):
- a local time skipped when clocks spring forward fires a fixed-time job once, at the instant
  of the jump (02:30 on a night that goes 02:00 -> 03:00 fires at 03:00 new time; several
  skipped times fire once together); a wildcard job does not fire for skipped times, it just
  carries on at the new time (`*/15 * * * *` fires at 01:45 then 03:00);
- a local time that happens twice when clocks fall back fires a fixed-time job once (the
  first time) and a wildcard job in both passes (`*/30 * * * *` keeps its 30-minute rhythm).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fss.domain.clock import as_utc
from fss.domain.cron_calendar import next_wall_time
from fss.domain.cron_fields import CronSpec, parse_cron
from fss.errors import InvalidField

MAX_CRON_LENGTH = 128
# Far enough back that every calendar pattern comes round in the 400 years searched.
NEVER_FIRES_CHECK_FROM = datetime(2000, 1, 1)


def normalize_cron(expression: str) -> str:
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise InvalidField(
            "cron",
            f"{expression!r} has {len(fields)} fields; use 5 (minute first) "
            "or 6 (seconds first, e.g. '*/2 * * * * *')",
        )
    return " ".join("*" if f == "?" else f for f in fields)


@lru_cache(maxsize=4096)
def compile_cron(expression: str, *, strict: bool = True) -> CronSpec:
    """The expression's value sets, or InvalidField naming `cron`.

    `strict=False` is for expressions stored before fss refused wide steps and Quartz
    crons restricting both days: they keep running as they always did.
    """
    if len(expression) > MAX_CRON_LENGTH:
        raise InvalidField("cron", f"longer than {MAX_CRON_LENGTH} characters")
    spec = parse_cron(normalize_cron(expression), strict=strict)
    if next_wall_time(spec, NEVER_FIRES_CHECK_FROM) is None:
        raise InvalidField("cron", f"{expression!r} never fires (no such date)")
    return spec


def validate_cron(expression: str) -> str:
    """The normalized expression, or InvalidField naming `cron` (the one check for new crons)."""
    compile_cron(expression.strip())
    return normalize_cron(expression)


def load_zone(name: str | None) -> ZoneInfo | timezone:
    if not name:
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: with the tzdata package, a folder name such as "Asia" fails to open.
        raise InvalidField("time_zone", f"unknown time zone {name!r}") from None


def next_cron_time(expression: str, after: datetime, time_zone: str | None = None) -> datetime:
    """First firing strictly after `after`, as aware UTC."""
    spec = compile_cron(expression.strip(), strict=False)
    zone = load_zone(time_zone)
    after_utc = as_utc(after)
    if isinstance(zone, timezone):  # a fixed offset: no clock changes to mind
        offset = zone.utcoffset(None)
        wall = _wall_after(spec, expression, after_utc.replace(tzinfo=None) + offset)
        return (wall - offset).replace(tzinfo=timezone.utc)
    return _next_in_zone(spec, expression, zone, after_utc)


def _wall_after(spec: CronSpec, expression: str, wall: datetime) -> datetime:
    found = next_wall_time(spec, wall)
    if found is None:
        raise InvalidField("cron", f"{expression!r} does not fire after {wall.isoformat()}")
    return found


def _next_in_zone(spec: CronSpec, expression: str, zone: tzinfo, after: datetime) -> datetime:
    """Local wall times in order, each mapped to the instants it fires at, until no later wall
    time can fire earlier than the best found (only a repeated wall time can)."""
    wall = _search_start(spec, zone, after)
    best: datetime | None = None
    while True:
        wall = _wall_after(spec, expression, wall)
        firings = _instants(wall, zone, fixed_time=spec.fixed_time)
        if not firings:  # skipped, wildcard job: resume where the clocks landed, not each second
            wall = _landing_wall(wall, zone) - timedelta(seconds=1)
            continue
        later = [f for f in firings if f > after]
        if later and (best is None or min(later) < best):
            best = min(later)
        if best is not None and not _repeated(wall, zone):
            return best


def _search_start(spec: CronSpec, zone: tzinfo, after: datetime) -> datetime:
    """Where the wall-time search begins: `after` in local time; during the first pass of a
    repeated hour, one repeat earlier, since those wall times still fire in the second pass."""
    local = after.astimezone(zone)
    wall = local.replace(tzinfo=None)
    if spec.fixed_time or local.fold == 1:
        return wall
    repeat = _offset(local) - _offset(local.replace(fold=1))
    return wall - repeat if repeat > timedelta(0) else wall


def _instants(wall: datetime, zone: tzinfo, *, fixed_time: bool) -> list[datetime]:
    """The instants a local wall time fires at (Vixie/Debian's rule, see the module doc)."""
    first_offset = _offset(wall.replace(tzinfo=zone))
    second_offset = _offset(wall.replace(tzinfo=zone, fold=1))
    first = (wall - first_offset).replace(tzinfo=timezone.utc)
    if first_offset == second_offset:
        return [first]
    second = (wall - second_offset).replace(tzinfo=timezone.utc)
    if first_offset > second_offset:  # clocks fell back: the wall time happens twice
        return [first] if fixed_time else [first, second]
    if not fixed_time:  # skipped: a wildcard job just carries on after the jump
        return []
    return [_jump_instant(second, first, zone)]  # skipped: fires when the clocks jump


def _landing_wall(skipped: datetime, zone: tzinfo) -> datetime:
    """The local wall time the clocks jumped to over a skipped wall time."""
    first = (skipped - _offset(skipped.replace(tzinfo=zone))).replace(tzinfo=timezone.utc)
    second = (skipped - _offset(skipped.replace(tzinfo=zone, fold=1))).replace(tzinfo=timezone.utc)
    return _jump_instant(second, first, zone).astimezone(zone).replace(tzinfo=None)


def _repeated(wall: datetime, zone: tzinfo) -> bool:
    return _offset(wall.replace(tzinfo=zone)) > _offset(wall.replace(tzinfo=zone, fold=1))


def _jump_instant(before: datetime, after: datetime, zone: tzinfo) -> datetime:
    """The instant the clocks jumped, between two UTC instants either side of it (seconds)."""
    new_offset = _offset(after.astimezone(zone))
    low, high = before, after
    while high - low > timedelta(seconds=1):
        middle = low + timedelta(seconds=(high - low).total_seconds() // 2)
        if _offset(middle.astimezone(zone)) == new_offset:
            high = middle
        else:
            low = middle
    return high


def _offset(moment: datetime) -> timedelta:
    offset = moment.utcoffset()
    return offset if offset is not None else timedelta(0)
