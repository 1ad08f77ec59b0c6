"""The messages workers and the bridge send to the recorder, with their schema.

Every task event carries (task_id, attempt, client_id) so the recorder can ignore what a
stale attempt or a client the task was not sent to reports. Events are frozen values,
named in the past tense, and travel in batches: one message holds a list of them.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from datetime import datetime
from typing import Any, ClassVar

from fss.domain.clock import as_utc, parse_time
from fss.domain.data_merge import require_patch
from fss.domain.group_spec import validate_data
from fss.domain.selection import validate_tags
from fss.errors import InvalidField
from fss.outage import first_line

ENVELOPE_VERSION = 1
MAX_LOG_CONTENT = 16 * 1024
MAX_ERROR_TEXT = 16 * 1024
# The widest values the store's columns hold: BIGINT ids and durations, INTEGER attempts.
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


def python_level_to_fss(level: int) -> int:
    """A `logging` level as the seed's Trace 0 .. Critical 5 (the `level` of a TaskLogged)."""
    if level < logging.DEBUG:
        return 0
    if level < logging.INFO:
        return 1
    if level < logging.WARNING:
        return 2
    if level < logging.ERROR:
        return 3
    if level < logging.CRITICAL:
        return 4
    return 5


# A run's logger is named under this one; its records also reach the process's console.
JOB_LOGGER = "fss.jobs"
TRUNCATED = "\n[... truncated]"

# (fss level, formatted text at most MAX_LOG_CONTENT long, the record's creation time)
LogSink = Callable[[int, str, float], None]


class RunLogHandler(logging.Handler):
    """Hands every record of a run's logger to `sink` as an fss run-log line."""

    def __init__(self, sink: LogSink) -> None:
        super().__init__(logging.DEBUG)
        self._sink = sink
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            content = self.format(record)
        except Exception:
            self.handleError(record)
            return
        if len(content) > MAX_LOG_CONTENT:
            content = content[: MAX_LOG_CONTENT - 20] + TRUNCATED
        self._sink(python_level_to_fss(record.levelno), content, record.created)


class _RunLogger(logging.Logger):
    """Its own handlers (the run log) take every record; the console copy goes up to the
    parent only at a level the process logs (`fss worker -l`): a record propagated from a
    child logger is otherwise written by every handler above whatever the loggers' levels,
    so each `ctx.log.info` line of a worker at `-l WARNING` was formatted and written to its
    console (5% of a pool process's CPU with one line per run)."""

    def callHandlers(self, record: logging.LogRecord) -> None:
        # logging's own walk up the loggers, stopped before the parent when the process does
        # not log this level. The run log's handler counts as found, as before: no lastResort
        # copy on stderr when nothing above has a handler (a script that never set up logging).
        parent = self.parent
        above = self.propagate and parent is not None and parent.isEnabledFor(record.levelno)
        logger: logging.Logger | None = self
        while logger is not None:
            for handler in logger.handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)
            if logger is self and not above:
                break
            logger = logger.parent if logger.propagate else None


def run_logger(job_name: str, sink: LogSink) -> logging.Logger:
    """A run's logger: standalone (not in logging's registry, so runs do not pile up there),
    its records become run logs through `sink` and still reach the console via the parent
    when the process logs their level."""
    logger = _RunLogger(f"{JOB_LOGGER}.{job_name}", logging.DEBUG)
    logger.parent = logging.getLogger(JOB_LOGGER)
    logger.addHandler(RunLogHandler(sink))
    return logger


def _event_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = ""


@dataclass(frozen=True)
class TaskStarted(Event):
    kind: ClassVar[str] = "started"
    task_id: int
    attempt: int
    client_id: str
    at: datetime
    # The installation whose order this run is (its database's id); "" from older senders.
    # A recorder of another installation dead-letters the event, never applies it.
    installation: str = ""
    # The broadcast shard (RunOrder.shard_index) this run is; None for every other run.
    shard: int | None = None


@dataclass(frozen=True)
class TaskProgressed(Event):
    kind: ClassVar[str] = "progress"
    task_id: int
    attempt: int
    client_id: str
    progress: int
    at: datetime
    # The installation whose order this run is (its database's id); "" from older senders.
    # A recorder of another installation dead-letters the event, never applies it.
    installation: str = ""
    # The broadcast shard (RunOrder.shard_index) this run is; None for every other run.
    shard: int | None = None


