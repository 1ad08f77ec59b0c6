"""fss.domain.group_file_fast: the fast readers read a file exactly as the full ones do.

Each file is read both ways: the fast reader gives the same raw entries (fields, lines,
values) as the full reader, or gives up (NotPlain) and leaves the file to it; parse_group_file
then returns the same entries, or reports the same problems, as the full readers alone.
"""

from __future__ import annotations

import json
import sys
import unicodedata

import pytest

from fss.domain.group_file import (
    GroupFileInvalid,
    Problems,
    parse_group_file,
    read_json,
    read_yaml,
    render_group_file,
)
from fss.domain.group_file_fast import NotPlain, plain_json_entries, plain_yaml_entries
from fss.domain.group_spec import LINE_BREAKING, LINE_BREAKING_CATEGORIES

HEAD = "groups:\n- key: a\n  caption: c\n  job_name: j\n  interval_ms: 1000\n"

# Plain files: every kind of scalar YAML 1.1 resolves, quoted and plain, nested and flow.
PLAIN_YAML = {
    "ints": HEAD + "  data: {a: 0, b: 7, c: -3, d: 0x1f, e: 0o17, f: 017, g: 1_000, h: 1:30,"
    " i: +5, j: 0b101}\n",
    "floats": HEAD + "  data: {a: 1.5, b: .inf, c: -.Inf, d: 1e3, e: .nan, f: 6.8523015e+5}\n",
    "bools": HEAD + "  data: {a: yes, b: No, c: on, d: OFF, e: TRUE, f: false, g: y, h: n}\n",
    "nulls": HEAD + "  data: {a: ~, b: null, c: , d: Null}\n  time_zone:\n",
    "times": HEAD + "  start_at: 2030-01-02T03:04:05Z\n"
    "  data: {d: 2026-01-01, t: 2026-1-1 1:2:3}\n",
    "quoted": HEAD + "  data: {a: '1', b: \"true\", c: 'null', d: \"~\", e: '2026-01-01'}\n",
    "keys": HEAD + "  data: {1: x, true: y, null: z, 1.5: w}\n  yes: 1\n",
    "nested": HEAD + "  data:\n    l: [1, [2, {x: 3}], []]\n    m: {}\n"
    "    s: |\n      two\n      lines\n",
    "unicode": "groups:\n- key: 'team/ü ✓'\n  caption: Nächtlich 😀\n  job_name: j\n"
    "  cron: 0 * * * *\n",
    "flow": "groups: [{key: a, caption: c, job_name: j, job_sets_next: true}, {key: b}, 7, []]\n",
    "schema": "$schema: ./groups.schema.json\n" + HEAD + "- key: b\n  caption: d\n",
    "problems": HEAD + "  timeout_s: -1\n  misfire: never\n  bogus: 1\n- not a mapping\n"
    "- key: a\n  caption: ''\n  job_name: 'x y'\n  cron: 1 2 3\n  interval_ms: 5\n",
    "given_twice": HEAD + "  caption: again\n",
    "empty_groups": "groups: []\n",
    "comments": "# groups\ngroups: # the list\n- key: a  # k\n  caption: c\n  job_name: j\n"
    "  interval_ms: 1000\n",
}

# Files the fast reader leaves to the full one.
NOT_PLAIN_YAML = {
    "anchor_alias": HEAD + "  data: &d {a: 1}\n- key: b\n  caption: c\n  job_name: j\n"
    "  interval_ms: 1000\n  data: *d\n",
    "tag": HEAD + "  data: {a: !!str 1}\n",
    "merge": HEAD + "  data: {<<: {a: 1}, b: 2}\n",
    "bad_timestamp": HEAD + "  start_at: 2026-02-30\n",
    "unknown_top": "other: 1\n" + HEAD,
    "groups_twice": HEAD + "groups: []\n",
    "not_a_list": "groups: {a: 1}\n",
    "no_groups": "$schema: x\n",
    "empty": "",
    "scalar_root": "just text\n",
    "two_documents": HEAD + "---\n" + HEAD,
    "syntax": HEAD + "  data: {a: [1, 2}\n",
    "complex_key": HEAD + "  data: {[1, 2]: x}\n",
    "binary": HEAD + "  data: {b: !!binary aGk=}\n",
}


def full_yaml(text: str) -> list:
    return read_yaml(text, Problems("f.yaml"))


