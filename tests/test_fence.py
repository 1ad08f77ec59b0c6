"""The fence's promise: an attempt a worker entered is never overwritten, and an order whose
send failed is revoked before its dispatch is undone. Real Redis, real databases."""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from fss.domain.status import TaskStatus
from fss.fence import Fence, MemoryFence, RedisFence
from fss.naming import client_queue, fence_key
from fss.scheduler.dispatcher import Dispatcher, Outcome
from fss.store.tables import task
from tests.dispatch_scene import Scene, dispatch_scene

T0 = datetime(2026, 4, 1, 10, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["redis", "memory"])
def fence(request: pytest.FixtureRequest, fresh_redis_url: Callable[[], str]) -> Iterator[Fence]:
    made: Fence = RedisFence(fresh_redis_url()) if request.param == "redis" else MemoryFence()
    yield made
    made.close()


# --- arming ---------------------------------------------------------------------------------


def test_given_an_entered_attempt_when_armed_again_then_the_running_attempt_stays(
    fence: Fence,
) -> None:
    assert fence.arm(1, 1)
    assert fence.enter(1, 1, "worker-a")
    assert not fence.arm(1, 2)  # e.g. a dispatch undone although its order was delivered
    assert fence.holder(1, 1) == "worker-a"
    assert not fence.enter(1, 2, "worker-b")


def test_given_several_tasks_when_armed_at_once_then_only_the_entered_one_is_refused(
    fence: Fence,
) -> None:
    fence.arm(7, 1)
    assert fence.enter(7, 1, "w")
    assert fence.arm_many([(6, 1), (7, 2), (8, 3)]) == [7]
    assert fence.enter(6, 1) and fence.enter(8, 3)
    assert fence.holder(7, 1) == "w"


def test_given_a_revoked_or_newer_attempt_then_an_older_one_is_never_armed_again(
    fence: Fence,
) -> None:
    fence.arm(3, 1)
    assert fence.revoke(3, 1)
    assert not fence.arm(3, 1)  # a revoked attempt stays closed
    assert fence.arm(3, 2)
    assert fence.arm(3, 2)  # arming the armed attempt again is harmless
    assert not fence.arm(3, 1)  # a late, stale dispatch cannot take the fence back
    assert not fence.enter(3, 1) and fence.enter(3, 2)


# --- the dispatcher's take-back after a failed send -----------------------------------------


