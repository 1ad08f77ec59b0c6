"""Groups files (`fss group apply / diff / export`): task groups kept as code, by key.

One format in YAML or JSON (docs/groups.schema.json): a top-level `groups:` list whose
entries carry a stable `key` and the fields of `fss group show --json`. Reading checks every
entry through GroupSpec's validators and reports every bad field with its line, as
`FILE:LINE: groups[I].FIELD: REASON`, before anything is written.

`start_at` absent means "the group's creation time" (what `fss group add` stores when no
start is given), so export leaves it out exactly when it equals the creation time and the
round trip export -> apply changes nothing.

An optional top-level `alert_targets:` list defines alert targets beside the groups, each
entry as `fss alert target apply` reads it (fss.domain.alert_targets.target_from_document),
with `${VAR}` in secret-bearing settings read from the environment so no secret need sit
in the file. Apply writes them by name in the groups' transaction; a group's
`alert_targets` may name one of them or a target already in the database. Export never
writes targets: they hold secrets.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

import yaml

from fss.domain.alert_targets import (
    SECRET_KEYS,
    TargetSpec,
    public_url,
    target_from_document,
)
from fss.domain.clock import parse_time, require_storable_time
from fss.domain.cron import load_zone, validate_cron
from fss.domain.group_file_fast import (
    TOP_LEVEL_FIELDS,
    Loader,
    NotPlain,
    RawEntry,
    RawField,
    plain_json_entries,
    plain_yaml_entries,
)
from fss.domain.group_spec import (
    MAX_RETRY_DELAY_MS,
    MAX_RUN_S,
    OVERLAP_POLICIES,
    POLICY_DEFAULTS,
    ROUTES,
    GroupSpec,
    bounded_int,
    validate_alert_rules,
    validate_alert_targets,
    validate_caption,
    validate_choice,
    validate_client_tag,
    validate_data,
    validate_disabled_note,
    validate_interval,
    validate_jitter,
    validate_job_name,
    validate_late_after,
    validate_misfire,
    validate_on_success,
    validate_policies,
    validate_retries,
    validate_retry_backoff,
    validate_retry_delay,
    validate_timeout,
)
from fss.errors import InvalidField

MAX_KEY = 128
# The optional top-level list of alert targets (the section `fss alert target apply` reads).
TARGETS_SECTION = "alert_targets"
SCHEDULE_FIELDS = ("interval_ms", "cron", "job_sets_next")
FIELDS = (
    "key",
    "caption",
    "job_name",
    *SCHEDULE_FIELDS,
    "time_zone",
    "data",
    "enabled",
    "timeout_s",
    "misfire",
    "start_at",
    *POLICY_DEFAULTS,
    "disabled_note",
    "enable_at",
)
# Optional fields where null means "not given".
NULLABLE_FIELDS = (
    "time_zone", "timeout_s", "start_at", "retry_delay_max_ms", "max_run_s", "client_tag",
    "on_success", "alert_targets", "alert_rules", "late_after_s", "disabled_note", "enable_at",
)
# Fields held as tuples in a spec and written as lists.
LIST_FIELDS = ("on_success", "alert_targets", "alert_rules")
FORMATS = ("yaml", "json")

# libyaml's emitter when it is there.
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True)
class GroupEntry:
    """One group as the file describes it; `spec.start_at` None = the creation time."""

    key: str
    spec: GroupSpec

    def document(self) -> dict[str, Any]:
        """The entry as written to a file: fields at their default are left out."""
        spec = self.spec
        doc: dict[str, Any] = {"key": self.key, "caption": spec.caption, "job_name": spec.job_name}
        if spec.interval_ms is not None:
            doc["interval_ms"] = spec.interval_ms
        elif spec.cron:
            doc["cron"] = spec.cron
        else:
            doc["job_sets_next"] = True
        optional = {
            "time_zone": spec.time_zone,
            "data": spec.data or None,
            "enabled": False if not spec.is_enable else None,
            "timeout_s": spec.timeout_s,
            "misfire": spec.misfire if spec.misfire != "run-once" else None,
            "start_at": spec.start_at.isoformat() if spec.start_at is not None else None,
        }
        doc.update((name, value) for name, value in optional.items() if value is not None)
        for name, default in POLICY_DEFAULTS.items():
            value = getattr(spec, name)
            if value != default:
                doc[name] = list(value) if name in LIST_FIELDS else value
        if spec.disabled_note is not None:
            doc["disabled_note"] = spec.disabled_note
        if spec.enable_at is not None:
            doc["enable_at"] = spec.enable_at.isoformat()
        return doc


class GroupFileInvalid(InvalidField):
    """A groups file with bad entries; `problems` holds one `FILE:LINE: PATH: REASON` each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        count = f"{len(problems)} error{'s' if len(problems) != 1 else ''}"
        super().__init__(source, f"{count}, nothing was written; first: {problems[0]}")


