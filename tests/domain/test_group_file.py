"""Groups files: YAML or JSON read with line numbers, every error listed, render -> parse exact."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from fss.domain.alert_targets import TargetSpec
from fss.domain.cron import validate_cron
from fss.domain.group_file import (
    MAX_KEY,
    GroupEntry,
    GroupFileInvalid,
    check_target_names,
    named_targets,
    parse_group_document,
    parse_group_file,
    plan_targets,
    render_group_file,
    target_changes,
)
from fss.domain.group_plan import applied_text, plan_changes
from fss.domain.group_spec import GroupSpec
from fss.errors import InvalidField

UTC = timezone.utc
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "groups.schema.json"

VALID_YAML = """\
groups:
  - key: reports/nightly
    caption: Nightly report
    job_name: reports.nightly
    cron: "0 3 * * *"
    time_zone: Europe/Berlin
  - key: sync
    caption: Sync
    job_name: sync.run
    interval_ms: 60000
    data: {source: crm, batch: 500}
    enabled: false
    timeout_s: 120
    misfire: skip
    start_at: "2031-03-14T09:00:00+01:00"
  - key: self-paced
    caption: Self paced
    job_name: crawl
    job_sets_next: true
"""

INVALID_YAML = """\
groups:
  - key: a
    caption: ""
    job_name: "bad name"
    cron: "0 3 * * *"
    interval_ms: 5
    colour: red
  - key: a
    caption: B
    job_name: ok
    cron: "61 * * * *"
    time_zone: Mars/Olympus
    timeout_s: -1
    misfire: never
    enabled: "yes"
  - 5
  - caption: no key
    job_name: ok
"""


def cron_reason(expression: str) -> str:
    """What GroupSpec's cron check says (its wording belongs to fss.domain.cron)."""
    with pytest.raises(InvalidField) as info:
        validate_cron(expression)
    return info.value.reason


def problems(text: str, source: str = "groups.yaml") -> list[str]:
    with pytest.raises(GroupFileInvalid) as info:
        parse_group_file(text, source)
    return info.value.problems


def one_entry(fields: str) -> str:
    """A YAML file with one entry: key, caption and job_name, then `fields` (YAML lines)."""
    return "groups:\n  - key: k\n    caption: C\n    job_name: j\n" + "".join(
        f"    {line}\n" for line in fields.strip().splitlines()
    )


def only_problem(fields: str) -> str:
    found = problems(one_entry(fields))
    assert len(found) == 1, found
    return found[0]


# --- reading ----------------------------------------------------------------------------------


def test_given_a_valid_yaml_file_then_every_field_lands_in_the_spec() -> None:
    nightly, sync, paced = parse_group_file(VALID_YAML, "groups.yaml")

    assert nightly == GroupEntry(
        "reports/nightly",
        GroupSpec(
            caption="Nightly report",
            job_name="reports.nightly",
            cron="0 3 * * *",
            time_zone="Europe/Berlin",
        ),
    )
    assert sync.spec == GroupSpec(
        caption="Sync",
        job_name="sync.run",
        interval_ms=60000,
        data={"source": "crm", "batch": 500},
        is_enable=False,
        timeout_s=120,
        misfire="skip",
        start_at=datetime(2031, 3, 14, 8, 0, tzinfo=UTC),
    )
    assert paced.spec.job_sets_next and paced.spec.interval_ms is None and not paced.spec.cron


def test_values_are_normalized_as_group_add_does() -> None:
    (entry,) = parse_group_file(
        one_entry('cron: "0  3 * * ?"\ntime_zone: ""'), "groups.yaml"
    )
    assert entry.spec.cron == "0 3 * * *"
    assert entry.spec.time_zone is None


def test_given_an_invalid_file_then_every_bad_field_is_listed_with_its_line() -> None:
    assert problems(INVALID_YAML) == [
        "groups.yaml:3: groups[0].caption: must not be empty",
        "groups.yaml:4: groups[0].job_name: 'bad name' may only use letters, digits and _ . : -",
        "groups.yaml:6: groups[0].schedule: give exactly one of interval_ms, cron or "
        "job_sets_next, not interval_ms and cron",
        "groups.yaml:7: groups[0].colour: unknown field",
        "groups.yaml:8: groups[1].key: 'a' is already the key of the entry on line 2",
        f"groups.yaml:11: groups[1].cron: {cron_reason('61 * * * *')}",
        "groups.yaml:12: groups[1].time_zone: unknown time zone 'Mars/Olympus'",
        "groups.yaml:13: groups[1].timeout_s: must be a whole number of seconds > 0, got -1",
        "groups.yaml:14: groups[1].misfire: 'never' is not one of run-once, skip",
        "groups.yaml:15: groups[1].enabled: must be true or false, got a string",
        "groups.yaml:16: groups[2]: must be a mapping of fields (key, caption, ...)",
        "groups.yaml:17: groups[3].key: missing (required)",
        "groups.yaml:17: groups[3].schedule: missing: give exactly one of interval_ms, cron "
        "or job_sets_next: true",
    ]