def closed_port() -> int:
    """A local port nothing listens on: connections to it are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def refused_dispatcher(scene: Scene, before_failing: Callable[[], object] = lambda: None
                       ) -> Dispatcher:
    """A dispatcher whose broker is a closed port, and whose send fails when the test says.

    kombu tries a refused connection again every 2 s until Celery's broker_connection_timeout
    (4 s) is over: 6 s a test, spent waiting. Its transport options make it two tries here,
    with `before_failing` run in between (kombu calls their `errback` after a failed try)."""
    dispatcher = scene.dispatcher(f"redis://127.0.0.1:{closed_port()}/0")
    app = scene.apps[-1]  # the dispatcher's app: its connections are made on first use

    def errback(_exc: Exception, _interval: float) -> None:
        before_failing()

    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options, "max_retries": 1, "interval_start": 0,
        "errback": errback,
    }
    return dispatcher


@pytest.fixture
def scene(database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[Scene]:
    with dispatch_scene(database_url, fresh_redis_url(), T0) as made:
        yield made


def test_given_a_send_that_fails_and_nobody_entered_then_the_attempt_is_revoked_and_undone(
    scene: Scene,
) -> None:
    claimed = scene.due_task()
    dispatcher = refused_dispatcher(scene)
    assert dispatcher.dispatch(claimed) is Outcome.FAILED
    row = scene.row(claimed.id)
    assert (row.status, row.client_id) == (TaskStatus.NONE, None)
    # The order may still turn up somewhere: it can never enter.
    assert not scene.fence.enter(claimed.id, 1, "late-worker")


def test_given_a_send_that_fails_but_a_worker_entered_then_the_dispatch_is_kept(
    scene: Scene,
) -> None:
    claimed = scene.due_task()
    entered = threading.Event()

    def worker_enters_once_armed() -> None:
        # The order got through before the send reported failure: a worker enters it.
        for _ in range(2000):
            if scene.redis.get(fence_key(claimed.id)) == b"1":
                if scene.fence.enter(claimed.id, 1, "w"):
                    entered.set()
                return
            threading.Event().wait(0.002)

    worker = threading.Thread(target=worker_enters_once_armed)
    # The send fails only once the worker is done with the armed attempt.
    dispatcher = refused_dispatcher(scene, before_failing=lambda: worker.join(timeout=10))
    worker.start()
    outcome = dispatcher.dispatch(claimed)
    worker.join(timeout=10)
    assert entered.is_set()
    assert outcome is Outcome.SENT
    row = scene.row(claimed.id)
    assert (row.status, row.attempt, row.client_id) == (TaskStatus.SCHEDULER, 1, "c1")
    assert scene.fence.holder(claimed.id, 1) == "w"


def test_given_a_task_back_in_waiting_while_its_attempt_runs_then_it_is_not_dispatched_again(
    scene: Scene,
) -> None:
    claimed = scene.due_task()
    # Attempt 1 was dispatched and entered, and the row went back to waiting anyway.
    scene.fence.arm(claimed.id, 1)
    assert scene.fence.enter(claimed.id, 1, "w")
    with scene.engine.begin() as conn:
        conn.execute(task.update().where(task.c.id == claimed.id).values(attempt=1))
    claimed = dataclasses.replace(claimed, attempt=1)
    dispatcher = scene.dispatcher(scene.settings.broker_url)
    assert dispatcher.dispatch(claimed) is Outcome.LOST
    assert scene.row(claimed.id).status == TaskStatus.NONE
    assert scene.fence.holder(claimed.id, 1) == "w"
    assert scene.redis.llen(client_queue("c1")) == 0


# --- the Redis connection -------------------------------------------------------------------


def test_given_the_server_dropped_the_connection_or_forgot_the_scripts_then_calls_still_work(
    fresh_redis_url: Callable[[], str],
) -> None:
    url = fresh_redis_url()
    fence = RedisFence(url)
    admin = redis.Redis.from_url(url)
    try:
        assert fence.arm(1, 1)
        # Drop the fence's connection, and only connections to this test's own db: killing
        # every normal client dropped those of tests running beside it on the shared Redis.
        db = int(url.rsplit("/", 1)[1])
        me = admin.client_id()
        ours = [c for c in admin.client_list() if int(c["db"]) == db and int(c["id"]) != me]
        assert ours, "the fence holds a connection"
        for connection in ours:
            admin.client_kill_filter(_id=connection["id"])
        admin.script_flush()
        assert fence.enter(1, 1, "worker-a")
        assert fence.holder(1, 1) == "worker-a"
        assert not fence.revoke(1, 1)
    finally:
        fence.close()
        admin.close()


def test_given_a_forked_child_then_it_uses_a_connection_of_its_own(
    fresh_redis_url: Callable[[], str],
) -> None:
    url = fresh_redis_url()
    fence = RedisFence(url)
    try:
        assert fence.arm(1, 1) and fence.arm(2, 1)
        pid = os.fork()
        if pid == 0:  # the child: enter task 1 on its own socket, then leave at once
            os._exit(0 if fence.enter(1, 1, "child") else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert fence.enter(2, 1, "parent")  # the parent's connection still answers in turn
        assert (fence.holder(1, 1), fence.holder(2, 1)) == ("child", "parent")
    finally:
        fence.close()


# --- entering is safe to retry (a reply lost to a socket timeout) ----------------------------

# Keeps Redis busy (a script blocks the whole server) for 0.8 s, as a slow command would.
BUSY_SCRIPT = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
while true do
  local n = redis.call('TIME')
  if n[1] * 1000000 + n[2] - start > 800000 then return 1 end
end
"""


def test_given_redis_busy_past_the_socket_timeout_then_the_entry_succeeds_for_that_delivery_only(
    fresh_redis_url: Callable[[], str],
) -> None:
    url = fresh_redis_url()
    fence = RedisFence(url, socket_timeout=0.5)
    blocker = redis.Connection(**redis.ConnectionPool.from_url(url).connection_kwargs)
    try:
        assert fence.arm(1, 1) and fence.arm(99, 1)
        assert fence.enter(99, 1, "w", delivery="warm-up")  # scripts loaded, connection open
        blocker.send_command("EVAL", BUSY_SCRIPT, 0)
        threading.Event().wait(0.05)  # the server has started the script
        # The first try times out after 0.5 s; DirectRedis sends the call again on a new
        # connection; Redis then runs both: the first enters, the retry must still say yes.
        assert fence.enter(1, 1, "w", delivery="delivery-a")
        assert blocker.read_response() == 1
        assert fence.holder(1, 1) == "w"
        assert fence.enter(1, 1, "w", delivery="delivery-a")  # the same delivery: yes again
        # Another delivery of the same order, even in a process of the same incarnation: no.
        assert not fence.enter(1, 1, "w", delivery="delivery-b")
        assert not fence.enter(1, 1, "w")
        assert not fence.revoke(1, 1)
    finally:
        blocker.disconnect()
        fence.close()


