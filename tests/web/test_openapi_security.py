"""The OpenAPI document says how to authenticate: the session cookie (writes add the CSRF
header), HTTP Basic, and the Bearer token when FSS_WEB_TOKEN is set; every operation behind
a login lists them. The Swagger page carries the session's CSRF token for "Try it out"."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from web_helpers import ADMIN, WebDatabase, basic

from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.web import create_web_app
from fss.web.config import WebSettings, parse_users

pytestmark = pytest.mark.parametrize("web_db", ["sqlite"], indirect=True)
WRITES = {"post", "patch", "put", "delete"}
PUBLIC = {"/healthz", "/readyz"}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_the_document_declares_the_schemes_and_every_operation_needs_them(
    admin_client: TestClient,
) -> None:
    document = admin_client.get("/api/v1/openapi.json").json()

    schemes = document["components"]["securitySchemes"]
    assert schemes["session"] == {
        "type": "apiKey", "in": "cookie", "name": "fss_session",
        "description": schemes["session"]["description"],
    }
    assert (schemes["csrf"]["type"], schemes["csrf"]["in"], schemes["csrf"]["name"]) == (
        "apiKey", "header", "X-CSRF-Token",
    )
    assert (schemes["basic"]["type"], schemes["basic"]["scheme"]) == ("http", "basic")
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    checked = 0
    for path, method, operation in operations(document):
        if path in PUBLIC:
            assert "security" not in operation, (method, path)
            continue
        session = {"session": [], "csrf": []} if method in WRITES and path != (
            "/api/v1/schedule/preview"
        ) else {"session": []}
        assert operation["security"] == [session, {"basic": []}, {"bearer": []}], (method, path)
        checked += 1
    assert checked > 20
    post = document["paths"]["/api/v1/groups/{group_id}/run"]["post"]
    assert post["security"][0] == {"session": [], "csrf": []}


def test_without_a_token_there_is_no_bearer_and_without_auth_no_schemes(
    web_db: WebDatabase, clock: ManualClock
) -> None:
    settings = Settings(database_url=web_db.url, broker_url="memory://")
    users = WebSettings(users=parse_users("admin:pw"))
    with TestClient(create_web_app(settings, users, clock), headers=basic(ADMIN)) as client:
        document = client.get("/api/v1/openapi.json").json()
    assert set(document["components"]["securitySchemes"]) == {"session", "csrf", "basic"}
    assert all("bearer" not in str(op.get("security")) for _, _, op in operations(document))

    open_app = create_web_app(settings, WebSettings(no_auth=True), clock)
    with TestClient(open_app) as client:
        document = client.get("/api/v1/openapi.json").json()
    assert "securitySchemes" not in document.get("components", {})
    assert all("security" not in op for _, _, op in operations(document))


def test_the_docs_page_carries_the_sessions_csrf_token(admin_client: TestClient) -> None:
    anonymous = TestClient(admin_client.app)
    login = anonymous.post(
        "/login", data={"username": "admin", "password": "pw"}, follow_redirects=False
    )
    assert login.status_code == 303, login.text
    csrf = anonymous.get("/api/v1/me").json()["csrf_token"]

    page = anonymous.get("/api/docs")

    assert re.search(r'<meta name="csrf-token" content="([^"]*)">', page.text).group(1) == csrf
    assert "requestInterceptor" in page.text