@dataclass(frozen=True)
class TaskLogged(Event):
    kind: ClassVar[str] = "log"
    task_id: int
    attempt: int
    client_id: str
    group_id: int
    level: int
    content: str
    at: datetime
    event_id: str = field(default_factory=_event_id)
    # The line's place among its run's lines (1, 2, ... per task id and attempt), given where
    # it is made: batches from several flushes land out of order, so readers sort by it.
    # None from older senders.
    seq: int | None = None
    # The installation whose order this run is (its database's id); "" from older senders.
    # A recorder of another installation dead-letters the event, never applies it.
    installation: str = ""
    # The broadcast shard (RunOrder.shard_index) this run is; None for every other run.
    shard: int | None = None


@dataclass(frozen=True)
class TaskFinished(Event):
    kind: ClassVar[str] = "finished"
    task_id: int
    attempt: int
    client_id: str
    success: bool
    run_speed_ms: int
    at: datetime
    next_at: datetime | None = None
    error: str | None = None
    data: dict[str, Any] | None = None
    # False when the job refused retries for this failure (`raise fss.Fail(..., retry=False)`);
    # a failure is retried only while the group has attempts left. Absent means true.
    retry: bool = True
    # The installation whose order this run is (its database's id); "" from older senders.
    # A recorder of another installation dead-letters the event, never applies it.
    installation: str = ""
    # The broadcast shard (RunOrder.shard_index) this run is; None for every other run.
    shard: int | None = None
    # What the job changed in the data it started with (fss.domain.data_merge): applied to
    # the group's data as it is when recorded, so a change made meanwhile (a deploy, an
    # edit) is kept. None from senders that only send `data`, which then replaces it all.
    data_patch: dict[str, Any] | None = None


@dataclass(frozen=True)
class TaskDataSaved(Event):
    """The job saved its group's data while running (`ctx.save_data()`): kept whatever the
    run's outcome. Data changed and not saved is saved only by a successful finish."""

    kind: ClassVar[str] = "data"
    task_id: int
    attempt: int
    client_id: str
    group_id: int
    data: dict[str, Any]
    at: datetime
    # The installation whose order this run is (its database's id); "" from older senders.
    # A recorder of another installation dead-letters the event, never applies it.
    installation: str = ""
    # The broadcast shard (RunOrder.shard_index) this run is; None for every other run.
    shard: int | None = None
    # As TaskFinished.data_patch: what the job changed since it started.
    data_patch: dict[str, Any] | None = None


@dataclass(frozen=True)
class ClientHeartbeat(Event):
    """Also the registration: the recorder upserts the client row from it."""

    kind: ClassVar[str] = "heartbeat"
    client_id: str
    host: str
    ip: str
    pid: int
    job_names: tuple[str, ...]
    queue: str
    at: datetime
    language: str = "python"
    # False while the worker drains after SIGTERM: alive, but takes no new runs.
    accepting: bool = True
    # Runs executing now; a kicked client is taken back once it reports 0.
    active: int = 0
    # A new value per worker process start: tells a restart under the same client id.
    incarnation: str = ""
    # `fss worker --tag T` values: a group with client_tag T runs only on clients tagged T.
    # Absent from older senders and gRPC clients (untagged). `active` above is the load that
    # route least_busy compares.
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClientLeft(Event):
    kind: ClassVar[str] = "left"
    client_id: str
    at: datetime
    # The incarnation that left: a `left` replayed after the worker restarted under the same
    # id must not remove the new process's row. Empty (old senders): whatever row is there.
    incarnation: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        TaskStarted,
        TaskProgressed,
        TaskLogged,
        TaskDataSaved,
        TaskFinished,
        ClientHeartbeat,
        ClientLeft,
    )
}


def to_dict(event: Event) -> dict[str, Any]:
    # Field by field, not dataclasses.asdict: asdict deep-copies and cost ~0.2 ms per event
    # on the worker's hot path. Events hold JSON-ready values already (data is a JSON object).
    body = {name: getattr(event, name) for name in _field_names(type(event))}
    if body.get("shard", 0) is None:
        del body["shard"]  # only broadcast runs name a shard: no byte more for the others
    if body.get("data_patch", 0) is None:
        del body["data_patch"]  # only runs that changed their data send one
    for key, value in body.items():
        if isinstance(value, datetime):
            body[key] = as_utc(value).isoformat()
        elif isinstance(value, tuple):
            body[key] = list(value)
    body["type"] = event.kind
    return body


_FIELD_NAMES: dict[type[Event], tuple[str, ...]] = {}