@dataclass(frozen=True)
class GroupDocument:
    """A groups file read whole: its groups, and the alert targets its `alert_targets:`
    section defines (validated, `${VAR}` expanded; empty without the section)."""

    entries: list[GroupEntry]
    targets: list[TargetSpec] = field(default_factory=list)


class RawFile(NamedTuple):
    """What the full readers found: the groups' entries and the targets' (None: no section)."""

    groups: list[RawEntry]
    targets: list[RawEntry] | None = None


# --- reading -----------------------------------------------------------------------------


@dataclass
class Problems:
    source: str
    found: list[tuple[int, int, str]] = field(default_factory=list)

    def add(self, line: int, path: str, reason: str) -> None:
        self.found.append((line, len(self.found), f"{self.source}:{line}: {path}: {reason}"))

    def __len__(self) -> int:
        return len(self.found)

    def raise_if_any(self) -> None:
        if self.found:
            raise GroupFileInvalid(self.source, [text for _, _, text in sorted(self.found)])


def parse_group_file(text: str, source: str, fast: bool = True) -> list[GroupEntry]:
    """Every group entry of a YAML or JSON groups file, validated; GroupFileInvalid lists all
    errors. An `alert_targets:` section is allowed but not read: parse_group_document reads
    it (its `${VAR}` references need the environment).
    """
    return _parse(text, source, fast, None, read_targets=False).entries


def parse_group_document(
    text: str, source: str, env: Mapping[str, str] | None = None, fast: bool = True
) -> GroupDocument:
    """The groups and the alert targets of a YAML or JSON groups file, validated;
    GroupFileInvalid lists every error of both (`alert_targets[I].FIELD` for a target).
    `env` (the process environment) fills `${VAR}` in the targets' secret settings; None
    leaves them as written.

    A file of the plain shape goes through the fast readers; any other file, and any file
    with a problem, through the full readers, which name every problem with its line.
    `fast=False` uses the full readers only (what the fast ones are tested against).
    """
    return _parse(text, source, fast, env, read_targets=True)


def _parse(
    text: str, source: str, fast: bool, env: Mapping[str, str] | None, read_targets: bool
) -> GroupDocument:
    is_json = looks_like_json(source, text)
    try:  # the fast readers give up on a file with an alert_targets section
        if fast and is_json:
            return GroupDocument(
                _valid_entries(plain_json_entries(text), Problems(source), lines=False)
            )
        if fast:
            return GroupDocument(
                _valid_entries(plain_yaml_entries(text), Problems(source), lines=True)
            )
    except NotPlain:
        pass
    problems = Problems(source)
    raw = read_json_file(text, problems) if is_json else read_yaml_file(text, problems)
    targets: list[TargetSpec] = []
    if read_targets and raw.targets:  # before the groups: their check raises every problem
        targets = _valid_targets(raw.targets, problems, env)
    return GroupDocument(_valid_entries(raw.groups, problems, lines=True), targets)


def _valid_entries(raw: Iterable[RawEntry], problems: Problems, lines: bool) -> list[GroupEntry]:
    """The entries, checked one by one as they are read; `lines=False`: the fields carry no
    line, so a problem sends the file to the full reader (NotPlain) to be reported."""
    entries: list[GroupEntry] = []
    keys = _UniqueKeys()
    for index, item in enumerate(raw):
        entry = _entry(item, index, problems)
        if entry is not None:
            entries.append(entry)
        keys.check(item, index)
    if not lines and (problems or keys.found):
        raise NotPlain
    keys.report(problems)
    problems.raise_if_any()
    return entries


def looks_like_json(source: str, text: str) -> bool:
    if source.lower().endswith(".json"):
        return True
    if not text.lstrip().startswith("{"):
        return False
    try:  # a YAML flow mapping starts with "{" as well
        json.loads(text)
    except ValueError:
        return False
    return True


