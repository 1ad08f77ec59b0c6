"""A gRPC client's order with Celery time limits: `cancel` at the soft limit, the run Fail
"time limit exceeded", and failed by the bridge at the hard limit if the client does not end
it. A real bridge (in-process), real Redis broker and fence, a real Recorder into SQLite."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bridge_helpers import NODE, RawClient, Sent
from servers import wait_for
from test_session import World, running_order, world  # noqa: F401 - the fixture

from fss.bridge.proto.fss.v1 import fss_pb2
from fss.bridge.session import TimeLimits, time_limits
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.naming import celery_task_id, client_queue, job_task_name
from fss.orders import RunOrder
from fss.store import groups, tasks


def dispatch_limited(world: World, client_id: str, soft_s: float, hard_s: float) -> Sent:  # noqa: F811
    """An order sent as the dispatcher sends one of a group with max_run_s: Celery's own
    time_limit / soft_time_limit, i.e. the timelimit header [hard, soft]."""
    now = datetime.now(timezone.utc)
    group_id = groups.add_group(world.engine, GroupSpec(
        caption="g", job_name="j", interval_ms=3_600_000, start_at=now), now)
    claimed = next(c for c in tasks.claim_due(world.engine, NODE, now, timedelta(seconds=1),
                                              timedelta(seconds=30)) if c.group_id == group_id)
    with world.engine.begin() as conn:
        attempt = tasks.mark_dispatched(
            conn, claimed, NODE, tasks.DispatchTarget(client_id, "h1", "10.0.0.1"), now)
    assert attempt is not None and world.fence.arm(claimed.id, attempt)
    order = RunOrder(claimed.id, attempt, group_id, "j", client_id, claimed.start_at, {})
    world.app.send_task(
        job_task_name("j"), kwargs=order.to_kwargs(), queue=client_queue(client_id),
        task_id=celery_task_id(order.task_id, order.attempt),
        expires=now + timedelta(seconds=30), time_limit=hard_s, soft_time_limit=soft_s,
    )
    return Sent(claimed.id, attempt, group_id)


def start_limited(
    world: World, name: str, soft_s: float, hard_s: float  # noqa: F811
) -> tuple[RawClient, Sent, dict[str, int]]:
    raw = world.client(name)
    raw.next("registered")
    sent = dispatch_limited(world, name, soft_s, hard_s)
    raw.next("order")
    key = {"task_id": sent.task_id, "attempt": sent.attempt}
    raw.send(started=fss_pb2.Started(**key))
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.WORKING, 5, what="working")
    return raw, sent, key


def test_given_a_soft_limit_then_the_client_gets_cancel_and_its_end_is_a_time_limit_fail(
    world: World,  # noqa: F811
) -> None:
    raw, sent, key = start_limited(world, "limited-1", soft_s=1, hard_s=30)
    cancel = raw.next("cancel").cancel
    assert (cancel.task_id, cancel.attempt, cancel.reason) == (
        sent.task_id, sent.attempt, "time limit exceeded after 1 s")
    raw.send(finished=fss_pb2.Finished(**key, success=True))
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.FAIL, 5, what="failed")
    assert world.task_row(sent.task_id).error == "time limit exceeded after 1 s"
    raw.close()


def test_given_a_client_that_ignores_cancel_then_the_bridge_fails_the_run_at_the_hard_limit(
    world: World,  # noqa: F811
) -> None:
    raw, sent, key = start_limited(world, "limited-2", soft_s=1, hard_s=2)
    raw.next("cancel")
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.FAIL, 5, what="failed")
    error = str(world.task_row(sent.task_id).error)
    assert error.startswith("time limit exceeded after 1 s: the gRPC client limited-2 did not "
                            "end the run within 1 s of `cancel`"), error
    assert (4, error) in world.logs(sent.task_id)
    # Its late report is dropped, the session goes on, the run stays failed.
    raw.send(finished=fss_pb2.Finished(**key, success=True))
    other = world.dispatch("limited-2")
    raw.next("order")
    assert world.status(sent.task_id) == TaskStatus.FAIL
    assert other.task_id != sent.task_id
    raw.close()


def test_an_order_without_limits_is_never_cancelled(world: World) -> None:  # noqa: F811
    raw, sent, key = running_order(world, "unlimited")
    raw.send(finished=fss_pb2.Finished(**key, success=True))
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.SUCCESS, 5, what="success")
    raw.close()


def test_the_timelimit_header_is_read_as_celery_writes_it() -> None:
    assert time_limits({"timelimit": [12.0, 2.0]}) == TimeLimits(soft_s=2.0, hard_s=12.0)
    assert time_limits({"timelimit": [None, None]}) == TimeLimits()
    assert time_limits({}) == TimeLimits()
    assert time_limits({"timelimit": [5, None]}) == TimeLimits(soft_s=5.0, hard_s=5.0)
    assert time_limits({"timelimit": ["x", True]}) == TimeLimits()
    assert time_limits({"timelimit": "12"}) == TimeLimits()
