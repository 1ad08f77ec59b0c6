"""Settings: one explicit object, read from the environment and CLI flags at the edge."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any

from kombu.transport import TRANSPORT_ALIASES

from fss.domain.alerts import AlertPolicy, parse_rules
from fss.errors import InvalidField
from fss.logsafe import mask_urls

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
    # An order is readied (client chosen, fence armed, row moved to Scheduler) this long
    # before its planned time and only sent at it: the send is then one Redis round trip,
    # not the SQL and the arm. 0: readied when due, as before.
    dispatch_lead_ms: int = 20
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
    # The audit trail (fss.store.audit) is pruned by the same retention sweep after this.
    audit_max_age_s: float = 90 * 24 * 3600
    # A client that left (unregistered, or dropped as silent) is shown as offline on the
    # Reports page this long before it is forgotten.
    client_offline_keep_s: float = 24 * 3600
    shutdown_grace_s: float = 30.0
    # A group's max_run_s is the soft time limit; the hard one (the pool process is killed)
    # comes this much later, and a run still Working past hard + this grace (a pool that
    # cannot enforce limits, a bridge client) is failed by the supervisor.
    time_limit_grace_s: float = 10.0
    # Alerts (README "Alerts"): the rules on ("all", "none" or a comma list: an unknown
    # name is refused); the console's address for links in messages; how often the cluster
    # rules are checked; a reminder for an alert still open after repeat_s (0: never); the
    # grace added to a group's period before it is late; how long a job may have no live
    # client; more notices of one kind and rule than storm_threshold become one summary;
    # each delivery attempt's time limit and how many attempts a delivery gets.
    alert_rules: str = "all"
    console_url: str = ""
    alert_check_s: float = 5.0
    alert_repeat_s: float = 3600.0
    alert_late_grace_s: float = 60.0
    alert_unserved_s: float = 60.0
    alert_storm_threshold: int = 10
    # Notices wait until no new one came for this long (at most five times this after the
    # oldest), then go out together: a storm raised over a few checks (groups going late one
    # after another) folds into one summary.
    alert_group_wait_s: float = 2.0
    # A storm's stragglers (notices of its kind and rule raised after it was folded) wait
    # until its summary is this old and go out as one follow-up summary.
    alert_group_interval_s: float = 30.0
    # A resolved notice waits this long; an alert raised again meanwhile is reopened (flapping).
    alert_resolve_hold_s: float = 60.0
    alert_send_timeout_s: float = 5.0
    alert_max_attempts: int = 10
    alert_max_age_s: float = 30 * 24 * 3600

    def _not_shorter(self, shorter: str, longer: str) -> InvalidField:
        """`shorter` must be below `longer`; the error names the one the user changed (a
        lease set below the default lookahead is the lease's fault, not the lookahead's they
        never touched), with both values."""
        def shown(name: str) -> str:
            return f"{getattr(self, name):g} {'ms' if name.endswith('_ms') else 's'}"

        default = next(f.default for f in fields(self) if f.name == shorter)
        if getattr(self, shorter) == default:
            return InvalidField(
                longer, f"must be longer than {shorter} ({shown(shorter)}), got {shown(longer)}"
            )
        return InvalidField(
            shorter, f"must be shorter than {longer} ({shown(longer)}), got {shown(shorter)}"
        )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            # NaN compares false with everything, so `<= 0` alone would let it through.
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidField(f.name, f"must be a finite number, got {value}")
            if isinstance(value, int | float) and value < 0:
                raise InvalidField(f.name, f"must be >= 0, got {value}")
        for name in ("heartbeat_s", "client_timeout_s", "lease_s", "poll_s", "dispatch_expires_s"):
            if getattr(self, name) <= 0:
                raise InvalidField(name, "must be > 0")
        if self.lookahead_s >= self.lease_s:
            raise self._not_shorter("lookahead_s", "lease_s")
        if self.dispatch_lead_ms >= self.lookahead_s * 1000:
            raise self._not_shorter("dispatch_lead_ms", "lookahead_s")
        validate_broker_url(self.broker_url)
        validate_database_url(self.database_url)
        validate_fence_url(self.fence_url)
        parse_rules(self.alert_rules)
        for name in ("alert_check_s", "alert_send_timeout_s", "alert_max_attempts"):
            if getattr(self, name) <= 0:
                raise InvalidField(name, "must be > 0")
        if self.console_url and url_scheme(self.console_url) not in ("http", "https"):
            raise InvalidField("console_url", f"{self.console_url!r} is not an http(s) URL")

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
    def alert_policy(self) -> AlertPolicy:
        repeat = timedelta(seconds=self.alert_repeat_s) if self.alert_repeat_s > 0 else None
        hold = timedelta(seconds=self.alert_resolve_hold_s)
        return AlertPolicy(parse_rules(self.alert_rules), repeat, hold)

    @property
    def effective_fence_url(self) -> str:
        if self.fence_url:
            return self.fence_url
        if self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        if self.broker_url.startswith("memory://"):
            return "memory://"
        return "none"


# FSS_ variables read outside Settings (the web console, CLI options, debugging).
OTHER_VARIABLES = (
    "FSS_DEBUG", "FSS_LOG_FORMAT", "FSS_WEB_USERS", "FSS_WEB_TOKEN", "FSS_WEB_TOKENS",
    "FSS_WEB_SECRET", "FSS_WEB_SECURE_COOKIES", "FSS_WEB_HOST", "FSS_WEB_PORT",
    "FSS_BRIDGE_LISTEN", "FSS_BRIDGE_TOKEN_FILE",
)


def misspelt_variables(environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(variable, the fss setting it looks like) for each FSS_ variable that is no setting
    but nearly one: a typo (FSS_BROKER_ULR) would otherwise leave the default in force
    without a word. Variables far from every setting (other tools', tests') are left alone."""
    env = os.environ if environ is None else environ
    known = {ENV_PREFIX + f.name.upper() for f in fields(Settings)} | set(OTHER_VARIABLES)
    found = []
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
            if close:
                found.append((name, close[0]))
    return found