def test_the_error_names_the_file_and_the_count() -> None:
    with pytest.raises(InvalidField) as info:
        parse_group_file(INVALID_YAML, "groups.yaml")
    assert str(info.value).startswith("groups.yaml: 13 errors, nothing was written; first: ")


@pytest.mark.parametrize(
    ("fields", "line", "reason"),
    [
        ("interval_ms: '1000'", 5, "interval_ms: must be a whole number, got a string"),
        ("interval_ms: true", 5, "interval_ms: must be a whole number, got a boolean"),
        ("interval_ms: 0", 5, "interval_ms: must be > 0, got 0"),
        ("interval_ms: 1.5", 5, "interval_ms: must be a whole number, got a number"),
        ("cron: 5", 5, "cron: must be a string, got a number"),
        ("job_sets_next: false", 2, "schedule: missing: give exactly one of"),
        ("job_sets_next: true\ncron: '* * * * *'", 6, "schedule: give exactly one of"),
        ("interval_ms: 1\ndata: [1, 2]", 6, "data: must be an object, got a list"),
        ("interval_ms: 1\ndata: {1: x}", 6, "data: keys must be strings, got 1"),
        ("interval_ms: 1\ndata: {a: [{2: x}]}", 6, "data: keys must be strings, got 2"),
        ("interval_ms: 1\ndata: {when: 2031-01-01}", 6, "data: is not JSON-serializable"),
        ("interval_ms: 1\ndata: {x: .nan}", 6, "data: is not JSON-serializable"),
        ("interval_ms: 1\nstart_at: 2031-01-01", 6, "start_at: 2031-01-01 has no time of day"),
        ("interval_ms: 1\nstart_at: soon", 6, "start_at: 'soon' is not an ISO 8601 time"),
        ("interval_ms: 1\nstart_at: '0999-01-01T00:00:00'", 6, "start_at: '0999-01-01T00:00"),
        ("interval_ms: 1\nenabled: null", 6, "enabled: must be true or false, got null"),
        ("interval_ms: 1\ntimeout_s: 604801", 6, "timeout_s: must be at most 604800"),
        ("interval_ms: 1\ncaption: again", 6, "caption: given twice (first on line 3)"),
        ("interval_ms: 1\nretries: 101", 6, "retries: must be 0..100, got 101"),
        ("interval_ms: 1\nretries: '2'", 6, "retries: must be a whole number, got '2'"),
        ("interval_ms: 1\nretry_delay_ms: 0", 6, "retry_delay_ms: must be 1..86400000, got 0"),
        ("interval_ms: 1\nretry_backoff: 0.5", 6, "retry_backoff: must be 1..10, got 0.5"),
        ("interval_ms: 1\nretry_backoff: .nan", 6, "retry_backoff: must be 1..10, got nan"),
        ("interval_ms: 1\nretry_delay_ms: 500\nretry_delay_max_ms: 100", 7,
         "retry_delay_max_ms: must be >= retry_delay_ms (500), got 100"),
        ("interval_ms: 1\nretry_jitter: 1", 6, "retry_jitter: must be true or false"),
        ("interval_ms: 1\nmax_run_s: 0", 6, "max_run_s: must be 1..604800, got 0"),
        ("interval_ms: 1\noverlap: queue", 6,
         "overlap: 'queue' is not one of skip, buffer_one, replace"),
        ("interval_ms: 1\nroute: random", 6,
         "route: 'random' is not one of round_robin, least_busy, sticky, failover, broadcast"),
        ("interval_ms: 1\nclient_tag: a b", 6, "client_tag: 'a b' must be 1..64"),
        ("interval_ms: 1\non_success: a", 6, "on_success: must be a list of group keys or ids"),
        ("interval_ms: 1\non_success: [a, a]", 6, "on_success: 'a' is listed twice"),
        ("interval_ms: 1\non_success: [0]", 6, "on_success: a group id is > 0, got 0"),
        ("interval_ms: 1\non_success: [1.5]", 6, "on_success: 1.5 is not a group key or id"),
        ("interval_ms: 1\njitter_ms: 3600001", 6, "jitter_ms: must be 0..3600000"),
        ("interval_ms: 1\nalert_targets: ops", 6,
         "alert_targets: must be a list of alert target names"),
        ("interval_ms: 1\nalert_targets: [ops, ops]", 6, "alert_targets: 'ops' is listed twice"),
        ("interval_ms: 1\nalert_targets: ['a b']", 6, "alert_targets: 'a b' is not a target name"),
        ("interval_ms: 1\nalert_rules: [run_failed, nope]", 6,
         "alert_rules: unknown rule 'nope' (rules: run_failed, "),
        ("interval_ms: 1\nalert_rules: [node_lost]", 6,
         "alert_rules: 'node_lost' is a rule about the cluster, not a group"),
        ("interval_ms: 1\nalert_rules: all", 6, "alert_rules: must be a list of rule names"),
        ("interval_ms: 1\nlate_after_s: 0", 6, "late_after_s: must be 1..31622400, got 0"),
        ("interval_ms: 1\nlate_after_s: 10m", 6, "late_after_s: must be a whole number, got '10m'"),
        ("interval_ms: 1\ndisabled_note: why", 6,
         "disabled_note: only a disabled group has one"),
        ("interval_ms: 1\nenabled: false\nenable_at: tomorrow", 7,
         "enable_at: 'tomorrow' is not an ISO 8601 time"),
    ],
)
def test_each_bad_value_is_reported_on_its_line_with_its_field(
    fields: str, line: int, reason: str
) -> None:
    found = only_problem(fields)
    assert found.startswith(f"groups.yaml:{line}: groups[0].{reason}"), found


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ('""', f"must be 1 to {MAX_KEY} printable characters"),
        ("x" * (MAX_KEY + 1), f"must be 1 to {MAX_KEY} printable characters"),
        ('"tab\\there"', f"must be 1 to {MAX_KEY} printable characters"),
        ('" padded"', "must not begin or end with a space"),
        ("42", "must be a string, got a number"),
    ],
)
def test_keys_are_1_to_128_printable_characters(key: str, reason: str) -> None:
    text = f"groups:\n  - key: {key}\n    caption: C\n    job_name: j\n    interval_ms: 1\n"
    assert problems(text) == [f"groups.yaml:2: groups[0].key: {reason}"]