def test_given_a_delivery_token_then_only_that_token_enters_again(fence: Fence) -> None:
    fence.arm(5, 2)
    assert fence.enter(5, 2, "w", delivery="t1")
    assert fence.enter(5, 2, "w", delivery="t1")
    assert not fence.enter(5, 2, "w", delivery="t2")
    assert not fence.enter(5, 2, "other", delivery="t1")  # the token is per holder too
    assert not fence.enter(5, 3, "w", delivery="t1")
    assert fence.holder(5, 2) == "w" and fence.holder(5, 3) is None


# --- installations ----------------------------------------------------------------------------


def test_given_two_installations_then_their_fences_of_one_task_id_never_meet(
    fence: Fence,
) -> None:
    assert fence.arm_many([(4, 1)], installation="inst-a") == []
    assert fence.enter(4, 1, "wa", installation="inst-a")
    # The same task id of another installation (or of an old sender) is its own fence.
    assert fence.arm(4, 1, installation="inst-b")
    assert fence.arm(4, 1)
    assert fence.holder(4, 1, installation="inst-b") is None
    assert fence.revoke(4, 1, installation="inst-b")
    assert not fence.enter(4, 1, "wb", installation="inst-b")
    assert fence.enter(4, 1, "w-old")
    assert fence.holder(4, 1, installation="inst-a") == "wa"
    assert fence.holder(4, 1) == "w-old"
    assert not fence.revoke(4, 1, installation="inst-a")


def test_given_an_installation_then_the_redis_key_is_named_by_it(
    fresh_redis_url: Callable[[], str],
) -> None:
    url = fresh_redis_url()
    fence = RedisFence(url)
    admin = redis.Redis.from_url(url)
    try:
        fence.arm(8, 3, installation="inst-a")
        assert admin.get(fence_key(8, "inst-a")) == b"3"
        assert admin.get(fence_key(8)) is None
    finally:
        fence.close()
        admin.close()


# --- the memory fence: a model of the Redis keys, and pruning cost ---------------------------