def _convert(name: str, type_name: str, raw: str) -> Any:
    """The text of FSS_<NAME> as the field's type; errors name the variable, where the value
    came from (`heartbeat_s` in Settings' own checks names the field)."""
    setting = ENV_PREFIX + name.upper()
    if type_name not in ("int", "float"):
        return raw
    number: float
    try:
        number = int(raw) if type_name == "int" else float(raw)
    except ValueError:
        kind = "a whole number" if type_name == "int" else "a number"
        raise InvalidField(setting, f"{raw!r} is not {kind}") from None
    if not math.isfinite(number):  # "nan", "inf", "1e999"
        raise InvalidField(setting, f"{raw!r} is not a finite number")
    return number


def hide_password(url: str) -> str:
    """`url` as it may be logged or shown: a password in it becomes `***` (the masking every
    log line gets, fss.logsafe)."""
    return mask_urls(url)


# RFC 3986 scheme; SQLAlchemy adds "+driver" (postgresql+psycopg2), kombu "+variant".
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")


def url_scheme(url: str) -> str | None:
    """The part before `://`, or None when `url` does not look like a URL at all."""
    scheme, separator, _ = url.partition("://")
    return scheme if separator and URL_SCHEME.match(scheme) else None


# The broker transports fss runs on and tests: Redis (fss.redis_transport, the default),
# RabbitMQ (kombu's py-amqp transport) and the in-process one of `fss dev`. kombu knows more
# (kafka, sqs, sentinel, ...), but fss leans on the behaviour of these (acks, expiry, queue
# depths, batch publishing), and one kombu cannot load fails late: `kafka://` without
# confluent-kafka ended in `NameError: KafkaException`. Those are refused at the start.
BROKER_TRANSPORTS = ("amqp", "amqps", "memory", "pyamqp", "redis", "rediss")
# FSS_FENCE_URL: a Redis redis-py opens (fss.fence.REDIS_URL_SCHEMES), the in-process fence
# of `fss dev`, or "none" (no fencing, said out loud); anything else would disable fencing.
FENCE_SCHEMES = ("redis", "rediss", "unix", "memory")


def validate_broker_url(url: str) -> str:
    """A kombu URL (several joined by `;` for failover) whose transport fss supports.

    Without this check kombu reads anything without a scheme as amqp and retries forever.
    """
    for part in url.split(";"):
        scheme = url_scheme(part.strip())
        if scheme is None:
            raise InvalidField("broker_url", f"{part!r} is not a URL like redis://host:6379/0")
        transport = scheme.split("+", 1)[0]
        if transport not in BROKER_TRANSPORTS:
            supported = ", ".join(BROKER_TRANSPORTS)
            what = "unsupported" if transport in TRANSPORT_ALIASES else "unknown"
            raise InvalidField(
                "broker_url", f"{what} transport {transport!r} (fss supports: {supported})"
            )
    return url


def validate_fence_url(url: str) -> str:
    """"" (the broker's Redis), "none", or a URL whose scheme is one of FENCE_SCHEMES."""
    if url in ("", "none"):
        return url
    scheme = url_scheme(url)
    if scheme is None or scheme.lower() not in FENCE_SCHEMES:
        raise InvalidField(
            "fence_url",
            f"{url_scheme(url) or url!r} is not a fence: give redis://host:6379/0 "
            "(rediss://, unix://), memory:// (fss dev) or none",
        )
    return url


FLAG_VALUES = {"1": True, "true": True, "yes": True, "on": True,
               "0": False, "false": False, "no": False, "off": False, "": False}


def read_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """An on/off environment variable (FSS_DEBUG): a value that is neither is an error,
    never silently "off" (or "on")."""
    env = os.environ if environ is None else environ
    raw = env.get(name, "")
    try:
        return FLAG_VALUES[raw.strip().lower()]
    except KeyError:
        choices = ", ".join(value for value in FLAG_VALUES if value)
        raise InvalidField(name, f"{raw!r} is not one of {choices}") from None


def validate_database_url(url: str) -> str:
    """The shape only: whether SQLAlchemy knows the driver is checked when the engine is made
    (workers read the settings too and never import SQLAlchemy)."""
    if url_scheme(url) is None:
        raise InvalidField(
            "database_url", f"{url!r} is not a URL like postgresql://user@host/fss"
        )
    return url
