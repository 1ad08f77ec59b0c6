"""The console and the API while the database cannot be reached.

Every page and API call needs the database (a web session is checked there too), so a
database that is down would otherwise answer each request with an error of the driver. It
answers instead, with HTTP 503 and Retry-After:

* an API call (and any request that does not ask for HTML): the JSON error, code
  ``database`` with the database's URL (no password, no query) and the driver's reason;
* a page: the normal layout with a banner saying the database is down, which one and why,
  and that the page loads again by itself when it answers (static/dbwait.js); a page that
  is open keeps its data and says since when it is stale (fss.js's stale banner, whose
  reason is the API's error above);
* the login form: the form with the banner (signing in needs the database).

The URL and the reason never carry a secret: the URL is shown as scheme, user, host, port
and database name with its password masked and its query left out (a query may hold a
password too), and the reason has every URL password and the URL's own password masked.
Each outage is logged as one warning (no traceback) every LOG_EVERY_S at most.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from fss.logsafe import MASK, mask_urls
from fss.web.context import WebContext
from fss.web.templating import render

log = logging.getLogger("fss.web.database")

# What the database being down (or out of connections) raises: refused or lost connections
# (OperationalError; InterfaceError on a connection that closed), no connection free in the
# pool in time.
DATABASE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout)
RETRY_AFTER_S = 5
LOG_EVERY_S = 30.0
# The login form asks the database once per this many seconds at most.
PROBE_HOLD_S = 3.0
MAX_REASON = 300

# A page's path -> its key in the top bar (base.html), so the layout marks where one is.
PAGE_KEYS = (
    ("/groups", "groups"), ("/tasks", "tasks"), ("/clients", "clients"), ("/nodes", "nodes"),
    ("/alerts", "alerts"), ("/reports", "reports"), ("/audit", "audit"),
    ("/search", "search"),
)


@dataclass(frozen=True)
class Outage:
    """The database that does not answer, as it may be shown and logged."""

    url: str
    reason: str

    @property
    def message(self) -> str:
        """The API's English `error` line."""
        return f"database unavailable: {self.reason} ({self.url})"

    @property
    def params(self) -> dict[str, Any]:
        return {"url": self.url, "reason": self.reason}


def shown_url(url: str) -> str:
    """`postgresql://fss:***@db:5432/fss`: the URL without its password and its query."""
    try:
        parsed = sa.engine.make_url(url)
    except (ArgumentError, ValueError):
        return "(the configured database URL)"
    return parsed.set(query={}).render_as_string(hide_password=True)


def reason_of(exc: BaseException, url: str) -> str:
    """The first line of the driver's error (not SQLAlchemy's, which adds the statement and
    its parameters), every password masked."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    reason = lines[0].strip() if lines else type(cause).__name__
    reason = mask_urls(reason)
    try:
        password = sa.engine.make_url(url).password
    except (ArgumentError, ValueError):
        password = None
    if password:
        reason = reason.replace(str(password), MASK)
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 1] + "…"
    return reason or type(cause).__name__


def outage_of(context: WebContext, exc: BaseException) -> Outage:
    url = context.settings.database_url
    return Outage(shown_url(url), reason_of(exc, url))


class OutageLog:
    """One warning per outage and LOG_EVERY_S (pages poll every 2 s: a line per request
    would bury the log); the reason of the newest failure."""

    def __init__(self, monotonic: Any = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._last = float("-inf")
        self.logged = 0

    def note(self, outage: Outage) -> None:
        now = self._monotonic()
        with self._lock:
            if now - self._last < LOG_EVERY_S:
                return
            self._last = now
            self.logged += 1
        log.warning("database %s unreachable: %s; pages and API calls answer 503 until it "
                    "answers again", outage.url, outage.reason)


class DatabaseProbe:
    """Whether the database answers, asked at most once per PROBE_HOLD_S (the login form
    asks: a form shown before anyone types a password says the database is down)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._outage: Outage | None = None

    def check(self, context: WebContext) -> Outage | None:
        with self._lock:
            if time.monotonic() - self._at < PROBE_HOLD_S:
                return self._outage
        try:
            with context.engine.connect() as conn:
                conn.execute(sa.select(1))
            outage = None
        except SQLAlchemyError as exc:
            outage = outage_of(context, exc)
        with self._lock:
            self._outage, self._at = outage, time.monotonic()
        return outage


def _state(request: Request, name: str, make: Any) -> Any:
    state = request.app.state
    found = getattr(state, name, None)
    if found is None:
        found = make()
        setattr(state, name, found)
    return found


def note(request: Request, exc: BaseException) -> Outage:
    """The outage `exc` tells of, logged (throttled)."""
    context: WebContext = request.app.state.context
    outage = outage_of(context, exc)
    _state(request, "database_outage_log", OutageLog).note(outage)
    return outage


def probe(request: Request) -> Outage | None:
    context: WebContext = request.app.state.context
    outage: Outage | None = _state(request, "database_probe", DatabaseProbe).check(context)
    if outage is not None:
        _state(request, "database_outage_log", OutageLog).note(outage)
    return outage


def page_key(path: str) -> str:
    for prefix, key in PAGE_KEYS:
        if path == prefix or path.startswith(prefix + "/"):
            return key
    return "overview"


def unavailable(response: HTMLResponse) -> HTMLResponse:
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    response.headers["Cache-Control"] = "no-store"
    return response


def page_response(request: Request, outage: Outage) -> HTMLResponse:
    """The page asked for, as the layout with the banner: its data is in the database."""
    return unavailable(render(
        request, "database_down.html",
        {"page": page_key(request.url.path), "outage": outage,
         "reloads": request.method in ("GET", "HEAD")},
        status_code=503,
    ))


def login_response(request: Request, outage: Outage, context: dict[str, Any]) -> HTMLResponse:
    """The login form with the banner: signing in needs the database."""
    return unavailable(render(
        request, "login.html", {"error": "", **context, "outage": outage}, status_code=503))