def test_a_key_of_exactly_128_characters_with_inner_spaces_and_unicode_is_fine() -> None:
    key = "team ✓/" + "k" * (MAX_KEY - 7)
    text = f"groups:\n  - key: '{key}'\n    caption: C\n    job_name: j\n    interval_ms: 1\n"
    assert parse_group_file(text, "g.yaml")[0].key == key


def test_null_means_not_given_for_time_zone_timeout_and_start_at() -> None:
    (entry,) = parse_group_file(
        one_entry("interval_ms: 1000\ntime_zone: null\ntimeout_s: null\nstart_at: null"), "g"
    )
    assert entry.spec == GroupSpec(caption="C", job_name="j", interval_ms=1000)


def test_an_unquoted_yaml_timestamp_is_a_start_at_and_a_naive_time_is_utc() -> None:
    unquoted = "interval_ms: 1\nstart_at: 2031-03-14T09:00:00+2"
    assert isinstance(yaml.safe_load(one_entry(unquoted))["groups"][0]["start_at"], datetime)
    (aware,) = parse_group_file(one_entry(unquoted), "g")
    (naive,) = parse_group_file(one_entry("interval_ms: 1\nstart_at: '2031-03-14T09:00'"), "g")
    assert aware.spec.start_at == datetime(2031, 3, 14, 7, tzinfo=UTC)
    assert naive.spec.start_at == datetime(2031, 3, 14, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "g.yaml:1: groups: missing: the file needs a top-level `groups:` list"),
        ("- a\n- b\n", "g.yaml:1: groups: the file must be a mapping with a `groups:` list"),
        ("group:\n  - key: a\n", "g.yaml:1: group: unknown top-level field; expected groups"),
        ("groups: {}\n", "g.yaml:1: groups: must be a list (write `groups: []` for none)"),
        ("groups:\n", "g.yaml:1: groups: must be a list (write `groups: []` for none)"),
        # The wording is libyaml's or PyYAML's; the line is the same.
        ("groups:\n  - key: a\n  caption: b\n", "g.yaml:3: syntax: "),
        ("groups: [\n", "g.yaml:2: syntax: "),
        ("groups:\n  - key: !!python/name:os.system x\n", "g.yaml:2: groups[0].key: could not"),
    ],
)
def test_file_level_problems_have_a_line_too(text: str, expected: str) -> None:
    found = problems(text, "g.yaml")
    assert found[0].startswith(expected), found


def test_an_empty_list_and_a_schema_reference_are_fine() -> None:
    assert parse_group_file('$schema: "./groups.schema.json"\ngroups: []\n', "g.yaml") == []


# --- JSON ---------------------------------------------------------------------------------------


def test_json_validation_errors_carry_json_line_numbers() -> None:
    text = (
        '{\n\t"groups": [\n\t\t{"key": "a", "caption": "A", "job_name": "j",\n'
        '\t\t "interval_ms": -5},\n\t\t{"key": "b",\n\t\t "caption": "B",\n'
        '\t\t "job_name": "j", "cron": "* * * * *", "extra": {"x": [1, {"y": 2}]}}\n\t]\n}\n'
    )
    assert problems(text, "g.json") == [
        "g.json:4: groups[0].interval_ms: must be > 0, got -5",
        "g.json:7: groups[1].extra: unknown field",
    ]


