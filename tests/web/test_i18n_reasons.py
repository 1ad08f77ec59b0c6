# ruff: noqa: RUF001  (expected Chinese text: full-width punctuation is correct there)
"""What fss itself writes, shown in Chinese (issue 19 item 1): health problems, the reasons a
group cannot run, alert titles and details, a run's errors and run log lines fss wrote.

The cases come from the code's own lists, so a new kind added without a translation fails:
* every health problem code (fss.store.health.PROBLEM_TEXTS) and every sentence fss writes
  into the store (fss.web.i18n.sentences.SENTENCES) has a zh-CN entry with its parameters,
  and a filled instance of each reads as Chinese;
* the modules that write run errors, run log lines and alerts are read (their string and
  f-string literals): a sentence none of SENTENCES covers fails, naming its line;
* every check the glance finds on a real database (SQLite and PostgreSQL), and every alert
  rule (fss.domain.alerts.RULES) raised by the code that raises it, reads as Chinese, and
  the English `detail` / stored text stays as it was.

The browser test (tests/web/browser/test_i18n_reasons_browser.py) checks that FSS.said in
the page gives what said() gives here, and screenshots both pages.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from test_i18n import ALLOWED_WORDS, WORD
from web_helpers import T0, WebDatabase, add_group, register_client

from fss.domain.alerts import RULES, AlertPolicy
from fss.scheduler.health import NodeHealth
from fss.store import alert_checks
from fss.store.alert_console import TargetTrouble
from fss.store.alerts import RunEnd, describe_client, note_run_ends
from fss.store.health import PROBLEM_TEXTS, problem_text
from fss.store.tables import alert, dead_letter, server_node, task_group
from fss.web import i18n
from fss.web.api_glance import database_problem_of, target_problem
from fss.web.i18n.sentences import SENTENCES, match, said

ZH = i18n.catalog(i18n.CHINESE)
REPO = Path(__file__).parents[2]
BACKENDS = pytest.mark.parametrize("web_db", ["sqlite", "postgres"], indirect=True)
_PARAM = re.compile(r"\{(\w+)\}")

# Values the test fills in: names, ids and API values a Chinese page shows as they are.
VALUES = {"w1", "n1", "host1", "gpu", "ops", "admin", "threads", "interrupted", "ValueError",
          "boom", "nightly", "worker", "testclient", "d800", "x",
          "solo", "ud800"}
# Names of protocols, libraries and API values a Chinese sentence keeps: the pool names of
# `fss worker -P`, Python's False, misfire=skip, the gRPC `cancel` and Celery's terminate.
VALUES |= {"terminate", "False", "misfire", "gRPC", "cancel", "kombu", "Broker", "list",
           "RuntimeError"}


def english(text: str, allowed: set[str] = VALUES) -> list[str]:
    """The English words left in a text (product names, units, `commands` and the values
    above aside)."""
    words = WORD.findall(re.sub(r"`[^`]*`", "", text))
    return sorted({w for w in words if w not in ALLOWED_WORDS and w not in allowed
                   and not re.search(r"[_.@-]", w)})


# ---- the lists: every entry translated ---------------------------------------------------


def test_every_sentence_and_problem_text_has_chinese_with_its_parameters() -> None:
    texts = [*SENTENCES, *PROBLEM_TEXTS.values()]
    missing = [t for t in texts if not ZH.get(t, "").strip()]
    assert not missing, missing
    for text in texts:
        assert set(_PARAM.findall(text)) == set(_PARAM.findall(ZH[text])), text
    assert len(set(SENTENCES)) == len(SENTENCES)


# Samples for a sentence's parts: a part that is itself a sentence gets one (translated in
# turn), a value one a page shows as it is.
NESTED = {
    "gone": "client w1 unregistered", "reason": "time limit exceeded after 5 s",
    "where": "shard 2 on w1", "when": "while running", "summary": "failed",
    "why": "its run planned at 2031-03-14 09:00:00 UTC has not been dispatched",
    "seen": "ran on host1 (pid 7), served no jobs; last heartbeat 2031-03-14 09:00:00 UTC",
    "jobs": "unknown jobs", "span": "2 h 5 min", "window": "1 h", "detail": "kill sent",
    "loop": "recorder (task events)", "problem": "data is nested deeper than 9 levels",
}
VALUE_SAMPLES = {"client": "w1", "node": "n1", "host": "host1", "tag": "gpu", "who": "admin",
                 "pool": "threads", "state": "interrupted", "kind": "ValueError",
                 "error": "boom", "said": "boom", "job": "report.build",
                 "group": "nightly (report.build)", "queue": "fss.events", "run": "fss-4-1",
                 "code": "d800", "slot": "09:00:00", "planned": "2031-03-14 09:00:00",
                 "time": "09:01:02", "next": "2031-03-14 09:01:00", "ids": "3, 9",
                 "name": "ops"}


def instance(sentence: str) -> str:
    return _PARAM.sub(lambda m: NESTED.get(m[1]) or VALUE_SAMPLES.get(m[1], "7"), sentence)


@pytest.mark.parametrize("sentence", SENTENCES)
def test_each_sentence_fss_writes_reads_as_chinese(sentence: str) -> None:
    text = instance(sentence)
    assert match(text) is not None, text
    shown = said(i18n.CHINESE, text)
    assert re.search(r"[\u4e00-\u9fff]", shown), (text, shown)
    assert not english(shown), (text, shown, english(shown))
    assert said(i18n.ENGLISH, text) == text


def test_a_jobs_own_text_stays_as_the_job_wrote_it() -> None:
    for text in ("ValueError: boom", "Traceback (most recent call last):\n  x\nKeyError: 'a'",
                 "connection refused by the upstream API", "", "timed out; will retry"):
        assert said(i18n.CHINESE, text) == text
    # fss's words around a job's own: translated around it, the job's part as it was.
    shown = said(i18n.CHINESE, "attempt 2 failed: KeyError: 'a'; retry 1 of 3 in 5 s")
    assert shown == "第 2 次尝试失败：KeyError: 'a'；5 秒后进行第 1/3 次重试", shown


# ---- the writers: every sentence they write is one of SENTENCES --------------------------

# The modules that write run errors, run log lines, alerts and dead-letter reasons.
WRITERS = [
    "fss/scheduler/supervisor.py", "fss/scheduler/dispatcher.py", "fss/scheduler/health.py",
    "fss/scheduler/recorder.py", "fss/store/supervision.py", "fss/store/retries.py",
    "fss/store/shards.py", "fss/store/tasks.py", "fss/store/alerts.py",
    "fss/store/clients.py",
    "fss/store/alert_checks.py", "fss/kills.py", "fss/bridge/hooks.py",
    "fss/bridge/session.py", "fss/bridge/client.py", "fss/worker_sdk/runtime.py",
    "fss/worker_sdk/context.py", "fss/domain/overlap.py", "fss/domain/retry.py",
]
# Literals of those modules that are not stored texts the console shows: names of loops
# and locks in process logs, answers of the CLI and the gRPC stream, SQL, help texts.
NOT_SHOWN = {
    "due tasks wait", "supervision waits", "queues of removed clients are deleted later",
    "events wait in the queue; reconnecting", "unreadable item on the queue: {}",
    "not a kombu message", "event of installation {}, this database is installation {}",
    "undecodable {} body: {}", "task {} attempt {}", "{} was sent to client {}; dropped",
    "{} runs job {}, which this client did not register", "{} expired at {}; dropped",
    "the call ended", "the client closed the stream", "another session registered as {}",
    "{} already runs on this client; shard {} dropped", "no message from the client for {} ms",
    "the session ended", "; {} unfinished order(s) failed", "; a newer session holds the name",
    "the client went away", "bridge error: {}", "the session with the bridge ended",
    "the bridge refused the client: {}: {}", "kicked by the bridge: {}",
    "python -m fss.bridge.client", "Serve the echo job through an fss bridge.", "client id",
    "job name served by echo", "file holding the bridge's token", "malformed order: {}: {}",
    "<celery task id> <reason>", "<JobContext task={} attempt={} job={}>",
    "<BridgeJobContext task={} attempt={} job={}>", "recorder (task events)",
    "unknown error", "Not started", "bool | None", "client {} is not registered",
    "%(asctime)s %(levelname)s %(name)s: %(message)s", "FORCE INDEX (PRIMARY)",
}


def _template(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else "{}"
                       for v in node.values)
    return None


def writer_literals(path: Path) -> Iterator[tuple[int, str]]:
    """(line, template with {} for each expression) of each string and f-string that reads
    like a sentence, but docstrings, SQL, process log formats and raised exceptions'; the
    run log formats of a job's context.log (fss writes them into the run log) are kept."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skip.add(id(body[0].value))
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            skip.update(id(a) for a in node.exc.args)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = ast.unparse(node.func.value)
            if (node.func.attr in ("debug", "info", "warning", "error", "exception")
                    and re.search(r"(^|\.)(log|logger)$", target)
                    and not target.endswith("context.log")):
                skip.update(id(a) for a in node.args)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        text = _template(node)
        if text is None or " " not in text or len(re.findall(r"[A-Za-z]{2,}", text)) < 2:
            continue
        if re.search(r"\b(SELECT|UPDATE|INSERT|CAST|local)\b", text):
            continue
        text = re.sub(r"%[srd]|%g|%\.\d?f", "{}", text).replace("{{", "{")
        yield getattr(node, "lineno", 0), text


