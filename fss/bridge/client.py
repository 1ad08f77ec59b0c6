"""The reference Python client of the bridge protocol fss.v1 (no Celery, no database).

A program joins fss through `fss bridge` with one `BridgeClient`: it opens the stream,
registers its job handlers, keeps the session alive with heartbeats, runs every order it
receives in a pool of `concurrency` threads and reports started / progress / log / finished.
When the stream breaks (bridge restarted, network) it reconnects with backoff; runs of the
broken session keep going in their threads but their reports are dropped (the bridge failed
them when the session ended) and their contexts say `cancelled`.

    def echo(ctx: BridgeJobContext) -> None:
        ctx.log.info("echo %s", ctx.data)
        ctx.set_progress(100)

    client = BridgeClient("127.0.0.1:50051", "echo-1", {"echo": echo}, token="secret")
    client.run()  # blocks until client.stop() (from another thread or a signal handler)

docs/bridge.md describes the protocol this module implements.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import os
import queue
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import Any

import grpc

from fss.bridge.proto.fss.v1 import fss_pb2, fss_pb2_grpc
from fss.domain.clock import Clock, SystemClock, as_utc
from fss.domain.group_spec import validate_data
from fss.errors import FssError, InvalidField
from fss.events import MAX_ERROR_TEXT, run_logger
from fss.hostinfo import local_ip

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0
# Until the bridge says otherwise (registered.heartbeat_interval_ms).
DEFAULT_HEARTBEAT_S = 1.0
# How long stop() lets running jobs finish before the stream is closed anyway.
DEFAULT_DRAIN_TIMEOUT_S = 30.0
DISCONNECTED = "the session with the bridge ended"
# Before it looks at its running jobs, a draining client lets an order already on its way
# arrive (the bridge stops streaming once it has read `accepting=false`).
DRAIN_SETTLE_S = 0.2
# gRPC's own reconnect backoff starts at 1 s and grows to 120 s; a restarted bridge should
# see its clients back within a second or two.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)

JobHandler = Callable[["BridgeJobContext"], "bool | None"]
Send = Callable[[fss_pb2.ClientMessage], bool]


class BridgeRefused(FssError):
    """The bridge refused this client (wrong token, invalid registration): retrying with the
    same settings cannot succeed, so `run()` raises instead of reconnecting."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        self.details = details
        super().__init__(f"the bridge refused the client: {code.name}: {details}")