def test_json_syntax_errors_carry_the_line_and_column() -> None:
    text = '{\n  "groups": [\n    {"key": "a",}\n  ]\n}\n'
    assert problems(text, "g.json") == [
        "g.json:3: syntax: Expecting property name enclosed in double quotes (column 17)"
    ]


def test_json_is_recognized_by_content_whatever_the_file_is_called() -> None:
    text = '{"groups": [{"key": "a", "caption": "A", "job_name": "j", "interval_ms": "1"}]}'
    assert problems(text, "<stdin>") == [
        "<stdin>:1: groups[0].interval_ms: must be a whole number, got a string"
    ]
    assert parse_group_file("{groups: []}", "flow.yaml") == []  # YAML flow style, not JSON


def test_json_top_level_problems() -> None:
    assert problems('[1]', "g.json") == [
        "g.json:1: groups: the file must be an object with a groups list"
    ]
    assert problems('{"groups": {}, "x": 1}', "g.json") == [
        'g.json:1: groups: must be a list (write `"groups": []` for none)',
        "g.json:1: x: unknown top-level field; expected groups or alert_targets",
    ]
    assert problems("{}", "g.json") == [
        "g.json:1: groups: missing: the file needs a top-level groups list"
    ]


def test_json_keeps_what_yaml_would_bend() -> None:
    """Escapes, surrogate pairs and compact separators read exactly as JSON means them."""
    text = (
        '{"groups":[{"key":"k","caption":"C\\u00e9","job_name":"j","job_sets_next":true,'
        '"data":{"emoji":"\\ud83d\\ude00","slash":"a\\/b","big":12345678901234567890}}]}'
    )
    (entry,) = parse_group_file(text, "g.json")
    assert entry.spec.caption == "Cé"
    assert entry.spec.data == {"emoji": "😀", "slash": "a/b", "big": 12345678901234567890}


# --- writing ------------------------------------------------------------------------------------

ROUND_TRIP = [
    GroupEntry("plain", GroupSpec(caption="Plain", job_name="j", interval_ms=1)),
    GroupEntry(
        "every/field ✓",
        GroupSpec(
            caption="Ünïcødé ✓ 😀",
            job_name="reports.nightly",
            cron="*/2 * * * * *",
            time_zone="America/New_York",
            data={
                "yes": "yes",
                "no": None,
                "date": "2031-01-01",
                "nested": {"list": [1, 2.5, True, "null"]},
                "lines": "a\nb\u2028c\td",
                "": "",
                "~": "#x: [y]",
            },
            start_at=datetime(2031, 3, 14, 9, 26, 53, 589793, tzinfo=UTC),
            is_enable=False,
            timeout_s=600,
            misfire="skip",
            retries=7,
            retry_delay_ms=250,
            retry_backoff=1.25,
            retry_delay_max_ms=30_000,
            retry_jitter=False,
            max_run_s=3600,
            overlap="buffer_one",
            route="broadcast",
            client_tag="eu-west:1",
            on_success=("plain", 42, "self"),
            jitter_ms=999,
            alert_targets=("ops-slack", "oncall.mail_2"),
            alert_rules=("run_failed", "group_late"),
            late_after_s=7200,
            disabled_note="paused for the migration: see OPS-12",
            enable_at=datetime(2031, 4, 1, 6, 0, tzinfo=UTC),
        ),
    ),
    GroupEntry("self", GroupSpec(caption="on", job_name="j", job_sets_next=True)),
    # No alerts at all ([]), which is not the default (null: the global rules).
    GroupEntry("quiet", GroupSpec(caption="q", job_name="j", interval_ms=5, alert_rules=())),
]


@pytest.mark.parametrize("file_format", ["yaml", "json"])
def test_render_then_parse_gives_the_same_entries(file_format: str) -> None:
    text = render_group_file(ROUND_TRIP, file_format)
    parsed = parse_group_file(text, f"export.{file_format}")

    assert parsed == [GroupEntry(e.key, e.spec.validated()) for e in ROUND_TRIP]
    assert not plan_changes(parsed, ROUND_TRIP, prune=True).has_changes


def test_rendering_leaves_defaults_out() -> None:
    text = render_group_file([ROUND_TRIP[0]], "yaml")
    assert text == (
        "groups:\n- key: plain\n  caption: Plain\n  job_name: j\n  interval_ms: 1\n"
    )
    assert json.loads(render_group_file([ROUND_TRIP[2]], "json")) == {
        "groups": [{"key": "self", "caption": "on", "job_name": "j", "job_sets_next": True}]
    }


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(InvalidField, match="format: 'xml' is not one of yaml, json"):
        render_group_file([], "xml")


# --- the plan ------------------------------------------------------------------------------------


