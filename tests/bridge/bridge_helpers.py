"""A raw gRPC client of fss.v1.Bridge for the bridge's own tests (no fss.bridge.client), and
orders put on a client's queue the way the scheduler's Dispatcher sends them."""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
from celery import Celery
from sqlalchemy.engine import Engine

from fss.bridge.grpc_server import TlsFiles
from fss.bridge.proto.fss.v1 import fss_pb2, fss_pb2_grpc
from fss.domain.group_spec import GroupSpec
from fss.fence import Fence
from fss.naming import celery_task_id, client_queue, job_task_name
from fss.orders import RunOrder
from fss.store import groups, tasks

NODE = "test-node"


def self_signed(tmp_path: Path) -> TlsFiles:
    """A certificate for localhost/127.0.0.1 and its key, made by openssl for one test."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return TlsFiles(cert_pem=cert.read_bytes(), key_pem=key.read_bytes())


def ready_channel(address: str, attempts: int = 3, timeout_s: float = 10.0) -> grpc.Channel:
    """An insecure channel to `address` that has connected. On a loaded machine a channel's
    first connect has been seen to stall; a fresh channel then connects at once."""
    for _ in range(attempts - 1):
        channel = grpc.insecure_channel(address)
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout_s)
            return channel
        except grpc.FutureTimeoutError:
            channel.close()
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=timeout_s)
    return channel


class RawClient:
    """One Connect stream; messages to send are queued, messages received are collected by
    a reader thread unless `read=False` (a client that never reads its stream)."""

    def __init__(
        self,
        channel: grpc.Channel,
        metadata: Sequence[tuple[str, str]] = (),
        read: bool = True,
        beat_every_s: float = 0.05,
        wait_for_ready: bool = True,
    ) -> None:
        self._requests: queue.Queue[fss_pb2.ClientMessage | None] = queue.Queue()
        self.received: queue.Queue[fss_pb2.ServerMessage] = queue.Queue()
        self.beating = threading.Event()
        self._beat_every_s = beat_every_s
        self._closed = threading.Event()
        stub = fss_pb2_grpc.BridgeStub(channel)
        # wait_for_ready: on a loaded machine the channel's first connect can lag the call;
        # without it the call fails fast (UNAVAILABLE) and the test sees no message at all.
        # Tests of a server that is gone or refuses the connection turn it off.
        self.call = stub.Connect(
            self._outgoing(), metadata=list(metadata), wait_for_ready=wait_for_ready
        )
        self.ended = threading.Event()
        if read:
            threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._beat, daemon=True).start()

    def send(self, **kind: object) -> None:
        self._requests.put(fss_pb2.ClientMessage(**kind))  # type: ignore[arg-type]

    def register(self, name: str, job_names: Sequence[str] = ("j",), concurrency: int = 1,
                 language: str = "node") -> None:
        self.send(register=fss_pb2.Register(
            name=name, host="h1", ip="10.0.0.1", pid=42, job_names=list(job_names),
            language=language, concurrency=concurrency,
        ))

    def next(self, kind: str, timeout: float = 10.0) -> fss_pb2.ServerMessage:
        """The next received message, which must be of `kind`."""
        try:
            message = self.received.get(timeout=timeout)
        except queue.Empty:
            ended = self.ended.is_set()
            state = f"{self.call.code()}: {self.call.details()}" if ended else "still open"
            raise AssertionError(f"no {kind!r} message within {timeout} s; call {state}") from None
        assert message.WhichOneof("kind") == kind, message
        return message

    def close(self) -> None:
        self.beating.clear()
        self._closed.set()
        self._requests.put(None)

    def cancel(self) -> None:
        self.close()
        self.call.cancel()

    def wait_end(self, timeout: float = 10.0) -> grpc.StatusCode:
        assert self.ended.wait(timeout) or self._drain_until_end(timeout)
        code: grpc.StatusCode = self.call.code()
        return code

    def _drain_until_end(self, timeout: float) -> bool:
        try:
            for _ in self.call:
                pass
        except grpc.RpcError:
            pass
        return True

    def _outgoing(self) -> Iterator[fss_pb2.ClientMessage]:
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    def _read(self) -> None:
        try:
            for message in self.call:
                self.received.put(message)
        except grpc.RpcError:
            pass
        finally:
            self.ended.set()

    def _beat(self) -> None:
        while not self._closed.wait(self._beat_every_s):
            if self.beating.is_set():
                self.send(heartbeat=fss_pb2.Heartbeat(accepting=True))


@dataclass(frozen=True)
class Sent:
    task_id: int
    attempt: int
    group_id: int


def dispatch(
    engine: Engine,
    app: Celery,
    fence: Fence,
    client_id: str,
    job_name: str = "j",
    data: dict[str, object] | None = None,
    attempt_offset: int = 0,
    arm: bool = True,
    retries: int = 0,
) -> Sent:
    """A group with one task, moved None -> Scheduler to `client_id`, its fence armed and its
    order sent as Dispatcher._send does (`attempt_offset` sends an older attempt than the
    one armed: a stale message). `retries`: the group's, its retries a minute apart."""
    now = datetime.now(timezone.utc)
    group_id = groups.add_group(
        engine,
        GroupSpec(caption="g", job_name=job_name, interval_ms=3_600_000, data=data or {},
                  start_at=now, retries=retries, retry_delay_ms=60_000, retry_jitter=False),
        now,
    )
    claimed = next(
        c
        for c in tasks.claim_due(engine, NODE, now, timedelta(seconds=1), timedelta(seconds=30))
        if c.group_id == group_id
    )
    with engine.begin() as conn:
        attempt = tasks.mark_dispatched(
            conn, claimed, NODE, tasks.DispatchTarget(client_id, "h1", "10.0.0.1"), now
        )
    assert attempt is not None
    if arm:
        assert fence.arm(claimed.id, attempt)
    send_order(app, RunOrder(
        task_id=claimed.id, attempt=attempt - attempt_offset, group_id=group_id,
        job_name=job_name, client_id=client_id, start_at=claimed.start_at,
        data=data or {},
    ), now)
    return Sent(claimed.id, attempt, group_id)


def send_order(app: Celery, order: RunOrder, now: datetime, expires_s: float = 30.0) -> None:
    app.send_task(
        job_task_name(order.job_name),
        kwargs=order.to_kwargs(),
        queue=client_queue(order.client_id),
        task_id=celery_task_id(order.task_id, order.attempt),
        expires=max(now, order.start_at) + timedelta(seconds=expires_s),
    )


def finished(
    sent: Sent, success: bool, error: str = "", no_retry: bool = False
) -> fss_pb2.Finished:
    """The client's `finished` for the order `sent`."""
    return fss_pb2.Finished(
        task_id=sent.task_id, attempt=sent.attempt, success=success, error=error,
        no_retry=no_retry,
    )
