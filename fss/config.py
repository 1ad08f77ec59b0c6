"""Settings: one explicit object, read from the environment and CLI flags at the edge."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from fss.errors import InvalidField

DEFAULT_DATABASE_URL = "sqlite:///fss.db"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
ENV_PREFIX = "FSS_"


def default_node_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str = DEFAULT_BROKER_URL
    # Where workers and schedulers agree who runs an attempt; defaults to the broker's
    # Redis. "memory://" works inside one process only (fss dev); "none" disables it.
    fence_url: str = ""
    node_name: str = field(default_factory=default_node_name)
    heartbeat_s: float = 1.0
    client_timeout_s: float = 10.0
    lease_s: float = 5.0
    lookahead_s: float = 2.0
    poll_s: float = 0.5
    no_client_retry_s: float = 1.0
    dispatch_expires_s: float = 30.0
    claim_batch: int = 500
    event_flush_ms: int = 10
    event_batch: int = 500
    recorder_flush_ms: int = 20
    broker_polling_s: float = 0.005
    supervise_s: float = 1.0
    hung_timeout_s: float = 300.0
    kick_after_hung: int = 3
    misfire_grace_s: float = 5.0
    retention_every_s: float = 60.0
    keep_success_per_group: int = 100
    success_max_age_s: float = 24 * 3600
    fail_max_age_s: float = 7 * 24 * 3600
    shutdown_grace_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("heartbeat_s", "client_timeout_s", "lease_s", "poll_s", "dispatch_expires_s"):
            if getattr(self, name) <= 0:
                raise InvalidField(name, "must be > 0")
        if self.lookahead_s >= self.lease_s:
            raise InvalidField("lookahead_s", "must be shorter than lease_s")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, str(f.type), raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def effective_fence_url(self) -> str:
        if self.fence_url:
            return self.fence_url
        if self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        if self.broker_url.startswith("memory://"):
            return "memory://"
        return "none"


def _convert(name: str, type_name: str, raw: str) -> Any:
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError:
        raise InvalidField(name, f"{raw!r} is not a number") from None
    return raw