class ModelFence:
    """What the Redis scripts do, written as plainly as possible: key -> (value, expiry)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.keys: dict[str, tuple[str, float]] = {}

    def current(self, key: str) -> str | None:
        value, until = self.keys.get(key, (None, 0.0))
        return value if until >= self.now else None

    def put(self, key: str, value: str) -> None:
        self.keys[key] = (value, self.now + 3600)

    def arm(self, key: str, attempt: int) -> bool:
        current = self.current(key)
        if current is None:
            allowed = True
        elif ":run:" in current:
            allowed = False
        elif current.startswith("revoked:"):
            allowed = attempt > int(current[len("revoked:") :])
        else:
            allowed = attempt >= int(current)
        if allowed:
            self.put(key, str(attempt))
        return allowed

    def enter(self, key: str, attempt: int, holder: str, delivery: str) -> bool:
        entered = f"{attempt}:run:{holder}#{delivery}"
        current = self.current(key)
        if current == str(attempt):
            self.put(key, entered)
            return True
        return current == entered

    def holder(self, key: str, attempt: int) -> str | None:
        current = self.current(key) or ""
        prefix = f"{attempt}:run:"
        return current[len(prefix) :].split("#")[0] if current.startswith(prefix) else None

    def revoke(self, key: str, attempt: int) -> bool:
        current = self.current(key)
        if current is not None and current.startswith(f"{attempt}:run:"):
            return False
        if current is None or current == str(attempt):
            self.put(key, f"revoked:{attempt}")
        return True

    def live(self) -> int:
        return sum(1 for _, until in self.keys.values() if until >= self.now)


fence_calls = st.one_of(
    st.tuples(
        st.sampled_from(["arm", "enter", "holder", "revoke"]),
        st.integers(1, 3),  # task id
        st.integers(1, 3),  # attempt
        st.sampled_from(["", "inst-a"]),
        st.sampled_from(["w1", "w2"]),
        st.sampled_from(["d1", "d2"]),
    ),
    st.tuples(st.just("advance"), st.sampled_from([0.0, 1.0, 1800.0, 3600.0, 3601.0])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(fence_calls, max_size=40))
def test_the_memory_fence_answers_as_the_model_and_keeps_only_live_entries(
    calls: list[tuple[Any, ...]],
) -> None:
    model = ModelFence()
    fence = MemoryFence(clock=lambda: model.now)
    for call in calls:
        if call[0] == "advance":
            model.now += call[1]
            continue
        name, task_id, attempt, installation, holder, delivery = call
        key = fence_key(task_id, installation)
        if name == "arm":
            got: object = fence.arm(task_id, attempt, installation=installation)
            expected: object = model.arm(key, attempt)
        elif name == "enter":
            got = fence.enter(
                task_id, attempt, holder, installation=installation, delivery=delivery
            )
            expected = model.enter(key, attempt, holder, delivery)
        elif name == "holder":
            got = fence.holder(task_id, attempt, installation=installation)
            expected = model.holder(key, attempt)
        else:
            got = fence.revoke(task_id, attempt, installation=installation)
            expected = model.revoke(key, attempt)
        assert got == expected, call
        assert len(fence) == model.live()  # every call leaves no expired entry behind


class CountedTime(float):
    """A clock reading that counts every comparison made with it: the pruning work."""

    comparisons = 0

    def _count(self) -> None:
        CountedTime.comparisons += 1

    def __lt__(self, other: object) -> bool:
        self._count()
        return float(self) < float(other)  # type: ignore[arg-type]

    def __le__(self, other: object) -> bool:
        self._count()
        return float(self) <= float(other)  # type: ignore[arg-type]

    def __gt__(self, other: object) -> bool:
        self._count()
        return float(self) > float(other)  # type: ignore[arg-type]

    def __ge__(self, other: object) -> bool:
        self._count()
        return float(self) >= float(other)  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        self._count()
        return float(self) == float(other)  # type: ignore[arg-type]

    __hash__ = float.__hash__

    def __add__(self, other: object) -> CountedTime:
        return CountedTime(float(self) + float(other))  # type: ignore[arg-type]


def test_given_many_tasks_then_each_memory_fence_call_does_a_bounded_amount_of_work() -> None:
    tasks = 12_000
    now = [CountedTime(0.0)]
    fence = MemoryFence(clock=lambda: now[0])
    CountedTime.comparisons = 0
    for task_id in range(tasks):
        now[0] = now[0] + 0.001
        assert fence.arm(task_id, 1)
        assert fence.enter(task_id, 1, "w")
    now[0] = now[0] + 3601  # every entry has expired: the next calls prune them all
    for task_id in range(tasks, 2 * tasks):
        assert fence.arm(task_id, 1)
    assert len(fence) == tasks
    calls = 3 * tasks
    # O(log n) per call: a heap push or pop compares along one path of the tree (a tuple
    # comparison counts twice). A scan of every entry per call, the former prune past
    # 10,000 entries, made 4.4*10^7 comparisons here (20 times this bound); the heap 7.9*10^5.
    bound = 4 * calls * math.log2(2 * tasks)
    assert CountedTime.comparisons < bound, (CountedTime.comparisons, bound)


def test_given_a_broadcast_attempt_then_each_shard_enters_its_own_fence(fence: Fence) -> None:
    assert fence.arm_shards(31, 1, [0, 1, 2], ttl_s=60) == []
    assert fence.enter(31, 1, "w0", delivery="d0", shard=0)
    assert fence.enter(31, 1, "w1", delivery="d1", shard=1)
    # A second delivery of shard 1 (another pool process, another client) stays out.
    assert not fence.enter(31, 1, "w2", delivery="d2", shard=1)
    assert fence.holder(31, 1, shard=0) == "w0"
    assert fence.holder(31, 1, shard=1) == "w1"
    assert fence.holder(31, 1, shard=2) is None
    # Shard 2 was never entered: revoking it closes it; shard 1 runs and is not revoked.
    assert fence.revoke(31, 1, shard=2)
    assert not fence.enter(31, 1, "w2", delivery="d3", shard=2)
    assert not fence.revoke(31, 1, shard=1)
    # A retry re-arms only its failed shards, over their ended attempt; an entered shard of
    # the same attempt refuses a plain re-arm.
    assert fence.arm_shards(31, 2, [1], ttl_s=60, replacing=True) == []
    assert fence.arm_shards(31, 1, [0], ttl_s=60) == [0]
    assert fence.enter(31, 2, "w3", delivery="d4", shard=1)
    # The task's plain fence is shard 0's: a non-broadcast call meets it.
    assert fence.holder(31, 1) == "w0"


def test_given_a_shard_then_its_redis_key_is_apart_from_the_task_key() -> None:
    assert fence_key(5, "inst", 0) == fence_key(5, "inst") == "fss:fence:inst:5"
    assert fence_key(5, "inst", 3) == "fss:fence:inst:5/3"
    assert fence_key(5, "", 2) == "fss:fence:5/2"
