"""Event messages: batches round-trip through JSON; malformed input names the bad field."""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from fss.errors import InvalidField
from fss.events import (
    ENVELOPE_VERSION,
    EVENT_TYPES,
    ClientHeartbeat,
    ClientLeft,
    Event,
    TaskDataSaved,
    TaskFinished,
    TaskLogged,
    TaskProgressed,
    TaskStarted,
    decode_batch,
    decode_events,
    encode_batch,
    from_dict,
    storable_text,
    to_dict,
)

UTC = timezone.utc
AT = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
SHANGHAI = timezone(timedelta(hours=8))

EXAMPLES: list[Event] = [
    TaskStarted(task_id=7, attempt=1, client_id="w-1", at=AT),
    TaskProgressed(task_id=7, attempt=1, client_id="w-1", progress=0, at=AT),
    TaskProgressed(task_id=7, attempt=1, client_id="w-1", progress=100, at=AT),
    TaskLogged(
        task_id=7, attempt=1, client_id="w-1", group_id=3, level=2, content="héllo ✓\nline 2", at=AT
    ),
    TaskLogged(task_id=7, attempt=2, client_id="w-1", group_id=3, level=0, content="", at=AT),
    TaskFinished(task_id=7, attempt=1, client_id="w-1", success=True, run_speed_ms=15, at=AT),
    TaskFinished(
        task_id=8,
        attempt=3,
        client_id="w-2",
        success=False,
        run_speed_ms=0,
        at=AT,
        next_at=AT + timedelta(minutes=5),
        error="Traceback ...\nValueError: boom",
        data={"cursor": 17, "nested": {"a": [1, None, "x"]}},
    ),
    ClientHeartbeat(
        client_id="w-1",
        host="host-a",
        ip="10.0.0.5",
        pid=4242,
        job_names=("hello", "reports.nightly"),
        queue="fss.client.w-1",
        at=AT,
    ),
    ClientHeartbeat(
        client_id="go-1",
        host="host-b",
        ip="::1",
        pid=1,
        job_names=(),
        queue="fss.client.go-1",
        at=AT,
        language="go",
        accepting=False,
        active=2,
    ),
    TaskLogged(
        task_id=7, attempt=2, client_id="w-1", group_id=3, level=1, content="n", at=AT, seq=12
    ),
    TaskDataSaved(task_id=7, attempt=1, client_id="w-1", group_id=3, data={"cursor": 5}, at=AT),
    ClientLeft(client_id="w-1", at=AT),
]


def wire(events: list[Event]) -> Any:
    """What the recorder receives: the envelope after a trip through JSON text."""
    return json.loads(json.dumps(encode_batch(events)))


def valid_item(kind: str) -> dict[str, Any]:
    event = next(e for e in EXAMPLES if e.kind == kind)
    return dict(to_dict(event))


# -- round trip -------------------------------------------------------------------------------


def test_every_event_type_has_an_example() -> None:
    assert {e.kind for e in EXAMPLES} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e.kind)
def test_given_one_event_when_encoded_and_decoded_through_json_then_it_is_equal(
    event: Event,
) -> None:
    assert decode_batch(wire([event])) == [event]


def test_given_a_batch_of_every_type_then_order_and_values_survive() -> None:
    body = wire(EXAMPLES)

    assert body["v"] == ENVELOPE_VERSION
    assert [item["type"] for item in body["events"]] == [e.kind for e in EXAMPLES]
    assert decode_batch(body) == EXAMPLES


def test_given_an_empty_batch_then_no_events() -> None:
    assert decode_batch(wire([])) == []


def test_given_times_in_another_zone_then_they_arrive_as_the_same_instant_in_utc() -> None:
    local = AT.astimezone(SHANGHAI)
    event = TaskFinished(7, 1, "w-1", True, 5, at=local, next_at=local + timedelta(hours=1))

    (decoded,) = decode_batch(wire([event]))

    assert isinstance(decoded, TaskFinished)
    assert decoded.at == AT
    assert decoded.at.utcoffset() == timedelta(0)
    assert decoded.next_at == AT + timedelta(hours=1)


def test_given_a_naive_time_on_the_wire_then_it_is_read_as_utc() -> None:
    item = valid_item("started") | {"at": "2024-05-01T12:00:00"}

    assert from_dict(item).at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # type: ignore[attr-defined]


