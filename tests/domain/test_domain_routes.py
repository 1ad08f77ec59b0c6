"""Routes (fss.domain.selection): least_busy, sticky, failover and tags, as properties."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fss.domain.selection import (
    ROUTES,
    Selector,
    failover,
    least_busy_ties,
    parse_tags,
    sticky,
    tags_text,
    validate_route,
    validate_tags,
)
from fss.errors import InvalidField

client_ids = st.text(alphabet="abcdefghij0123456789-.", min_size=1, max_size=12)
clients = st.sets(client_ids, min_size=1, max_size=12)
group_ids = st.integers(min_value=1, max_value=2**63 - 1)


# -- sticky -----------------------------------------------------------------------------------


@given(group_ids, clients, st.randoms(use_true_random=False))
def test_sticky_does_not_depend_on_the_order_clients_are_listed_in(
    group_id: int, live: set[str], rnd: random.Random
) -> None:
    ordered = sorted(live)
    shuffled = list(live)
    rnd.shuffle(shuffled)
    assert sticky(group_id, ordered) == sticky(group_id, shuffled) in live


@given(st.lists(group_ids, min_size=1, max_size=30, unique=True), clients, st.data())
def test_sticky_when_a_client_leaves_then_only_its_groups_move(
    groups: list[int], live: set[str], data: st.DataObject
) -> None:
    leaving = data.draw(st.sampled_from(sorted(live)))
    rest = live - {leaving}
    for group_id in groups:
        before = sticky(group_id, live)
        after = sticky(group_id, rest)
        if before != leaving:
            assert after == before  # a group not on the leaving client stays where it is
        else:
            assert after != leaving and (after in rest or not rest)


@given(st.lists(group_ids, min_size=1, max_size=30, unique=True), clients, client_ids)
def test_sticky_when_a_client_joins_then_groups_move_only_to_it(
    groups: list[int], live: set[str], joining: str
) -> None:
    for group_id in groups:
        before = sticky(group_id, live)
        after = sticky(group_id, live | {joining})
        assert after in (before, joining)


@given(group_ids, clients)
def test_sticky_keeps_a_group_on_its_client_across_runs(group_id: int, live: set[str]) -> None:
    selector = Selector()
    picks = {selector.pick("sticky", "job", group_id, sorted(live)) for _ in range(5)}
    assert len(picks) == 1


def test_sticky_spreads_many_groups_over_the_clients() -> None:
    live = ["w1", "w2", "w3", "w4"]
    counts = Counter(sticky(group_id, live) for group_id in range(1, 4001))
    assert set(counts) == set(live)
    assert all(800 <= n <= 1200 for n in counts.values()), counts


def test_sticky_without_clients_is_none() -> None:
    assert sticky(7, []) is None


# -- least_busy -------------------------------------------------------------------------------


@given(st.dictionaries(client_ids, st.integers(min_value=0, max_value=50), min_size=1))
def test_least_busy_picks_a_client_with_the_fewest_runs(loads: dict[str, int]) -> None:
    chosen = Selector().pick("least_busy", "job", 1, list(loads), loads)
    assert chosen is not None
    assert loads[chosen] == min(loads.values())


@given(clients, st.integers(min_value=0, max_value=5))
def test_least_busy_ties_go_round_robin(live: set[str], load: int) -> None:
    selector = Selector()
    loads = dict.fromkeys(live, load)
    picks = Counter(
        selector.pick("least_busy", "job", 1, sorted(live), loads) for _ in range(3 * len(live))
    )
    assert picks == dict.fromkeys(live, 3)


def test_least_busy_counts_a_client_missing_from_the_loads_as_idle() -> None:
    assert least_busy_ties(["a", "b"], {"a": 2}) == ["b"]
    assert least_busy_ties([], {}) == []


# -- failover ---------------------------------------------------------------------------------


@given(clients)
def test_failover_takes_the_first_client_by_name_until_it_leaves(live: set[str]) -> None:
    first = min(live)
    selector = Selector()
    assert {selector.pick("failover", "job", 1, sorted(live, reverse=True)) for _ in range(3)} == {
        first
    }
    rest = live - {first}
    assert failover(rest) == (min(rest) if rest else None)


# -- round robin; broadcast picks no one client ------------------------------------------------


def test_round_robin_goes_round_robin_per_job_name() -> None:
    selector = Selector()
    live = ["a", "b", "c"]
    assert [selector.pick("round_robin", "job", 1, live) for _ in range(4)] == ["a", "b", "c", "a"]
    assert [selector.pick("round_robin", "other", 2, live) for _ in range(2)] == ["a", "b"]


def test_broadcast_is_not_a_pick_of_one_client() -> None:
    with pytest.raises(InvalidField, match=r"^route: broadcast runs on every client"):
        Selector().pick("broadcast", "job", 1, ["a", "b"])


def test_an_unknown_route_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidField, match=r"^route: unknown route 'random'"):
        Selector().pick("random", "job", 1, ["a"])
    with pytest.raises(InvalidField, match=r"^route:"):
        validate_route("Sticky")
    assert all(validate_route(r) == r for r in ROUTES)


# -- tags -------------------------------------------------------------------------------------

tag_words = st.text(alphabet="abcXYZ019_.:@-", min_size=1, max_size=64)


@given(st.lists(tag_words, max_size=3))
def test_tags_survive_the_client_column(tags: list[str]) -> None:
    valid = validate_tags(tags)
    assert parse_tags(tags_text(valid)) == frozenset(tags)
    assert tags_text(()) is None and parse_tags(None) == frozenset()


@pytest.mark.parametrize("bad", ["", "a,b", "gpu 1", "x" * 65, "é"])
def test_a_bad_tag_is_refused_in_one_line_naming_the_field(bad: str) -> None:
    with pytest.raises(InvalidField, match=r"^--tag: "):
        validate_tags([bad], "--tag")


def test_tags_longer_than_the_column_in_all_are_refused() -> None:
    with pytest.raises(InvalidField, match=r"^tags: longer than 256"):
        validate_tags([f"t{i:02d}" + "x" * 60 for i in range(5)])
