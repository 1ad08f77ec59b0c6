"""Settings: one explicit object, read from the environment and CLI flags at the edge."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from kombu.transport import TRANSPORT_ALIASES

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
    # A killed scheduler's claimed tasks go to a peer after this (+ one poll): <= 5 s.
    lease_s: float = 4.0
    lookahead_s: float = 2.0
    poll_s: float = 0.5
    no_client_retry_s: float = 1.0
    dispatch_expires_s: float = 30.0
    claim_batch: int = 500
    event_flush_ms: int = 10
    event_batch: int = 500
    # Task events a worker keeps while the broker is down; past it log/progress are dropped.
    event_buffer_max: int = 10_000
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
        validate_broker_url(self.broker_url)
        validate_database_url(self.database_url)

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


# RFC 3986 scheme; SQLAlchemy adds "+driver" (postgresql+psycopg2), kombu "+variant".
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")


def url_scheme(url: str) -> str | None:
    """The part before `://`, or None when `url` does not look like a URL at all."""
    scheme, separator, _ = url.partition("://")
    return scheme if separator and URL_SCHEME.match(scheme) else None


def validate_broker_url(url: str) -> str:
    """A kombu URL (several joined by `;` for failover) whose transport kombu knows.

    Without this check kombu reads anything without a scheme as amqp and retries forever.
    """
    for part in url.split(";"):
        scheme = url_scheme(part.strip())
        if scheme is None:
            raise InvalidField("broker_url", f"{part!r} is not a URL like redis://host:6379/0")
        transport = scheme.split("+", 1)[0]
        if transport not in TRANSPORT_ALIASES:
            known = ", ".join(sorted(t for t in TRANSPORT_ALIASES if t.islower()))
            raise InvalidField("broker_url", f"unknown transport {transport!r} (known: {known})")
    return url


def validate_database_url(url: str) -> str:
    """The shape only: whether SQLAlchemy knows the driver is checked when the engine is made
    (workers read the settings too and never import SQLAlchemy)."""
    if url_scheme(url) is None:
        raise InvalidField(
            "database_url", f"{url!r} is not a URL like postgresql://user@host/fss"
        )
    return url