def test_given_a_log_event_then_its_event_id_survives_so_replays_are_recognized() -> None:
    event = EXAMPLES[3]
    assert isinstance(event, TaskLogged)

    (decoded,) = decode_batch(wire([event]))

    assert isinstance(decoded, TaskLogged)
    assert decoded.event_id == event.event_id
    assert len(event.event_id) == 32


def test_given_a_log_event_without_an_id_then_one_is_made_up() -> None:
    item = valid_item("log")
    del item["event_id"]

    decoded = from_dict(item)

    assert isinstance(decoded, TaskLogged)
    assert len(decoded.event_id) == 32


def test_required_fields_are_the_ones_every_sender_must_set() -> None:
    assert ("started", "task_id") in REQUIRED
    assert ("log", "event_id") not in REQUIRED
    assert ("finished", "next_at") not in REQUIRED
    assert ("heartbeat", "language") not in REQUIRED


def test_given_optional_fields_left_out_then_defaults_apply() -> None:
    item = {
        "type": "finished",
        "task_id": 1,
        "attempt": 1,
        "client_id": "w",
        "success": True,
        "run_speed_ms": 3,
        "at": AT.isoformat(),
    }

    decoded = from_dict(item)

    assert decoded == TaskFinished(1, 1, "w", True, 3, AT)


def test_given_optional_fields_set_to_null_then_they_are_none() -> None:
    item = valid_item("finished") | {"next_at": None, "error": None, "data": None}

    decoded = from_dict(item)

    assert isinstance(decoded, TaskFinished)
    assert (decoded.next_at, decoded.error, decoded.data) == (None, None, None)


def test_heartbeat_job_names_travel_as_a_list_and_come_back_as_a_tuple() -> None:
    body = wire([EXAMPLES[7]])

    assert body["events"][0]["job_names"] == ["hello", "reports.nightly"]
    (decoded,) = decode_batch(body)
    assert isinstance(decoded, ClientHeartbeat)
    assert decoded.job_names == ("hello", "reports.nightly")


def test_events_are_frozen() -> None:
    with pytest.raises(AttributeError):
        EXAMPLES[0].task_id = 99  # type: ignore[attr-defined]


# -- malformed envelopes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [None, [], "events", 42, {}, {"v": 1}, {"events": None}, {"events": {}}, {"events": "x"}],
)
def test_given_a_malformed_envelope_then_invalid_field_names_events(body: Any) -> None:
    with pytest.raises(InvalidField) as info:
        decode_batch(body)

    assert info.value.field == "events"


@pytest.mark.parametrize("item", [None, 1, "started", ["started"], True])
def test_given_an_event_that_is_not_an_object_then_invalid_field_names_event(item: Any) -> None:
    with pytest.raises(InvalidField) as info:
        decode_batch({"v": 1, "events": [item]})

    assert info.value.field == "event"


@pytest.mark.parametrize("kind", ["unknown", "", "Started", None, 1, ["started"]])
def test_given_an_unknown_type_then_invalid_field_names_type(kind: Any) -> None:
    item = valid_item("started") | {"type": kind}

    with pytest.raises(InvalidField) as info:
        decode_batch({"events": [item]})

    assert info.value.field == "type"


def test_given_no_type_then_invalid_field_names_type() -> None:
    item = valid_item("started")
    del item["type"]

    with pytest.raises(InvalidField) as info:
        from_dict(item)

    assert info.value.field == "type"


REQUIRED = [
    (kind, f.name)
    for kind, cls in EVENT_TYPES.items()
    for f in fields(cls)
    if f.default is MISSING and f.default_factory is MISSING
]


@pytest.mark.parametrize(("kind", "name"), REQUIRED)
def test_given_a_required_field_missing_then_invalid_field_names_it(kind: str, name: str) -> None:
    item = valid_item(kind)
    del item[name]

    with pytest.raises(InvalidField) as info:
        decode_batch({"events": [item]})

    assert info.value.field == name
    assert "missing" in info.value.reason


@pytest.mark.parametrize(("kind", "name"), REQUIRED)
def test_given_a_required_field_null_then_invalid_field_names_it(kind: str, name: str) -> None:
    item = valid_item(kind) | {name: None}

    with pytest.raises(InvalidField) as info:
        from_dict(item)

    assert info.value.field == name


