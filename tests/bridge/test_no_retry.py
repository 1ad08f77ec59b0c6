"""`finished{no_retry}`: a gRPC client refuses retries for one failure, as Python's
`raise fss.Fail(reason, retry=False)`. A real bridge, gRPC client, Redis, and a Recorder
writing PostgreSQL: in a group with retries left, that failure ends the task; one without
no_retry goes back to waiting for its retry."""

from __future__ import annotations

from bridge_helpers import RawClient, Sent, dispatch, finished
from servers import wait_for
from test_kill import world  # noqa: F401 - the fixture (PostgreSQL, Redis, Recorder, bridge)
from test_session import World

from fss.bridge.proto.fss.v1 import fss_pb2
from fss.domain.status import TaskStatus


def failing_run(world: World, name: str, no_retry: bool) -> Sent:  # noqa: F811
    """A run of a group with 2 retries, started on client `name`, that fails with `no_retry`."""
    raw: RawClient = world.client(name)
    raw.next("registered")
    sent = dispatch(world.engine, world.app, world.fence, name, retries=2)
    raw.next("order")
    raw.send(started=fss_pb2.Started(task_id=sent.task_id, attempt=sent.attempt))
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.WORKING, 5, what="working")
    raw.send(finished=finished(sent, success=False, error="bad input", no_retry=no_retry))
    return sent


def test_given_retries_left_when_the_client_fails_with_no_retry_then_the_task_ends_fail(
    world: World,  # noqa: F811
) -> None:
    sent = failing_run(world, "no-retry-1", no_retry=True)
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.FAIL, 5, what="failed")
    row = world.task_row(sent.task_id)
    assert (row.attempt, row.error) == (1, "bad input")
    assert (4, "attempt 1 failed: bad input; not retried (the job refused retries for this "
               "failure)") in world.logs(sent.task_id), world.logs(sent.task_id)


def test_given_retries_left_when_the_client_fails_without_no_retry_then_it_is_retried(
    world: World,  # noqa: F811
) -> None:
    sent = failing_run(world, "no-retry-2", no_retry=False)
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.NONE, 5, what="waiting to retry")
    assert world.task_row(sent.task_id).attempt == 1  # the dispatcher sends attempt 2
    assert (3, "attempt 1 failed: bad input; retry 1 of 2 in 60 s") in world.logs(sent.task_id)