UNKNOWN_TOP_LEVEL = "unknown top-level field; expected groups or alert_targets"


def read_yaml(text: str, problems: Problems) -> list[RawEntry]:
    return read_yaml_file(text, problems).groups


def read_yaml_file(text: str, problems: Problems) -> RawFile:
    loader = Loader(text)
    try:
        root = loader.get_single_node()
        return _yaml_sections(loader, root, problems)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problems.add(mark.line + 1 if mark else 1, "syntax", str(exc.problem or exc.context))
    except yaml.YAMLError as exc:
        problems.add(1, "syntax", str(exc).strip().splitlines()[0])
    finally:
        loader.dispose()
    return RawFile([])


def _yaml_sections(loader: Any, root: yaml.Node | None, problems: Problems) -> RawFile:
    if root is None:
        problems.add(1, "groups", "missing: the file needs a top-level `groups:` list")
        return RawFile([])
    if not isinstance(root, yaml.MappingNode):
        problems.add(_line(root), "groups", "the file must be a mapping with a `groups:` list")
        return RawFile([])
    groups: yaml.Node | None = None
    targets: yaml.Node | None = None
    for key_node, value_node in root.value:
        name = str(loader.construct_object(key_node))
        if name == "groups":
            groups = value_node
        elif name == TARGETS_SECTION:
            targets = value_node
        elif name not in TOP_LEVEL_FIELDS:
            problems.add(_line(key_node), name, UNKNOWN_TOP_LEVEL)
    target_entries = _yaml_targets(loader, targets, problems)
    if groups is None:
        problems.add(_line(root), "groups", "missing: the file needs a top-level `groups:` list")
        return RawFile([], target_entries)
    if not isinstance(groups, yaml.SequenceNode):
        problems.add(_line(groups), "groups", "must be a list (write `groups: []` for none)")
        return RawFile([], target_entries)
    entries = [_yaml_entry(loader, node, problems, i) for i, node in enumerate(groups.value)]
    return RawFile(entries, target_entries)


def _yaml_targets(
    loader: Any, node: yaml.Node | None, problems: Problems
) -> list[RawEntry] | None:
    if node is None:
        return None
    if isinstance(node, yaml.ScalarNode) and loader.construct_object(node) is None:
        return []  # `alert_targets:` with every entry commented out
    if not isinstance(node, yaml.SequenceNode):
        problems.add(_line(node), TARGETS_SECTION, "must be a list of alert targets")
        return []
    return [
        _yaml_entry(loader, item, problems, i, TARGETS_SECTION)
        for i, item in enumerate(node.value)
    ]


def _yaml_entry(
    loader: Any, node: yaml.Node, problems: Problems, index: int, section: str = "groups"
) -> RawEntry:
    if not isinstance(node, yaml.MappingNode):
        return RawEntry(_line(node), None)
    fields = []
    for key_node, value_node in node.value:
        name = str(loader.construct_object(key_node))
        try:
            value = loader.construct_object(value_node, deep=True)
        except yaml.MarkedYAMLError as exc:
            problems.add(_line(value_node), f"{section}[{index}].{name}", str(exc.problem))
            continue
        fields.append(RawField(name, _line(key_node), value))
    return RawEntry(_line(node), tuple(fields))


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def read_json(text: str, problems: Problems) -> list[RawEntry]:
    return read_json_file(text, problems).groups


def read_json_file(text: str, problems: Problems) -> RawFile:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        problems.add(exc.lineno, "syntax", f"{exc.msg} (column {exc.colno})")
        return RawFile([])
    return _JsonReader(text).sections(problems)


