"""One delivery attempt of one message to one target, over real HTTP or SMTP.

`deliver` never raises and never takes much longer than its timeout: the exchange runs on a
daemon thread and the caller waits for it at most `timeout_s` (+ a little); a receiver that
accepts the connection and never answers, a slow DNS lookup or a trickling answer cannot
hold the alert sender. What it returns is safe to store and show: the error and the answer
have every secret of the target scrubbed out (signing secrets, passwords, header values, the
URL's path and query, where the chat robots keep their tokens).
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parseaddr
from typing import Any

from fss.domain.alert_targets import (
    EMAIL,
    MAX_ANSWER,
    NO_TLS,
    STARTTLS,
    TLS,
    HttpRequest,
    TargetSpec,
    email_message,
    http_request,
    judge_answer,
    public_url,
    redact,
)
from fss.domain.alerts import Message, test_message

# The most of an answer read (the rest is dropped): an answer is recorded, not processed.
MAX_ANSWER_BYTES = 64 * 1024
# How much longer than its timeout the caller waits for an exchange to give up on its own.
GRACE_S = 0.25
USER_AGENT = "fss-alerts/1"


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    status_code: int | None
    answer: str
    error: str | None
    duration_ms: int


@dataclass(frozen=True)
class _Exchange:
    """What the exchange on its thread found (before scrubbing)."""

    ok: bool
    status_code: int | None = None
    answer: str = ""
    error: str | None = None


def deliver(spec: TargetSpec, message: Message, timeout_s: float) -> DeliveryResult:
    """Send `message` to `spec` once. ok: the receiver took it (2xx and, for the chat robots,
    a success code; for email, the server accepted the message for at least one recipient)."""
    started = time.monotonic()
    deadline = started + max(timeout_s, 0.001)
    try:
        if spec.kind == EMAIL:
            exchange = _bounded(lambda: _send_email(spec, message, deadline), deadline)
        else:
            # Signed now, not when the alert was raised: the robots refuse a timestamp
            # older than an hour, and a retry may come later than that.
            request = http_request(spec, message, datetime.now(timezone.utc))
            exchange = _bounded(lambda: _post(spec.kind, request, deadline), deadline)
    except Exception as exc:  # a bug must still end as a failed attempt, not a crash
        exchange = _Exchange(False, error=describe(exc))
    if exchange is None:
        exchange = _Exchange(False, error=f"no answer within {timeout_s:g} s")
    return _scrubbed(spec, exchange, started)


def send_test(spec: TargetSpec, now: datetime, timeout_s: float) -> DeliveryResult:
    """A test message to `spec` (`fss alert target test NAME`)."""
    key = f"test-{spec.name}-{now.timestamp():.6f}"
    return deliver(spec, test_message(key, spec.name, now), timeout_s)


def _bounded(work: Callable[[], _Exchange], deadline: float) -> _Exchange | None:
    """`work()` on a daemon thread; its result, or None when it had none by the deadline
    (the thread then ends on its own socket timeout)."""
    box: list[_Exchange] = []

    def run() -> None:
        try:
            box.append(work())
        except Exception as exc:
            box.append(_Exchange(False, error=describe(exc)))

    thread = threading.Thread(target=run, name="fss-alert-delivery", daemon=True)
    thread.start()
    thread.join(max(deadline - time.monotonic(), 0.0) + GRACE_S)
    return box[0] if box else None


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a place to post the alert (and its token) to."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def _post(kind: str, post: HttpRequest, deadline: float) -> _Exchange:
    request = urllib.request.Request(
        post.url, data=post.body, headers={"User-Agent": USER_AGENT, **post.headers}, method="POST"
    )
    try:
        with _OPENER.open(request, timeout=_remaining(deadline)) as response:
            status = int(response.status)
            text = _read_answer(response, deadline)
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
        try:
            text = _read_answer(exc, deadline)
        except Exception:
            text = ""
        _, answer = judge_answer(kind, status, text)
        return _Exchange(False, status, answer, f"HTTP {status} {exc.reason}")
    except urllib.error.URLError as exc:
        return _Exchange(False, error=describe(exc.reason if exc.reason else exc))
    ok, answer = judge_answer(kind, status, text)
    if ok:
        return _Exchange(True, status, answer)
    return _Exchange(False, status, answer, f"HTTP {status}: the receiver refused the message")


def _read_answer(response: Any, deadline: float) -> str:
    """Up to MAX_ANSWER_BYTES, stopping at the deadline (a trickling answer)."""
    chunks: list[bytes] = []
    size = 0
    while size < MAX_ANSWER_BYTES and time.monotonic() < deadline:
        want = min(8192, MAX_ANSWER_BYTES - size)
        chunk = response.read1(want) if hasattr(response, "read1") else response.read(want)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _send_email(spec: TargetSpec, message: Message, deadline: float) -> _Exchange:
    config = spec.config
    mail = email_message(spec, message)
    data = mail.as_bytes(policy=mail.policy.clone(linesep="\r\n"))
    sender = parseaddr(config["from"])[1]
    host, port, security = config["host"], int(config["port"]), config["security"]
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if security == TLS:
        smtp = smtplib.SMTP_SSL(host, port, timeout=_remaining(deadline), context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=_remaining(deadline))
    try:
        smtp.ehlo()
        if security == STARTTLS:
            smtp.starttls(context=context)
            smtp.ehlo()
        elif security != NO_TLS and security != TLS:
            raise ValueError(f"unknown security {security!r}")
        if config.get("user"):
            smtp.login(config["user"], config["password"])
        code, reply = smtp.mail(sender)
        if code != 250:
            return _Exchange(False, code, _reply(reply), f"SMTP {code}: sender refused")
        refused: list[str] = []
        for recipient in config["to"]:
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                refused.append(f"{recipient}: {code} {_reply(reply)}")
        if len(refused) == len(config["to"]):
            smtp.rset()
            return _Exchange(
                False, code, "; ".join(refused), f"SMTP {code}: every recipient refused"
            )
        code, reply = smtp.data(data)
        answer = _reply(reply)
        if refused:
            answer = f"{answer} (refused: {'; '.join(refused)})"
        if code != 250:
            return _Exchange(False, code, answer, f"SMTP {code}: message refused")
        return _Exchange(True, code, answer)
    finally:
        try:
            smtp.quit()
        except Exception:
            smtp.close()


def _reply(reply: bytes | str) -> str:
    text = reply.decode("utf-8", errors="replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:MAX_ANSWER]


def describe(exc: BaseException | str) -> str:
    """One line for an exception: its kind and its first line."""
    if isinstance(exc, str):
        return " ".join(exc.split())[:500] or "error"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"SMTP {exc.smtp_code}: {_reply(exc.smtp_error)}"
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {text}"[:500] if text else name


def _scrubbed(spec: TargetSpec, exchange: _Exchange, started: float) -> DeliveryResult:
    secrets = spec.secrets()
    url = spec.config.get("url")
    error = exchange.error
    if error is not None:
        error = redact(error, secrets)
        if isinstance(url, str):
            error = f"{error} ({public_url(url)})"
    return DeliveryResult(
        ok=exchange.ok,
        status_code=exchange.status_code,
        answer=redact(exchange.answer, secrets),
        error=error,
        duration_ms=int((time.monotonic() - started) * 1000),
    )