def entry(key: str, **changes: Any) -> GroupEntry:
    values: dict[str, Any] = {"caption": "C", "job_name": "j", "interval_ms": 1000}
    values.update(changes)
    return GroupEntry(key, GroupSpec(**values))


def test_plan_lists_creates_updates_and_only_with_prune_deletes() -> None:
    current = [entry("same"), entry("old"), entry("moved", interval_ms=1000)]
    desired = [entry("new"), entry("same"), entry("moved", interval_ms=None, cron="0 * * * *")]

    plan = plan_changes(current, desired, prune=False)
    pruned = plan_changes(current, desired, prune=True)

    assert plan.describe() == [
        "+ create new",
        "~ update moved",
        "    interval_ms: 1000 -> null",
        '    cron: null -> "0 * * * *"',
    ]
    assert plan.summary() == "1 created, 1 updated, 0 deleted, 1 unchanged"
    assert pruned.describe()[-1] == "- delete old"
    assert pruned.summary() == "1 created, 1 updated, 1 deleted, 1 unchanged"


def test_plan_is_empty_when_in_sync_and_data_key_order_does_not_matter() -> None:
    current = [entry("a", data={"x": 1, "y": 2})]
    plan = plan_changes(current, [entry("a", data={"y": 2, "x": 1})], prune=True)
    assert not plan.has_changes and plan.describe() == [] and plan.unchanged == 1


def test_plan_tells_true_from_1_in_data_and_shows_times_and_switches() -> None:
    start = datetime(2031, 1, 1, tzinfo=UTC)
    current = [entry("a", data={"x": 1}, start_at=start)]
    desired = [entry("a", data={"x": True}, is_enable=False, start_at=start + timedelta(hours=1))]
    assert plan_changes(current, desired, prune=False).describe() == [
        "~ update a",
        '    data: {"x": 1} -> {"x": true}',
        "    enabled: true -> false",
        "    start_at: 2031-01-01T00:00:00+00:00 -> 2031-01-01T01:00:00+00:00",
    ]


# --- the JSON Schema -----------------------------------------------------------------------------


def schema_validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_json_schema_accepts_what_fss_writes_and_reads() -> None:
    validator = schema_validator()
    for text in (render_group_file(ROUND_TRIP, "json"), json.dumps(yaml.safe_load(VALID_YAML))):
        document = json.loads(text)
        assert list(validator.iter_errors(document)) == []
        parse_group_file(text, "g.json")


@pytest.mark.parametrize(
    "broken",
    [
        {"caption": "no key", "job_name": "j", "interval_ms": 1},
        {"key": "k", "caption": "C", "job_name": "j"},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "cron": "* * * * *"},
        {"key": "k", "caption": "C", "job_name": "j", "cron": "* * * * *", "job_sets_next": True},
        {"key": "k", "caption": "C", "job_name": "j", "job_sets_next": False},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "colour": "red"},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 0},
        {"key": "k", "caption": "C", "job_name": "bad name", "interval_ms": 1},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "misfire": "never"},
        {"key": " k", "caption": "C", "job_name": "j", "interval_ms": 1},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "data": []},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "retries": 101},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "overlap": "queue"},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "route": "random"},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "retry_backoff": 0.5},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "client_tag": "a b"},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "on_success": ["a", "a"]},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "jitter_ms": -1},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1,
         "alert_targets": ["a", "a"]},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1,
         "alert_targets": ["a b"]},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1,
         "alert_targets": [f"t{i}" for i in range(21)]},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "alert_rules": ["nope"]},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1,
         "alert_rules": ["client_lost"]},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "alert_rules": "hung"},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "late_after_s": 0},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1,
         "late_after_s": 31_622_401},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "disabled_note": "x"},
        {"key": "k", "caption": "C", "job_name": "j", "interval_ms": 1, "enabled": True,
         "enable_at": "2031-01-01T00:00:00Z"},
    ],
)
def test_the_json_schema_rejects_what_fss_rejects(broken: dict[str, Any]) -> None:
    validator = schema_validator()
    text = json.dumps({"groups": [broken]})
    assert list(validator.iter_errors(json.loads(text))) != []
    with pytest.raises(GroupFileInvalid):
        parse_group_file(text, "g.json")


def test_rendering_writes_only_the_policies_away_from_their_default() -> None:
    spec = GroupSpec(caption="C", job_name="j", interval_ms=1, retries=2, route="sticky",
                     retry_jitter=False, on_success=("a", 3))
    document = GroupEntry("k", spec.validated()).document()
    assert {k: v for k, v in document.items() if k not in ("key", "caption", "job_name")} == {
        "interval_ms": 1, "retries": 2, "retry_jitter": False, "route": "sticky",
        "on_success": ["a", 3],
    }


