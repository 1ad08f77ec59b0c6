"""With the broker down, the pages' API calls and /metrics answer at once: one connection
attempt (no kombu retry interval), and the failure is held for a few seconds so the page
views and scrapes of that time do not ask again. The API says why; /metrics says
fss_broker_up 0. Everything runs against a real unreachable address and a real Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from web_helpers import ADMIN, TOKEN, WebDatabase, basic

from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.naming import EVENTS_QUEUE
from fss.queue_depths import FAILURE_HOLD_S, QueueDepths, describe
from fss.web import create_web_app
from fss.web.config import WebSettings, parse_users

DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once
# Before: each call waited kombu's 2 s retry interval (2.0-2.1 s measured per call).
FAST_S = 1.5


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failure_is_held_so_calls_within_the_hold_never_connect() -> None:
    ticks = Ticks()
    depths = QueueDepths(DOWN, monotonic=ticks)

    started = time.monotonic()
    first = depths.depths([EVENTS_QUEUE, "fss.client.a"])
    assert time.monotonic() - started < FAST_S
    assert first == {EVENTS_QUEUE: None, "fss.client.a": None}
    assert depths.connect_attempts == 1
    assert depths.problem is not None and "127.0.0.1:1" in depths.problem
    assert depths.state() == {"reachable": False, "error": depths.problem}

    for step in range(10):  # page views and scrapes within the hold, new queue names too
        ticks.now += (FAILURE_HOLD_S - 0.1) / 10
        assert depths.depths([EVENTS_QUEUE, f"fss.client.{step}"])[EVENTS_QUEUE] is None
    assert depths.connect_attempts == 1

    ticks.now += 0.2  # the hold is over: ask again
    depths.depths([EVENTS_QUEUE])
    assert depths.connect_attempts == 2
    depths.close()


def test_a_reachable_broker_reports_no_problem(fresh_redis_url: Callable[[], str]) -> None:
    depths = QueueDepths(fresh_redis_url())
    assert depths.depths([EVENTS_QUEUE]) == {EVENTS_QUEUE: 0}
    assert depths.state() == {"reachable": True, "error": None}
    depths.close()


def test_the_reason_never_shows_a_password() -> None:
    error = ConnectionError("cannot reach amqp://fss:s3cret@rabbit:5672//\nmore")
    assert describe(error) == "cannot reach amqp://fss:***@rabbit:5672//"


@pytest.fixture
def down_client(web_db: WebDatabase, clock: ManualClock) -> Iterator[TestClient]:
    settings = Settings(database_url=web_db.url, broker_url=DOWN)
    web = WebSettings(users=parse_users("admin:pw"))
    with TestClient(create_web_app(settings, web, clock), headers=basic(ADMIN)) as client:
        yield client


def broker_seconds(client: TestClient) -> list[float]:
    """The time each call spent asking the broker (QueueDepths._count, the only code that
    connects), collected from the app's real QueueDepths. A request's whole time also holds
    its SQL, which a loaded test host stretched past 2 s once (/metrics, 0.13 s when idle)."""
    depths = client.app.state.context.queue_depths  # type: ignore[attr-defined]
    spent: list[float] = []
    count = depths._count

    def timed(*args: object) -> object:
        started = time.monotonic()
        try:
            return count(*args)
        finally:
            spent.append(time.monotonic() - started)

    depths._count = timed
    return spent


@pytest.mark.parametrize("web_db", ["sqlite"], indirect=True)
def test_overview_clients_and_metrics_answer_fast_and_say_why(down_client: TestClient) -> None:
    asked = broker_seconds(down_client)
    answers = {}
    for path in ["/api/v1/overview", "/metrics", "/api/v1/clients", "/api/v1/overview",
                 "/metrics"]:
        answers[path] = down_client.get(path)
        assert answers[path].status_code == 200, answers[path].text

    assert len(asked) == 1 and asked[0] < FAST_S, asked  # one attempt, no retry interval
    context = down_client.app.state.context  # type: ignore[attr-defined]
    assert context.queue_depths.connect_attempts == 1
    overview = answers["/api/v1/overview"].json()
    assert overview["event_queue_depth"] is None
    assert overview["broker"]["reachable"] is False
    assert "127.0.0.1:1" in overview["broker"]["error"]
    assert answers["/api/v1/clients"].json()["broker"] == overview["broker"]
    assert "fss_broker_up 0.0" in answers["/metrics"].text.splitlines()


# ---- the health glance (the overview's banner) ------------------------------------------------


@pytest.mark.parametrize("web_db", ["sqlite"], indirect=True)
def test_the_glance_names_the_broker_fast_and_asks_it_once(down_client: TestClient) -> None:
    asked = broker_seconds(down_client)
    for _ in range(3):
        response = down_client.get("/api/v1/health/glance")
        assert response.status_code == 200, response.text
        broker = [p for p in response.json()["problems"] if p["check"] == "broker"]
        assert len(broker) == 1 and "127.0.0.1:1" in broker[0]["detail"]
        assert broker[0]["level"] == "fail" and response.json()["healthy"] is False
    assert len(asked) == 1 and asked[0] < FAST_S, asked
    context = down_client.app.state.context  # type: ignore[attr-defined]
    assert context.queue_depths.connect_attempts == 1


DATABASE_DOWN = "postgresql://postgres@127.0.0.1:1/fss"  # nothing listens on port 1


def test_with_the_database_down_the_glance_says_so_and_the_api_answers_fast(
    clock: ManualClock,
) -> None:
    """A token needs no database to be checked: the glance answers 200 naming it. A login
    (Basic, a session) does: those requests get a fast 503 saying so, which the overview's
    banner shows as the database problem."""
    settings = Settings(database_url=DATABASE_DOWN, broker_url="memory://")
    web = WebSettings(users=parse_users("admin:pw"), token=TOKEN)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_web_app(settings, web, clock), headers=basic(ADMIN)) as client:
        for _ in range(3):
            started = time.monotonic()
            glance = client.get("/api/v1/health/glance", headers=bearer)
            overview = client.get("/api/v1/overview")
            assert time.monotonic() - started < FAST_S
            assert glance.status_code == 200, glance.text
            problems = glance.json()["problems"]
            assert [p["check"] for p in problems] == ["database"]
            assert problems[0]["detail"].startswith("database: unreachable (")
            assert overview.status_code == 503
            assert overview.json()["error"].startswith("database unavailable: ")
