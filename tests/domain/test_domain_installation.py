"""Which broker a scheduler may dispatch through: every combination of the facts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fss.domain.installation import BrokerFacts, BrokerVerdict, judge_broker

OURS = "a1b2c3d4"


def facts(**changes: object) -> BrokerFacts:
    base = {"installation": OURS, "mark": None, "held_before": False, "live_workers": 0,
            "workers_here": 0}
    base.update(changes)
    return BrokerFacts(**base)  # type: ignore[arg-type]


def test_our_mark_dispatches() -> None:
    assert judge_broker(facts(mark=OURS), "redis://b").verdict is BrokerVerdict.OURS


def test_another_installations_mark_refuses_naming_both() -> None:
    judgement = judge_broker(facts(mark="ffff0000"), "redis://b/0")
    assert judgement.verdict is BrokerVerdict.FOREIGN
    assert not judgement.may_dispatch
    assert judgement.reason is not None
    assert "ffff0000" in judgement.reason and OURS in judgement.reason
    assert "redis://b/0" in judgement.reason


def test_no_mark_while_live_workers_are_elsewhere_is_the_wrong_broker() -> None:
    judgement = judge_broker(facts(live_workers=2, workers_here=0), "redis://b")
    assert judgement.verdict is BrokerVerdict.WRONG_BROKER
    assert judgement.reason is not None and "2 live workers" in judgement.reason


def test_no_mark_with_a_worker_here_or_no_workers_or_no_answer_is_claimable() -> None:
    for case in (facts(live_workers=2, workers_here=1), facts(), facts(live_workers=1,
                                                                        workers_here=None)):
        assert judge_broker(case, "b").verdict is BrokerVerdict.CLAIMABLE


def test_a_mark_we_held_before_is_taken_again_whatever_the_workers() -> None:
    # The broker restarted without persistence: the mark is gone, the URL is still right.
    judged = judge_broker(facts(held_before=True, live_workers=3, workers_here=0), "b")
    assert judged.verdict is BrokerVerdict.CLAIMABLE


@given(
    mark=st.one_of(st.none(), st.sampled_from([OURS, "ffff0000"])),
    held=st.booleans(),
    live=st.integers(0, 5),
    here=st.one_of(st.none(), st.integers(0, 5)),
)
def test_dispatch_only_through_a_broker_that_is_not_another_installations(
    mark: str | None, held: bool, live: int, here: int | None
) -> None:
    judged = judge_broker(
        facts(mark=mark, held_before=held, live_workers=live, workers_here=here), "b"
    )
    if mark == "ffff0000":
        assert not judged.may_dispatch
    elif mark == OURS:
        assert judged.may_dispatch
    assert judged.may_dispatch == (judged.reason is None)
