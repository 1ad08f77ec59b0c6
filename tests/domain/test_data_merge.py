"""A run's data changes as a patch: applied to the group's data as it is when recorded,
they keep every change made meanwhile that they do not touch (fss.domain.data_merge)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fss.domain.data_merge import apply_patch, changes_since, data_patch, require_patch
from fss.errors import InvalidField

KEYS = st.sampled_from(["a", "b", "c", "cursor", "keep", "x/y", "", "ü"])
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False,
                                                                       allow_infinity=False) \
    | st.text(max_size=3)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=12,
)
OBJECTS = st.dictionaries(KEYS, VALUES, max_size=5)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@settings(max_examples=150, deadline=None)
@given(OBJECTS, OBJECTS)
def test_the_patch_turns_the_base_into_the_new_data(base: dict[str, Any],
                                                    new: dict[str, Any]) -> None:
    assert _json(apply_patch(base, data_patch(base, new))) == _json(new)


@settings(max_examples=150, deadline=None)
@given(OBJECTS, OBJECTS, OBJECTS)
def test_changes_made_meanwhile_to_keys_the_run_left_alone_are_kept(
    base: dict[str, Any], by_run: dict[str, Any], by_operator: dict[str, Any]
) -> None:
    # The run changes keys of one half, the operator those of the other: nothing is lost.
    run_new = {k: v for k, v in base.items() if k < "c"} | {
        k: v for k, v in by_run.items() if k < "c"}
    current = {k: v for k, v in base.items() if k >= "c"} | {
        k: v for k, v in by_operator.items() if k >= "c"}
    run_new |= {k: v for k, v in base.items() if k >= "c"}
    current |= {k: v for k, v in base.items() if k < "c"}
    merged = apply_patch(current, data_patch(base, run_new))
    for key in set(run_new) | set(current):
        if key < "c":
            assert _json(merged.get(key)) == _json(run_new.get(key))
        else:
            assert _json(merged.get(key)) == _json(current.get(key))


@settings(max_examples=100, deadline=None)
@given(OBJECTS, OBJECTS)
def test_a_patch_travels_as_json_and_passes_its_own_check(base: dict[str, Any],
                                                          new: dict[str, Any]) -> None:
    patch = data_patch(base, new)
    again = json.loads(json.dumps(patch))
    assert require_patch("data_patch", again) == again
    assert _json(apply_patch(base, again)) == _json(new)


def test_a_deploy_that_changed_a_setting_while_the_job_counted_keeps_both() -> None:
    base = {"count": 1, "keep": "old", "cursor": {"page": 3, "size": 50}}
    job = {"count": 2, "keep": "old", "cursor": {"page": 4, "size": 50}}
    current = {"count": 1, "keep": "new", "cursor": {"page": 3, "size": 100}, "added": True}
    merged = apply_patch(current, data_patch(base, job))
    assert merged == {"count": 2, "keep": "new", "cursor": {"page": 4, "size": 100},
                      "added": True}


def test_a_key_the_job_removed_goes_and_one_it_added_comes() -> None:
    base = {"a": 1, "b": 2}
    patch = data_patch(base, {"b": 2, "c": 3})
    assert patch == {"set": [[["c"], 3]], "unset": [["a"]]}
    assert apply_patch({"a": 9, "b": 5}, patch) == {"b": 5, "c": 3}


def test_where_the_run_and_the_change_meanwhile_touch_the_same_key_the_run_wins() -> None:
    base = {"mode": {"x": 1}}
    patch = data_patch(base, {"mode": {"x": 2}})
    # The operator replaced the object with a string meanwhile: the run's path makes it one.
    assert apply_patch({"mode": "flat"}, patch) == {"mode": {"x": 2}}
    assert apply_patch({"mode": {"x": 7, "y": 1}}, patch) == {"mode": {"x": 2, "y": 1}}


def test_json_types_are_told_apart() -> None:
    assert data_patch({"n": 1}, {"n": 1.0}) == {"set": [[["n"], 1.0]], "unset": []}
    assert data_patch({"n": 1}, {"n": True}) == {"set": [[["n"], True]], "unset": []}
    assert data_patch({"n": [1]}, {"n": [1]}) == {"set": [], "unset": []}


def test_no_base_or_a_patch_too_large_sends_none() -> None:
    assert changes_since(None, {"a": 1}) is None
    big = {str(i): {"k": i} for i in range(9000)}
    assert changes_since({}, big) is None
    assert changes_since({}, {"a": 1}) == {"set": [[["a"], 1]], "unset": []}


@pytest.mark.parametrize(
    "bad",
    [
        None, [], {"set": []}, {"set": [], "unset": [], "x": 1}, {"set": {}, "unset": []},
        {"set": [[["a"]]], "unset": []}, {"set": [[[], 1]], "unset": []},
        {"set": [[["a", 1], 1]], "unset": []}, {"set": [], "unset": ["a"]},
        {"set": [], "unset": [[]]}, {"set": [["a", 1]], "unset": []},
        {"set": [[["k"] * 101, 1]], "unset": []},
        {"set": [[["a"], "x" * 200_000]], "unset": []},
    ],
)
def test_a_malformed_patch_is_refused_naming_the_field(bad: Any) -> None:
    with pytest.raises(InvalidField) as caught:
        require_patch("data_patch", bad)
    assert caught.value.field == "data_patch"