class _JsonReader:
    """Walks text already known to be valid JSON, keeping the line where each field starts."""

    _decoder = json.JSONDecoder()

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]

    def sections(self, problems: Problems) -> RawFile:
        if self._peek() != "{":
            problems.add(self._line(), "groups", "the file must be an object with a groups list")
            return RawFile([])
        start = self._line()
        entries: list[RawEntry] | None = None
        targets: list[RawEntry] | None = None
        for name, line in self._members():
            if name in ("groups", TARGETS_SECTION) and self._peek() == "[":
                found = [self._entry() for _ in self._items()]
                if name == "groups":
                    entries = found
                else:
                    targets = found
                continue
            value = self._value()
            if name == "groups":
                problems.add(line, "groups", "must be a list (write `\"groups\": []` for none)")
                entries = []
            elif name == TARGETS_SECTION:
                if value is not None:
                    problems.add(line, TARGETS_SECTION, "must be a list of alert targets")
                targets = []
            elif name not in TOP_LEVEL_FIELDS:
                problems.add(line, name, UNKNOWN_TOP_LEVEL)
        if entries is None:
            problems.add(start, "groups", "missing: the file needs a top-level groups list")
        return RawFile(entries or [], targets)

    def _entry(self) -> RawEntry:
        line = self._line()
        if self._peek() != "{":
            self._value()
            return RawEntry(line, None)
        return RawEntry(line, tuple(RawField(n, ln, self._value()) for n, ln in self._members()))

    def _members(self) -> Iterator[tuple[str, int]]:
        """(name, line) of each member; the caller reads the value before the next one."""
        self._expect("{")
        if self._peek() == "}":
            self.pos += 1
            return
        while True:
            line = self._line()
            name = self._value()
            self._expect(":")
            yield str(name), line
            if self._next_char() == "}":
                return

    def _items(self) -> Iterator[None]:
        self._expect("[")
        if self._peek() == "]":
            self.pos += 1
            return
        while True:
            yield None
            if self._next_char() == "]":
                return

    def _value(self) -> Any:
        self._skip_space()
        value, self.pos = self._decoder.raw_decode(self.text, self.pos)
        return value

    def _peek(self) -> str:
        self._skip_space()
        return self.text[self.pos : self.pos + 1]

    def _next_char(self) -> str:
        ch = self._peek()
        self.pos += 1
        return ch

    def _expect(self, ch: str) -> None:
        if self._next_char() != ch:
            raise AssertionError(f"valid JSON has {ch!r} at {self.pos}")

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def _line(self) -> int:
        self._skip_space()
        return bisect.bisect_right(self.line_starts, self.pos)


# --- validation --------------------------------------------------------------------------


def _entry(raw: RawEntry, index: int, problems: Problems) -> GroupEntry | None:
    where = f"groups[{index}]"
    if raw.fields is None:
        problems.add(raw.line, where, "must be a mapping of fields (key, caption, ...)")
        return None
    before = len(problems)
    given = _known_fields(raw.fields, where, problems)
    values = {f.name: _checked(f, where, problems) for f in given.values()}
    for name in ("key", "caption", "job_name"):
        if name not in given:
            problems.add(raw.line, f"{where}.{name}", "missing (required)")
    schedules = [name for name in SCHEDULE_FIELDS if name in given and _chosen(given[name].value)]
    if len(schedules) != 1:
        lines = sorted(given[name].line for name in schedules)
        line = lines[1] if len(lines) > 1 else raw.line  # where the second one is given
        problems.add(line, f"{where}.schedule", _schedule_reason(schedules))
    if len(problems) > before:
        return None
    entry = _validated(values)
    if given.keys() & CROSS_CHECKED:
        try:  # the checks between fields (retry_delay_max_ms >= retry_delay_ms, ...)
            validate_policies(entry.spec)
        except InvalidField as exc:
            line = given[exc.field].line if exc.field in given else raw.line
            problems.add(line, f"{where}.{exc.field}", exc.reason)
            return None
    return entry


# Fields whose check needs another field: the whole policy check runs when one is given.
CROSS_CHECKED = frozenset({"retry_delay_ms", "retry_delay_max_ms", "disabled_note", "enable_at"})


def _chosen(value: Any) -> bool:
    """A schedule field counts as given unless it is null or `job_sets_next: false`."""
    return value is not None and value is not False


def _schedule_reason(chosen: list[str]) -> str:
    if chosen:
        return f"give exactly one of interval_ms, cron or job_sets_next, not {' and '.join(chosen)}"
    return "missing: give exactly one of interval_ms, cron or job_sets_next: true"


def _known_fields(
    fields: tuple[RawField, ...], where: str, problems: Problems
) -> dict[str, RawField]:
    given: dict[str, RawField] = {}
    for item in fields:
        if item.name in given:
            first = given[item.name].line
            problems.add(item.line, f"{where}.{item.name}", f"given twice (first on line {first})")
        elif item.name not in FIELDS:
            problems.add(item.line, f"{where}.{item.name}", "unknown field")
        else:
            given[item.name] = item
    return given


