"""GroupSpec.validated: what an operator may configure, checked before anything is written."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from fss.domain.group_spec import (
    MAX_CAPTION,
    MAX_DATA_BYTES,
    MAX_INTERVAL_MS,
    MAX_JOB_NAME,
    GroupSpec,
    parse_data,
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
