from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACE: _ClassVar[LogLevel]
    DEBUG: _ClassVar[LogLevel]
    INFORMATION: _ClassVar[LogLevel]
    WARNING: _ClassVar[LogLevel]
    ERROR: _ClassVar[LogLevel]
    CRITICAL: _ClassVar[LogLevel]
TRACE: LogLevel
DEBUG: LogLevel
INFORMATION: LogLevel
WARNING: LogLevel
ERROR: LogLevel
CRITICAL: LogLevel

class ClientMessage(_message.Message):
    __slots__ = ("register", "heartbeat", "started", "progress", "log", "finished")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    register: Register
    heartbeat: Heartbeat
    started: Started
    progress: Progress
    log: Log
    finished: Finished
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., started: _Optional[_Union[Started, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., log: _Optional[_Union[Log, _Mapping]] = ..., finished: _Optional[_Union[Finished, _Mapping]] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("name", "host", "ip", "pid", "job_names", "language", "concurrency")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAMES_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    name: str
    host: str
    ip: str
    pid: int
    job_names: _containers.RepeatedScalarFieldContainer[str]
    language: str
    concurrency: int
    def __init__(self, name: _Optional[str] = ..., host: _Optional[str] = ..., ip: _Optional[str] = ..., pid: _Optional[int] = ..., job_names: _Optional[_Iterable[str]] = ..., language: _Optional[str] = ..., concurrency: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("accepting",)
    ACCEPTING_FIELD_NUMBER: _ClassVar[int]
    accepting: bool
    def __init__(self, accepting: _Optional[bool] = ...) -> None: ...

class Started(_message.Message):
    __slots__ = ("task_id", "attempt")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    attempt: int
    def __init__(self, task_id: _Optional[int] = ..., attempt: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("task_id", "attempt", "progress")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    attempt: int
    progress: int
    def __init__(self, task_id: _Optional[int] = ..., attempt: _Optional[int] = ..., progress: _Optional[int] = ...) -> None: ...

class Log(_message.Message):
    __slots__ = ("task_id", "attempt", "level", "content", "event_id", "at_unix_ms")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    attempt: int
    level: LogLevel
    content: str
    event_id: str
    at_unix_ms: int
    def __init__(self, task_id: _Optional[int] = ..., attempt: _Optional[int] = ..., level: _Optional[_Union[LogLevel, str]] = ..., content: _Optional[str] = ..., event_id: _Optional[str] = ..., at_unix_ms: _Optional[int] = ...) -> None: ...

class Finished(_message.Message):
    __slots__ = ("task_id", "attempt", "success", "error", "next_at_unix_ms", "data_json", "no_retry")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NEXT_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    NO_RETRY_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    attempt: int
    success: bool
    error: str
    next_at_unix_ms: int
    data_json: str
    no_retry: bool
    def __init__(self, task_id: _Optional[int] = ..., attempt: _Optional[int] = ..., success: _Optional[bool] = ..., error: _Optional[str] = ..., next_at_unix_ms: _Optional[int] = ..., data_json: _Optional[str] = ..., no_retry: _Optional[bool] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("registered", "order", "cancel", "kicked")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    KICKED_FIELD_NUMBER: _ClassVar[int]
    registered: Registered
    order: RunOrder
    cancel: Cancel
    kicked: Kicked
    def __init__(self, registered: _Optional[_Union[Registered, _Mapping]] = ..., order: _Optional[_Union[RunOrder, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., kicked: _Optional[_Union[Kicked, _Mapping]] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("client_id", "heartbeat_interval_ms", "liveness_timeout_ms", "bridge_node")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    BRIDGE_NODE_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    heartbeat_interval_ms: int
    liveness_timeout_ms: int
    bridge_node: str
    def __init__(self, client_id: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ..., liveness_timeout_ms: _Optional[int] = ..., bridge_node: _Optional[str] = ...) -> None: ...

class RunOrder(_message.Message):
    __slots__ = ("task_id", "attempt", "group_id", "job_name", "data_json", "start_at_unix_ms", "deadline_unix_ms", "shard_index", "shard_total")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    START_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    SHARD_TOTAL_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    attempt: int
    group_id: int
    job_name: str
    data_json: str
    start_at_unix_ms: int
    deadline_unix_ms: int
    shard_index: int
    shard_total: int
    def __init__(self, task_id: _Optional[int] = ..., attempt: _Optional[int] = ..., group_id: _Optional[int] = ..., job_name: _Optional[str] = ..., data_json: _Optional[str] = ..., start_at_unix_ms: _Optional[int] = ..., deadline_unix_ms: _Optional[int] = ..., shard_index: _Optional[int] = ..., shard_total: _Optional[int] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("task_id", "attempt", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    attempt: int
    reason: str
    def __init__(self, task_id: _Optional[int] = ..., attempt: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Kicked(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...