def _checked(item: RawField, where: str, problems: Problems) -> Any:
    """The field's value converted and checked, or None after recording why it is bad."""
    if item.value is None and item.name in NULLABLE_FIELDS:
        return None
    try:
        return CHECKS[item.name](item.value)
    except InvalidField as exc:
        problems.add(item.line, f"{where}.{item.name}", exc.reason)
        return None


def _validated(values: dict[str, Any]) -> GroupEntry:
    """The entry's spec, normalized as GroupSpec.validated() (the rule of `fss group add` and
    `edit`) leaves it: every value already went through the validator validated() applies
    to it, and _entry checked that exactly one schedule is given, so validating again would
    find nothing and only double the cost of reading a large file."""
    spec = GroupSpec(
        caption=values["caption"],
        job_name=values["job_name"],
        interval_ms=values.get("interval_ms"),
        cron=values.get("cron"),
        job_sets_next=bool(values.get("job_sets_next")),
        time_zone=values.get("time_zone") or None,
        data=values.get("data") or {},
        start_at=values.get("start_at"),
        is_enable=values.get("enabled", True),
        timeout_s=values.get("timeout_s"),
        misfire=values.get("misfire") or "run-once",
        disabled_note=values.get("disabled_note"),
        enable_at=values.get("enable_at"),
        **{
            name: values[name] for name in POLICY_DEFAULTS
            if name in values and values[name] is not None
        },
    )
    return GroupEntry(values["key"], spec)


@dataclass
class _UniqueKeys:
    """Keys seen so far; each repeat is reported after every entry's own problems."""

    first_line: dict[str, int] = field(default_factory=dict)
    found: list[tuple[int, str, str]] = field(default_factory=list)

    def check(self, item: RawEntry, index: int) -> None:
        key_field = next((f for f in item.fields or () if f.name == "key"), None)
        if key_field is None or not isinstance(key_field.value, str):
            return
        key = key_field.value
        first = self.first_line.get(key)
        if first is None:
            self.first_line[key] = key_field.line
            return
        self.found.append(
            (
                key_field.line,
                f"groups[{index}].key",
                f"{key!r} is already the key of the entry on line {first}",
            )
        )

    def report(self, problems: Problems) -> None:
        for line, path, reason in self.found:
            problems.add(line, path, reason)


def check_key(value: Any) -> str:
    text = _string("key", value)
    if not 1 <= len(text) <= MAX_KEY or not text.isprintable():
        raise InvalidField("key", f"must be 1 to {MAX_KEY} printable characters")
    if text != text.strip():
        raise InvalidField("key", "must not begin or end with a space")
    return text


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidField(name, f"must be a string, got {_kind(value)}")
    return value


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(name, f"must be a whole number, got {_kind(value)}")
    return value


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidField(name, f"must be true or false, got {_kind(value)}")
    return value


