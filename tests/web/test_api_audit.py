"""The audit trail through the web: who (a user, a named token), from where, what changed,
for API calls, the login form and refusals; GET /api/v1/audit with its filters and paging;
the Audit page; FSS_WEB_TOKENS. On SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from web_helpers import ADMIN, T0, TOKEN, WebDatabase, add_group, basic, register_client

from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.errors import InvalidField
from fss.web import create_web_app
from fss.web.auth import SESSION_COOKIE, csrf_of
from fss.web.config import Role, WebSettings, parse_tokens, parse_users

DEPLOY_TOKEN = "deploy-token-0123456789"
READER_TOKEN = "reader-token-0123456789"


@pytest.fixture
def web_db(web_db_all: WebDatabase) -> WebDatabase:
    """SQLite, PostgreSQL and MariaDB (tests/web/conftest.py)."""
    return web_db_all


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings(
        users=parse_users("admin:pw,viewer:pw2:viewer"), token=TOKEN,
        tokens=parse_tokens(f"deploy:{DEPLOY_TOKEN}:admin, reader:{READER_TOKEN}:viewer"),
    )


@pytest.fixture
def client(web_db: WebDatabase, web_settings: WebSettings, clock: ManualClock
           ) -> Iterator[TestClient]:
    settings = Settings(database_url=web_db.url, broker_url="memory://")
    with TestClient(create_web_app(settings, web_settings, clock)) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def trail(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/audit", params=params, headers=basic(ADMIN))
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_an_api_edit_is_recorded_with_the_user_address_and_fields(
    client: TestClient, web_db: WebDatabase
) -> None:
    group_id = add_group(web_db.engine, T0, data={"a": 1})
    answer = client.patch(f"/api/v1/groups/{group_id}", headers=basic(ADMIN),
                          json={"caption": "renamed", "data": {"a": 2}, "timeout_s": 30})
    assert answer.status_code == 200, answer.text

    (entry,) = trail(client)
    assert entry["action"] == "group.edit"
    who = (entry["actor"], entry["actor_kind"], entry["source"])
    assert who == ("admin", "basic", "testclient")
    assert entry["at"] == T0.isoformat()
    assert entry["group_id"] == group_id
    assert entry["changes"] == {
        "caption": ["every minute", "renamed"], "data": [{"a": 1}, {"a": 2}],
        "timeout_s": [None, 30],
    }


def test_named_tokens_are_told_apart_and_a_viewer_token_changes_nothing(
    client: TestClient, web_db: WebDatabase
) -> None:
    created = client.post("/api/v1/groups", headers=bearer(DEPLOY_TOKEN),
                          json={"caption": "by deploy", "job_name": "demo.job",
                                "interval_ms": 1000})
    assert created.status_code == 201, created.text
    group_id = created.json()["id"]
    disabled = client.post(f"/api/v1/groups/{group_id}/disable", headers=bearer(TOKEN))
    assert disabled.status_code == 200
    refused = client.post(f"/api/v1/groups/{group_id}/enable", headers=bearer(READER_TOKEN))
    assert refused.status_code == 403
    assert "reader" in refused.json()["error"]
    assert client.get("/api/v1/groups", headers=bearer(READER_TOKEN)).status_code == 200

    entries = trail(client)
    assert [(e["action"], e["actor"], e["actor_kind"]) for e in entries] == [
        ("group.disable", "token", "token"), ("group.create", "deploy", "token"),
    ]
    assert [e["action"] for e in trail(client, user="deploy")] == ["group.create"]


def test_login_logout_and_a_refused_login_are_recorded(client: TestClient) -> None:
    refused = client.post("/login", data={"username": "admin", "password": "nope", "next": "/"},
                          follow_redirects=False)
    assert refused.status_code == 401
    logged_in = client.post("/login", data={"username": "admin", "password": "pw", "next": "/"},
                            follow_redirects=False)
    assert logged_in.status_code == 303
    csrf = csrf_of(client.cookies[SESSION_COOKIE].partition(".")[0])
    out = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303

    entries = trail(client)
    assert [(e["action"], e["actor"], e["actor_kind"], e["source"]) for e in entries] == [
        ("logout", "admin", "session", "testclient"),
        ("login", "admin", "session", "testclient"),
        ("login.refused", "admin", "session", "testclient"),
    ]
    assert entries[2]["detail"] == {"reason": "wrong password", "via": "login form"}
    assert "nope" not in str(entries)


def test_every_kind_of_change_through_the_api_is_recorded(
    client: TestClient, web_db: WebDatabase, clock: ManualClock
) -> None:
    admin = basic(ADMIN)
    group_id = add_group(web_db.engine, T0)
    register_client(web_db.engine, T0)
    calls = [
        ("POST", f"/api/v1/groups/{group_id}/run", {"data": {"once": 1}}),
        ("POST", f"/api/v1/groups/{group_id}/disable", {"note": "maintenance"}),
        ("POST", f"/api/v1/groups/{group_id}/enable", None),
        ("POST", f"/api/v1/groups/{group_id}/silence", {"for_s": 600, "note": "noisy"}),
        ("DELETE", f"/api/v1/groups/{group_id}/silence", None),
        ("POST", "/api/v1/clients/worker-1/kick", None),
        ("POST", "/api/v1/clients/worker-1/admit", None),
        ("POST", "/api/v1/alert-targets", {"name": "hook", "kind": "webhook",
                                            "url": "https://h.example/p/tok", "secret": "s3c"}),
        ("DELETE", "/api/v1/alert-targets/hook", None),
        ("DELETE", f"/api/v1/groups/{group_id}", None),
    ]
    for method, path, body in calls:
        answer = client.request(method, path, headers=admin, json=body)
        assert answer.status_code < 300, (path, answer.text)

    entries = list(reversed(trail(client)))
    assert [e["action"] for e in entries] == [
        "group.run", "group.disable", "group.enable", "alert.silence", "alert.unsilence",
        "client.kick", "client.admit", "target.create", "target.delete", "group.delete",
    ]
    assert entries[0]["detail"]["data"] == {"once": 1}
    assert entries[7]["changes"]["config.secret"] == [None, "***"]
    assert "s3c\"" not in str(entries) and "tok" not in str(entries[7])
    assert {e["actor"] for e in entries} == {"admin"}


def test_a_refused_change_writes_no_entry(client: TestClient, web_db: WebDatabase) -> None:
    group_id = add_group(web_db.engine, T0)
    stale = client.patch(f"/api/v1/groups/{group_id}", headers=basic(ADMIN),
                         json={"caption": "x", "version": 9})
    assert stale.status_code == 409
    bad = client.patch(f"/api/v1/groups/{group_id}", headers=basic(ADMIN), json={"cron": "nope"})
    assert bad.status_code == 422
    viewer = client.post(f"/api/v1/groups/{group_id}/disable", headers=basic(("viewer", "pw2")))
    assert viewer.status_code == 403
    assert trail(client) == []


def test_filters_paging_and_bad_input(client: TestClient, web_db: WebDatabase,
                                      clock: ManualClock) -> None:
    keyed = client.post("/api/v1/groups", headers=basic(ADMIN), json={
        "caption": "keyed", "job_name": "demo.job", "interval_ms": 1000, "key": "team.k"})
    group_id = keyed.json()["id"]
    for n in range(4):
        clock.advance(60)
        client.patch(f"/api/v1/groups/{group_id}", headers=basic(ADMIN), json={"timeout_s": n + 5})
    add_group(web_db.engine, T0)  # no actor: not recorded

    first = client.get("/api/v1/audit?limit=2", headers=basic(ADMIN)).json()
    assert len(first["items"]) == 2 and first["next_before_id"] == first["items"][-1]["id"]
    rest = trail(client, limit=10, before_id=first["next_before_id"])
    assert len(rest) == 3
    assert len(trail(client, group="team.k")) == 5
    assert len(trail(client, group=str(group_id), action="group.create")) == 1
    assert len(trail(client, since="2031-03-14T09:29:00Z")) == 2
    assert client.get("/api/v1/audit?limit=2", headers=basic(ADMIN)).json()["next_before_id"]
    assert client.get("/api/v1/audit?limit=10", headers=basic(ADMIN)).json()[
        "next_before_id"] is None

    since = client.get("/api/v1/audit?since=yesterday", headers=basic(ADMIN))
    assert since.status_code == 422 and since.json()["field"] == "since"
    assert client.get("/api/v1/audit?action=group.explode", headers=basic(ADMIN)).status_code == 422
    assert client.get("/api/v1/audit?limit=0", headers=basic(ADMIN)).status_code == 422
    assert client.get("/api/v1/audit").status_code == 401
    paths = client.get("/api/v1/openapi.json", headers=basic(ADMIN)).json()["paths"]
    assert set(paths["/api/v1/audit"]) == {"get"}


def test_the_audit_page_shows_who_what_and_before_after(
    client: TestClient, web_db: WebDatabase
) -> None:
    group_id = add_group(web_db.engine, T0, caption="old <b>caption</b>")
    client.patch(f"/api/v1/groups/{group_id}", headers=basic(ADMIN), json={"caption": "new one"})

    page = client.get("/audit", headers=basic(("viewer", "pw2")))
    assert page.status_code == 200
    html = page.text
    assert "Group edited" in html and "admin" in html and "testclient" in html
    assert "old &lt;b&gt;caption&lt;/b&gt;" in html and "new one" in html
    assert 'href="/audit"' in html  # the nav item
    assert 'data-action="group.edit"' in html
    filtered = client.get("/audit?action=login", headers=basic(ADMIN))
    assert 'data-action="group.edit"' not in filtered.text
    assert "No entries match" in filtered.text
    bad = client.get("/audit?since=soon", headers=basic(ADMIN))
    assert bad.status_code == 400 and "since:" in bad.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deploy:0123456789abcdef:root", "entry 1 (token 'deploy'): the text after the last ':' "
                                         "is not a role"),
        ("deploy", "entry 1 is not name:token:role"),
        ("ok:0123456789abcdef:admin,bad name:0123456789abcdef:admin", "entry 2 is not"),
        ("deploy:short:admin", "entry 1 (token 'deploy'): the token must be at least 16"),
        ("a:0123456789abcdef:admin,a:fedcba9876543210:viewer", "token name 'a' is given twice"),
        ("a:0123456789abcdef:admin,b:0123456789abcdef:viewer", "entry 2 (token 'b') repeats"),
    ],
)
def test_a_bad_tokens_entry_refuses_to_start_naming_it_never_the_token(
    text: str, message: str
) -> None:
    with pytest.raises(InvalidField) as refused:
        WebSettings.from_env({"FSS_WEB_TOKENS": text})
    assert refused.value.field == "FSS_WEB_TOKENS"
    assert message in str(refused.value)
    for secret in ("0123456789abcdef", "fedcba9876543210", "short"):
        assert secret not in str(refused.value)


def test_tokens_parse_with_roles_and_the_old_token_keeps_working() -> None:
    web = WebSettings.from_env({
        "FSS_WEB_TOKEN": TOKEN,
        "FSS_WEB_TOKENS": f"ci:{DEPLOY_TOKEN}:admin\ngrafana:{READER_TOKEN}:viewer",
    })
    assert [(t.name, t.role) for t in web.bearer_tokens] == [
        ("token", Role.ADMIN), ("ci", Role.ADMIN), ("grafana", Role.VIEWER)]
    assert web.auth_configured
    with pytest.raises(InvalidField, match="FSS_WEB_TOKEN's"):
        WebSettings.from_env({"FSS_WEB_TOKEN": TOKEN,
                              "FSS_WEB_TOKENS": f"token:{DEPLOY_TOKEN}:admin"})
    assert WebSettings.from_env({"FSS_WEB_TOKENS": f"ci:{DEPLOY_TOKEN}:admin"}).auth_configured


def test_cli_web_refuses_a_bad_tokens_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fss web` reads FSS_WEB_TOKENS at start: a bad entry stops it with one line."""
    from fss.cli import main

    monkeypatch.setenv("FSS_WEB_TOKENS", "ci:0123456789abcdef:superuser")
    monkeypatch.setenv("FSS_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(SystemExit) as stopped:
        main(["web"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "FSS_WEB_TOKENS: entry 1 (token 'ci')" in err
    assert "0123456789abcdef" not in err
