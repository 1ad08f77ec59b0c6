"""A probe app for the auth tests: the real create_web_app plus tiny routes guarded by the
real Viewer / Admin dependencies, so the tests exercise the auth rules, not one API route.

Imported as ``from probe import ...`` (pytest puts tests/web on sys.path).
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from fss.config import Settings
from fss.domain.clock import Clock
from fss.web import WebSettings, create_web_app
from fss.web.auth import SESSION_COOKIE, Admin, Viewer, csrf_of


def probe_app(database_url: str, web: WebSettings, clock: Clock | None = None) -> FastAPI:
    app = create_web_app(Settings(database_url=database_url, broker_url="memory://"), web, clock)

    @app.get("/api/v1/_probe")
    def read(principal: Viewer) -> dict[str, Any]:
        return {"name": principal.name, "method": principal.method}

    @app.post("/api/v1/_probe")
    def write(principal: Admin) -> dict[str, Any]:
        return {"name": principal.name, "method": principal.method}

    @app.get("/_page")
    def page(principal: Viewer) -> dict[str, Any]:
        return {"name": principal.name}

    @app.get("/_boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    return app


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def log_in(client: TestClient, name: str, password: str) -> str:
    """The form login; returns the CSRF token of the new session."""
    response = client.post(
        "/login", data={"username": name, "password": password, "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert SESSION_COOKIE in response.cookies
    me = client.get("/api/v1/_probe")
    assert me.json() == {"name": name, "method": "session"}
    return csrf_of(client.cookies[SESSION_COOKIE].partition(".")[0])
