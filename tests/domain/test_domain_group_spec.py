"""GroupSpec.validated: what an operator may configure, checked before anything is written."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fss.domain.group_spec import (
    MAX_CAPTION,
    MAX_DATA_BYTES,
    MAX_INTERVAL_MS,
    MAX_JOB_NAME,
    GroupSpec,
    find_cycle,
    parse_data,
    parse_duration,
    validate_data,
)
from fss.errors import InvalidField

UTC = timezone.utc
BASE = GroupSpec(caption="nightly report", job_name="reports.nightly", interval_ms=1000)


def rejected(spec: GroupSpec) -> InvalidField:
    with pytest.raises(InvalidField) as info:
        spec.validated()
    return info.value


def data_of_size(size: int, char: str = "x") -> dict[str, Any]:
    """A dict whose compact UTF-8 JSON is exactly `size` bytes (`char` is 1 or 2 bytes)."""
    overhead = len(b'{"k":""}')
    width = len(char.encode())
    assert (size - overhead) % width == 0
    data = {"k": char * ((size - overhead) // width)}
    assert len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()) == size
    return data


# -- a valid spec -----------------------------------------------------------------------------


def test_given_a_valid_spec_then_validated_returns_a_normalized_copy() -> None:
    spec = GroupSpec(
        caption="  hello  ",
        job_name=" jobs.hello ",
        cron="0 12 ? * MON",
        time_zone="Asia/Shanghai",
        data={"a": [1, 2, {"b": None}]},
        start_at=datetime(2030, 1, 1, 8, 0),
    )

    valid = spec.validated()

    assert valid.caption == "hello"
    assert valid.job_name == "jobs.hello"
    assert valid.cron == "0 12 * * MON"
    assert valid.interval_ms is None
    assert valid.time_zone == "Asia/Shanghai"
    assert valid.data == {"a": [1, 2, {"b": None}]}
    assert valid.start_at == datetime(2030, 1, 1, 8, 0, tzinfo=UTC)
    assert valid.start_at is not None and valid.start_at.tzinfo is not None
    assert spec.caption == "  hello  "  # the original is untouched


def test_given_a_start_with_an_offset_then_it_is_converted_to_utc() -> None:
    start = datetime(2030, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))

    valid = replace(BASE, start_at=start).validated()

    assert valid.start_at == datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    assert valid.start_at is not None and valid.start_at.utcoffset() == timedelta(0)


def test_given_an_empty_time_zone_then_it_is_stored_as_none() -> None:
    assert replace(BASE, time_zone="").validated().time_zone is None


@pytest.mark.parametrize(
    "schedule",
    [
        {"interval_ms": 1},
        {"interval_ms": MAX_INTERVAL_MS},
        {"cron": "*/2 * * * * *"},
        {"job_sets_next": True},
    ],
)
def test_given_exactly_one_schedule_then_accepted(schedule: dict[str, Any]) -> None:
    spec = GroupSpec(caption="c", job_name="j", **schedule)

    assert spec.validated().schedule == spec.schedule


# -- schedule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        {},
        {"cron": ""},
        {"interval_ms": 1000, "cron": "* * * * *"},
        {"interval_ms": 1000, "job_sets_next": True},
        {"cron": "* * * * *", "job_sets_next": True},
        {"interval_ms": 1000, "cron": "* * * * *", "job_sets_next": True},
    ],
)
def test_given_not_exactly_one_schedule_then_rejected_naming_schedule(
    schedule: dict[str, Any],
) -> None:
    assert rejected(GroupSpec(caption="c", job_name="j", **schedule)).field == "schedule"


@pytest.mark.parametrize("interval", [0, -1, -5, -1000, MAX_INTERVAL_MS + 1])
def test_given_an_interval_out_of_range_then_rejected_naming_interval_ms(interval: int) -> None:
    error = rejected(replace(BASE, interval_ms=interval))

    assert error.field == "interval_ms"
    assert str(error).startswith("interval_ms: ")


@pytest.mark.parametrize("interval", [True, 1.5, "1000"])
def test_given_an_interval_that_is_not_an_integer_then_rejected(interval: Any) -> None:
    assert rejected(replace(BASE, interval_ms=interval)).field == "interval_ms"


def test_given_an_invalid_cron_then_rejected_naming_cron() -> None:
    assert rejected(GroupSpec(caption="c", job_name="j", cron="61 * * * *")).field == "cron"
    assert rejected(GroupSpec(caption="c", job_name="j", cron="* * *")).field == "cron"


@pytest.mark.parametrize("zone", ["Mars/Base", "Asia", "../../etc/passwd", "UTC+8", "utc "])
def test_given_an_unknown_time_zone_then_rejected_naming_time_zone(zone: str) -> None:
    spec = GroupSpec(caption="c", job_name="j", cron="0 8 * * *", time_zone=zone)

    assert rejected(spec).field == "time_zone"


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC"])
def test_given_a_known_time_zone_then_accepted(zone: str) -> None:
    spec = GroupSpec(caption="c", job_name="j", cron="0 8 * * *", time_zone=zone)

    assert spec.validated().time_zone == zone


# -- caption and job name ---------------------------------------------------------------------


@pytest.mark.parametrize("caption", ["", "   ", "\t\n"])
def test_given_an_empty_caption_then_rejected(caption: str) -> None:
    assert rejected(replace(BASE, caption=caption)).field == "caption"


def test_given_a_caption_at_the_limit_then_accepted_and_one_more_rejected() -> None:
    assert replace(BASE, caption="é" * MAX_CAPTION).validated().caption == "é" * MAX_CAPTION
    assert rejected(replace(BASE, caption="c" * (MAX_CAPTION + 1))).field == "caption"
    assert MAX_CAPTION == 64


@pytest.mark.parametrize(
    "caption", ["two\nlines", "carriage\rreturn", "tab\there", "bell\x07", "esc\x1b[31mred",
                "nul\x00", "del\x7f", "line\u2028separator", "para\u2029separator", "trailing\n"]
)
def test_given_a_caption_with_control_characters_then_rejected_naming_caption(
    caption: str,
) -> None:
    error = rejected(replace(BASE, caption=caption))

    assert error.field == "caption"
    assert "control characters" in error.reason


def test_given_an_edit_with_a_control_character_then_the_same_rule_rejects_it() -> None:
    """`group edit` validates the merged spec with the same validated() as `group add`."""
    edited = replace(BASE.validated(), caption="new\nname")

    assert rejected(edited).field == "caption"


@pytest.mark.parametrize("caption", ["Grüße 日本 ✓", "a - b (c) [d] {e}", "  padded  "])
def test_given_a_caption_with_printable_unicode_then_accepted(caption: str) -> None:
    assert replace(BASE, caption=caption).validated().caption == caption.strip()


@pytest.mark.parametrize("name", ["hello\n", "\thello", "hel\x00lo"])
def test_given_a_job_name_with_control_characters_then_rejected(name: str) -> None:
    assert rejected(replace(BASE, job_name=name)).field == "job_name"


@pytest.mark.parametrize(
    "name", ["hello", "jobs.hello", "app:send-mail", "A_b-9.c:d", "x" * MAX_JOB_NAME]
)
def test_given_a_job_name_of_letters_digits_and_separators_then_accepted(name: str) -> None:
    assert replace(BASE, job_name=name).validated().job_name == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "  ",
        "hello world",
        "a/b",
        "héllo",
        "job;drop",
        "a\nb",
        "name*",
        "x" * (MAX_JOB_NAME + 1),
    ],
)
def test_given_a_bad_job_name_then_rejected_naming_job_name(name: str) -> None:
    assert rejected(replace(BASE, job_name=name)).field == "job_name"


# -- data -------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [[], [1, 2], "text", 42, None, True])
def test_given_data_that_is_not_an_object_then_rejected_naming_data(data: Any) -> None:
    assert rejected(replace(BASE, data=data)).field == "data"


def test_given_data_at_the_size_limit_then_accepted() -> None:
    data = data_of_size(MAX_DATA_BYTES)

    assert replace(BASE, data=data).validated().data == data
    assert MAX_DATA_BYTES == 64 * 1024


def test_given_data_one_byte_over_the_limit_then_rejected() -> None:
    assert rejected(replace(BASE, data=data_of_size(MAX_DATA_BYTES + 1))).field == "data"


def test_given_multibyte_data_then_the_limit_counts_utf8_bytes_not_characters() -> None:
    data = data_of_size(MAX_DATA_BYTES + 2, char="é")  # fewer than 33,000 characters

    assert len(data["k"]) < MAX_DATA_BYTES // 2
    assert rejected(replace(BASE, data=data)).field == "data"


@pytest.mark.parametrize(
    "data", [{"n": float("nan")}, {"n": float("inf")}, {"when": datetime(2024, 1, 1)}, {1: {2}}]
)
def test_given_data_that_is_not_json_then_rejected_naming_data(data: dict[str, Any]) -> None:
    assert rejected(replace(BASE, data=data)).field == "data"


def test_validate_data_returns_compact_json_text() -> None:
    assert validate_data({"a": 1, "b": "ü"}) == '{"a":1,"b":"ü"}'


# -- parse_data (the CLI's --data) ------------------------------------------------------------


def test_parse_data_reads_a_json_object() -> None:
    assert parse_data('{"a": 1, "nested": {"b": [true, null]}}') == {
        "a": 1,
        "nested": {"b": [True, None]},
    }


@pytest.mark.parametrize("text", ["", "   "])
def test_parse_data_treats_blank_text_as_an_empty_object(text: str) -> None:
    assert parse_data(text) == {}


@pytest.mark.parametrize(
    "text",
    [
        "{bad",
        "{'a': 1}",
        '{"a": 1,}',
        "[1, 2]",
        "[]",
        "null",
        '"text"',
        "42",
        "NaN",
        '{"a": NaN}',
        '{"a": Infinity}',
    ],
)
def test_given_bad_data_text_then_parse_data_raises_naming_data(text: str) -> None:
    with pytest.raises(InvalidField) as info:
        parse_data(text)

    assert info.value.field == "data"
    assert str(info.value).startswith("data: ")


def test_given_oversized_data_text_then_parse_data_raises_naming_data() -> None:
    text = json.dumps({"k": "x" * (MAX_DATA_BYTES + 1)})

    with pytest.raises(InvalidField) as info:
        parse_data(text)

    assert info.value.field == "data"


def test_given_invalid_json_then_the_message_says_where() -> None:
    with pytest.raises(InvalidField, match="position 1"):
        parse_data("{bad")


# --- run policies -------------------------------------------------------------------------------


def policy_spec(**changes: Any) -> GroupSpec:
    return GroupSpec(caption="c", job_name="j", interval_ms=1000, **changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"retries": -1}, "retries: must be 0..100, got -1"),
        ({"retries": True}, "retries: must be a whole number, got True"),
        ({"retry_delay_ms": 86_400_001}, "retry_delay_ms: must be 1..86400000"),
        ({"retry_backoff": 10.5}, "retry_backoff: must be 1..10, got 10.5"),
        ({"retry_backoff": float("inf")}, "retry_backoff: must be 1..10, got inf"),
        ({"retry_delay_max_ms": 999}, "retry_delay_max_ms: must be >= retry_delay_ms (1000)"),
        ({"retry_jitter": 1}, "retry_jitter: must be true or false, got 1"),
        ({"max_run_s": 0}, "max_run_s: must be 1..604800, got 0"),
        ({"overlap": "queue"}, "overlap: 'queue' is not one of skip, buffer_one, replace"),
        ({"route": "x"}, "route: 'x' is not one of round_robin, least_busy, sticky, failover"),
        ({"client_tag": "x" * 65}, "client_tag: "),
        ({"on_success": tuple(range(1, 52))}, "on_success: at most 50 groups, got 51"),
        ({"on_success": ("a ",)}, "on_success: 'a ' is not a group key"),
        ({"on_success": (True,)}, "on_success: True is not a group key or id"),
        ({"jitter_ms": 3_600_001}, "jitter_ms: must be 0..3600000"),
        ({"is_enable": False, "disabled_note": "x" * 513}, "disabled_note: longer than 512"),
        ({"enable_at": datetime(2031, 1, 1, tzinfo=timezone.utc)},
         "enable_at: only a disabled group has one"),
    ],
)
def test_each_bad_policy_is_one_line_naming_its_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidField) as raised:
        policy_spec(**changes).validated()
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_policies_at_their_bounds_are_accepted_and_normalized() -> None:
    spec = policy_spec(retries=100, retry_delay_ms=86_400_000, retry_backoff=10,
                       retry_delay_max_ms=86_400_000, max_run_s=604_800, jitter_ms=3_600_000,
                       client_tag="a" * 64, on_success=["k", 1], route="broadcast",
                       is_enable=False, disabled_note="  why  ").validated()
    assert (spec.retry_backoff, spec.on_success, spec.disabled_note) == (10.0, ("k", 1), "why")
    assert isinstance(spec.retry_backoff, float)
    jsn = GroupSpec(caption="c", job_name="j", job_sets_next=True, route="failover")
    assert jsn.validated().route == "failover"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"alert_targets": "ops"}, "alert_targets: must be a list of alert target names"),
        ({"alert_targets": ("ops", "ops")}, "alert_targets: 'ops' is listed twice"),
        ({"alert_targets": ("a b",)}, "alert_targets: 'a b' is not a target name"),
        ({"alert_targets": ("x" * 65,)}, "alert_targets: 'xxx"),
        ({"alert_targets": ("",)}, "alert_targets: '' is not a target name"),
        ({"alert_targets": (1,)}, "alert_targets: '1' is not a target name"),
        ({"alert_targets": tuple(f"t{i}" for i in range(21))},
         "alert_targets: at most 20 targets, got 21"),
        ({"alert_rules": "run_failed"}, "alert_rules: must be a list of rule names"),
        ({"alert_rules": ("run_faild",)}, "alert_rules: unknown rule 'run_faild' (rules: "),
        ({"alert_rules": ("client_lost",)},
         "alert_rules: 'client_lost' is a rule about the cluster, not a group"),
        ({"late_after_s": 0}, "late_after_s: must be 1..31622400, got 0"),
        ({"late_after_s": 31_622_401}, "late_after_s: must be 1..31622400, got 31622401"),
        ({"late_after_s": 1.5}, "late_after_s: must be a whole number, got 1.5"),
        ({"late_after_s": True}, "late_after_s: must be a whole number, got True"),
    ],
)
def test_each_bad_alert_setting_is_one_line_naming_its_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidField) as raised:
        policy_spec(**changes).validated()
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_alert_settings_default_to_the_global_ones() -> None:
    spec = policy_spec().validated()
    assert (spec.alert_targets, spec.alert_rules, spec.late_after_s) == ((), None, None)


def test_alert_settings_at_their_bounds_are_accepted_and_normalized() -> None:
    targets = tuple(f"t.{i}_x-{i}" for i in range(20))
    spec = policy_spec(alert_targets=list(targets), alert_rules=["group_late", "run_failed",
                       "group_late"], late_after_s=366 * 86_400).validated()
    assert spec.alert_targets == targets
    # One form for one set of rules: the order of fss.domain.alerts.RULES, each once.
    assert spec.alert_rules == ("run_failed", "group_late")
    assert spec.late_after_s == 31_622_400
    assert policy_spec(alert_targets=None, late_after_s=1).validated().alert_targets == ()
    # [] is "no alerts for this group", not "the global rules" (None).
    assert policy_spec(alert_rules=[]).validated().alert_rules == ()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), (" 90s ", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
     ("10M", 600)],
)
def test_parse_duration_reads_seconds_and_units(text: str, seconds: int) -> None:
    assert parse_duration("late_after_s", text) == seconds


@pytest.mark.parametrize(
    "text",
    # Arabic-Indic digits are digits to str.isdigit and \\d, not to a duration.
    ["", "10 m", "1.5h", "-5", "10x", "m", "1h 30m", "\u0661\u0660", "\u0661\u0660m"],
)
def test_parse_duration_refuses_other_text_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidField) as raised:
        parse_duration("late_after_s", text)
    assert str(raised.value).startswith("late_after_s: ") and "not a duration" in str(raised.value)


def _has_cycle(edges: dict[int, tuple[int, ...]]) -> bool:
    """Kahn's algorithm: a graph has a cycle when some node is never free of incoming edges."""
    nodes = set(edges) | {n for targets in edges.values() for n in targets}
    incoming = {n: 0 for n in nodes}
    for targets in edges.values():
        for n in targets:
            incoming[n] += 1
    free = [n for n in nodes if incoming[n] == 0]
    seen = 0
    while free:
        node = free.pop()
        seen += 1
        for n in edges.get(node, ()):
            incoming[n] -= 1
            if incoming[n] == 0:
                free.append(n)
    return seen < len(nodes)


@given(st.dictionaries(st.integers(0, 8), st.lists(st.integers(0, 8), max_size=3).map(tuple)))
def test_find_cycle_finds_a_real_cycle_exactly_when_there_is_one(
    edges: dict[int, tuple[int, ...]],
) -> None:
    cycle = find_cycle(edges)
    assert (cycle is not None) == _has_cycle(edges)
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        assert all(b in edges.get(a, ()) for a, b in pairwise(cycle))
