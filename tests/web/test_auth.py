"""Who may do what: FSS_WEB_USERS parsing, password hashes, HTTP Basic, the Bearer token,
the login form's server-side session (expiry, tampering, replicas), CSRF on cookie writes,
cross-site requests refused, viewers refused every change, and --no-auth.

Most cases use a probe app (tests/web/probe.py: the real create_web_app plus tiny routes
guarded by the real Viewer / Admin dependencies) over a migrated database, so they test the
auth rules, not one API route; the last ones go through the real API and count rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from probe import basic, log_in, probe_app
from web_helpers import WebDatabase, add_group, counts

from fss.domain.clock import ManualClock
from fss.errors import InvalidField
from fss.web import Role, WebSettings, WebUser
from fss.web.auth import SESSION_COOKIE, hash_password, password_matches
from fss.web.config import parse_users

USERS = "admin:pw,viewer:pw2:viewer"
TOKEN = "a-token-of-20-chars!"


@pytest.fixture
def web() -> WebSettings:
    return WebSettings(users=parse_users(USERS), token=TOKEN)


@pytest.fixture
def db_url(web_db: WebDatabase) -> str:
    """A migrated database (SQLite, PostgreSQL): sessions and login failures live there."""
    return web_db.url


@pytest.fixture
def client(db_url: str, web: WebSettings, clock: ManualClock) -> Iterator[TestClient]:
    with TestClient(probe_app(db_url, web, clock)) as test_client:
        yield test_client


# ---- FSS_WEB_USERS and hashes --------------------------------------------------------------


def test_users_parse_with_roles_separators_and_colons_in_passwords() -> None:
    hashed = hash_password("secret")
    users = parse_users(
        f"alice:pw:with:colons:admin, bob:pw2:viewer\ncarol:{hashed}:viewer,dave:plain"
    )

    assert users == (
        WebUser("alice", "pw:with:colons", Role.ADMIN),
        WebUser("bob", "pw2", Role.VIEWER),
        WebUser("carol", hashed, Role.VIEWER),
        WebUser("dave", "plain", Role.ADMIN),
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("alice", "entry 1 is not name:password[:role]"),
        ("al ice:pw", "entry 1 is not name:password[:role]"),
        ("alice::viewer", "entry 1 (user 'alice') has an empty password"),
        ("alice:", "entry 1 (user 'alice') has an empty password"),
        ("alice:pw,alice:pw2", "given twice"),
        # Unknown roles fail closed: bob was an admin with the password "pw:Viewer".
        ("alice:pw, bob:pw:Viewer", "entry 2 (user 'bob'): the text after the last ':' is not"),
        ("bob:pw:VIEWER", "entry 1 (user 'bob'): the text after the last ':' is not a role"),
        ("bob:pw:reader", "entry 1 (user 'bob'): the text after the last ':' is not a role"),
        ("bob:pw:", "entry 1 (user 'bob'): the text after the last ':' is not a role"),
        ("bob:pw:with:colons", "a password containing ':' needs the role after it"),
    ],
)
def test_bad_users_name_the_variable_and_entry(text: str, reason: str) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_users(text)

    assert caught.value.field == "FSS_WEB_USERS"
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


# Passwords of letters no message uses (Greek), with ':' and the other characters an entry
# may hold, so a message that quoted any part of a password would show it.
SECRET_TEXT = st.text(
    alphabet=st.sampled_from("αβγδ:;$=/+ !\"'"), min_size=1, max_size=24
).filter(lambda s: s == s.strip())
USER_NAMES = st.from_regex(r"[A-Za-z0-9_.@\-]{1,16}", fullmatch=True)


@given(
    st.lists(st.tuples(USER_NAMES, SECRET_TEXT, st.sampled_from([None, *Role])), min_size=1,
             max_size=5, unique_by=lambda u: u[0]),
    st.sampled_from([",", "\n", " , "]),
)
def test_written_users_parse_back_exactly(
    written: list[tuple[str, str, Role | None]], separator: str
) -> None:
    """The documented way to write an entry (role required when the password holds ':')
    gives back each user, password and role."""
    entries = [
        f"{name}:{password}" + (f":{(role or Role.ADMIN).value}" if role or ":" in password
                                else "")
        for name, password, role in written
    ]

    users = parse_users(separator.join(entries))

    assert users == tuple(WebUser(n, p, r or Role.ADMIN) for n, p, r in written)


@given(USER_NAMES, SECRET_TEXT)
def test_any_entry_parses_as_written_or_fails_without_quoting_the_password(
    name: str, rest: str
) -> None:
    """`name:<anything>` is a user whose role is the exact text after the last ':' (or admin
    when there is none) or one line naming the entry, never a word of the password."""
    try:
        (user,) = parse_users(f"{name}:{rest}")
    except InvalidField as refused:
        message = str(refused)
        assert refused.field == "FSS_WEB_USERS"
        assert not any(ch in message for ch in "αβγδ"), message
        assert "\n" not in message
        assert f"user {name!r}" in message
        password, colon, role = rest.rpartition(":")
        assert colon and (role not in ("admin", "viewer") or not password)
        return
    password, colon, role = rest.rpartition(":")
    if colon:
        assert (user.secret, user.role.value) == (password, role)
    else:
        assert (user.secret, user.role) == (rest, Role.ADMIN)


def test_hashes_verify_only_their_password_and_malformed_ones_never() -> None:
    hashed = hash_password("right")

    assert "," not in hashed  # FSS_WEB_USERS splits entries on commas
    assert password_matches(hashed, "right")
    assert not password_matches(hashed, "wrong")
    assert not password_matches("$scrypt$garbage", "right")
    assert not password_matches(hashed[:-4], "right")
    assert hash_password("right") != hashed  # salted


def test_a_hashed_user_logs_in_with_basic_and_repeated_checks_are_cached(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []

    def counted(secret: str, password: str) -> bool:
        checks.append(password)
        return password_matches(secret, password)

    monkeypatch.setattr("fss.web.auth.password_matches", counted)
    web = WebSettings(users=(WebUser("alice", hash_password("s3cret")),))
    with TestClient(probe_app(db_url, web)) as client:
        answers = [
            client.get("/api/v1/_probe", headers=basic("alice", "s3cret")).status_code
            for _ in range(5)
        ]
        wrong = client.get("/api/v1/_probe", headers=basic("alice", "s3cre"))

    assert answers == [200] * 5
    assert wrong.status_code == 401
    # scrypt costs ~50 ms: the right password is checked once, then remembered.
    assert checks == ["s3cret", "s3cre"]


# ---- Basic and Bearer ----------------------------------------------------------------------


def test_basic_with_a_user_and_bearer_with_the_token_are_let_in(client: TestClient) -> None:
    admin = client.get("/api/v1/_probe", headers=basic("admin", "pw"))
    viewer = client.get("/api/v1/_probe", headers=basic("viewer", "pw2"))
    token = client.post("/api/v1/_probe", headers={"Authorization": f"Bearer {TOKEN}"})

    assert admin.json() == {"name": "admin", "method": "basic"}
    assert viewer.json() == {"name": "viewer", "method": "basic"}
    assert token.json() == {"name": "token", "method": "token"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("admin", "wrong"),
        basic("nobody", "pw"),
        {"Authorization": "Basic not-base64!!"},
        {"Authorization": "Bearer wrong-token-of-20-chars"},
        {"Authorization": "Digest abc"},
    ],
)
def test_without_valid_credentials_the_api_answers_401_json(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = client.get("/api/v1/_probe", headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="fss"'
    assert response.json()["error"].startswith("authentication required")


def test_a_page_without_credentials_redirects_to_the_login_form(client: TestClient) -> None:
    response = client.get("/_page?x=1", headers={"Accept": "text/html"}, follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/_page%3Fx%3D1"


# ---- session cookies -----------------------------------------------------------------------


def test_the_login_form_sets_a_session_cookie_and_a_wrong_password_does_not(
    client: TestClient, clock: ManualClock
) -> None:
    refused = client.post("/login", data={"username": "admin", "password": "nope"})
    assert refused.status_code == 401
    assert "Wrong user name or password." in refused.text
    assert SESSION_COOKIE not in client.cookies

    log_in(client, "admin", "pw")
    captured = client.cookies[SESSION_COOKIE]
    logout = client.post("/logout", follow_redirects=False)

    assert logout.status_code == 303
    assert client.get("/api/v1/_probe").status_code == 401
    # The session ended on the server: a copy of the cookie taken before is refused too.
    client.cookies.set(SESSION_COOKIE, captured)
    assert client.get("/api/v1/_probe").status_code == 401


def test_login_never_redirects_to_another_site(client: TestClient) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = client.post(
            "/login", data={"username": "admin", "password": "pw", "next": target},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/", target


def test_an_expired_session_is_refused(
    web: WebSettings, client: TestClient, clock: ManualClock
) -> None:
    log_in(client, "admin", "pw")

    clock.advance(timedelta(seconds=web.session_max_age_s - 1))
    assert client.get("/api/v1/_probe").status_code == 200
    clock.advance(timedelta(seconds=1))
    assert client.get("/api/v1/_probe").status_code == 401


def test_a_tampered_or_foreign_cookie_is_refused(
    client: TestClient, db_url: str, clock: ManualClock
) -> None:
    log_in(client, "viewer", "pw2")
    token, _, name = client.cookies[SESSION_COOKIE].partition(".")
    assert name == "viewer"
    with TestClient(probe_app(db_url, WebSettings(users=parse_users("admin:other")), clock)) as b:
        log_in(b, "admin", "other")
        foreign = b.cookies[SESSION_COOKIE]

    for cookie in (f"{token}.admin", f"{token[:-2]}xx.viewer", foreign, "garbage", token):
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, cookie)
        assert client.get("/api/v1/_probe").status_code == 401, cookie


def test_replicas_with_the_same_users_share_sessions_and_logouts(
    client: TestClient, db_url: str, clock: ManualClock
) -> None:
    log_in(client, "admin", "pw")
    cookie = client.cookies[SESSION_COOKIE]
    with TestClient(probe_app(db_url, WebSettings(users=parse_users(USERS)), clock)) as b:
        b.cookies.set(SESSION_COOKIE, cookie)
        assert b.get("/api/v1/_probe").json()["name"] == "admin"
        assert b.post("/logout", follow_redirects=False).status_code == 303

    assert client.get("/api/v1/_probe").status_code == 401


# ---- CSRF and cross-site requests ----------------------------------------------------------


def test_a_cookie_write_needs_the_sessions_csrf_token(client: TestClient) -> None:
    csrf = log_in(client, "admin", "pw")

    missing = client.post("/api/v1/_probe")
    wrong = client.post("/api/v1/_probe", headers={"X-CSRF-Token": "x" + csrf})
    header = client.post("/api/v1/_probe", headers={"X-CSRF-Token": csrf})
    form = client.post("/api/v1/_probe", data={"csrf_token": csrf})

    assert missing.status_code == 403
    assert missing.json()["error"].startswith("csrf_token: ")
    assert wrong.status_code == 403
    assert header.status_code == 200
    assert form.status_code == 200


def test_basic_writes_need_no_csrf_token_but_cross_site_ones_are_refused(
    client: TestClient,
) -> None:
    admin = basic("admin", "pw")
    plain = client.post("/api/v1/_probe", headers=admin)
    same_origin = client.post("/api/v1/_probe", headers={**admin, "Origin": "http://testserver"})
    other_origin = client.post("/api/v1/_probe", headers={**admin, "Origin": "https://evil.example"})
    fetch_site = client.post("/api/v1/_probe", headers={**admin, "Sec-Fetch-Site": "cross-site"})
    login = client.post(
        "/login", data={"username": "admin", "password": "pw"},
        headers={"Origin": "https://evil.example"},
    )

    assert plain.status_code == 200
    assert same_origin.status_code == 200
    assert other_origin.status_code == 403
    assert "evil.example" in other_origin.json()["error"]
    assert fetch_site.status_code == 403
    assert login.status_code == 403
    assert SESSION_COOKIE not in client.cookies


# ---- roles and --no-auth -------------------------------------------------------------------


def test_a_viewer_reads_but_is_refused_every_write(client: TestClient) -> None:
    viewer = basic("viewer", "pw2")

    assert client.get("/api/v1/_probe", headers=viewer).status_code == 200
    refused = client.post("/api/v1/_probe", headers=viewer)
    assert refused.status_code == 403
    assert refused.json() == {"error": "user 'viewer' is a viewer and cannot change anything",
                              "code": "viewer", "params": {"user": "viewer"}}


def test_no_auth_lets_anyone_in_as_admin(db_url: str) -> None:
    with TestClient(probe_app(db_url, WebSettings(no_auth=True))) as client:
        response = client.post("/api/v1/_probe")

    assert response.json() == {"name": "anonymous", "method": "anonymous"}


def test_on_the_real_api_a_viewer_changes_nothing_and_anonymous_sees_nothing(
    web_db: Any, clock: Any, viewer_client: TestClient, anon_client: TestClient
) -> None:
    group_id = add_group(web_db.engine, clock.now())
    before = counts(web_db.engine)

    writes = [
        viewer_client.post("/api/v1/groups", json={"caption": "x", "job_name": "j",
                                                   "interval_ms": 1000}),
        viewer_client.patch(f"/api/v1/groups/{group_id}", json={"caption": "y"}),
        viewer_client.delete(f"/api/v1/groups/{group_id}"),
        viewer_client.post(f"/api/v1/groups/{group_id}/run"),
        viewer_client.post(f"/api/v1/groups/{group_id}/disable"),
    ]
    reads = [anon_client.get(path) for path in ("/api/v1/groups", f"/api/v1/groups/{group_id}",
                                                "/api/v1/tasks", "/metrics")]

    assert [r.status_code for r in writes] == [403] * len(writes)
    assert [r.status_code for r in reads] == [401] * len(reads)
    assert counts(web_db.engine) == before
    assert viewer_client.get(f"/api/v1/groups/{group_id}").json()["caption"] == "every minute"
