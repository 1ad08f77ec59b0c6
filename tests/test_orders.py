"""RunOrder: what a scheduler sends a client, as Celery kwargs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from fss.errors import InvalidField
from fss.orders import RunOrder

UTC = timezone.utc
ORDER = RunOrder(
    task_id=41,
    attempt=2,
    group_id=7,
    job_name="reports.nightly",
    client_id="worker-1",
    start_at=datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC),
    data={"cursor": 17, "nested": {"a": [1, None, "ü"]}},
)
KEYS = ["task_id", "attempt", "group_id", "job_name", "client_id", "start_at", "data"]


def kwargs_of(order: RunOrder = ORDER, **changes: Any) -> dict[str, Any]:
    return json.loads(json.dumps(order.to_kwargs())) | changes


def test_given_an_order_when_sent_as_json_kwargs_then_it_comes_back_equal() -> None:
    assert RunOrder.from_kwargs(kwargs_of()) == ORDER


def test_kwargs_are_plain_json_with_an_iso_start_time() -> None:
    kwargs = ORDER.to_kwargs()

    assert sorted(kwargs) == sorted(KEYS)
    assert kwargs["start_at"] == "2024-05-01T12:00:00.250000+00:00"
    assert json.loads(json.dumps(kwargs)) == kwargs


def test_given_a_start_time_in_another_zone_then_it_is_sent_and_read_as_utc() -> None:
    local = ORDER.start_at.astimezone(timezone(timedelta(hours=8)))
    order = RunOrder(1, 1, 1, "j", "c", local, {})

    kwargs = order.to_kwargs()
    back = RunOrder.from_kwargs(kwargs)

    assert kwargs["start_at"].endswith("+00:00")
    assert back.start_at == ORDER.start_at
    assert back.start_at.utcoffset() == timedelta(0)


def test_given_a_naive_start_time_then_it_is_read_as_utc() -> None:
    back = RunOrder.from_kwargs(kwargs_of(start_at="2024-05-01T12:00:00"))

    assert back.start_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("data", [None, {}])
def test_given_no_data_then_an_empty_object(data: Any) -> None:
    assert RunOrder.from_kwargs(kwargs_of(data=data)).data == {}


def test_given_data_left_out_then_an_empty_object() -> None:
    kwargs = kwargs_of()
    del kwargs["data"]

    assert RunOrder.from_kwargs(kwargs).data == {}


@pytest.mark.parametrize("key", [k for k in KEYS if k != "data"])
def test_given_a_required_key_missing_then_invalid_field_names_it(key: str) -> None:
    kwargs = kwargs_of()
    del kwargs[key]

    with pytest.raises(InvalidField) as info:
        RunOrder.from_kwargs(kwargs)

    assert info.value.field == key


@pytest.mark.parametrize(
    "changes",
    [
        {"task_id": "abc"},
        {"attempt": None},
        {"group_id": [7]},
        {"start_at": "yesterday"},
        {"start_at": None},
        {"start_at": "2024-02-30T00:00:00"},
        {"data": "not an object"},
        {"data": [1, 2]},
    ],
    ids=lambda c: f"{next(iter(c))}={next(iter(c.values()))!r}",
)
def test_given_a_malformed_value_then_invalid_field(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidField) as info:
        RunOrder.from_kwargs(kwargs_of(**changes))

    assert info.value.field in {next(iter(changes)), "order"}


@pytest.mark.parametrize(
    "changes",
    [
        {"task_id": True},
        {"task_id": 41.9},
        {"job_name": None},
        {"client_id": None},
        {"data": [["cursor", 17]]},
    ],
    ids=lambda c: f"{next(iter(c))}={next(iter(c.values()))!r}",
)
def test_given_a_value_of_the_wrong_type_then_it_is_rejected_not_coerced(
    changes: dict[str, Any],
) -> None:
    # A bool is not a task id, 41.9 is not 41, None is not the job named "None",
    # and a list of pairs is not the group's data object.
    with pytest.raises(InvalidField) as info:
        RunOrder.from_kwargs(kwargs_of(**changes))

    assert info.value.field in {next(iter(changes)), "order"}