def test_every_sentence_the_writers_write_is_translated() -> None:
    """A sentence added to a writer (or reworded there) without its entry in SENTENCES
    fails here: each literal part of it must be part of a sentence fss translates."""
    known = [part for s in [*SENTENCES, *PROBLEM_TEXTS.values()] for part in _PARAM.split(s)[::2]]
    missing = []
    seen = 0
    for name in WRITERS:
        for line, text in writer_literals(REPO / name):
            seen += 1
            normal = re.sub(r"\{[^}]*\}", "{}", text)
            if normal in NOT_SHOWN:
                continue
            for fragment in normal.split("{}"):
                if re.search(r"[A-Za-z]{2,}", fragment) and not any(fragment in k for k in known):
                    missing.append(f"{name}:{line}: {normal!r} ({fragment!r})")
                    break
    assert seen > 100  # the scan reads the writers (not an empty list passing by itself)
    assert not missing, "\n".join(missing)


# ---- health problems and reasons a group cannot run, on a real database ------------------


def glance_problems(admin_client: TestClient) -> list[dict[str, Any]]:
    body = admin_client.get("/api/v1/health/glance").json()
    return list(body["problems"])


@BACKENDS
def test_every_health_problem_in_chinese(web_db: WebDatabase, admin_client: TestClient) -> None:
    engine = web_db.engine
    late = add_group(engine, T0 - timedelta(hours=3), caption="nightly", job_name="x.job")
    add_group(engine, T0, caption="tagged", job_name="y.job", client_tag="gpu")
    add_group(engine, T0, caption="tagged2", job_name="y.job", client_tag="gpu")
    health = NodeHealth(lambda: 100.0)
    tracker = health.tracker("claim loop", 5)
    tracker.failed(RuntimeError("boom"))
    with engine.begin() as conn:
        conn.execute(task_group.update().where(task_group.c.id == late).values(
            next_at=T0 - timedelta(hours=3)))
        conn.execute(dead_letter.insert().values(
            queue="fss.events", reason="undecodable kombu message: boom", body="x",
            received_at=T0))
    found: dict[str, dict[str, Any]] = {p["code"]: p for p in glance_problems(admin_client)}
    assert "scheduler" in found  # no node yet
    with engine.begin() as conn:
        conn.execute(server_node.insert().values(
            id="n1", host="host1", pid=7, is_alive=True, heartbeat_at=T0, started_at=T0,
            unhealthy_reason=health.reason()))
    found.update({p["code"]: p for p in glance_problems(admin_client)})
    problems = list(found.values())
    # The ones a test database cannot have: from the same code with the values it reads.
    problems += [p.to_json() for p in (
        database_problem_of("database: unreachable (boom)"),
        database_problem_of("database: at revision 0011, needs 0014 (run `fss db upgrade`)"),
        database_problem_of("database: boom"),
        target_problem(TargetTrouble("ops", 3, "HTTP 500 boom", T0, gave_up=2)),
        target_problem(TargetTrouble("ops", 1, None, T0, gave_up=1)),
    )]
    from fss.store.health import Problem
    problems.append(Problem("broker", "fail", "broker", {"error": "boom"}).to_json())
    for trouble in (TargetTrouble("ops", 3, "HTTP 500 boom", T0, gave_up=2),
                    TargetTrouble("ops", 1, None, T0, gave_up=1)):
        assert target_problem(trouble).detail == trouble.describe()  # English as before
    codes = {p["code"] for p in problems}
    for p in problems:
        codes.update(v["code"] for v in p["params"].values() if isinstance(v, dict))
    # Every kind glance can report, and each of its parts, is among the cases.
    covered = codes | {"job_unserved", "job_unserved_one", "job_unserved_tag_one",
                       "group_late", "group_late_more", "dead_letters", "failed_attempts",
                       "given_up", "unserved", "unserved_tag", "late"}
    assert set(PROBLEM_TEXTS) <= covered, set(PROBLEM_TEXTS) - covered
    for p in problems:
        assert p["detail"] == problem_text(p["code"], p["params"])
        shown = i18n.problem_text(i18n.CHINESE, p["code"], p["params"])
        assert re.search(r"[\u4e00-\u9fff]", shown), shown
        assert not english(shown), (p, shown)
    for code, text in PROBLEM_TEXTS.items():  # the ones above by their texts alone
        filled = _PARAM.sub(lambda m: NESTED.get(m[1]) or VALUE_SAMPLES.get(m[1], "7"), text)
        params = {n: (NESTED.get(n) or VALUE_SAMPLES.get(n, "7")) for n in _PARAM.findall(text)}
        shown = i18n.problem_text(i18n.CHINESE, code, params)
        assert not english(shown), (code, filled, shown)


