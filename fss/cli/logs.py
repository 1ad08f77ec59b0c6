"""How the long-running processes log: human text lines, or one JSON object per line.

`--log-format json` (or FSS_LOG_FORMAT=json) on `fss scheduler`, `fss worker` and `fss bridge`
writes every record as one JSON object: `time` (ISO 8601, UTC), `level`, `logger`, `message`,
the ids the line is about (`task_id`, `attempt`, `group_id`, `client_id`) where known, and an
exception as the string `exc`. Code that logs about a task or client passes the ids with
`extra={...}`; inside a run on a worker they come from the Celery order being executed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any

import click
from celery import signals
from celery.apps import worker as celery_worker_module

from fss.logsafe import MaskSecrets

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FORMATS = ("text", "json")
# Record attributes (set with `extra=`) copied into the JSON object, in this order.
CONTEXT_FIELDS = ("task_id", "attempt", "group_id", "client_id", "node")
# The order's kwargs (fss.orders.RunOrder.to_kwargs) a worker line inherits during a run.
ORDER_FIELDS = ("task_id", "attempt", "group_id", "client_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                body[name] = value
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exc"] = record.exc_text
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return json.dumps(body, ensure_ascii=False, default=str)


def iso_time(created: float) -> str:
    return datetime.fromtimestamp(created, tz=timezone.utc).isoformat(timespec="milliseconds")


class RunContextFilter(logging.Filter):
    """Adds the ids of the fss order a worker is executing to records that do not carry them
    (the job's ctx.log lines, Celery's own task lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "task_id", None) is None:
            for name, value in current_order_ids().items():
                setattr(record, name, value)
        return True


def current_order_ids() -> dict[str, Any]:
    from celery import current_task

    try:
        kwargs = current_task.request.kwargs if current_task else None
    except Exception:  # no task, or a request without kwargs: nothing to add
        return {}
    if not isinstance(kwargs, dict):
        return {}
    return {name: kwargs[name] for name in ORDER_FIELDS if kwargs.get(name) is not None}


def make_handler(log_format: str) -> logging.Handler:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RunContextFilter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(MaskSecrets())  # no URL password in any line (fss.logsafe)
    return handler


def setup_logging(level: str, log_format: str = "text") -> None:
    """The root logger writes to stderr in `log_format` (logging.basicConfig: a no-op when
    the root logger has handlers already, e.g. `fss dev` run inside a test)."""
    logging.basicConfig(level=level.upper(), handlers=[make_handler(log_format)])
    if log_format == "json":
        # Python warnings (Celery's "running as root") as records, not as raw stderr text.
        logging.captureWarnings(True)
    # The schema check at start is not news: alembic's INFO lines only say which backend.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def keep_celery_off_logging() -> None:
    """Celery configures no logging of its own once a `setup_logging` receiver is connected:
    its worker's lines (and those of its prefork children, which inherit the receiver) then
    go through the handler set up here, in JSON as well."""
    signals.setup_logging.connect(
        _logging_already_set_up, weak=False, dispatch_uid="fss.cli.logs.setup_logging"
    )
    # Celery's signal handlers announce a shutdown ("worker: Warm shutdown") by writing
    # plain text straight to the stdout file descriptor; say it as a JSON line instead.
    celery_worker_module.safe_say = say_as_json


def _logging_already_set_up(**_: Any) -> None:
    return None


def say_as_json(message: str, stream: Any = None) -> None:
    """Celery's safe_say in JSON: one os.write, as Celery does inside signal handlers."""
    record = logging.LogRecord(
        "celery.apps.worker", logging.WARNING, __file__, 0, message.strip(), None, None
    )
    target: Any = stream if stream is not None else sys.__stderr__
    # Best effort, as Celery's: a lost notice must not break the shutdown.
    with contextlib.suppress(OSError, AttributeError, ValueError):
        os.write(target.fileno(), (JsonFormatter().format(record) + "\n").encode())


def log_format_option(function: Any) -> Any:
    """--log-format text|json, FSS_LOG_FORMAT when not given."""
    return click.option(
        "--log-format",
        type=click.Choice(LOG_FORMATS, case_sensitive=False),
        default="text",
        show_default=True,
        envvar="FSS_LOG_FORMAT",
        help="text lines, or one JSON object per line (time, level, logger, message, "
        "task_id / group_id / client_id where known, exc) [env FSS_LOG_FORMAT].",
    )(function)