@pytest.mark.parametrize(
    ("kind", "name", "value"),
    [
        ("started", "task_id", "7"),
        ("started", "task_id", 7.0),
        ("started", "task_id", True),
        ("started", "attempt", False),
        ("started", "attempt", [1]),
        ("started", "client_id", 5),
        ("started", "at", 1714564800),
        ("started", "at", "yesterday"),
        ("started", "at", "2024-13-01T00:00:00"),
        ("progress", "progress", "50"),
        ("progress", "progress", 50.5),
        ("progress", "progress", True),
        ("log", "group_id", "3"),
        ("log", "level", True),
        ("log", "level", "Information"),
        ("log", "content", 42),
        ("log", "content", None),
        ("finished", "success", "true"),
        ("finished", "success", 1),
        ("finished", "run_speed_ms", True),
        ("finished", "run_speed_ms", 1.5),
        ("finished", "next_at", "soon"),
        ("finished", "next_at", 5),
        ("finished", "error", ["boom"]),
        ("finished", "data", [1, 2]),
        ("finished", "data", "{}"),
        ("heartbeat", "pid", "4242"),
        ("heartbeat", "pid", True),
        ("heartbeat", "job_names", "hello"),
        ("heartbeat", "job_names", ["hello", 1]),
        ("heartbeat", "job_names", {"hello": 1}),
        ("heartbeat", "host", None),
        ("heartbeat", "queue", 7),
        ("heartbeat", "language", 3),
        ("heartbeat", "accepting", "no"),
        ("heartbeat", "active", True),
        ("left", "client_id", ["w-1"]),
        ("left", "at", None),
    ],
)
def test_given_a_wrong_type_then_invalid_field_names_the_field(
    kind: str, name: str, value: Any
) -> None:
    item = valid_item(kind) | {name: value}

    with pytest.raises(InvalidField) as info:
        decode_batch({"v": 1, "events": [item]})

    assert info.value.field == name


@pytest.mark.parametrize(
    ("kind", "name", "value"),
    [
        ("progress", "progress", 101),
        ("progress", "progress", -1),
        ("progress", "progress", 10**6),
        ("log", "level", 9),
        ("log", "level", 6),
        ("log", "level", -1),
        ("finished", "run_speed_ms", -1),
        ("started", "task_id", 0),
        ("started", "task_id", -7),
        ("finished", "task_id", 0),
        ("started", "client_id", ""),
        ("heartbeat", "client_id", ""),
        ("left", "client_id", "c" * 129),
    ],
)
def test_given_a_value_out_of_range_then_invalid_field_names_the_field(
    kind: str, name: str, value: Any
) -> None:
    item = valid_item(kind) | {name: value}

    with pytest.raises(InvalidField) as info:
        decode_batch({"events": [item]})

    assert info.value.field == name


@pytest.mark.parametrize(
    ("kind", "name", "value"),
    [
        ("progress", "progress", 0),
        ("progress", "progress", 100),
        ("log", "level", 0),
        ("log", "level", 5),
        ("finished", "run_speed_ms", 0),
        ("left", "client_id", "c" * 128),
    ],
)
def test_given_a_value_at_the_edge_of_its_range_then_accepted(
    kind: str, name: str, value: Any
) -> None:
    item = valid_item(kind) | {name: value}

    (decoded,) = decode_batch({"events": [item]})

    assert getattr(decoded, name) == value


def test_given_one_bad_event_in_a_batch_then_the_whole_batch_is_rejected() -> None:
    body = wire(EXAMPLES)
    body["events"][2]["progress"] = 101

    with pytest.raises(InvalidField) as info:
        decode_batch(body)

    assert info.value.field == "progress"


def test_given_unknown_extra_fields_then_they_are_ignored() -> None:
    item = valid_item("started") | {"future_field": 1}

    assert from_dict(item) == EXAMPLES[0]


def test_the_error_message_starts_with_the_field_name() -> None:
    item = valid_item("progress") | {"progress": 101}

    with pytest.raises(InvalidField, match=r"^progress: must be 0\.\.100, got 101$"):
        from_dict(item)


# -- lenient decoding: one bad event costs only itself ------------------------------------