def _field_names(cls: type[Event]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def encode_batch(events: Iterable[Event]) -> dict[str, Any]:
    return {"v": ENVELOPE_VERSION, "events": [to_dict(e) for e in events]}


def decode_batch(body: Any) -> list[Event]:
    """Events of one message; InvalidField for a malformed envelope or event."""
    return [from_dict(item) for item in _envelope_items(body)]


@dataclass(frozen=True)
class Rejected:
    """An event (or a whole message) that cannot be recorded, with why and as it came."""

    reason: str
    raw: Any


def decode_events(body: Any) -> tuple[list[Event], list[Rejected]]:
    """Every good event of one message, and every bad one set apart with its reason.

    Never raises: one malformed event must not cost the others of its message.
    """
    try:
        items = _envelope_items(body)
    except InvalidField as exc:
        return [], [Rejected(str(exc), body)]
    events: list[Event] = []
    rejected: list[Rejected] = []
    for item in items:
        try:
            events.append(from_dict(item))
        except Exception as exc:  # anything a bad value can raise, not only InvalidField
            rejected.append(Rejected(reason_of(exc), item))
    return events, rejected


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, InvalidField):
        return str(exc)
    return f"{type(exc).__name__}: {first_line(exc)}"


def _envelope_items(body: Any) -> list[Any]:
    if not isinstance(body, Mapping) or not isinstance(body.get("events"), list):
        raise InvalidField("events", "message must be an object with an 'events' list")
    items: list[Any] = body["events"]
    return items


def from_dict(item: Any) -> Event:
    if not isinstance(item, Mapping):
        raise InvalidField("event", "must be an object")
    kind = item.get("type")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InvalidField("type", f"unknown event type {kind!r}")
    specs, defaults, factories = _decoding_specs(cls)
    values: dict[str, Any] = {}
    for name, converter, optional, has_default in specs:
        if name not in item:
            if has_default:
                continue
            raise InvalidField(name, f"missing in {kind} event")
        value = item[name]
        if value is None:  # null only where the field's type allows it
            if not optional:
                raise InvalidField(name, "must not be null")
            values[name] = None
            continue
        if converter is not None:
            value = converter(name, value)
        # storable() hands these back as they are: no call for them.
        values[name] = value if type(value) in _AS_STORED else storable(value)
    # What cls(**values) makes, without the frozen dataclass's __init__ (one
    # object.__setattr__ per field: the largest part of decoding an event): every field set,
    # a missing one to its default; the events define no __post_init__.
    event = object.__new__(cls)
    attributes = event.__dict__
    attributes.update(defaults)
    attributes.update(values)
    for name, factory in factories:
        if name not in values:
            attributes[name] = factory()
    check(event)
    return event


_AS_STORED = frozenset({int, bool, float, datetime})
# Per event class, what from_dict needs of each field, worked out once instead of per event
# (dataclasses.fields() and the type's text): (name, converter or None, null allowed, has a
# default); with the fields' defaults and default factories.
_DecodingSpec = tuple[str, Callable[[str, Any], Any] | None, bool, bool]
_Decoding = tuple[
    tuple[_DecodingSpec, ...], dict[str, Any], tuple[tuple[str, Callable[[], Any]], ...]
]
_DECODING: dict[type[Event], _Decoding] = {}


def _decoding_specs(cls: type[Event]) -> _Decoding:
    decoding = _DECODING.get(cls)
    if decoding is None:
        specs = tuple(
            (
                f.name,
                _CONVERTERS.get(str(f.type).replace(" | None", "")),
                "None" in str(f.type),
                f.default is not MISSING or f.default_factory is not MISSING,
            )
            for f in fields(cls)
        )
        defaults = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
        factories = tuple(
            (f.name, f.default_factory)
            for f in fields(cls)
            if f.default_factory is not MISSING
        )
        decoding = _DECODING[cls] = (specs, defaults, factories)
    return decoding