class BridgeKicked(FssError):
    """Another session registered under this client's name; this one must not come back
    (reconnecting would kick the other one in turn)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"kicked by the bridge: {reason}")


# ---- one run ---------------------------------------------------------------------------


def unix_ms(moment: datetime) -> int:
    return int(as_utc(moment).timestamp() * 1000)


def from_unix_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc)


class BridgeJobContext:
    """One run of a task, as `fss.worker_sdk.JobContext` shows it to a Celery job: `data` may
    be changed (the changes are saved to the group when the run ends), `log` writes run logs.
    """

    def __init__(self, order: fss_pb2.RunOrder, client_id: str, send: Send, clock: Clock) -> None:
        self.task_id: int = order.task_id
        self.attempt: int = order.attempt
        self.group_id: int = order.group_id
        self.job_name: str = order.job_name
        self.data: dict[str, Any] = _order_data(order.data_json)
        self.start_at: datetime = from_unix_ms(order.start_at_unix_ms)
        self.deadline: datetime | None = (
            from_unix_ms(order.deadline_unix_ms) if order.deadline_unix_ms else None
        )
        self.client_id = client_id
        self.progress = 0
        self.next_at: datetime | None = None
        self.cancel_reason: str | None = None
        self._original_data = _canonical(self.data)
        self._send = send
        self._clock = clock
        self._cancelled = threading.Event()
        self.log = self._make_logger()

    @property
    def cancelled(self) -> bool:
        """True once the bridge cancelled this run or its session ended: stop soon."""
        return self._cancelled.is_set()

    def wait_cancelled(self, timeout_s: float) -> bool:
        """Sleep up to `timeout_s`, waking early (True) when the run is cancelled."""
        return self._cancelled.wait(timeout_s)

    def set_progress(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("progress must be a number from 0 to 100")
        progress = int(value)
        if not 0 <= progress <= 100:
            raise ValueError(f"progress must be from 0 to 100, got {value}")
        # Sent even when unchanged: every report is a sign of life for the hung-run check.
        self.progress = progress
        self._send(
            fss_pb2.ClientMessage(
                progress=fss_pb2.Progress(
                    task_id=self.task_id, attempt=self.attempt, progress=progress
                )
            )
        )

    def set_next_at(self, when: datetime | timedelta) -> None:
        """Run the group next at `when` (an aware time, or a delay from now) instead of its
        schedule."""
        if isinstance(when, timedelta):
            self.next_at = self._clock.now() + when
        elif isinstance(when, datetime):
            if when.tzinfo is None or when.utcoffset() is None:
                # A naive time is ambiguous (UTC? this host's zone?): guessing moves runs.
                raise InvalidField(
                    "set_next_at",
                    f"{when.isoformat()} has no time zone; pass an aware datetime or a timedelta",
                )
            self.next_at = as_utc(when)
        else:
            raise TypeError("set_next_at takes a datetime or a timedelta")

    def changed_data_json(self) -> str:
        """The data as JSON when the job changed it (and it can be saved), else ""."""
        if _canonical(self.data) == self._original_data:
            return ""
        try:
            return validate_data(self.data)
        except InvalidField as exc:
            self.log.error("ctx.data was changed but cannot be saved: %s", exc)
            return ""

    def _cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self._cancelled.set()

    def _send_log(self, level: int, content: str, created: float) -> None:
        self._send(
            fss_pb2.ClientMessage(
                log=fss_pb2.Log(
                    task_id=self.task_id,
                    attempt=self.attempt,
                    level=level,  # type: ignore[arg-type]
                    content=content,
                    event_id=uuid.uuid4().hex,
                    at_unix_ms=int(created * 1000),
                )
            )
        )

    def _make_logger(self) -> logging.Logger:
        return run_logger(self.job_name, self._send_log)

    def __repr__(self) -> str:
        return (
            f"<BridgeJobContext task={self.task_id} attempt={self.attempt} "
            f"job={self.job_name!r}>"
        )


def _order_data(data_json: str) -> dict[str, Any]:
    if not data_json:
        return {}
    data = json.loads(data_json)
    if not isinstance(data, dict):
        raise InvalidField("data_json", "must be a JSON object")
    return data


def _canonical(data: Any) -> str:
    try:
        return json.dumps(data, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(data)


def _tail(text: str, limit: int) -> str:
    # The end of a traceback says what went wrong; keep it when the text is too long.
    return text if len(text) <= limit else text[-limit:]


# ---- one stream ------------------------------------------------------------------------


class _Session:
    """One Connect stream: the messages to send, and the runs whose orders it brought."""

    def __init__(self) -> None:
        self._outbox: queue.Queue[fss_pb2.ClientMessage | None] = queue.Queue()
        self.closed = threading.Event()
        self.registered: fss_pb2.Registered | None = None
        self.kicked: str | None = None
        self.end_code: grpc.StatusCode = grpc.StatusCode.OK
        self.runs: dict[tuple[int, int], BridgeJobContext] = {}
        self.lock = threading.Lock()

    def send(self, message: fss_pb2.ClientMessage) -> bool:
        """Queue `message`; False (dropped) once the session ended."""
        if self.closed.is_set():
            return False
        self._outbox.put(message)
        return True

    def messages(self) -> Iterator[fss_pb2.ClientMessage]:
        """The request iterator gRPC drains; ends (half-closes the stream) on close()."""
        while True:
            message = self._outbox.get()
            if message is None:
                return
            yield message

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self._outbox.put(None)

    def active(self) -> int:
        with self.lock:
            return len(self.runs)

    def end_runs(self, reason: str) -> None:
        with self.lock:
            runs = list(self.runs.values())
        for context in runs:
            context._cancel(reason)


# ---- the client ------------------------------------------------------------------------


class _Backoff:
    def __init__(self) -> None:
        self.delay_s = MIN_BACKOFF_S

    def next(self) -> float:
        delay = self.delay_s
        self.delay_s = min(self.delay_s * 2, MAX_BACKOFF_S)
        return delay

    def reset(self) -> None:
        self.delay_s = MIN_BACKOFF_S


class BridgeClient:
    """An fss client on the gRPC bridge: `run()` blocks, `stop()` ends it gracefully.

    `jobs` maps job names to handlers. A handler returning False or raising fails the run
    (the error is the traceback); anything else is a success. Coroutine functions work too.
    `token` is sent as `authorization: Bearer <token>`; `tls` / `root_certificates` (PEM)
    connect over TLS. One `run()` per client object.
    """

    def __init__(
        self,
        target: str,
        name: str,
        jobs: dict[str, JobHandler],
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        concurrency: int = 1,
        language: str = "python",
        host: str | None = None,
        ip: str | None = None,
        pid: int | None = None,
        clock: Clock | None = None,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if not jobs:
            raise InvalidField("jobs", "at least one job handler is needed")
        if not 1 <= concurrency <= 1024:
            raise InvalidField("concurrency", f"must be 1..1024, got {concurrency}")
        self.target = target
        self.name = name
        self.jobs = dict(jobs)
        self.token = token
        # TLS with these PEM roots, or with the system's roots when only `tls` is set.
        self.tls = tls or root_certificates is not None
        self.root_certificates = root_certificates
        self.concurrency = concurrency
        self.language = language
        self.host = host if host is not None else socket.gethostname()[:128]
        self.ip = ip if ip is not None else local_ip()
        self.pid = pid if pid is not None else os.getpid()
        self.clock: Clock = clock or SystemClock()
        self.drain_timeout_s = drain_timeout_s
        self.channel_options = [*DEFAULT_CHANNEL_OPTIONS, *channel_options]
        self.sessions = 0
        self._stopping = threading.Event()
        self._session: _Session | None = None
        self._call: grpc.Future | None = None
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"fss-bridge-{name}")
        self._connected = threading.Event()

    # -- public API

    def run(self) -> None:
        """Connect, register and serve orders until stop(); reconnect with backoff when the
        stream breaks. Raises BridgeRefused (wrong token, invalid registration) or
        BridgeKicked (another session took this name)."""
        backoff = _Backoff()
        channel = self._channel()
        try:
            stub = fss_pb2_grpc.BridgeStub(channel)  # type: ignore[no-untyped-call]
            while not self._stopping.is_set():
                session = _Session()
                try:
                    self._serve(stub, session)
                except grpc.RpcError as exc:
                    self._raise_if_fatal(exc, session)
                    session.end_code = _code(exc)
                    log.warning("bridge %s: stream ended: %s", self.target, _describe(exc))
                if self._replaced(session):
                    raise BridgeKicked(session.kicked or "kicked")
                if session.registered is not None:
                    backoff.reset()
                if not self._stopping.is_set():
                    self._stopping.wait(backoff.next())
        finally:
            self._stopping.set()
            self._pool.shutdown(wait=False, cancel_futures=True)
            channel.close()

    def stop(self) -> None:
        """Take no new runs, let running ones finish (up to drain_timeout_s), then close the
        stream; run() returns after that. Safe from any thread and from signal handlers."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        session = self._session
        if session is None:
            return
        threading.Thread(target=self._drain, args=(session,), daemon=True).start()

    def reconnect(self) -> None:
        """Drop the current stream and open a new one, as a network failure would: the
        bridge fails the runs of the old session (their handlers are told `cancelled`)."""
        call = self._call
        if call is not None:
            call.cancel()

    def wait_connected(self, timeout_s: float) -> bool:
        """True once a session is registered (for tests and supervisors)."""
        return self._connected.wait(timeout_s)

    @property
    def active(self) -> int:
        session = self._session
        return session.active() if session is not None else 0

    # -- one session

    def _serve(self, stub: fss_pb2_grpc.BridgeStub, session: _Session) -> None:
        self._session = session
        self.sessions += 1
        metadata = (("authorization", f"Bearer {self.token}"),) if self.token else None
        session.send(fss_pb2.ClientMessage(register=self._register_message()))
        call = stub.Connect(session.messages(), metadata=metadata)
        self._call = call
        try:
            if self._stopping.is_set():  # stop() came before this session existed
                self._start_drain(session)
            for message in call:
                self._on_message(session, message)
        finally:
            self._connected.clear()
            session.close()
            session.end_runs(DISCONNECTED)
            call.cancel()

    def _register_message(self) -> fss_pb2.Register:
        return fss_pb2.Register(
            name=self.name,
            host=self.host,
            ip=self.ip,
            pid=self.pid,
            job_names=sorted(self.jobs),
            language=self.language,
            concurrency=self.concurrency,
        )

    def _on_message(self, session: _Session, message: fss_pb2.ServerMessage) -> None:
        kind = message.WhichOneof("kind")
        if kind == "registered":
            self._on_registered(session, message.registered)
        elif kind == "order":
            self._on_order(session, message.order)
        elif kind == "cancel":
            self._on_cancel(session, message.cancel)
        elif kind == "kicked":
            self._on_kicked(session, message.kicked.reason)

    def _on_registered(self, session: _Session, registered: fss_pb2.Registered) -> None:
        session.registered = registered
        interval_s = registered.heartbeat_interval_ms / 1000 or DEFAULT_HEARTBEAT_S
        threading.Thread(
            target=self._heartbeats, args=(session, interval_s), daemon=True,
            name=f"fss-bridge-heartbeat-{self.name}",
        ).start()
        log.info(
            "registered as %s on bridge %s (heartbeat every %.1f s)",
            registered.client_id, registered.bridge_node or self.target, interval_s,
        )
        self._connected.set()

    def _heartbeats(self, session: _Session, interval_s: float) -> None:
        while not session.closed.wait(interval_s):
            accepting = not self._stopping.is_set()
            session.send(fss_pb2.ClientMessage(heartbeat=fss_pb2.Heartbeat(accepting=accepting)))

    def _on_order(self, session: _Session, order: fss_pb2.RunOrder) -> None:
        try:
            context = BridgeJobContext(order, self.name, session.send, self.clock)
        except Exception as exc:  # a malformed order must not end the client's session
            self._finish_unstarted(session, order, f"malformed order: {type(exc).__name__}: {exc}")
            return
        with session.lock:
            session.runs[(order.task_id, order.attempt)] = context
        self._pool.submit(self._execute, session, context)

    def _on_cancel(self, session: _Session, cancel: fss_pb2.Cancel) -> None:
        with session.lock:
            context = session.runs.get((cancel.task_id, cancel.attempt))
        if context is not None:
            context._cancel(cancel.reason or "cancelled by the bridge")

    def _on_kicked(self, session: _Session, reason: str) -> None:
        log.warning("kicked by bridge %s: %s", self.target, reason)
        session.kicked = reason or "kicked"
        session.end_runs(f"kicked: {session.kicked}")
        session.close()

    def _finish_unstarted(self, session: _Session, order: fss_pb2.RunOrder, error: str) -> None:
        session.send(
            fss_pb2.ClientMessage(
                finished=fss_pb2.Finished(
                    task_id=order.task_id, attempt=order.attempt, success=False, error=error
                )
            )
        )

    # -- one run

    def _execute(self, session: _Session, context: BridgeJobContext) -> None:
        try:
            if context.deadline is not None and self.clock.now() > context.deadline:
                self._report_end(session, context, False, "the order expired before it started")
                return
            session.send(
                fss_pb2.ClientMessage(
                    started=fss_pb2.Started(task_id=context.task_id, attempt=context.attempt)
                )
            )
            success, error = self._call_handler(context)
            self._report_end(session, context, success, error)
        finally:
            with session.lock:
                session.runs.pop((context.task_id, context.attempt), None)

    def _call_handler(self, context: BridgeJobContext) -> tuple[bool, str]:
        handler = self.jobs.get(context.job_name)
        if handler is None:
            return False, f"this client has no handler for job {context.job_name!r}"
        try:
            result = handler(context)
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
        except Exception as exc:
            context.log.error(
                "job %r raised %s", context.job_name, type(exc).__name__, exc_info=exc
            )
            return False, _tail("".join(traceback.format_exception(exc)), MAX_ERROR_TEXT)
        if result is False:
            context.log.warning("job %r returned False", context.job_name)
            return False, "job returned False"
        if context.cancel_reason is not None:
            return False, _tail(f"cancelled: {context.cancel_reason}", MAX_ERROR_TEXT)
        return True, ""

    def _report_end(
        self, session: _Session, context: BridgeJobContext, success: bool, error: str
    ) -> None:
        next_at = unix_ms(context.next_at) if context.next_at is not None else 0
        session.send(
            fss_pb2.ClientMessage(
                finished=fss_pb2.Finished(
                    task_id=context.task_id,
                    attempt=context.attempt,
                    success=success,
                    error=error,
                    next_at_unix_ms=next_at,
                    data_json=context.changed_data_json(),
                )
            )
        )

    # -- stopping

    def _start_drain(self, session: _Session) -> None:
        threading.Thread(target=self._drain, args=(session,), daemon=True).start()

    def _drain(self, session: _Session) -> None:
        session.send(fss_pb2.ClientMessage(heartbeat=fss_pb2.Heartbeat(accepting=False)))
        deadline = time.monotonic() + self.drain_timeout_s
        session.closed.wait(DRAIN_SETTLE_S)
        while session.active() and time.monotonic() < deadline and not session.closed.is_set():
            time.sleep(0.02)
        session.close()  # half-close: the bridge ends the session and answers end of stream

    # -- plumbing

    def _channel(self) -> grpc.Channel:
        if self.tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=self.root_certificates)
            return grpc.secure_channel(self.target, credentials, options=self.channel_options)
        return grpc.insecure_channel(self.target, options=self.channel_options)

    def _replaced(self, session: _Session) -> bool:
        # `kicked` ends the stream with UNAVAILABLE when the bridge stops (come back, to it
        # or a peer) and with another status when a newer session took the name (stay away).
        if session.kicked is None or self._stopping.is_set():
            return False
        return bool(session.end_code != grpc.StatusCode.UNAVAILABLE)

    def _raise_if_fatal(self, exc: grpc.RpcError, session: _Session) -> None:
        code = _code(exc)
        details = (exc.details() if isinstance(exc, grpc.Call) else str(exc)) or ""
        if code == grpc.StatusCode.UNAUTHENTICATED:
            raise BridgeRefused(code, details) from None
        if code == grpc.StatusCode.INVALID_ARGUMENT and session.registered is None:
            raise BridgeRefused(code, details) from None


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _code(exc: grpc.RpcError) -> grpc.StatusCode:
    code: grpc.StatusCode = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    return code