@BACKENDS
def test_a_group_that_cannot_run_says_why_in_chinese(web_db: WebDatabase,
                                                    admin_client: TestClient) -> None:
    engine = web_db.engine
    plain = add_group(engine, T0 - timedelta(hours=3), caption="nightly", job_name="x.job")
    tagged = add_group(engine, T0, caption="tagged", job_name="x.job", client_tag="gpu")
    with engine.begin() as conn:
        conn.execute(task_group.update().where(task_group.c.id == plain).values(
            next_at=T0 - timedelta(hours=3)))
    reasons = {}
    for group_id in (plain, tagged):
        body = admin_client.get(f"/api/v1/groups/{group_id}").json()
        reasons.update({(group_id, r["code"]): r for r in body["cannot_run"]})
    assert {(plain, "unserved"), (plain, "late"), (tagged, "unserved_tag")} <= set(reasons)
    late = reasons[(plain, "late")]
    assert late["detail"].startswith("its run planned at ")  # English for scripts
    for reason in reasons.values():
        shown = i18n.problem_text(i18n.CHINESE, reason["code"], reason["params"])
        assert not english(shown), (reason, shown)


# ---- every alert rule, raised by the code that raises it ----------------------------------


def raise_every_rule(web_db: WebDatabase) -> None:
    engine = web_db.engine
    policy = AlertPolicy()
    group_id = add_group(engine, T0 - timedelta(hours=3), caption="nightly", job_name="x.job")
    register_client(engine, T0 - timedelta(hours=1), client_id="w1")
    other = add_group(engine, T0, caption="other", job_name="x.job")
    with engine.begin() as conn:
        groups = {g.id: g for g in conn.execute(sa.select(task_group))}
        ends = [RunEnd(group_id, 1, 1, False, error, T0 - timedelta(hours=2), "w1")
                for error in ("time limit exceeded after 5 s",
                              "hung: no progress or log from w1 for 30 s; marked failed")]
        note_run_ends(conn, ends, groups, T0, policy)
        # run_failed: a group of its own (one open alert per rule and group), a job's error.
        groups = {g.id: g for g in conn.execute(sa.select(task_group))}
        note_run_ends(conn, [RunEnd(other, 2, 3, False, "Traceback...\nValueError: boom",
                                    T0, None)], groups, T0, policy)
        conn.execute(task_group.update().where(task_group.c.id == group_id).values(
            next_at=T0 - timedelta(hours=3)))
    with engine.begin() as conn:
        alert_checks.check_late_groups(conn, T0, policy, timedelta(seconds=60))
        for need in alert_checks.unserved_needs(conn, T0, policy):
            alert_checks.raise_unserved(conn, need, T0 - timedelta(minutes=7), T0, policy)
        health = NodeHealth(lambda: 1000.0)
        health.tracker("supervisor", 5)._last_progress = 0.0  # stuck: its real words
        conn.execute(server_node.insert().values(
            id="n1", host="host1", pid=7, is_alive=True, heartbeat_at=T0, started_at=T0,
            unhealthy_reason=health.reason()))
        alert_checks.check_nodes(conn, T0 - timedelta(seconds=30), T0, policy)
        conn.execute(dead_letter.insert().values(
            queue="fss.events", reason="the database refused it: boom", body="x",
            received_at=T0))
        alert_checks.check_dead_letters(conn, T0, policy)
        # client_lost and node_lost: the supervisor's raise, with its words.
        from fss.scheduler.supervisor import Supervisor

        sweeper: Any = Supervisor.__new__(Supervisor)
        sweeper._settings = type("S", (), {"alert_policy": policy})()
        sweeper._client_lost(conn, "w1", describe_client(conn, "w1"), "its process is gone",
                             T0)
        from fss.domain.alerts import NODE_LOST, node_subject

        sweeper._raise_cluster_alert(
            conn, NODE_LOST, node_subject("n2"), "scheduler node n2 lost",
            "no heartbeat from n2 for over 30 s and it did not stop cleanly", T0)
        # resolved notes: a success of the group, a node back
        alert_checks.resolve_gone_groups(conn, T0)


@BACKENDS
def test_every_alert_rule_in_chinese(web_db: WebDatabase, admin_client: TestClient) -> None:
    raise_every_rule(web_db)
    items = admin_client.get("/api/v1/alerts?state=all&limit=200").json()["items"]
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_rule.setdefault(item["rule"], []).append(item)
    assert set(RULES) <= set(by_rule), set(RULES) - set(by_rule)
    for rule, alerts in by_rule.items():
        for item in alerts:
            detail = admin_client.get(f"/api/v1/alerts/{item['id']}").json()
            for field in ("title", "detail", "resolved_note"):
                text = detail.get(field) or ""
                shown = said(i18n.CHINESE, text)
                # A job's own error inside an alert stays as the job wrote it.
                left = english(shown, VALUES | {"Traceback", "boom"})
                assert not left, (rule, field, text, shown, left)
    with web_db.engine.connect() as conn:
        titles = list(conn.execute(sa.select(alert.c.title)).scalars())
    assert any(t.startswith("client w1 lost") for t in titles)  # stored in English
