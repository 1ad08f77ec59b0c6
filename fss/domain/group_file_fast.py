"""Fast readers for groups files of the plain, common shape (a million entries in seconds).

`fss group apply` reads each entry's fields with the line they start on. PyYAML's composer
and constructor do that in Python per node, which costs most of an apply at 100,000 groups;
these readers do the same work in one pass, and give up (`NotPlain`) as soon as the file
uses anything beyond the plain shape — anchors, aliases, explicit tags, merge keys, a YAML
error, an unexpected top level, a JSON member given twice. The caller then reads the file
with the full readers in fss.domain.group_file, which report every problem as they always
have; what a plain file reads as is the same either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import yaml
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)

TOP_LEVEL_FIELDS = ("groups", "$schema")
STR_TAG = "tag:yaml.org,2002:str"
NULL_TAG = "tag:yaml.org,2002:null"
BOOL_TAG = "tag:yaml.org,2002:bool"
INT_TAG = "tag:yaml.org,2002:int"
# Plain scalars resolved per distinct text; bounded, since most values (keys, captions) are
# unique while the ones that need the resolver's regular expressions (field names, numbers,
# true/false) repeat.
RESOLVED_CACHE_SIZE = 4096

# libyaml when it is there: its events are what makes reading fast.
Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RawField(NamedTuple):  # a tuple: a million files' worth is made in no time
    name: str
    line: int
    value: Any


class RawEntry(NamedTuple):
    """One element of `groups`, with the line of each field; fields None = not a mapping."""

    line: int
    fields: tuple[RawField, ...] | None


class NotPlain(Exception):
    """The file needs the full reader (its problems are reported there)."""


# --- YAML: libyaml's events, composed and constructed in one pass ----------------------------


def plain_yaml_entries(text: str) -> Iterator[RawEntry]:
    """The entries of a plain YAML groups file, in order; NotPlain (possibly after some
    entries) when the file needs the full reader."""
    loader = Loader(text)
    try:
        yield from _YamlEvents(loader).entries()
    except yaml.YAMLError:
        raise NotPlain from None
    finally:
        loader.dispose()


class _YamlEvents:
    """The composer and SafeConstructor in one loop over the events (hot: kept flat)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.next_event: Callable[[], Any] = loader.get_event
        self.first_chars = {c for c in loader.yaml_implicit_resolvers if c is not None}
        # Plain scalars that need the resolver, by text: their value (all immutable).
        self.plain: dict[str, Any] = {}

    def entries(self) -> Iterator[RawEntry]:
        self._expect(StreamStartEvent, check=False)
        self._expect(DocumentStartEvent)
        self._expect(MappingStartEvent)
        found = False
        while not isinstance(event := self._event(), MappingEndEvent):
            name = self._name(event)
            if name == "groups" and not found:
                self._expect(SequenceStartEvent)
                yield from self._items()
                found = True
            elif name == "$schema":
                self._value(self._event())
            else:  # unknown, or `groups` twice: the full reader says so
                raise NotPlain
        self._expect(DocumentEndEvent)
        self._expect(StreamEndEvent)
        if not found:
            raise NotPlain

    def _items(self) -> Iterator[RawEntry]:
        while not isinstance(event := self._event(), SequenceEndEvent):
            line = event.start_mark.line + 1
            if type(event) is MappingStartEvent:
                yield RawEntry(line, self._fields())
            else:
                self._value(event)
                yield RawEntry(line, None)

    def _fields(self) -> tuple[RawField, ...]:
        fields = []
        next_event = self.next_event
        while type(key := next_event()) is not MappingEndEvent:
            name = self._name(key)
            event = next_event()
            if type(event) is ScalarEvent and event.anchor is None and event.tag is None:
                value = self._scalar(event)
            else:
                value = self._value(event, checked=False)
            fields.append(RawField(name, key.start_mark.line + 1, value))
        return tuple(fields)

    def _name(self, event: Any) -> str:
        """A mapping key as the full reader names it: str() of the constructed scalar."""
        if type(event) is not ScalarEvent or event.anchor is not None or event.tag is not None:
            raise NotPlain  # a key that is a list, a mapping, an alias or tagged
        value = self._scalar(event)
        return value if type(value) is str else str(value)

    def _value(self, event: Any, checked: bool = True) -> Any:
        if not checked:
            self._check(event)
        kind = type(event)
        if kind is ScalarEvent:
            return self._scalar(event)
        if kind is SequenceStartEvent:
            items = []
            while not isinstance(item := self._event(), SequenceEndEvent):
                items.append(self._value(item))
            return items
        if kind is MappingStartEvent:
            mapping = {}
            while not isinstance(key := self._event(), MappingEndEvent):
                if type(key) is not ScalarEvent:
                    raise NotPlain
                mapping[self._scalar(key)] = self._value(self._event())
            return mapping
        raise NotPlain

    def _scalar(self, event: Any) -> Any:
        """The value SafeConstructor makes of the scalar the composer would resolve."""
        value: str = event.value
        if not event.implicit[0] or (value and value[0] not in self.first_chars):
            return value  # quoted, or plain text no implicit resolver looks at: a string
        plain = self.plain
        if value in plain:
            return plain[value]
        constructed = self._resolved(value, event.style)
        if len(plain) >= RESOLVED_CACHE_SIZE:
            plain.clear()
        plain[value] = constructed
        return constructed

    def _resolved(self, value: str, style: str | None) -> Any:
        tag = self.loader.resolve(yaml.ScalarNode, value, (True, False))
        if tag == STR_TAG:
            return value
        if tag == NULL_TAG:
            return None
        if tag == BOOL_TAG:
            return self.loader.bool_values[value.lower()]
        if tag == INT_TAG and value.isascii() and value.isdigit() and value[0] != "0":
            return int(value)
        construct = self.loader.yaml_constructors.get(tag)
        if construct is None:  # the merge key `<<`, `=`: the full reader explains
            raise NotPlain
        node = yaml.ScalarNode(tag, value, style=style)  # marks only serve errors
        try:
            return construct(self.loader, node)
        except Exception:  # whatever it was, the full reader reports it
            raise NotPlain from None

    def _event(self) -> Any:  # events are typed loosely in PyYAML's stubs
        return self._check(self.next_event())

    @staticmethod
    def _check(event: Any) -> Any:
        if isinstance(event, ScalarEvent | CollectionStartEvent):
            if event.anchor is not None or event.tag is not None:
                raise NotPlain
        elif isinstance(event, AliasEvent):
            raise NotPlain
        return event

    def _expect(self, kind: type, check: bool = True) -> None:
        event = self._event() if check else self.next_event()
        if not isinstance(event, kind):
            raise NotPlain


# --- JSON: the standard decoder, lines left to the full reader -------------------------------


def plain_json_entries(text: str) -> list[RawEntry]:
    """The entries of a valid JSON groups file with line 0 for every field: the caller reads
    the file again with the full reader to report problems with their lines."""
    duplicates: list[bool] = []

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        mapping = dict(pairs)
        if len(mapping) != len(pairs):
            duplicates.append(True)
        return mapping

    try:
        document = json.loads(text, object_pairs_hook=members)
    except ValueError:
        raise NotPlain from None
    if duplicates or not isinstance(document, dict) or set(document) - set(TOP_LEVEL_FIELDS):
        raise NotPlain
    groups = document.get("groups")
    if not isinstance(groups, list):
        raise NotPlain
    return [_json_entry(item) for item in groups]


def _json_entry(item: Any) -> RawEntry:
    if not isinstance(item, dict):
        return RawEntry(0, None)
    return RawEntry(0, tuple(RawField(name, 0, value) for name, value in item.items()))
