"""Builds the Celery app from settings; there is no global app."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.connection import Connection

from fss.config import Settings
from fss.errors import InvalidField
from fss.outage import describe_import_error


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_url.startswith("memory://"):
        # kombu's in-process transport polls, 1 s by default: far too slow for a scheduler.
        return {"polling_interval": settings.broker_polling_s}
    if is_redis_broker(settings.broker_url):
        return {"visibility_timeout": 3600}
    return {}


REDIS_TRANSPORT = "fss.redis_transport:Transport"
REDIS_SCHEMES = ("redis://", "rediss://")


def is_redis_broker(broker_url: str) -> bool:
    """Whether kombu talks to this broker through its Redis transport."""
    return broker_url.startswith(REDIS_SCHEMES)


def transport_for(broker_url: str) -> str | None:
    """fss's Redis transport (fss.redis_transport) for a Redis broker URL, every part of a
    `;` failover list included; None otherwise: kombu picks by the URL's scheme."""
    parts = [part.strip() for part in broker_url.split(";") if part.strip()]
    if parts and all(is_redis_broker(part) for part in parts):
        return REDIS_TRANSPORT
    return None


def create_app(settings: Settings, main: str = "fss") -> Celery:
    app = Celery(main, broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        broker_transport=transport_for(settings.broker_url),
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        broker_transport_options=broker_transport_options(settings),
        task_create_missing_queues=True,
        worker_send_task_events=False,
        # Orders are acked when they start: a broker blip must not cancel running jobs.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        enable_utc=True,
        timezone="UTC",
    )
    return app


def check_broker_transport(url: str) -> None:
    """Import the broker's kombu transport now, so a missing package (kombu's Redis transport
    needs `redis` and `packaging`) stops `fss scheduler`/`fss worker` at start with one line,
    instead of surfacing later as an endless "broker unreachable". Opens no connection."""
    try:
        with Connection(url) as connection:  # type: ignore[no-untyped-call]
            connection.transport  # noqa: B018 - the property imports and builds the transport
    except ImportError as exc:
        raise InvalidField("broker_url", describe_import_error(exc)) from None
    except KeyError as exc:  # kombu: "No such transport: foo"
        raise InvalidField("broker_url", str(exc).strip("'\"")) from None