def test_the_diff_names_each_policy_that_changes() -> None:
    before = GroupEntry("k", GroupSpec(caption="C", job_name="j", interval_ms=1))
    after = GroupEntry("k", GroupSpec(caption="C", job_name="j", interval_ms=1, retries=3,
                                      overlap="replace", on_success=("x",), max_run_s=60))
    assert plan_changes([before], [after], prune=False).describe() == [
        "~ update k",
        "    retries: 0 -> 3",
        "    max_run_s: null -> 60",
        '    overlap: "skip" -> "replace"',
        '    on_success: [] -> ["x"]',
    ]


def test_rendering_writes_the_alert_settings_away_from_their_default() -> None:
    spec = GroupSpec(caption="C", job_name="j", interval_ms=1, alert_targets=("ops",),
                     alert_rules=("hung", "run_failed"), late_after_s=600)
    document = GroupEntry("k", spec.validated()).document()
    assert {k: document[k] for k in ("alert_targets", "alert_rules", "late_after_s")} == {
        "alert_targets": ["ops"], "alert_rules": ["run_failed", "hung"], "late_after_s": 600,
    }
    plain = GroupEntry("k", GroupSpec(caption="C", job_name="j", interval_ms=1)).document()
    assert not plain.keys() & {"alert_targets", "alert_rules", "late_after_s"}
    # [] (no alerts) is written: leaving it out would mean every rule on globally.
    quiet = GroupEntry("k", GroupSpec(caption="C", job_name="j", interval_ms=1, alert_rules=()))
    assert quiet.document()["alert_rules"] == []


def test_null_means_the_default_for_the_alert_settings() -> None:
    (entry,) = parse_group_file(
        one_entry("interval_ms: 1\nalert_targets: null\nalert_rules: null\nlate_after_s: null"),
        "g.yaml",
    )
    assert entry.spec == GroupSpec(caption="C", job_name="j", interval_ms=1)
    (empty,) = parse_group_file(one_entry("interval_ms: 1\nalert_targets: []\nalert_rules: []"),
                                "g.yaml")
    assert (empty.spec.alert_targets, empty.spec.alert_rules) == ((), ())


def test_the_diff_names_each_alert_setting_that_changes() -> None:
    before = GroupEntry("k", GroupSpec(caption="C", job_name="j", interval_ms=1))
    after = GroupEntry("k", GroupSpec(caption="C", job_name="j", interval_ms=1,
                                      alert_targets=("ops",), alert_rules=(),
                                      late_after_s=900))
    assert plan_changes([before], [after], prune=False).describe() == [
        "~ update k",
        '    alert_targets: null -> ["ops"]',
        "    alert_rules: null -> []",
        "    late_after_s: null -> 900",
    ]
    back = plan_changes([after], [before], prune=False).describe()
    assert back[1:] == [
        '    alert_targets: ["ops"] -> null',
        "    alert_rules: [] -> null",
        "    late_after_s: 900 -> null",
    ]


def test_an_apply_record_from_before_the_alert_settings_keeps_hand_set_ones() -> None:
    """A group applied before the alert settings existed records none of them; a deploy of
    the unchanged file must not undo targets or rules someone set on it by hand since."""
    file_entry = GroupEntry("k", GroupSpec(caption="C", job_name="j", interval_ms=1))
    old_record = json.loads(applied_text(file_entry))
    for name in ("alert_targets", "alert_rules", "late_after_s"):
        del old_record[name]
    live = GroupEntry("k", GroupSpec(caption="C", job_name="j", interval_ms=1,
                                     alert_targets=("ops",), alert_rules=("hung",),
                                     late_after_s=60))
    plan = plan_changes([live], [file_entry], prune=False, applied={"k": json.dumps(old_record)})
    assert not plan.has_changes
    # A file that sets them wins over the hand-set values, as for every field.
    wanted = GroupEntry("k", GroupSpec(caption="C", job_name="j", interval_ms=1,
                                       alert_rules=()))
    plan = plan_changes([live], [wanted], prune=False, applied={"k": json.dumps(old_record)})
    assert plan.describe() == ["~ update k", '    alert_rules: ["hung"] -> []']


# --- the alert_targets section ---------------------------------------------------------------

HOOK_SECRET = "whsec-9f8e7d6c5b4a"
SMTP_PASSWORD = "s3cr3t-smtp-pa55"
TARGETS_YAML = """\
alert_targets:
  - name: ops-hook
    kind: webhook
    url: https://hooks.example.com/fss
    secret: ${HOOK_SECRET}
    headers: {X-Team: ops}
    rules: [run_failed, group_late]
  - name: oncall.mail
    kind: email
    default: false
    host: smtp.example.com
    user: fss
    password: ${SMTP_PASSWORD}
    from: fss@example.com
    to: [a@example.com, b@example.com]
groups:
  - key: backup
    caption: Backup
    job_name: backup.run
    cron: "0 2 * * *"
    alert_targets: [ops-hook, oncall.mail]
"""
ENV = {"HOOK_SECRET": HOOK_SECRET, "SMTP_PASSWORD": SMTP_PASSWORD}


