# ruff: noqa: RUF001, RUF002  (Chinese text: full-width punctuation is correct there)
"""A group's schedule in Chinese words, as fss.domain.schedule_words says it in English.

Built from the same value sets the scheduler fires by (compile_cron), with the English
module's helpers for what does not depend on the language (steps, runs of values), so the
two say the same thing: "每 2 秒", "每天 02:30，Asia/Shanghai", "周一至周五 9-17 点的第 0 分，UTC".
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from fss.domain.cron import compile_cron
from fss.domain.cron_fields import HOUR, MINUTE, SECOND, CronSpec, DayRule, FieldKind
from fss.domain.schedule import FALLBACK_DELAY, Schedule
from fss.domain.schedule_words import MAX_LISTED_TIMES, _even_step, _is_all, _lists_times, _runs
from fss.errors import InvalidField

WEEKDAYS = ("周日", "周一", "周二", "周三", "周四", "周五", "周六")
_UNITS = ((86_400_000, "天"), (3_600_000, "小时"), (60_000, "分钟"), (1000, "秒"), (1, "毫秒"))
_UNIT = {"second": "秒", "minute": "分钟", "hour": "小时"}


def schedule_words_zh(schedule: Schedule) -> str:
    if schedule.cron:
        return cron_words_zh(schedule.cron, schedule.time_zone)
    if schedule.interval_ms:
        return f"每 {duration_zh(schedule.interval_ms)}"
    fallback = round(FALLBACK_DELAY.total_seconds() * 1000)
    return f"由作业决定（否则每次运行后 {duration_zh(fallback)}）"


def duration_zh(ms: int) -> str:
    if ms <= 0:
        return f"{ms} 毫秒"
    parts = []
    for size, unit in _UNITS:
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count} {unit}")
    return " ".join(parts)


def cron_words_zh(expression: str, time_zone: str | None = None) -> str:
    zone = time_zone or "UTC"
    try:
        spec = compile_cron(expression.strip(), strict=False)
    except (InvalidField, ValueError, IndexError, RecursionError):
        return "无法解析"
    when = _time(spec)
    days = _days(spec.days)
    if days == "每天" and not _lists_times(spec):
        days = ""
    head = " ".join(p for p in (_months(spec.months), days, when) if p)
    return f"{head}，{zone}"


def _time(spec: CronSpec) -> str:
    seconds, minutes, hours = spec.seconds, spec.minutes, spec.hours
    if _lists_times(spec):
        show_seconds = seconds != (0,)
        times = [f"{h:02d}:{m:02d}" + (f":{s:02d}" if show_seconds else "")
                 for h in hours for m in minutes for s in seconds]
        return _and_list(times)
    if seconds == (0,) and minutes == (0,):
        if _is_all(hours, HOUR) or _even_step(hours, HOUR):
            return _leading(hours, HOUR, "hour")
        return f"{_values(hours)} 点整"
    if seconds == (0,):
        return _narrowed(_within(hours, HOUR, "点"), _leading(minutes, MINUTE, "minute"),
                         "每小时")
    lead = _leading(seconds, SECOND, "second")
    in_minutes = _within(minutes, MINUTE, "分")
    in_hours = _within(hours, HOUR, "点") or ("每小时" if in_minutes else "")
    outer = " ".join(p for p in (in_hours, in_minutes) if p)
    return _narrowed(outer, lead, "每分钟")


def _narrowed(outer: str, lead: str, every: str) -> str:
    """A finer field within coarser ones: "9-17 点内每 5 分钟", "每小时的第 5 和 35 分"."""
    if lead.startswith("第 ") and not outer.endswith("分"):
        lead = f"{every}的{lead}"
    if not outer:
        return lead
    return f"{outer}内{lead}" if lead.startswith("每") else f"{outer}的{lead}"


def _leading(values: tuple[int, ...], kind: FieldKind, unit: str) -> str:
    if _is_all(values, kind):
        return {"second": "每秒", "minute": "每分钟", "hour": "每小时"}[unit]
    step = _even_step(values, kind)
    if step:
        return f"每 {step} {_UNIT[unit]}"
    suffix = {"second": "秒", "minute": "分", "hour": "点"}[unit]
    return f"第 {_values(values)} {suffix}"


def _within(values: tuple[int, ...], kind: FieldKind, suffix: str) -> str:
    if _is_all(values, kind):
        return ""
    return f"{_values(values)} {suffix}"


def _days(days: DayRule) -> str:
    by_date = _dates(days)
    by_weekday = _weekdays(days)
    if by_date is None and by_weekday is None:
        return "每天"
    if days.either and (by_date is None or by_weekday is None):
        return "每天"
    if by_date is None or by_weekday is None:
        return by_date or by_weekday or ""
    return f"{by_date}{'或' if days.either else '且'}{by_weekday}"


def _dates(days: DayRule) -> str | None:
    plain = tuple(sorted(days.month_days))
    specials = days.last_day or days.last_weekday or days.nearest_weekday_to
    if plain == tuple(range(1, 32)) and not specials:
        return None
    parts = []
    if plain:
        parts.append(f"每月 {_values(plain)} 日")
    if days.last_day:
        parts.append("每月最后一天")
    if days.last_weekday:
        parts.append("每月最后一个工作日（周一至周五）")
    for day in days.nearest_weekday_to:
        parts.append(f"每月离 {day} 日最近的工作日（周一至周五）")
    return _and_list(parts)


def _weekdays(days: DayRule) -> str | None:
    plain = tuple(sorted(days.weekdays))
    if plain == tuple(range(7)) and not days.nth_weekdays and not days.last_weekdays:
        return None
    parts = []
    if plain:
        parts.append(f"每{_weekday_list(plain)}")
    for weekday, n in days.nth_weekdays:
        parts.append(f"每月第 {n} 个{WEEKDAYS[weekday]}")
    for weekday in days.last_weekdays:
        parts.append(f"每月最后一个{WEEKDAYS[weekday]}")
    return _and_list(parts)


def _weekday_list(values: tuple[int, ...]) -> str:
    monday_first = sorted(values, key=lambda d: (d + 6) % 7)
    names = []
    for first, last in _runs([(d + 6) % 7 for d in monday_first]):
        low, high = WEEKDAYS[(first + 1) % 7], WEEKDAYS[(last + 1) % 7]
        if last - first >= 2:
            names.append(f"{low}至{high}")
        else:
            names.extend([low] if first == last else [low, high])
    return _and_list(names)


def _months(months: tuple[int, ...]) -> str:
    if months == tuple(range(1, 13)):
        return ""
    names = []
    for first, last in _runs(list(months)):
        if last - first >= 2:
            names.append(f"{first}月至{last}月")
        else:
            names.extend(f"{m}月" for m in range(first, last + 1))
    return f"仅{_and_list(names)}"


def _values(values: Sequence[int]) -> str:
    if len(values) > MAX_LISTED_TIMES:
        step = values[1] - values[0]
        if step > 1 and all(b - a == step for a, b in pairwise(values)):
            return f"{values[0]}-{values[-1]}（每隔 {step}）"
    items = []
    for first, last in _runs(list(values)):
        if last - first >= 2:
            items.append(f"{first}-{last}")
        else:
            items.extend(str(v) for v in range(first, last + 1))
    return _and_list(items)


def _and_list(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    space = " " if items[-1][:1].isdigit() else ""  # "5 和 35", "周六和周日"
    return f"{'、'.join(items[:-1])}{space}和{space}{items[-1]}"
