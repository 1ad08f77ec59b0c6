"""Every response carries the anti-framing and other security headers: pages, the API, static
files, /metrics, /healthz, errors (401, 404, 422, 500) and the API docs, whose one inline
script runs by the response's CSP nonce. (The browser side, no CSP violation on any page and a
frame on another port refused, is in browser/test_csp_and_framing.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from probe import basic, probe_app
from web_helpers import WebDatabase

from fss.domain.clock import ManualClock
from fss.web import WebSettings
from fss.web.config import parse_users

FIXED = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
ADMIN = basic("admin", "pw")


@pytest.fixture
def client(web_db: WebDatabase, clock: ManualClock) -> Iterator[TestClient]:
    app = probe_app(web_db.url, WebSettings(users=parse_users("admin:pw")), clock)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def csp_nonce(csp: str) -> str:
    found = re.search(r"script-src 'self' 'nonce-([A-Za-z0-9_-]{22})';", csp)
    assert found, csp
    return found.group(1)


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/login", {}, 200),
        ("GET", "/", {"Accept": "text/html"}, 303),
        ("GET", "/api/v1/_probe", ADMIN, 200),
        ("GET", "/api/v1/_probe", {}, 401),
        ("POST", "/api/v1/groups", {**ADMIN, "Content-Type": "application/json"}, 422),
        ("GET", "/api/v1/nothing-here", ADMIN, 404),
        ("GET", "/static/fss.css", {}, 200),
        ("GET", "/static/missing.js", {}, 404),
        ("GET", "/metrics", ADMIN, 200),
        ("GET", "/metrics", {}, 401),
        ("GET", "/healthz", {}, 200),
        ("GET", "/_boom", {}, 500),
    ],
)
def test_every_response_carries_the_security_headers(
    client: TestClient, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    response = client.request(method, path, headers=headers, follow_redirects=False)

    assert response.status_code == status, response.text
    assert {k: response.headers.get(k) for k in FIXED} == FIXED
    csp = response.headers["content-security-policy"]
    csp_nonce(csp)
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp and "base-uri 'none'" in csp
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["style-src"] == "'self'" and directives["style-src-attr"] == "'none'"
    assert "unsafe" not in directives["script-src"] and "unsafe" not in directives["default-src"]
    assert "strict-transport-security" not in response.headers


def test_each_response_draws_its_own_nonce_and_the_api_docs_script_carries_it(
    client: TestClient,
) -> None:
    first = client.get("/api/docs", headers=ADMIN)
    second = client.get("/api/docs", headers=ADMIN)
    nonces = [csp_nonce(r.headers["content-security-policy"]) for r in (first, second)]

    assert nonces[0] != nonces[1]
    inline = re.findall(r"<script(?: nonce=\"([^\"]*)\")?>", first.text)
    assert inline == [nonces[0]]  # the one inline script, with this response's nonce


def test_behind_https_strict_transport_security_is_sent(
    web_db: WebDatabase, clock: ManualClock
) -> None:
    web = WebSettings(users=parse_users("admin:pw"), secure_cookies=True)
    with TestClient(probe_app(web_db.url, web, clock), raise_server_exceptions=False) as client:
        answers = [client.get("/login"), client.get("/_boom")]

    assert [r.headers.get("strict-transport-security") for r in answers] == [
        "max-age=31536000"
    ] * 2