def document_problems(text: str, source: str = "groups.yaml",
                      env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(GroupFileInvalid) as info:
        parse_group_document(text, source, ENV if env is None else env)
    return info.value.problems


def test_a_groups_file_defines_alert_targets_with_secrets_from_the_environment() -> None:
    document = parse_group_document(TARGETS_YAML, "groups.yaml", ENV)
    hook, mail = document.targets
    assert (hook.name, hook.kind, hook.config) == ("ops-hook", "webhook", {
        "url": "https://hooks.example.com/fss", "secret": HOOK_SECRET,
        "headers": {"X-Team": "ops"},
    })
    assert hook.rules == frozenset({"run_failed", "group_late"}) and hook.is_default
    assert (mail.kind, mail.is_default, mail.config["password"], mail.config["port"]) == (
        "email", False, SMTP_PASSWORD, 587
    )
    assert [e.key for e in document.entries] == ["backup"]
    assert document.entries[0].spec.alert_targets == ("ops-hook", "oncall.mail")
    # The same file as JSON reads the same; parse_group_file reads only the groups.
    as_json = json.dumps(yaml.safe_load(TARGETS_YAML))
    assert parse_group_document(as_json, "groups.json", ENV) == document
    assert parse_group_file(TARGETS_YAML, "groups.yaml") == document.entries
    assert parse_group_document(TARGETS_YAML, "g.yaml", ENV, fast=False) == document


def test_a_file_without_the_section_or_with_it_empty_defines_no_targets() -> None:
    plain = parse_group_document(VALID_YAML, "groups.yaml", ENV)
    assert plain.targets == [] and len(plain.entries) == 3
    for section in ("alert_targets:\n", "alert_targets: []\n"):
        assert parse_group_document(section + "groups: []\n", "g.yaml", ENV).targets == []
    assert parse_group_document('{"alert_targets": null, "groups": []}', "g.json").targets == []


@pytest.mark.parametrize(
    ("replace_from", "replace_to", "expected"),
    [
        ("url: https://hooks.example.com/fss", "url: ftp://x",
         "groups.yaml:4: alert_targets[0].url: must be http:// or https:// with a host"),
        ("kind: email", "kind: pigeon", "groups.yaml:9: alert_targets[1].kind: unknown kind"),
        ("    from: fss@example.com\n", "",
         "groups.yaml:8: alert_targets[1].from: required: the sender's address"),
        ("rules: [run_failed, group_late]", "rules: [run_failed, nope]",
         "groups.yaml:7: alert_targets[0].rules: "),
        ("    headers: {X-Team: ops}\n", "    colour: red\n",
         "groups.yaml:6: alert_targets[0].colour: is no setting of a webhook target"),
        ("  - name: oncall.mail", "  - name: ops-hook",
         "groups.yaml:8: alert_targets[1].name: 'ops-hook' is already the name of the target"
         " on line 2"),
        ("    default: false\n", "    kind: email\n",
         "groups.yaml:10: alert_targets[1].kind: given twice (first on line 9)"),
    ],
    ids=["url", "kind", "missing", "rule", "unknown", "duplicate_name", "field_twice"],
)
def test_a_bad_target_entry_is_one_line_naming_its_field_and_line(
    replace_from: str, replace_to: str, expected: str
) -> None:
    assert replace_from in TARGETS_YAML
    found = document_problems(TARGETS_YAML.replace(replace_from, replace_to))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_target_problems_are_listed_with_the_groups_problems_in_line_order() -> None:
    text = TARGETS_YAML.replace("url: https://hooks.example.com/fss", "url: ftp://x").replace(
        'cron: "0 2 * * *"', 'cron: "61 * * * *"'
    )
    found = document_problems(text)
    assert [line.split(": ")[0:2] for line in found] == [
        ["groups.yaml:4", "alert_targets[0].url"], ["groups.yaml:20", "groups[0].cron"],
    ]


def test_an_unset_variable_names_it_and_a_problem_never_shows_a_secret() -> None:
    found = document_problems(TARGETS_YAML, env={"HOOK_SECRET": HOOK_SECRET})
    assert found == [
        "groups.yaml:13: alert_targets[1].password: environment variable SMTP_PASSWORD is "
        "not set"
    ]
    # A secret given in the file itself, next to a bad field: the problem names the field only.
    text = TARGETS_YAML.replace("${HOOK_SECRET}", HOOK_SECRET).replace(
        "X-Team: ops", "Content-Type: text/plain"
    )
    found = document_problems(text)
    assert found == [
        "groups.yaml:6: alert_targets[0].headers: Content-Type is set by fss and cannot be "
        "replaced"
    ]
    with pytest.raises(GroupFileInvalid) as info:
        parse_group_document(text, "groups.yaml", ENV)
    assert HOOK_SECRET not in str(info.value) and SMTP_PASSWORD not in str(info.value)


@pytest.mark.parametrize(
    ("text", "source", "expected"),
    [
        ("alert_targets: {}\ngroups: []\n", "g.yaml",
         "g.yaml:1: alert_targets: must be a list of alert targets"),
        ("alert_targets: [5]\ngroups: []\n", "g.yaml",
         "g.yaml:1: alert_targets[0]: must be a mapping (name, kind, settings)"),
        ('{"alert_targets": "x", "groups": []}', "g.json",
         "g.json:1: alert_targets: must be a list of alert targets"),
        ('{\n"groups": [],\n"alert_targets": [\n{"name": "a", "kind": "slack"}]}', "g.json",
         "g.json:4: alert_targets[0].url: required"),
        ("alert_targets: []\n", "g.yaml",
         "g.yaml:1: groups: missing: the file needs a top-level `groups:` list"),
    ],
)
def test_section_level_problems(text: str, source: str, expected: str) -> None:
    found = document_problems(text, source)
    assert found[0].startswith(expected), found


def target(**changes: Any) -> TargetSpec:
    values: dict[str, Any] = {
        "name": "ops-hook", "kind": "webhook",
        "config": {"url": "https://hooks.example.com/fss/T0K3N", "secret": HOOK_SECRET,
                   "headers": {"Authorization": "Bearer b34r3r"}},
    }
    values.update(changes)
    return TargetSpec(**values).validated()


def test_the_target_plan_shows_what_changes_but_never_a_secret() -> None:
    before = target()
    after = target(
        config={"url": "https://hooks.example.com/fss/N3W", "secret": "other-secret",
                "headers": {"Authorization": "Bearer n3w", "X-Team": "ops"}},
        is_default=False, rules=frozenset({"hung"}), rate_per_min=5,
    )
    plan = plan_targets({"ops-hook": before}, [after, target(name="new-hook")])
    assert plan.describe() == [
        "+ create alert target new-hook (webhook)",
        "~ update alert target ops-hook",
        "    default: true -> false",
        '    rules: null -> ["hung"]',
        "    rate_per_min: 20 -> 5",
        "    header Authorization changed",
        "    header X-Team added",
        "    secret changed",
        "    url changed (in its path or query, not shown)",
    ]
    shown = "\n".join(plan.describe())
    for secret in ("T0K3N", "N3W", HOOK_SECRET, "other-secret", "b34r3r", "n3w"):
        assert secret not in shown
    assert plan.has_changes and plan.summary() == (
        "alert targets: 1 created, 1 updated, 0 unchanged"
    )
    moved = target(config={"url": "https://other.example.org/x"})
    assert target_changes(before, moved) == (
        "header Authorization removed",
        "secret removed",
        'url: "https://hooks.example.com/***" -> "https://other.example.org/***"',
    )
    same = plan_targets({"ops-hook": before}, [target()])
    assert not same.has_changes and same.unchanged == 1 and same.describe() == []


def test_a_group_naming_a_target_nobody_defined_is_named_with_its_field() -> None:
    entries = [
        GroupEntry("a", GroupSpec(caption="C", job_name="j", interval_ms=1,
                                  alert_targets=("ops",))),
        GroupEntry("b", GroupSpec(caption="C", job_name="j", interval_ms=1,
                                  alert_targets=("ops", "pager", "mail"))),
    ]
    assert named_targets(entries) == {"ops", "pager", "mail"}
    check_target_names(entries, {"ops", "pager", "mail"})
    with pytest.raises(InvalidField) as info:
        check_target_names(entries, {"ops"})
    assert str(info.value) == (
        "groups[1].alert_targets: group 'b' names alert target 'pager', which is neither in "
        "the file's alert_targets nor in the database (1 more such name)"
    )


def test_the_json_schema_takes_the_alert_targets_section() -> None:
    validator = schema_validator()
    document = yaml.safe_load(TARGETS_YAML)
    assert list(validator.iter_errors(document)) == []
    for broken in (
        {"name": "a", "kind": "slack"},
        {"name": "a b", "kind": "slack", "url": "https://x"},
        {"name": "a", "kind": "pigeon", "url": "https://x"},
        {"name": "a", "kind": "slack", "url": "https://x", "secret": "s"},
        {"name": "a", "kind": "email", "host": "h", "from": "a@b.c", "to": ["x@y.z"],
         "url": "https://x"},
        {"name": "a", "kind": "webhook", "url": "https://x", "rate_per_min": 0},
    ):
        text = json.dumps({"groups": [], "alert_targets": [broken]})
        assert list(validator.iter_errors(json.loads(text))) != [], broken
        with pytest.raises(GroupFileInvalid):
            parse_group_document(text, "g.json", {})
