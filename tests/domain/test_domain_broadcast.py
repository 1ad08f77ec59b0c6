"""fss.domain.broadcast: which shards an attempt runs where, and the task's verdict."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fss.domain.broadcast import ShardOutcome, mean_progress, plan_shards, verdict

client_ids = st.lists(st.text("abcdefgh", min_size=1, max_size=3), max_size=8)


def test_a_first_attempt_has_one_shard_per_client_in_name_order() -> None:
    plan = plan_shards(["w3", "w1", "w2", "w1"], None)
    assert plan is not None
    assert plan.total == 3
    assert plan.assignments == ((0, "w1"), (1, "w2"), (2, "w3"))


def test_no_client_means_no_plan() -> None:
    assert plan_shards([], None) is None
    assert plan_shards([], 3, {0}) is None


@given(clients=client_ids, total=st.integers(1, 12), succeeded=st.sets(st.integers(0, 11)))
def test_a_retry_runs_exactly_the_shards_not_yet_succeeded_spread_over_live_clients(
    clients: list[str], total: int, succeeded: set[int]
) -> None:
    plan = plan_shards(clients, total, succeeded)
    if not clients:
        assert plan is None
        return
    assert plan is not None
    assert plan.total == total
    shards = [shard for shard, _ in plan.assignments]
    assert shards == [s for s in range(total) if s not in succeeded]
    assert {client for _, client in plan.assignments} <= set(clients)
    # Spread evenly: no client has two shards more than another.
    counts = [sum(1 for _, c in plan.assignments if c == client) for client in set(clients)]
    assert max(counts) - min(counts) <= 1


@given(
    outcomes=st.lists(
        st.tuples(st.booleans(), st.booleans(), st.text(max_size=30)), min_size=1, max_size=6
    )
)
def test_the_task_succeeds_only_if_every_shard_did_and_retries_unless_all_refused(
    outcomes: list[tuple[bool, bool, str]],
) -> None:
    shards = [
        ShardOutcome(i, f"w{i}", success, error or None, retry)
        for i, (success, retry, error) in enumerate(outcomes)
    ]
    result = verdict(shards, len(shards))
    failed = [s for s in shards if not s.success]
    assert result.success == (not failed)
    assert (result.error is None) == (not failed)
    if failed:
        assert result.error is not None
        assert result.error.startswith(f"{len(failed)} of {len(shards)} shards failed")
        for s in failed:
            assert f"shard {s.shard} of {len(shards)} (w{s.shard})" in result.error
        assert result.retry == any(s.retry for s in failed)


def test_a_traceback_is_told_by_its_last_line() -> None:
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1\nKeyError: \'id\''
    result = verdict([ShardOutcome(0, "w", False, tb)], 2)
    assert result.error == "1 of 2 shards failed\nshard 0 of 2 (w): KeyError: 'id'"


@given(progresses=st.lists(st.integers(0, 100), max_size=10), extra=st.integers(0, 5))
def test_progress_is_the_mean_over_all_shards_with_earlier_successes_at_100(
    progresses: list[int], extra: int
) -> None:
    total = len(progresses) + extra
    value = mean_progress(progresses, total)
    assert 0 <= value <= 100
    if total:
        assert value == int((sum(progresses) + 100 * extra) / total)