def check_data(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidField("data", f"must be an object, got {_kind(value)}")
    _require_string_keys(value)
    validate_data(value)
    return value


def _require_string_keys(value: Any) -> None:
    """JSON objects have string keys only; YAML would silently allow `1: x`."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidField("data", f"keys must be strings, got {key!r}")
            _require_string_keys(item)
    elif isinstance(value, list):
        for item in value:
            _require_string_keys(item)


def check_start_at(value: Any) -> datetime:
    if isinstance(value, datetime):  # an unquoted YAML timestamp
        return require_storable_time("start_at", value)
    if isinstance(value, date):
        raise InvalidField("start_at", f"{value.isoformat()} has no time of day")
    return parse_time("start_at", _string("start_at", value))


def check_time(name: str, value: Any) -> datetime:
    if isinstance(value, datetime):  # an unquoted YAML timestamp
        return require_storable_time(name, value)
    if isinstance(value, date):
        raise InvalidField(name, f"{value.isoformat()} has no time of day")
    return parse_time(name, _string(name, value))


def check_time_zone(value: Any) -> str:
    name = _string("time_zone", value)
    load_zone(name)
    return name


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names.update({list: "a list", dict: "a mapping"})
    return names.get(type(value), type(value).__name__)


CHECKS: dict[str, Callable[[Any], Any]] = {
    "key": check_key,
    "caption": lambda v: validate_caption(_string("caption", v)),
    "job_name": lambda v: validate_job_name(_string("job_name", v)),
    "interval_ms": lambda v: validate_interval(_integer("interval_ms", v)),
    "cron": lambda v: validate_cron(_string("cron", v)),
    "job_sets_next": lambda v: _boolean("job_sets_next", v),
    "time_zone": check_time_zone,
    "data": check_data,
    "enabled": lambda v: _boolean("enabled", v),
    "timeout_s": lambda v: validate_timeout(_integer("timeout_s", v)),
    "misfire": lambda v: validate_misfire(_string("misfire", v)),
    "start_at": check_start_at,
    "retries": validate_retries,
    "retry_delay_ms": validate_retry_delay,
    "retry_backoff": validate_retry_backoff,
    "retry_delay_max_ms": lambda v: bounded_int("retry_delay_max_ms", v, 1, MAX_RETRY_DELAY_MS),
    "retry_jitter": lambda v: _boolean("retry_jitter", v),
    "max_run_s": lambda v: bounded_int("max_run_s", v, 1, MAX_RUN_S),
    "overlap": lambda v: validate_choice("overlap", v, OVERLAP_POLICIES),
    "route": lambda v: validate_choice("route", v, ROUTES),
    "client_tag": validate_client_tag,
    "on_success": validate_on_success,
    "jitter_ms": validate_jitter,
    "alert_targets": validate_alert_targets,
    "alert_rules": validate_alert_rules,
    "late_after_s": validate_late_after,
    "disabled_note": lambda v: validate_disabled_note(_string("disabled_note", v)),
    "enable_at": lambda v: check_time("enable_at", v),
}


# --- alert targets -------------------------------------------------------------------------


def _valid_targets(
    raw: list[RawEntry], problems: Problems, env: Mapping[str, str] | None
) -> list[TargetSpec]:
    """The section's targets, each checked as `fss alert target apply` checks it; a problem
    names `alert_targets[I].FIELD` and the line of that field (never its value)."""
    specs: list[TargetSpec] = []
    first_line: dict[str, int] = {}
    for index, item in enumerate(raw):
        where = f"{TARGETS_SECTION}[{index}]"
        if item.fields is None:
            problems.add(item.line, where, "must be a mapping (name, kind, settings)")
            continue
        given: dict[str, RawField] = {}
        for raw_field in item.fields:
            if raw_field.name in given:
                first = given[raw_field.name].line
                reason = f"given twice (first on line {first})"
                problems.add(raw_field.line, f"{where}.{raw_field.name}", reason)
            given[raw_field.name] = raw_field
        if len(given) < len(item.fields):
            continue
        try:
            spec = target_from_document({n: f.value for n, f in given.items()}, where, env)
        except InvalidField as exc:
            named = exc.field.removeprefix(f"{where}.").split(".")[0]
            line = given[named].line if named in given else item.line
            problems.add(line, exc.field, exc.reason)
            continue
        line = given["name"].line
        if spec.name in first_line:
            problems.add(
                line, f"{where}.name",
                f"{spec.name!r} is already the name of the target on line {first_line[spec.name]}",
            )
            continue
        first_line[spec.name] = line
        specs.append(spec)
    return specs


def named_targets(entries: Iterable[GroupEntry]) -> set[str]:
    """Every alert target name the groups' `alert_targets` lists name."""
    names: set[str] = set()
    for entry in entries:
        names.update(entry.spec.alert_targets)
    return names


def check_target_names(entries: Sequence[GroupEntry], known: Collection[str]) -> None:
    """InvalidField naming the first group (`groups[I].alert_targets`) whose list names a
    target not in `known` (the file's targets and those the database holds)."""
    missing = [
        (index, entry, name)
        for index, entry in enumerate(entries)
        for name in entry.spec.alert_targets
        if name not in known
    ]
    if not missing:
        return
    index, entry, name = missing[0]
    more = f" ({len(missing) - 1} more such name{'s' if len(missing) > 2 else ''})"
    raise InvalidField(
        f"groups[{index}].alert_targets",
        f"group {entry.key!r} names alert target {name!r}, which is neither in the file's "
        f"alert_targets nor in the database{more if len(missing) > 1 else ''}",
    )


@dataclass(frozen=True)
class TargetUpdate:
    before: TargetSpec
    after: TargetSpec
    changes: tuple[str, ...]


@dataclass(frozen=True)
class TargetPlan:
    """What applying a file's alert targets changes; targets it does not list stay."""

    creates: tuple[TargetSpec, ...] = ()
    updates: tuple[TargetUpdate, ...] = ()
    unchanged: int = 0

    @property
    def has_changes(self) -> bool:
        return bool(self.creates or self.updates)

    @property
    def writes(self) -> tuple[TargetSpec, ...]:
        return self.creates + tuple(update.after for update in self.updates)

    def describe(self) -> list[str]:
        """`+ create alert target NAME (KIND)`, `~ update alert target NAME` with one line per
        change; a secret's value never shows, only that it changed."""
        lines = [f"+ create alert target {spec.name} ({spec.kind})" for spec in self.creates]
        for update in self.updates:
            lines.append(f"~ update alert target {update.after.name}")
            lines.extend(f"    {change}" for change in update.changes)
        return lines

    def summary(self) -> str:
        return (
            f"alert targets: {len(self.creates)} created, {len(self.updates)} updated, "
            f"{self.unchanged} unchanged"
        )


def plan_targets(current: Mapping[str, TargetSpec], desired: Sequence[TargetSpec]) -> TargetPlan:
    """Creates and updates of the file's targets (validated specs) against the stored ones
    of the same names."""
    creates: list[TargetSpec] = []
    updates: list[TargetUpdate] = []
    for spec in desired:
        before = current.get(spec.name)
        if before is None:
            creates.append(spec)
        elif changes := target_changes(before, spec):
            updates.append(TargetUpdate(before, spec, changes))
    unchanged = len(desired) - len(creates) - len(updates)
    return TargetPlan(tuple(creates), tuple(updates), unchanged)


def target_changes(before: TargetSpec, after: TargetSpec) -> tuple[str, ...]:
    """`FIELD: OLD -> NEW` per changed field, as a person may read them: secrets and
    passwords only "changed", URLs as scheme://host with "/***" for a path (robots' tokens
    sit there), custom headers by name only (their values tend to be credentials)."""
    changes: list[str] = []
    plain = {
        "kind": (before.kind, after.kind),
        "default": (before.is_default, after.is_default),
        "rules": (_rules_shown(before.rules), _rules_shown(after.rules)),
        "rate_per_min": (before.rate_per_min, after.rate_per_min),
    }
    for name, (old, new) in plain.items():
        if old != new:
            changes.append(f"{name}: {_shown(old)} -> {_shown(new)}")
    old_config, new_config = before.config, after.config
    for key in sorted(old_config.keys() | new_config.keys()):
        old, new = old_config.get(key), new_config.get(key)
        if old == new:
            continue
        if key in SECRET_KEYS:
            changes.append(f"{key} {_secret_change(old, new)}")
        elif key == "url":
            changes.append(_url_change(old, new))
        elif key == "headers":
            changes.extend(_header_changes(old or {}, new or {}))
        else:
            changes.append(f"{key}: {_shown(old)} -> {_shown(new)}")
    return tuple(changes)


def _rules_shown(rules: frozenset[str] | None) -> list[str] | None:
    return None if rules is None else sorted(rules)


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _secret_change(old: Any, new: Any) -> str:
    if old is None:
        return "added"
    return "removed" if new is None else "changed"


def _url_change(old: Any, new: Any) -> str:
    old_shown = public_url(old) if isinstance(old, str) else None
    new_shown = public_url(new) if isinstance(new, str) else None
    if old_shown == new_shown:
        return "url changed (in its path or query, not shown)"
    return f"url: {_shown(old_shown)} -> {_shown(new_shown)}"


def _header_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    changes = []
    for name in sorted(old.keys() | new.keys()):
        if old.get(name) != new.get(name):
            changes.append(f"header {name} {_secret_change(old.get(name), new.get(name))}")
    return changes


# --- writing -----------------------------------------------------------------------------


def render_group_file(entries: list[GroupEntry], file_format: str = "yaml") -> str:
    """The groups file for `entries`; parse_group_file(render_group_file(e)) gives e back.
    No `alert_targets:` section: targets hold secrets, which no export may write."""
    document = {"groups": [entry.document() for entry in entries]}
    if file_format == "json":
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if file_format != "yaml":
        raise InvalidField("format", f"{file_format!r} is not one of {', '.join(FORMATS)}")
    text: str = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=1 << 16,  # one line per value: long captions and crons are not folded
    )
    return text
