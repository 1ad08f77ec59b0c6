"""Round robin client selection per job name."""

from __future__ import annotations

import threading
from collections import Counter

from fss.domain.selection import RoundRobin

CLIENTS = ["client-c", "client-a", "client-b"]


def test_given_no_candidates_then_none() -> None:
    rr = RoundRobin()

    assert rr.pick("hello", []) is None
    assert rr.pick("hello", ()) is None


def test_given_one_candidate_then_always_that_one() -> None:
    rr = RoundRobin()

    assert {rr.pick("hello", ["only"]) for _ in range(5)} == {"only"}


def test_given_three_clients_when_picking_many_times_then_the_load_is_spread_evenly() -> None:
    rr = RoundRobin()

    picks = Counter(rr.pick("hello", CLIENTS) for _ in range(300))

    assert picks == {"client-a": 100, "client-b": 100, "client-c": 100}


def test_given_three_clients_then_consecutive_picks_cycle_through_all_of_them() -> None:
    rr = RoundRobin()

    picks = [rr.pick("hello", CLIENTS) for _ in range(6)]

    assert picks[:3] == picks[3:]
    assert sorted(picks[:3]) == sorted(CLIENTS)


def test_given_two_jobs_then_each_has_its_own_turn() -> None:
    rr = RoundRobin()
    first_a = rr.pick("job-a", CLIENTS)
    rr.pick("job-a", CLIENTS)

    # job-b has not been picked yet: it starts where job-a started
    assert rr.pick("job-b", CLIENTS) == first_a

    counts = Counter()
    for _ in range(30):
        counts[("job-a", rr.pick("job-a", CLIENTS))] += 1
        counts[("job-b", rr.pick("job-b", ["x", "y"]))] += 1
    assert counts[("job-b", "x")] == counts[("job-b", "y")] == 15
    assert {n for (job, _), n in counts.items() if job == "job-a"} == {10}


def test_given_candidates_in_a_different_order_then_the_sequence_is_the_same() -> None:
    first, second = RoundRobin(), RoundRobin()
    orders = [
        CLIENTS,
        list(reversed(CLIENTS)),
        sorted(CLIENTS),
        ["client-b", "client-c", "client-a"],
    ]

    for i in range(12):
        assert first.pick("hello", CLIENTS) == second.pick("hello", orders[i % len(orders)])


def test_given_a_tuple_or_a_list_then_the_same_pick() -> None:
    assert RoundRobin().pick("hello", tuple(CLIENTS)) == RoundRobin().pick("hello", CLIENTS)


def test_given_many_threads_then_every_turn_is_counted_once() -> None:
    rr = RoundRobin()
    picks: list[str | None] = []
    lock = threading.Lock()

    def worker() -> None:
        local = [rr.pick("hello", CLIENTS) for _ in range(200)]
        with lock:
            picks.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert Counter(picks) == {"client-a": 400, "client-b": 400, "client-c": 400}
