"""The ASGI app of `fss web`, built from settings by a factory (nothing happens at import)."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fss import __version__
from fss.config import Settings
from fss.domain.clock import Clock
from fss.errors import FssError, GroupBusy, GroupNotFound, InvalidField, TaskNotFound
from fss.web import (
    api,
    api_alerts,
    api_bulk,
    api_glance,
    api_search,
    database_down,
    health,
    i18n,
    login,
    metrics,
    pages,
)
from fss.web import api_reports as reports_api
from fss.web.auth import (
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    Authenticator,
    LoginRequired,
    LoginThrottled,
    Viewer,
    require_admin,
    require_viewer,
)
from fss.web.config import WebSettings
from fss.web.context import WebContext
from fss.web.i18n.errors import ERROR_TEXTS, describe_field, describe_validation
from fss.web.templating import create_templates, render

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
# Paths that answer machines: errors as JSON, 401 instead of a redirect to the login form.
MACHINE_PREFIXES = ("/api/", "/metrics")


def create_web_app(
    settings: Settings, web: WebSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    web = web or WebSettings.from_env()
    context = WebContext(settings, web, clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            context.close()

    app = FastAPI(
        title="fss",
        version=__version__,
        description="Task groups, tasks, run logs, clients and scheduler nodes of fss.",
        # Served below, behind the same auth as the API and from vendored files (no CDN).
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.context = context
    app.state.authenticator = Authenticator(web, context)
    app.state.templates = create_templates()
    app.state.templates.context_processors.append(csp_nonce_context)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    for router in (
        health.router, login.router, api_bulk.router, api.router, api_alerts.router,
        api_glance.router, api_search.router, metrics.router, pages.router,
    ):
        app.include_router(router)
    app.include_router(reports_api.router)
    install_api_docs(app, web)
    install_error_handlers(app)
    app.add_middleware(SecurityHeaders, hsts=web.secure_cookies)
    app.add_middleware(i18n.LocaleContext)
    return app


# ---- security headers -------------------------------------------------------------------
#
# Every response says: never in a frame (a page on another port of the same host could frame
# the signed-in UI: SameSite=Lax sends the cookie there), scripts only from this origin or an
# inline <script nonce="{{ csp_nonce }}"> of this response, style sheets and images only from
# this origin (plus data: images; no style attributes), no plugins, no <base>,
# forms post only here; no MIME sniffing; the Referer only to this origin.


def content_security_policy(nonce: str) -> str:
    return (
        "default-src 'self'; "
        f"script-src 'self' 'nonce-{nonce}'; "
        "style-src 'self'; "
        # No style attributes either: scripts set a width through the CSSOM
        # (element.style.width), which the CSP does not restrict.
        "style-src-attr 'none'; "
        "img-src 'self' data:; "
        "font-src 'self' data:; "
        "connect-src 'self'; "
        "object-src 'none'; "
        "base-uri 'none'; "
        "form-action 'self'; "
        "frame-ancestors 'none'"
    )


def security_headers(nonce: str, hsts: bool) -> dict[str, str]:
    headers = {
        "Content-Security-Policy": content_security_policy(nonce),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    if hsts:  # FSS_WEB_SECURE_COOKIES: served over HTTPS only
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


class SecurityHeaders:
    """Adds security_headers to every response of the app (pages, API, static files, errors,
    /metrics); draws the per-response CSP nonce templates read as `csp_nonce`."""

    def __init__(self, app: ASGIApp, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in security_headers(nonce, self.hsts).items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def request_nonce(request: Request) -> str:
    return str(getattr(request.state, "csp_nonce", ""))


def csp_nonce_context(request: Request) -> dict[str, str]:
    """`{{ csp_nonce }}` in every template: `<script nonce="{{ csp_nonce }}">` may run."""
    return {"csp_nonce": request_nonce(request)}


def install_api_docs(app: FastAPI, web: WebSettings) -> None:
    """OpenAPI at /api/v1/openapi.json and Swagger UI at /api/docs, for signed-in users.

    The document declares how to authenticate (security_schemes) and which operations need
    what; the page sends the session's CSRF token on writes, so "Try it out" can change
    things for a signed-in admin as the UI pages do."""
    schemes = security_schemes(web)
    plain_openapi = app.openapi

    def openapi_with_security() -> dict[str, Any]:
        schema = plain_openapi()  # FastAPI caches it; adding the same keys again is harmless
        if schemes:
            schema.setdefault("components", {})["securitySchemes"] = schemes
            apply_security(schema, app.routes, web)
        return schema

    app.openapi = openapi_with_security  # type: ignore[method-assign]

    @app.get("/api/v1/openapi.json", include_in_schema=False)
    def openapi_document(principal: Viewer) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/api/docs", include_in_schema=False)
    def api_docs(request: Request, principal: Viewer) -> HTMLResponse:
        # The template carries the CSRF token in a <meta> and Swagger UI's setup as its one
        # inline script, which runs under the CSP by the nonce.
        return render(request, "api_docs.html", {"page": "api-docs"})


def security_schemes(web: WebSettings) -> dict[str, dict[str, str]]:
    """What fss.web.auth accepts: the session cookie (writes add the CSRF header), HTTP
    Basic with the same users, FSS_WEB_TOKEN as a Bearer token. None with FSS_WEB_NO_AUTH."""
    if web.no_auth:
        return {}
    schemes = {
        "session": {
            "type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
            "description": "The cookie the login form sets (POST /login).",
        },
        "csrf": {
            "type": "apiKey", "in": "header", "name": CSRF_HEADER,
            "description": "With the session cookie, every write carries the session's CSRF "
            "token (csrf_token of GET /api/v1/me); this page sends it by itself.",
        },
        "basic": {
            "type": "http", "scheme": "basic",
            "description": "A user of FSS_WEB_USERS; writes need no CSRF token.",
        },
    }
    if web.token:
        schemes["bearer"] = {
            "type": "http", "scheme": "bearer", "description": "FSS_WEB_TOKEN (admin rights).",
        }
    return schemes


def apply_security(schema: dict[str, Any], routes: list[BaseRoute], web: WebSettings) -> None:
    """Every operation behind require_viewer lists the schemes; writes behind require_admin
    need the CSRF header with the cookie. /healthz, /readyz and the login form need none."""
    paths = schema.get("paths", {})
    for route in api_routes(routes):
        path, dependant = getattr(route, "path_format", None), getattr(route, "dependant", None)
        if path not in paths or not isinstance(dependant, Dependant):
            continue
        calls = set(dependency_calls(dependant))
        if require_viewer not in calls:
            continue
        methods: set[str] = set(getattr(route, "methods", None) or ())
        session: dict[str, list[str]] = {"session": []}
        if require_admin in calls and methods - SAFE_METHODS:
            session["csrf"] = []
        requirements = [session, {"basic": []}] + ([{"bearer": []}] if web.token else [])
        for method in methods:
            operation = paths[path].get(method.lower())
            if operation is not None:
                operation["security"] = requirements


def api_routes(routes: list[BaseRoute]) -> Iterator[object]:
    """Every route with its full path: newer FastAPI keeps included routers as one entry of
    app.routes and flattens them with iter_route_contexts; older ones list each route."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    return iter(flatten(routes) if flatten is not None else routes)