def _describe(exc: grpc.RpcError) -> str:
    if isinstance(exc, grpc.Call):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)


# ---- manual use: python -m fss.bridge.client --bridge HOST:PORT --name N --job echo -----


def echo(ctx: BridgeJobContext) -> None:
    """A job for trying the bridge: logs its data, reports progress, changes nothing."""
    ctx.log.info("echo of group %d: %s", ctx.group_id, json.dumps(ctx.data))
    ctx.set_progress(100)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fss.bridge.client", description="Serve the echo job through an fss bridge."
    )
    parser.add_argument("--bridge", default="127.0.0.1:50051", help="HOST:PORT")
    parser.add_argument("--name", required=True, help="client id")
    parser.add_argument("--job", action="append", default=[], help="job name served by echo")
    parser.add_argument("--token-file", help="file holding the bridge's token")
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    jobs: dict[str, JobHandler] = {name: echo for name in args.job or ["echo"]}
    try:
        token = _read_token(args.token_file) if args.token_file else None
        client = BridgeClient(
            args.bridge, args.name, jobs, token=token, concurrency=args.concurrency
        )
        install_stop_signals(client)
        client.run()
    except FssError as exc:  # one line naming what is wrong, never a traceback
        raise SystemExit(f"error: {exc}") from None


def install_stop_signals(client: BridgeClient) -> None:
    def handle(_signum: int, _frame: FrameType | None) -> None:
        client.stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidField("token_file", f"cannot read {path!r} ({exc})") from None
    if not token:
        raise InvalidField("token_file", f"{path!r} is empty")
    return token


if __name__ == "__main__":
    main()