@pytest.mark.parametrize(
    ("kind", "name", "value"),
    [
        ("started", "task_id", 2**63),
        ("finished", "task_id", 2**64),
        ("log", "group_id", 2**63),
        ("started", "attempt", 2**31),
        ("heartbeat", "pid", 2**31),
        ("heartbeat", "active", -(2**31) - 1),
        ("finished", "run_speed_ms", 2**63),
        ("started", "at", "0001-01-01T00:00:00+05:00"),
        ("started", "at", "9999-12-31T23:59:59-05:00"),
        ("finished", "next_at", "0999-12-31T23:59:59+00:00"),
        ("finished", "next_at", "9000-01-01T00:00:00+00:00"),
    ],
)
def test_given_a_value_no_column_can_hold_then_invalid_field_names_the_field(
    kind: str, name: str, value: Any
) -> None:
    item = valid_item(kind) | {name: value}

    with pytest.raises(InvalidField) as info:
        from_dict(item)

    assert info.value.field == name


@pytest.mark.parametrize(
    ("kind", "name", "value"),
    [
        ("started", "task_id", 2**63 - 1),
        ("started", "attempt", 2**31 - 1),
        ("heartbeat", "pid", 2**31 - 1),
        ("started", "at", "1000-01-01T00:00:00+00:00"),
        ("started", "at", "8999-12-31T23:59:59+00:00"),
    ],
)
def test_given_the_widest_values_a_column_holds_then_accepted(
    kind: str, name: str, value: Any
) -> None:
    assert from_dict(valid_item(kind) | {name: value})


def test_given_bad_events_among_good_ones_then_the_good_ones_are_kept_in_order() -> None:
    body = wire(EXAMPLES)
    body["events"][2]["progress"] = 101
    body["events"][4] = ["not", "an", "object"]
    body["events"][0]["at"] = "0001-01-01T00:00:00+05:00"

    events, rejected = decode_events(body)

    kept = [e for i, e in enumerate(EXAMPLES) if i not in (0, 2, 4)]
    assert events == kept
    assert [r.reason.split(":")[0] for r in rejected] == ["at", "progress", "event"]
    assert rejected[1].raw == body["events"][2]


@pytest.mark.parametrize(
    "body", [None, "text", 17, [{"type": "left"}], {"v": 1}, {"events": {"a": 1}}]
)
def test_given_a_body_that_is_no_envelope_then_all_of_it_is_rejected_whole(body: Any) -> None:
    events, rejected = decode_events(body)

    assert events == []
    assert [(r.reason.split(":")[0], r.raw) for r in rejected] == [("events", body)]


def test_given_an_event_raising_something_unexpected_then_it_is_rejected_not_raised() -> None:
    # Data nested deeper than Python's recursion limit: RecursionError, not InvalidField
    nested: dict[str, Any] = {}
    for _ in range(5000):
        nested = {"x": nested}
    finished = valid_item("finished") | {"data": nested}

    events, rejected = decode_events({"events": [finished, valid_item("left")]})

    assert events == [EXAMPLES[-1]]
    assert rejected[0].reason.startswith("RecursionError: ")


def test_given_text_a_database_cannot_store_then_every_text_field_gets_replacements() -> None:
    bad = "a\x00b\ud800c"
    good = "a\ufffdb\ufffdc"
    body = {
        "events": [
            valid_item("log") | {"content": bad, "client_id": bad},
            valid_item("finished") | {"error": bad, "data": {bad: [bad, {"k": bad}]}},
            valid_item("heartbeat") | {"host": bad, "job_names": [bad]},
        ]
    }

    (log, finished, beat), rejected = decode_events(json.loads(json.dumps(body)))

    assert rejected == []
    assert isinstance(log, TaskLogged) and (log.content, log.client_id) == (good, good)
    assert isinstance(finished, TaskFinished)
    assert (finished.error, finished.data) == (good, {good: [good, {"k": good}]})
    assert isinstance(beat, ClientHeartbeat) and (beat.host, beat.job_names) == (good, (good,))


def test_storable_text_keeps_valid_text_and_its_length() -> None:
    assert storable_text("héllo ✓ 😀") == "héllo ✓ 😀"
    assert storable_text("\x00\udfff") == "\ufffd\ufffd"
