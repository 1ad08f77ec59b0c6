"""The installation's mark on a real Redis: two installations, a wrong broker URL, a broker
restarted without its keys, and fences of two installations that never meet."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from fss.domain.installation import BrokerVerdict
from fss.fence import RedisFence
from fss.installation import MARK_KEY, MARK_TTL_S, BrokerMark, InstallationGuard, ScopedFence
from fss.presence import PresenceBeacon


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def url(fresh_redis_url: Callable[[], str]) -> str:
    return fresh_redis_url()


@pytest.fixture
def server(url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url)
    yield client
    client.close()


def guard(url: str, installation: str, workers: list[str] | None = None) -> InstallationGuard:
    return InstallationGuard(installation, BrokerMark(url), lambda: list(workers or []), "b")


def test_the_first_scheduler_marks_the_broker_and_its_peers_share_it(
    url: str, server: redis.Redis
) -> None:
    first, second = guard(url, "inst0001"), guard(url, "inst0001")
    try:
        assert first.check().verdict is BrokerVerdict.OURS
        assert second.check().verdict is BrokerVerdict.OURS
        assert server.get(MARK_KEY) == b"inst0001"
        assert 0 < server.ttl(MARK_KEY) <= MARK_TTL_S
    finally:
        first.close()
        second.close()


def test_a_second_installation_on_the_same_redis_database_does_not_dispatch(
    url: str,
) -> None:
    ours, theirs = guard(url, "inst0001"), guard(url, "inst0002")
    try:
        assert ours.check().may_dispatch
        judged = theirs.check()
        assert judged.verdict is BrokerVerdict.FOREIGN and not theirs.may_dispatch
        assert judged.reason is not None and "inst0001" in judged.reason
        # and it never takes the mark over while the first one renews it
        assert ours.check().may_dispatch
        assert not theirs.check().may_dispatch
    finally:
        ours.close()
        theirs.close()


def test_a_mark_that_lapsed_is_taken_by_the_next_installation(
    url: str, server: redis.Redis
) -> None:
    # A database re-created under an old Redis: the old schedulers are gone, their mark lapses.
    server.set(MARK_KEY, "oldinst0", ex=MARK_TTL_S)
    new = guard(url, "newinst0")
    try:
        assert new.check().verdict is BrokerVerdict.FOREIGN
        server.delete(MARK_KEY)  # what the TTL does 15 s after the last old scheduler
        assert new.check().verdict is BrokerVerdict.OURS
    finally:
        new.close()


def test_a_scheduler_on_another_database_than_the_live_workers_does_not_dispatch(
    fresh_redis_url: Callable[[], str],
) -> None:
    right, wrong = fresh_redis_url(), fresh_redis_url()
    beacon = PresenceBeacon(right, "w1")
    beacon.keep()  # the live worker's beacon is on `right`, same server, another db
    good = guard(right, "inst0001", ["w1"])
    bad = guard(wrong, "inst0001", ["w1"])
    try:
        assert good.check().may_dispatch
        judged = bad.check()
        assert judged.verdict is BrokerVerdict.WRONG_BROKER
        assert judged.reason is not None and "1 live workers" in judged.reason
    finally:
        beacon.close()
        good.close()
        bad.close()


def test_a_mark_lost_with_the_broker_is_set_again_by_its_holder(
    url: str, server: redis.Redis
) -> None:
    workers: list[str] = []
    holder = InstallationGuard("inst0001", BrokerMark(url), lambda: list(workers), "b")
    try:
        assert holder.check().may_dispatch
        server.flushdb()  # Redis restarted without persistence: the beacons reconnect later
        workers.append("w-not-reconnected-yet")
        assert holder.check().verdict is BrokerVerdict.OURS
        assert server.get(MARK_KEY) == b"inst0001"
    finally:
        holder.close()


def test_checks_are_spaced_out(url: str, server: redis.Redis) -> None:
    ticks = Ticks()
    checked = InstallationGuard("inst0001", BrokerMark(url), list, "b", monotonic=ticks)
    try:
        checked.check_if_due()
        server.set(MARK_KEY, "other000")
        assert checked.check_if_due().may_dispatch  # not due yet: last judgement stands
        ticks.now += 3.0
        assert not checked.check_if_due().may_dispatch
    finally:
        checked.close()


def test_fences_of_two_installations_never_meet(url: str) -> None:
    inner = RedisFence(url)
    ours, theirs = ScopedFence(inner, "inst0001"), ScopedFence(inner, "inst0002")
    try:
        assert ours.arm(1, 1) and ours.enter(1, 1, "w")
        # their task 1 is another task: armed and entered although ours runs
        assert theirs.arm(1, 1) and theirs.enter(1, 1, "v")
        assert ours.holder(1, 1) == "w" and theirs.holder(1, 1) == "v"
    finally:
        inner.close()


# -- a broker and a fence on two Redis (FSS_FENCE_URL) -------------------------------------


def two_stores(
    broker: str, fence: str, installation: str, workers: list[str]
) -> InstallationGuard:
    return InstallationGuard(
        installation, BrokerMark(broker), lambda: list(workers), broker,
        also=[(BrokerMark(fence), fence, "fence Redis", "FSS_FENCE_URL")],
        setting="FSS_BROKER_URL",
    )


def test_a_scheduler_with_the_right_fence_but_another_broker_does_not_dispatch(
    fresh_redis_url: Callable[[], str],
) -> None:
    broker, fence, wrong = fresh_redis_url(), fresh_redis_url(), fresh_redis_url()
    # A live worker keeps its beacon on the fence and on its broker (fss worker does both).
    beacons = [PresenceBeacon(broker, "w1"), PresenceBeacon(fence, "w1")]
    for beacon in beacons:
        beacon.keep()
    good = two_stores(broker, fence, "inst0001", ["w1"])
    bad = two_stores(wrong, fence, "inst0001", ["w1"])
    try:
        assert good.check().verdict is BrokerVerdict.OURS
        with redis.Redis.from_url(broker) as b, redis.Redis.from_url(fence) as f:
            assert b.get(MARK_KEY) == b"inst0001" and f.get(MARK_KEY) == b"inst0001"
        # Before: the mark was kept on the fence only, where it read "ours", and this
        # scheduler sent its orders into a broker no worker reads.
        judged = bad.check()
        assert judged.verdict is BrokerVerdict.WRONG_BROKER and not bad.may_dispatch
        assert judged.reason is not None
        assert f"broker {wrong}" in judged.reason and "FSS_BROKER_URL" in judged.reason
        with redis.Redis.from_url(wrong) as w:
            assert w.get(MARK_KEY) is None  # it takes no mark anywhere while refused
        assert good.check().may_dispatch
    finally:
        for beacon in beacons:
            beacon.close()
        good.close()
        bad.close()


def test_another_installations_broker_behind_a_shared_fence_is_refused(
    fresh_redis_url: Callable[[], str],
) -> None:
    ours_broker, theirs_broker, fence = fresh_redis_url(), fresh_redis_url(), fresh_redis_url()
    theirs = InstallationGuard("inst0002", BrokerMark(theirs_broker), list, theirs_broker)
    ours = two_stores(ours_broker, fence, "inst0001", [])
    lost = two_stores(theirs_broker, fence, "inst0001", [])
    try:
        assert theirs.check().may_dispatch and ours.check().may_dispatch
        judged = lost.check()
        assert judged.verdict is BrokerVerdict.FOREIGN
        assert judged.reason is not None and "inst0002" in judged.reason
        assert judged.reason.startswith(f"broker {theirs_broker}")
    finally:
        theirs.close()
        ours.close()
        lost.close()


def test_the_right_broker_but_another_fence_does_not_dispatch(
    fresh_redis_url: Callable[[], str],
) -> None:
    broker, fence, wrong = fresh_redis_url(), fresh_redis_url(), fresh_redis_url()
    beacons = [PresenceBeacon(broker, "w1"), PresenceBeacon(fence, "w1")]
    for beacon in beacons:
        beacon.keep()
    bad = two_stores(broker, wrong, "inst0001", ["w1"])
    try:
        judged = bad.check()
        assert judged.verdict is BrokerVerdict.WRONG_BROKER
        assert judged.reason is not None
        assert f"fence Redis {wrong}" in judged.reason and "FSS_FENCE_URL" in judged.reason
    finally:
        for beacon in beacons:
            beacon.close()
        bad.close()