def outcome(text: str, source: str, fast: bool) -> object:
    try:
        return parse_group_file(text, source, fast=fast)
    except GroupFileInvalid as exc:
        return exc.problems
    except Exception as exc:  # the full reader's own failures count too
        return repr(exc)


@pytest.mark.parametrize("text", PLAIN_YAML.values(), ids=PLAIN_YAML.keys())
def test_a_plain_yaml_file_reads_as_the_full_reader_reads_it(text: str) -> None:
    assert list(plain_yaml_entries(text)) == full_yaml(text)
    assert outcome(text, "f.yaml", fast=True) == outcome(text, "f.yaml", fast=False)


@pytest.mark.parametrize("text", NOT_PLAIN_YAML.values(), ids=NOT_PLAIN_YAML.keys())
def test_a_file_beyond_the_plain_shape_is_left_to_the_full_reader(text: str) -> None:
    with pytest.raises(NotPlain):
        list(plain_yaml_entries(text))
    assert outcome(text, "f.yaml", fast=True) == outcome(text, "f.yaml", fast=False)


JSON_FILES = {
    "valid": {"groups": [{"key": "a", "caption": "c", "job_name": "j", "interval_ms": 1000,
                          "data": {"x": [1, True, None, 1.5, {"y": "z"}]}}]},
    "problems": {"$schema": "s", "groups": [{"key": "a", "caption": "", "job_name": "j",
                                             "interval_ms": True}, 5]},
    "duplicate_key": {"groups": [{"key": "a", "caption": "c", "job_name": "j", "cron": "0 * * * *"}
                                 for _ in range(2)]},
    "unknown_top": {"groups": [], "other": 1},
    "not_a_list": {"groups": {}},
}


@pytest.mark.parametrize("document", JSON_FILES.values(), ids=JSON_FILES.keys())
def test_a_json_file_gives_the_entries_or_problems_of_the_full_reader(document: dict) -> None:
    text = json.dumps(document, indent=2)
    assert outcome(text, "f.json", fast=True) == outcome(text, "f.json", fast=False)


def test_a_json_member_given_twice_is_left_to_the_full_reader() -> None:
    text = '{"groups": [{"key": "a", "caption": "c", "caption": "d", "job_name": "j"}]}'
    with pytest.raises(NotPlain):
        plain_json_entries(text)
    assert outcome(text, "f.json", fast=True) == outcome(text, "f.json", fast=False)
    assert "given twice" in str(outcome(text, "f.json", fast=True))


def test_json_problems_keep_their_lines() -> None:
    text = json.dumps(JSON_FILES["problems"], indent=2)
    problems = outcome(text, "f.json", fast=True)
    assert isinstance(problems, list) and all(not p.startswith("f.json:0:") for p in problems)
    caption = [p for p in problems if "].caption" in p]
    assert caption == ["f.json:6: groups[0].caption: must not be empty"]
    assert read_json(text, Problems("f.json"))[0].line == 4


def test_a_rendered_file_round_trips_through_both_readers() -> None:
    second = HEAD.replace("key: a", "key: b") + "  start_at: 2030-01-02T03:04:05Z\n"
    entries = parse_group_file(PLAIN_YAML["unicode"] + second[len("groups:\n"):], "f.yaml")
    assert len(entries) == 2
    for file_format in ("yaml", "json"):
        text = render_group_file(entries, file_format)
        source = f"f.{file_format}"
        assert parse_group_file(text, source) == parse_group_file(text, source, fast=False)
        assert parse_group_file(text, source) == entries


def test_every_spec_read_is_already_normalized_as_validated_leaves_it() -> None:
    text = (
        "groups:\n"
        "- {key: a, caption: '  padded  ', job_name: ' j ', cron: '0  0 ? * *', time_zone: ''}\n"
        "- {key: b, caption: c, job_name: j, interval_ms: 5,"
        " start_at: '2030-01-01T01:00:00+02:00'}\n"
        "- {key: c, caption: c, job_name: j, job_sets_next: true, time_zone: UTC,"
        " enabled: false, misfire: skip, timeout_s: 9}\n"
    )
    for entry in parse_group_file(text, "f.yaml"):
        assert entry.spec == entry.spec.validated()


def test_the_line_breaking_class_is_exactly_the_line_breaking_categories() -> None:
    every = (chr(c) for c in range(sys.maxunicode + 1))
    wrong = [
        ch for ch in every
        if bool(LINE_BREAKING.search(ch)) != (unicodedata.category(ch) in LINE_BREAKING_CATEGORIES)
    ]
    assert wrong == []