def dependency_calls(dependant: Dependant) -> Iterator[object]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from dependency_calls(dependency)


def wants_json(request: Request) -> bool:
    return request.url.path.startswith(MACHINE_PREFIXES) or "text/html" not in request.headers.get(
        "accept", ""
    )


def error(
    status: int, message: str, field: str | None = None, code: str = "error",
    params: dict[str, Any] | None = None,
) -> JSONResponse:
    """The JSON error: `error` in English for scripts, `code` and `params` for the console,
    which shows ERROR_TEXTS[code] in its language (fss.web.i18n.errors)."""
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    body["code"] = code
    body["params"] = {k: str(v) for k, v in (params or {"text": message}).items()}
    return JSONResponse(body, status_code=status)


def error_page(request: Request, status: int, message: str, code: str,
               params: dict[str, Any] | None = None) -> Response:
    """A browser asking for a page gets the error as a page in its language, not JSON."""
    locale = i18n.request_locale(request.cookies, request.headers.get("accept-language"))
    text = i18n.translate(locale, ERROR_TEXTS.get(code, "{text}"),
                          **{k: str(v) for k, v in (params or {"text": message}).items()})
    return render(request, "error.html", {"page": "error", "status": status, "message": text},
                  status_code=status)


def answer(request: Request, status: int, message: str, field: str | None = None,
           code: str = "error", params: dict[str, Any] | None = None) -> Response:
    if wants_json(request):
        return error(status, message, field, code, params)
    return error_page(request, status, message, code, params)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _: LoginRequired) -> Response:
        if wants_json(request):
            response = error(401, "authentication required: log in, or use Basic or Bearer",
                             code="login_required", params={})
            response.headers["WWW-Authenticate"] = 'Basic realm="fss"'
            return response
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(LoginThrottled)
    async def _throttled(_: Request, exc: LoginThrottled) -> Response:
        response = error(429, str(exc), code="throttled",
                         params={"seconds": exc.retry_after_s})
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(InvalidField)
    async def _invalid(request: Request, exc: InvalidField) -> Response:
        code, params = describe_field(exc.field, exc.reason)
        return answer(request, 422, str(exc), exc.field, code, params)

    @app.exception_handler(GroupBusy)
    async def _busy(_: Request, exc: GroupBusy) -> Response:
        return error(409, str(exc), code="group_busy",
                     params={"group_id": exc.group_id, "task_id": exc.task_id})

    @app.exception_handler(FssError)
    async def _refused(request: Request, exc: FssError) -> Response:
        # GroupNotFound, TaskNotFound, ...: FssError comes first in their MRO.
        code, params = "error", None
        if isinstance(exc, GroupNotFound):
            code, params = "group_not_found", {"group_id": exc.group_id}
        elif isinstance(exc, TaskNotFound):
            code, params = "task_not_found", {"task_id": exc.task_id}
        return answer(request, 404 if isinstance(exc, LookupError) else 400, str(exc),
                      code=code, params=params)

    @app.exception_handler(RequestValidationError)
    async def _malformed(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            reason = str(first.get("ctx", {}).get("error", "not JSON")).splitlines()[0]
            return error(422, f"body: invalid JSON ({reason})", "body", "invalid_json", {})
        location = [str(part) for part in first.get("loc", ())
                    if part not in ("body", "query", "path") and not _union_member(part)]
        field = ".".join(location) or "body"
        message = str(first.get("msg", "invalid request")).splitlines()[0]
        code, params = describe_validation(
            field, str(first.get("type", "")), dict(first.get("ctx") or {}), message)
        return answer(request, 422, f"{field}: {message}", field, code, params)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        code, params = http_code(exc)
        response = answer(request, exc.status_code, str(exc.detail), code=code, params=params)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # A bug of ours: logged with its traceback, answered as one JSON line, never a page.
        log.exception("%s %s failed", request.method, request.url.path)
        response = error(500, f"internal error ({type(exc).__name__}); the fss web log has details",
                         code="internal", params={"kind": type(exc).__name__})
        # Starlette answers these outside every middleware: the headers are set here.
        hsts = bool(request.app.state.context.web.secure_cookies)
        response.headers.update(security_headers(request_nonce(request), hsts))
        return response

    async def _database_down(request: Request, exc: Exception) -> Response:
        # fss.web.database_down: 503 with the database's URL (no password) and the reason;
        # a page gets the layout with a banner, the API its JSON error.
        outage = database_down.note(request, exc)
        if wants_json(request):
            response: Response = error(503, outage.message, code="database",
                                       params=outage.params)
            response.headers["Retry-After"] = str(database_down.RETRY_AFTER_S)
            return response
        return database_down.page_response(request, outage)

    for kind in database_down.DATABASE_ERRORS:
        app.add_exception_handler(kind, _database_down)


def http_code(exc: HTTPException) -> tuple[str, dict[str, Any] | None]:
    detail = str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        return "http_404", {}
    if exc.status_code == 405:
        return "http_405", {}
    if detail.startswith("csrf_token:"):
        return "csrf", {}
    if detail.startswith("cross-site request") or detail.startswith("request from origin"):
        return "cross_site", {}
    viewer = re.match(r"user '(.*)' is a viewer", detail)
    if viewer:
        return "viewer", {"user": viewer[1]}
    return "error", None


# pydantic puts the member of a field of several types into the error's location
# (retry_backoff: float | int -> ("body", "retry_backoff", "float")): not a field name.
_UNION_TAGS = frozenset({"str", "int", "float", "bool", "none", "bytes", "list", "dict"})


def _union_member(part: object) -> bool:
    return isinstance(part, str) and (part in _UNION_TAGS or "[" in part or "-" in part)
