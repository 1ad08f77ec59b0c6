"""A run's data changes as a patch, so saving them never undoes a change made meanwhile.

A job gets its group's data when it starts and may change it; the group's data may change
too while it runs (`fss group apply`, an edit in the console, the API). Writing the job's
whole dict back would undo those changes (a deploy's new setting silently reverted by the
run in flight). The run sends what it changed instead, relative to the data it started
with, and the recorder applies that to the group's data as it is then: keys the job did not
touch keep their current values (a three-way merge, as `kubectl apply` does). Objects are
merged key by key at any depth; any other value the job changed replaces the current one.

A patch is JSON: {"set": [[path, value], ...], "unset": [path, ...]}, each path a
non-empty list of keys from the top. Pure functions, no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from fss.domain.group_spec import MAX_DATA_BYTES, MAX_DATA_DEPTH, nesting_depth
from fss.errors import InvalidField

Path = list[str]
MAX_PATCH_DEPTH = MAX_DATA_DEPTH
# A patch holds the changed values of data of at most MAX_DATA_BYTES, and their paths.
MAX_PATCH_BYTES = 2 * MAX_DATA_BYTES


def data_patch(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What turns `base` into `new`: apply_patch(base, data_patch(base, new)) == new."""
    sets: list[list[Any]] = []
    unsets: list[Path] = []
    _diff(base, new, [], sets, unsets)
    return {"set": sets, "unset": unsets}


def _diff(
    base: dict[str, Any], new: dict[str, Any], path: Path, sets: list[list[Any]],
    unsets: list[Path],
) -> None:
    for key, value in new.items():
        old = base.get(key, _MISSING)
        if isinstance(old, dict) and isinstance(value, dict):
            _diff(old, value, [*path, key], sets, unsets)
        elif old is _MISSING or not _same(old, value):
            sets.append([[*path, key], value])
    for key in base:
        if key not in new:
            unsets.append([*path, key])


def _same(a: Any, b: Any) -> bool:
    # JSON equality: 1 == 1.0 == True in Python, but they are different JSON values.
    return type(a) is type(b) and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def changes_since(base: dict[str, Any] | None, data: dict[str, Any]) -> dict[str, Any] | None:
    """What a run changed in the data it got, or None (its whole data then replaces the
    group's) when the base is unknown or the patch would be too large to send."""
    if not isinstance(base, dict):
        return None
    patch = data_patch(base, data)
    return patch if patch_size(patch) <= MAX_PATCH_BYTES else None


def is_empty(patch: dict[str, Any]) -> bool:
    return not patch["set"] and not patch["unset"]


def apply_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`current` with the patch applied (a new dict; `current` is not changed). A path
    through something that is no object now (the group's data changed its shape meanwhile)
    makes it one: the job's change wins where the two touch."""
    result: dict[str, Any] = json.loads(json.dumps(current))
    for path in patch["unset"]:
        parent = _walk(result, path[:-1], create=False)
        if parent is not None:
            parent.pop(path[-1], None)
    for path, value in patch["set"]:
        parent = _walk(result, path[:-1], create=True)
        assert parent is not None
        parent[path[-1]] = json.loads(json.dumps(value))
    return result


def _walk(data: dict[str, Any], path: Path, create: bool) -> dict[str, Any] | None:
    node = data
    for key in path:
        child = node.get(key)
        if not isinstance(child, dict):
            if not create:
                return None
            child = node[key] = {}
        node = child
    return node


def require_patch(name: str, value: Any) -> dict[str, Any]:
    """A patch as it arrives in an event, checked: InvalidField naming `name` otherwise."""
    if not isinstance(value, dict) or set(value) != {"set", "unset"}:
        raise InvalidField(name, "must be an object with the lists 'set' and 'unset'")
    sets, unsets = value["set"], value["unset"]
    if not isinstance(sets, list) or not isinstance(unsets, list):
        raise InvalidField(name, "'set' and 'unset' must be lists")
    for entry in sets:
        if not isinstance(entry, list) or len(entry) != 2:
            raise InvalidField(name, "each 'set' entry must be [path, value]")
        _require_path(name, entry[0])
    for path in unsets:
        _require_path(name, path)
    if nesting_depth(value) > MAX_DATA_DEPTH + 4:
        raise InvalidField(name, f"nested deeper than {MAX_DATA_DEPTH} levels")
    if patch_size(value) > MAX_PATCH_BYTES:
        raise InvalidField(name, f"larger than {MAX_PATCH_BYTES} bytes as JSON")
    return value


def patch_size(patch: dict[str, Any]) -> int:
    return len(json.dumps(patch, ensure_ascii=False, separators=(",", ":")).encode(
        errors="replace"))


def _require_path(name: str, path: Any) -> None:
    if (
        not isinstance(path, list)
        or not path
        or len(path) > MAX_PATCH_DEPTH
        or not all(isinstance(key, str) for key in path)
    ):
        raise InvalidField(
            name, f"each path must be a list of 1 to {MAX_PATCH_DEPTH} keys (strings)"
        )


class _Missing:
    pass


_MISSING: Any = _Missing()
