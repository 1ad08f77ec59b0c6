"""Task status lifecycle: None -> Scheduler -> Working -> Success | Fail, only forward."""

from __future__ import annotations

import itertools

import pytest

from fss.domain.status import FINISHED, UNFINISHED, TaskStatus, can_transition, sources_of

N, S, W, F, OK = (
    TaskStatus.NONE,
    TaskStatus.SCHEDULER,
    TaskStatus.WORKING,
    TaskStatus.FAIL,
    TaskStatus.SUCCESS,
)

ALLOWED = {(N, S), (S, W), (S, F), (S, OK), (W, F), (W, OK)}

# Position in the lifecycle; Fail and Success are both terminal, at the same stage.
STAGE = {N: 0, S: 1, W: 2, F: 3, OK: 3}


def test_given_the_seed_numbering_then_statuses_keep_their_stored_values_and_labels() -> None:
    assert [(int(s), s.label) for s in TaskStatus] == [
        (0, "None"),
        (1, "Scheduler"),
        (2, "Working"),
        (3, "Fail"),
        (4, "Success"),
    ]


@pytest.mark.parametrize(("current", "target"), list(itertools.product(TaskStatus, TaskStatus)))
def test_given_any_two_statuses_when_asked_to_transition_then_only_forward_steps_are_allowed(
    current: TaskStatus, target: TaskStatus
) -> None:
    allowed = can_transition(current, target)

    assert allowed == ((current, target) in ALLOWED)
    if allowed:
        assert STAGE[target] > STAGE[current]


@pytest.mark.parametrize("finished", sorted(FINISHED))
def test_given_a_finished_task_then_no_status_can_follow(finished: TaskStatus) -> None:
    assert not any(can_transition(finished, target) for target in TaskStatus)


def test_given_a_waiting_task_then_it_can_only_be_dispatched() -> None:
    assert {t for t in TaskStatus if can_transition(N, t)} == {S}


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        (N, set()),
        (S, {N}),
        (W, {S}),
        (F, {S, W}),
        (OK, {S, W}),
    ],
)
def test_given_a_target_status_when_asking_its_sources_then_exactly_the_allowed_predecessors(
    target: TaskStatus, sources: set[TaskStatus]
) -> None:
    assert sources_of(target) == frozenset(sources)


def test_sources_of_agrees_with_can_transition_for_every_target() -> None:
    for target in TaskStatus:
        assert sources_of(target) == {s for s in TaskStatus if can_transition(s, target)}


def test_finished_and_unfinished_partition_the_statuses() -> None:
    assert set(TaskStatus) == FINISHED | UNFINISHED
    assert not FINISHED & UNFINISHED
    assert {F, OK} == FINISHED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("None", N),
        ("none", N),
        ("NONE", N),
        ("0", N),
        ("Scheduler", S),
        ("scheduler", S),
        ("1", S),
        ("Working", W),
        (" working ", W),
        ("2", W),
        ("Fail", F),
        ("FAIL", F),
        ("3", F),
        ("Success", OK),
        ("success", OK),
        ("4", OK),
    ],
)
def test_given_a_name_label_or_number_when_parsed_then_the_status_is_found(
    text: str, expected: TaskStatus
) -> None:
    assert TaskStatus.parse(text) is expected


@pytest.mark.parametrize(
    "junk", ["", "   ", "5", "-1", "running", "Succes", "failed", "1.0", "None,Fail", "0x1"]
)
def test_given_junk_when_parsed_then_value_error_lists_the_valid_names(junk: str) -> None:
    with pytest.raises(ValueError, match="unknown status") as info:
        TaskStatus.parse(junk)

    message = str(info.value)
    for label in ("None", "Scheduler", "Working", "Fail", "Success"):
        assert label in message
