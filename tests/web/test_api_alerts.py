"""/api/v1/alerts, /api/v1/alert-targets and a group's silence on the real web app and
database (SQLite and PostgreSQL): what viewers and admins may do, CSRF, bad input answered
in one line naming the field, secrets never in an answer, and a target test against a real
local HTTP receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from probe import log_in, probe_app
from web_helpers import T0, TOKEN, WebDatabase, add_group

from fss.domain.alert_targets import TargetSpec
from fss.domain.clock import ManualClock
from fss.store import alert_targets
from fss.store.tables import (
    alert,
    alert_attempt,
    alert_delivery,
    alert_notice,
    alert_silence,
    alert_target,
    inserted_id,
)
from fss.web.config import WebSettings

SECRET = "whsec-do-not-show-0123"
URL_TOKEN = "tok-in-the-path-4567"


# ---- arranging rows ----------------------------------------------------------------------


def add_alert(engine: sa.Engine, *, rule: str = "run_failed", group_id: int | None = None,
              title: str = "run failed", state: str = "open", at: datetime = T0,
              acked_by: str | None = None) -> int:
    subject = f"group:{group_id}" if group_id is not None else "client:w1"
    values: dict[str, Any] = {
        "rule": rule, "subject": subject, "state": state, "task_group_id": group_id,
        "title": title, "detail": "Traceback ...\nValueError: boom", "count": 2,
        "opened_at": at, "last_at": at + timedelta(seconds=5), "notified_at": at,
        "open_key": f"{rule}|{subject}|{title}" if state == "open" else None,
        "resolved_at": at + timedelta(minutes=1) if state == "resolved" else None,
        "resolved_note": "the group succeeded again" if state == "resolved" else None,
        "acked_by": acked_by, "acked_at": at if acked_by else None,
    }
    with engine.begin() as conn:
        return inserted_id(conn.execute(alert.insert().values(**values)))


def add_target(engine: sa.Engine, name: str = "ops", url: str = "http://127.0.0.1:9/hook",
               **config: Any) -> int:
    spec = TargetSpec(name, "webhook", {"url": url, **config}).validated()
    return alert_targets.add_target(engine, spec, T0).id


def add_delivery(engine: sa.Engine, alert_id: int, target_id: int, target_name: str,
                 outcomes: list[tuple[str, int | None, str | None, str | None]]) -> int:
    """A firing notice of the alert, its delivery to the target, one attempt per outcome
    (outcome, HTTP status, answer, error)."""
    with engine.begin() as conn:
        notice_id = inserted_id(conn.execute(alert_notice.insert().values(
            alert_id=alert_id, kind="firing", created_at=T0, expanded_at=T0)))
        state = "sent" if outcomes and outcomes[-1][0] == "sent" else "failed"
        delivery_id = inserted_id(conn.execute(alert_delivery.insert().values(
            notice_id=notice_id, target_id=target_id, target_name=target_name, state=state,
            attempts=len(outcomes), created_at=T0, last_error=None,
            idempotency_key=f"n{notice_id}-t{target_id}")))
        for index, (outcome, status, answer, error) in enumerate(outcomes):
            conn.execute(alert_attempt.insert().values(
                delivery_id=delivery_id, target_name=target_name,
                at=T0 + timedelta(seconds=index), outcome=outcome, status_code=status,
                answer=answer, error=error, duration_ms=12 + index, node="node-a"))
    return delivery_id


def alert_row(engine: sa.Engine, alert_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(alert).where(alert.c.id == alert_id)).one()


def silences(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(alert_silence)))


def target_names(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(alert_target.c.name)).scalars())


def one_line_error(response: Any, status: int, field: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    if field is not None:
        assert body.get("field") == field, body
    return str(body["error"])


# ---- a real receiver ---------------------------------------------------------------------


class Receiver:
    """A local HTTP server answering every POST with `status` and `answer`; keeps what it got."""

    def __init__(self) -> None:
        self.status = 200
        self.answer = "thanks"
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.received.append(
                    (self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                data = receiver.answer.encode()
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{URL_TOKEN}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


# ---- alerts ------------------------------------------------------------------------------


def test_alerts_list_newest_first_filtered_and_paged(
    viewer_client: TestClient, web_db: WebDatabase
) -> None:
    group_id = add_group(web_db.engine, T0, caption="nightly <b>report</b>")
    old = add_alert(web_db.engine, group_id=group_id, state="resolved", title="first failure")
    late = add_alert(web_db.engine, rule="group_late", group_id=group_id, title="late")
    lost = add_alert(web_db.engine, rule="client_lost", title="client w1 lost")

    everything = viewer_client.get("/api/v1/alerts").json()
    assert [a["id"] for a in everything["items"]] == [lost, late, old]
    assert everything["next_before"] is None
    first = everything["items"][1]
    assert first["task_group_id"] == group_id and first["group_caption"] == "nightly <b>report</b>"
    assert first["state"] == "open" and first["count"] == 2 and first["acked_by"] is None

    def ids(query: str) -> list[int]:
        response = viewer_client.get(f"/api/v1/alerts?{query}")
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()["items"]]

    assert ids("state=open") == [lost, late]
    assert ids("state=resolved") == [old]
    assert ids("state=all&rule=group_late") == [late]
    assert ids(f"group={group_id}") == [late, old]
    page = viewer_client.get("/api/v1/alerts?limit=2").json()
    assert [a["id"] for a in page["items"]] == [lost, late] and page["next_before"] == late
    assert ids(f"limit=2&before={page['next_before']}") == [old]


def test_alerts_list_refuses_bad_filters_naming_them(
    viewer_client: TestClient, anon_client: TestClient
) -> None:
    assert "unknown rule" in one_line_error(
        viewer_client.get("/api/v1/alerts?rule=nope"), 422, "rule")
    one_line_error(viewer_client.get("/api/v1/alerts?state=closed"), 422, "state")
    one_line_error(viewer_client.get("/api/v1/alerts?limit=0"), 422, "limit")
    one_line_error(viewer_client.get("/api/v1/alerts?before=x"), 422, "before")
    one_line_error(viewer_client.get(f"/api/v1/alerts?group={2**63}"), 422, "group")
    assert anon_client.get("/api/v1/alerts").status_code == 401


def test_one_alert_with_its_notices_deliveries_and_every_attempt(
    viewer_client: TestClient, web_db: WebDatabase
) -> None:
    alert_id = add_alert(web_db.engine, title="run failed: <script>alert(1)</script>")
    target_id = add_target(web_db.engine)
    delivery_id = add_delivery(web_db.engine, alert_id, target_id, "ops", [
        ("failed", 500, "upstream broke", None),
        ("failed", None, None, "no answer within 5 s"),
        ("sent", 200, "ok", None),
    ])
    body = viewer_client.get(f"/api/v1/alerts/{alert_id}").json()
    assert body["alert"]["title"] == "run failed: <script>alert(1)</script>"
    assert [n["kind"] for n in body["notices"]] == ["firing"]
    [delivery] = body["deliveries"]
    assert delivery["id"] == delivery_id and delivery["state"] == "sent"
    assert delivery["notice_kind"] == "firing" and delivery["attempt_count"] == 3
    assert [(a["outcome"], a["status_code"], a["answer"], a["error"], a["node"])
            for a in delivery["attempts"]] == [
        ("failed", 500, "upstream broke", None, "node-a"),
        ("failed", None, None, "no answer within 5 s", "node-a"),
        ("sent", 200, "ok", None, "node-a"),
    ]
    assert "alert 987654 does not exist" in one_line_error(
        viewer_client.get("/api/v1/alerts/987654"), 404)
    one_line_error(viewer_client.get("/api/v1/alerts/0"), 422, "alert_id")


def test_only_an_admin_acknowledges_and_the_first_acknowledgement_stays(
    admin_client: TestClient, viewer_client: TestClient, anon_client: TestClient,
    web_db: WebDatabase,
) -> None:
    alert_id = add_alert(web_db.engine)
    assert viewer_client.post(f"/api/v1/alerts/{alert_id}/ack").status_code == 403
    assert anon_client.post(f"/api/v1/alerts/{alert_id}/ack").status_code == 401
    assert alert_row(web_db.engine, alert_id).acked_by is None

    response = admin_client.post(f"/api/v1/alerts/{alert_id}/ack")
    assert response.status_code == 200, response.text
    assert response.json()["alert"]["acked_by"] == "admin"
    assert response.json()["alert"]["acked_at"] == T0.isoformat()
    with TestClient(admin_client.app, headers={"Authorization": f"Bearer {TOKEN}"}) as token:
        again = token.post(f"/api/v1/alerts/{alert_id}/ack")
    assert again.json()["alert"]["acked_by"] == "admin"  # not "token": the first one stays


def test_acknowledging_a_resolved_or_missing_alert_is_refused(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    resolved = add_alert(web_db.engine, state="resolved")
    assert "nothing to acknowledge" in one_line_error(
        admin_client.post(f"/api/v1/alerts/{resolved}/ack"), 409)
    assert alert_row(web_db.engine, resolved).acked_by is None
    one_line_error(admin_client.post("/api/v1/alerts/987654/ack"), 404)


def test_session_writes_need_the_csrf_token(
    web_db: WebDatabase, web_settings: WebSettings, clock: ManualClock
) -> None:
    alert_id = add_alert(web_db.engine)
    group_id = add_group(web_db.engine, T0)
    with TestClient(probe_app(web_db.url, web_settings, clock)) as client:
        csrf = log_in(client, "admin", "pw")
        refused = [
            client.post(f"/api/v1/alerts/{alert_id}/ack"),
            client.post(f"/api/v1/groups/{group_id}/silence", json={"for_s": 60}),
            client.post("/api/v1/alert-targets", json={"name": "x", "kind": "slack",
                                                        "url": "https://hooks.example/x"}),
            client.post(f"/api/v1/alerts/{alert_id}/ack", headers={"X-CSRF-Token": csrf + "x"}),
        ]
        assert all(r.status_code == 403 for r in refused)
        assert refused[0].json()["error"].startswith("csrf_token: ")
        assert alert_row(web_db.engine, alert_id).acked_by is None
        assert silences(web_db.engine) == [] and target_names(web_db.engine) == []
        headers = {"X-CSRF-Token": csrf}
        assert client.post(f"/api/v1/alerts/{alert_id}/ack", headers=headers).status_code == 200
        cross = client.delete(f"/api/v1/groups/{group_id}/silence",
                              headers={**headers, "Origin": "http://evil.example"})
        assert cross.status_code == 403


# ---- silences ----------------------------------------------------------------------------


def test_an_admin_silences_a_group_for_a_time_and_lifts_it(
    admin_client: TestClient, viewer_client: TestClient, web_db: WebDatabase
) -> None:
    group_id = add_group(web_db.engine, T0, caption="backup")
    response = admin_client.post(f"/api/v1/groups/{group_id}/silence",
                                 json={"for_s": 4 * 3600, "note": "  disk swap  "})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["task_group_id"] == group_id and body["by_user"] == "admin"
    assert body["until"] == (T0 + timedelta(hours=4)).isoformat() and body["note"] == "disk swap"
    listed = viewer_client.get("/api/v1/alert-silences").json()["items"]
    assert [(s["task_group_id"], s["group_caption"]) for s in listed] == [(group_id, "backup")]

    until = (T0 + timedelta(days=2)).isoformat()
    again = admin_client.post(f"/api/v1/groups/{group_id}/silence", json={"until": until})
    assert again.json()["until"] == until and again.json()["note"] is None
    assert len(silences(web_db.engine)) == 1

    assert viewer_client.delete(f"/api/v1/groups/{group_id}/silence").status_code == 403
    assert admin_client.delete(f"/api/v1/groups/{group_id}/silence").status_code == 204
    assert viewer_client.get("/api/v1/alert-silences").json()["items"] == []
    assert admin_client.delete(f"/api/v1/groups/{group_id}/silence").status_code == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "for_s"),
        ({"for_s": 60, "until": "2031-03-15T00:00:00"}, "for_s"),
        ({"for_s": 0}, "for_s"),
        ({"for_s": 31 * 86400}, "for_s"),
        ({"for_s": "3600"}, "for_s"),
        ({"until": "tomorrow"}, "until"),
        ({"until": "2031-03-14T09:00:00"}, "until"),
        ({"for_s": 60, "note": "x" * 301}, "note"),
        ({"for_s": 60, "snooze": True}, "snooze"),
    ],
)
def test_a_bad_silence_is_refused_naming_the_field(
    admin_client: TestClient, web_db: WebDatabase, body: dict[str, Any], field: str
) -> None:
    group_id = add_group(web_db.engine, T0)
    one_line_error(admin_client.post(f"/api/v1/groups/{group_id}/silence", json=body), 422, field)
    assert silences(web_db.engine) == []


def test_silencing_a_missing_group_or_sending_no_json_is_refused(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    one_line_error(admin_client.post("/api/v1/groups/987654/silence", json={"for_s": 60}), 404)
    group_id = add_group(web_db.engine, T0)
    malformed = admin_client.post(f"/api/v1/groups/{group_id}/silence", content=b'{"for_s": 6',
                                  headers={"Content-Type": "application/json"})
    assert one_line_error(malformed, 422, "body").startswith("body: invalid JSON")
    one_line_error(admin_client.post(f"/api/v1/groups/{group_id}/silence", json=[60]), 422)
    assert silences(web_db.engine) == []


# ---- targets -----------------------------------------------------------------------------


def test_targets_are_listed_without_their_secrets(
    admin_client: TestClient, viewer_client: TestClient, web_db: WebDatabase
) -> None:
    added = admin_client.post("/api/v1/alert-targets", json={
        "name": "ops-hook", "kind": "webhook",
        "config": {"url": f"https://hooks.example/{URL_TOKEN}?k={URL_TOKEN}", "secret": SECRET,
                   "headers": {"Authorization": f"Bearer {SECRET}"}},
        "default": False, "rules": ["run_failed", "group_late"], "rate_per_min": 5,
    })
    assert added.status_code == 201, added.text
    mail = admin_client.post("/api/v1/alert-targets", json={
        "name": "oncall-mail", "kind": "email", "host": "smtp.example.com", "user": "fss",
        "password": SECRET, "from": "fss@example.com", "to": "a@example.com, b@example.com",
    })
    assert mail.status_code == 201, mail.text
    for client in (admin_client, viewer_client):
        response = client.get("/api/v1/alert-targets")
        assert SECRET not in response.text and URL_TOKEN not in response.text
        items = {t["name"]: t for t in response.json()["items"]}
        hook = items["ops-hook"]
        assert (hook["kind"], hook["default"], hook["rules"], hook["rate_per_min"]) == (
            "webhook", False, ["group_late", "run_failed"], 5)
        assert hook["config"] == {"url": "https://hooks.example/***", "secret": "***",
                                  "headers": {"Authorization": "***"}}
        assert items["oncall-mail"]["config"]["to"] == ["a@example.com", "b@example.com"]
        assert items["oncall-mail"]["config"]["password"] == "***"
        assert items["oncall-mail"]["default"] is True
    assert SECRET not in added.text and SECRET not in mail.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "slack", "url": "https://h.example/x"}, "name"),
        ({"name": "a b", "kind": "slack", "url": "https://h.example/x"}, "name"),
        ({"name": "x", "kind": "pager", "url": "https://h.example/x"}, "kind"),
        ({"name": "x", "kind": "slack"}, "url"),
        ({"name": "x", "kind": "slack", "url": "ftp://h.example/x"}, "url"),
        ({"name": "x", "kind": "slack", "url": "https://h.example/x", "secret": "s"}, "secret"),
        ({"name": "x", "kind": "slack", "config": {"url": "https://h.example/x"},
          "url": "https://h.example/y"}, "url"),
        ({"name": "x", "kind": "slack", "config": "https://h.example/x"}, "config"),
        ({"name": "x", "kind": "slack", "config": {"name": "y", "url": "https://h.example/x"}},
         "config.name"),
        ({"name": "x", "kind": "slack", "url": "https://h.example/x", "rules": ["nope"]}, "rules"),
        ({"name": "x", "kind": "slack", "url": "https://h.example/x", "default": "yes"},
         "default"),
        ({"name": "x", "kind": "slack", "url": "https://h.example/x", "rate_per_min": 0},
         "rate_per_min"),
        ({"name": "x", "kind": "slack", "url": "https://h.example/x", "rate_per_min": True},
         "rate_per_min"),
        ({"name": "x", "kind": "email", "host": "smtp.example.com", "from": "not an address",
          "to": "a@example.com"}, "from"),
    ],
)
def test_a_bad_target_is_refused_naming_the_field(
    admin_client: TestClient, web_db: WebDatabase, body: dict[str, Any], field: str
) -> None:
    one_line_error(admin_client.post("/api/v1/alert-targets", json=body), 422, field)
    assert target_names(web_db.engine) == []


def test_a_target_name_is_taken_once_and_bodies_must_be_json_objects(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    body = {"name": "chat", "kind": "wecom", "url": "https://qyapi.example/send?key=k1"}
    assert admin_client.post("/api/v1/alert-targets", json=body).status_code == 201
    assert "already exists" in one_line_error(
        admin_client.post("/api/v1/alert-targets", json=body), 422, "name")
    malformed = admin_client.post("/api/v1/alert-targets", content=b"{name: chat}",
                                  headers={"Content-Type": "application/json"})
    assert one_line_error(malformed, 422, "body").startswith("body: invalid JSON")
    one_line_error(admin_client.post("/api/v1/alert-targets", json=["chat"]), 422)
    assert target_names(web_db.engine) == ["chat"]


def test_only_an_admin_adds_or_removes_a_target(
    admin_client: TestClient, viewer_client: TestClient, web_db: WebDatabase
) -> None:
    body = {"name": "chat", "kind": "slack", "url": "https://hooks.example/T1"}
    assert viewer_client.post("/api/v1/alert-targets", json=body).status_code == 403
    assert target_names(web_db.engine) == []
    add_target(web_db.engine, "chat")
    assert viewer_client.delete("/api/v1/alert-targets/chat").status_code == 403
    assert viewer_client.post("/api/v1/alert-targets/chat/test").status_code == 403
    assert admin_client.delete("/api/v1/alert-targets/chat").status_code == 204
    assert target_names(web_db.engine) == []
    assert "does not exist" in one_line_error(
        admin_client.delete("/api/v1/alert-targets/chat"), 404)


def test_a_target_test_returns_the_receivers_answer(
    admin_client: TestClient, web_db: WebDatabase, receiver: Receiver
) -> None:
    add_target(web_db.engine, "hook", receiver.url, secret=SECRET)
    receiver.answer = '{"received": true}'
    response = admin_client.post("/api/v1/alert-targets/hook/test")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True and body["status_code"] == 200
    assert body["answer"] == '{"received": true}' and body["error"] is None
    assert body["duration_ms"] >= 0
    [(path, headers, sent)] = receiver.received
    assert path == f"/hooks/{URL_TOKEN}" and headers["x-fss-signature"].startswith("t=")
    assert json.loads(sent)["kind"] == "test"

    receiver.status, receiver.answer = 500, f"no route for /hooks/{URL_TOKEN}"
    failed = admin_client.post("/api/v1/alert-targets/hook/test").json()
    assert failed["ok"] is False and failed["status_code"] == 500
    assert failed["answer"] == "no route for ***"  # the receiver echoed the URL's secret path
    one_line_error(admin_client.post("/api/v1/alert-targets/nope/test"), 404)


def test_a_target_nobody_answers_fails_its_test_without_showing_its_url(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    add_target(web_db.engine, "gone", f"http://127.0.0.1:9/hooks/{URL_TOKEN}")
    response = admin_client.post("/api/v1/alert-targets/gone/test")
    body = response.json()
    assert response.status_code == 200 and body["ok"] is False and body["status_code"] is None
    assert body["error"] and URL_TOKEN not in response.text


def test_targets_that_keep_failing_are_named(
    viewer_client: TestClient, web_db: WebDatabase
) -> None:
    alert_id = add_alert(web_db.engine)
    bad = add_target(web_db.engine, "bad")
    good = add_target(web_db.engine, "good")
    add_delivery(web_db.engine, alert_id, bad, "bad", [("failed", 503, "down", None)] * 3)
    add_delivery(web_db.engine, alert_id, good, "good", [("sent", 200, "ok", None)])
    body = viewer_client.get("/api/v1/alert-targets").json()
    assert [t["name"] for t in body["items"]] == ["bad", "good"]
    [failing] = body["failing"]
    assert failing["name"] == "bad" and failing["failures"] == 3
    assert failing["last_error"] == "HTTP 503 down"


# ---- pages -------------------------------------------------------------------------------


def test_the_alert_pages_render_for_a_viewer_without_admin_controls(
    viewer_client: TestClient, admin_client: TestClient, web_db: WebDatabase
) -> None:
    alert_id = add_alert(web_db.engine)
    for path in ("/alerts", f"/alerts/{alert_id}", "/alerts/targets"):
        viewer = viewer_client.get(path, headers={"Accept": "text/html"})
        admin = admin_client.get(path, headers={"Accept": "text/html"})
        assert viewer.status_code == 200 and admin.status_code == 200, path
        assert 'href="/alerts" class="nav-link active"' in viewer.text
        assert 'name="fss-can-change" content="0"' in viewer.text
    assert 'id="target-form"' not in viewer_client.get("/alerts/targets").text
    assert 'id="target-form"' in admin_client.get("/alerts/targets").text
    assert 'id="ack-alert"' in admin_client.get(f"/alerts/{alert_id}").text
    assert 'id="ack-alert"' not in viewer_client.get(f"/alerts/{alert_id}").text
    assert viewer_client.get("/alerts/0", headers={"Accept": "text/html"}).status_code == 422