def require_time(name: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidField(name, "must be an ISO 8601 time")
    return parse_time(name, value)


# NUL (PostgreSQL refuses it in text) and lone surrogates (no UTF-8 encoder takes them; a
# valid pair arrives from JSON as one code point, so any surrogate left is a lone one).
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """The text with what a database cannot store replaced by U+FFFD, length unchanged."""
    if _UNSTORABLE.search(text) is None:
        return text
    return _UNSTORABLE.sub("\ufffd", text)


def storable(value: Any) -> Any:
    """A JSON-like value with every string in it (dict keys too) made storable."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, tuple):
        return tuple(storable(v) for v in value)
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value


def require_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(name, "must be an integer")
    return value


def require_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidField(name, "must be a string")
    return value


def require_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidField(name, "must be true or false")
    return value


def _names(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidField(name, "must be a list of strings")
    return tuple(value)


def require_dict(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidField(name, "must be an object")
    return value


_CONVERTERS: dict[str, Callable[[str, Any], Any]] = {
    "int": require_int,
    "str": require_str,
    "bool": require_bool,
    "datetime": require_time,
    "tuple[str, ...]": _names,
    "dict[str, Any]": require_dict,
}


# Column sizes in the store: longer values are refused here, not cut by the database.
_TEXT_LIMITS = {
    "event_id": 64,
    "incarnation": 32,
    "host": 128,
    "ip": 64,
    "queue": 200,
    "language": 32,
    "installation": 32,
    "content": MAX_LOG_CONTENT,
    "error": MAX_ERROR_TEXT,
}


# Integer column widths in the store: a larger value is refused here, not by the database.
_INT_LIMITS = {
    "task_id": INT64_MAX,
    "group_id": INT64_MAX,
    "run_speed_ms": INT64_MAX,
    "seq": INT64_MAX,
    "attempt": INT32_MAX,
    "shard": INT32_MAX,
    "pid": INT32_MAX,
    "active": INT32_MAX,
}


def check(event: Event) -> None:
    """Range checks shared by every way an event can arrive."""
    texts, ints = _limits_of(type(event))
    if isinstance(event, TaskProgressed) and not 0 <= event.progress <= 100:
        raise InvalidField("progress", f"must be 0..100, got {event.progress}")
    if isinstance(event, TaskLogged) and not 0 <= event.level <= 5:
        raise InvalidField("level", f"must be 0..5 (Trace..Critical), got {event.level}")
    if isinstance(event, TaskFinished) and event.run_speed_ms < 0:
        raise InvalidField("run_speed_ms", "must be >= 0")
    for name, limit in texts:
        value = getattr(event, name, None)
        if isinstance(value, str) and len(value) > limit:
            raise InvalidField(name, f"longer than {limit} characters")
    if isinstance(event, _WITH_DATA) and event.data is not None:
        validate_data(event.data)
    if isinstance(event, _WITH_DATA) and event.data_patch is not None:
        require_patch("data_patch", event.data_patch)
    if isinstance(event, TaskLogged) and not event.event_id:
        raise InvalidField("event_id", "must not be empty")
    shard = getattr(event, "shard", None)
    if shard is not None and shard < 0:
        raise InvalidField("shard", f"must be >= 0, got {shard}")
    if isinstance(event, TaskLogged) and event.seq is not None and event.seq < 1:
        raise InvalidField("seq", f"must be >= 1, got {event.seq}")
    if isinstance(event, ClientHeartbeat):
        for job_name in event.job_names:
            if not job_name or len(job_name) > 64:
                raise InvalidField("job_names", f"{job_name!r} is not a job name (1..64)")
        validate_tags(event.tags)
    task_id = getattr(event, "task_id", None)
    if task_id is not None and task_id <= 0:
        raise InvalidField("task_id", "must be > 0")
    for name, limit in ints:
        value = getattr(event, name, None)
        if isinstance(value, int) and not -limit - 1 <= value <= limit:
            raise InvalidField(name, f"out of range (at most {limit})")
    client_id = getattr(event, "client_id", "")
    if not client_id or len(client_id) > 128:
        raise InvalidField("client_id", "must be 1..128 characters")


_WITH_DATA = (TaskFinished, TaskDataSaved)
_Limits = tuple[tuple[str, int], ...]
_LIMITS_OF: dict[type[Event], tuple[_Limits, _Limits]] = {}


def _limits_of(cls: type[Event]) -> tuple[_Limits, _Limits]:
    """The entries of _TEXT_LIMITS and _INT_LIMITS an event class can hold a value for (its
    fields and class attributes), in their order: check() looks at those only instead of
    every limited name on every event."""
    limits = _LIMITS_OF.get(cls)
    if limits is None:
        names = {f.name for f in fields(cls)} if is_dataclass(cls) else set()

        def held(table: dict[str, int]) -> _Limits:
            return tuple((n, v) for n, v in table.items() if n in names or hasattr(cls, n))

        limits = _LIMITS_OF[cls] = (held(_TEXT_LIMITS), held(_INT_LIMITS))
    return limits
