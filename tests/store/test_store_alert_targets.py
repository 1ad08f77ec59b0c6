"""fss.store.alert_targets on SQLite, PostgreSQL and MySQL: add, replace, read, remove."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import MINUTE, T0

from fss.domain.alert_targets import TargetSpec
from fss.errors import InvalidField
from fss.store.alert_targets import (
    TargetNotFound,
    add_target,
    default_targets,
    get_target,
    list_targets,
    remove_target,
    replace_target,
    targets_by_id,
    targets_by_name,
)
from fss.store.tables import alert_target

HOOK = TargetSpec(
    "ops-hook",
    "webhook",
    {"url": "https://hooks.example/x/tok-1", "secret": "s3cr3t", "headers": {"X-Team": "运维"}},
)
MAIL = TargetSpec(
    "oncall-mail",
    "email",
    {
        "host": "smtp.example.org",
        "user": "fss",
        "password": "pw-1",
        "from": "f@x.org",
        "to": ["a@x.org", "b@x.org"],
    },
    is_default=False,
    rules=frozenset({"run_failed", "hung"}),
    rate_per_min=5,
)


def test_an_added_target_reads_back_with_its_settings_and_secrets(engine: Engine) -> None:
    added = add_target(engine, HOOK, T0)

    with engine.connect() as conn:
        row = get_target(conn, "ops-hook")
    assert row == added
    assert (row.kind, row.is_default, row.rules, row.rate_per_min) == ("webhook", True, None, 20)
    assert row.spec == HOOK.validated()
    assert row.spec.config["headers"] == {"X-Team": "运维"}
    assert row.created_at == row.updated_at == T0


def test_public_shows_no_secret(engine: Engine) -> None:
    add_target(engine, MAIL, T0)
    add_target(engine, HOOK, T0)

    with engine.connect() as conn:
        shown = [row.public() for row in list_targets(conn)]

    assert [s["name"] for s in shown] == ["oncall-mail", "ops-hook"]
    text = repr(shown)
    for secret in ("s3cr3t", "pw-1", "tok-1", "运维"):
        assert secret not in text
    assert shown[0]["rules"] == ["hung", "run_failed"]
    assert shown[0]["config"]["port"] == 587
    assert shown[1]["config"]["url"] == "https://hooks.example/***"


def test_a_second_target_of_the_same_name_is_refused(engine: Engine) -> None:
    add_target(engine, HOOK, T0)

    with pytest.raises(InvalidField, match=r"^name: .*already exists"):
        add_target(engine, TargetSpec("ops-hook", "slack", {"url": "https://h/x"}), T0)

    with engine.connect() as conn:
        assert [r.kind for r in list_targets(conn)] == ["webhook"]


def test_two_adds_of_one_name_at_once_give_one_row_and_one_error(engine: Engine) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def add() -> None:
        barrier.wait()
        try:
            add_target(engine, HOOK, T0)
            outcomes.append("added")
        except InvalidField:
            outcomes.append("refused")

    threads = [threading.Thread(target=add) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(outcomes) == ["added", "refused"]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(alert_target)).scalar() == 1


def test_replace_creates_then_overwrites_keeping_id_and_created_at(engine: Engine) -> None:
    first = replace_target(engine, HOOK, T0)
    changed = TargetSpec(
        "ops-hook",
        "slack",
        {"url": "https://hooks.slack.com/services/A"},
        is_default=False,
        rate_per_min=3,
    )

    second = replace_target(engine, changed, T0 + MINUTE)

    assert second.id == first.id
    assert (second.kind, second.is_default, second.rate_per_min) == ("slack", False, 3)
    assert second.spec.config == {"url": "https://hooks.slack.com/services/A"}
    assert (second.created_at, second.updated_at) == (T0, T0 + MINUTE)


def test_replace_validates(engine: Engine) -> None:
    with pytest.raises(InvalidField, match=r"^url"):
        replace_target(engine, TargetSpec("x", "slack", {"url": "ftp://h"}), T0)


def test_lookups_by_id_name_and_default(engine: Engine) -> None:
    hook = add_target(engine, HOOK, T0)
    mail = add_target(engine, MAIL, T0)

    with engine.connect() as conn:
        assert targets_by_id(conn, [mail.id, hook.id, 10**12]) == {mail.id: mail, hook.id: hook}
        assert targets_by_id(conn, []) == {}
        assert targets_by_name(conn, ["ops-hook", "gone"]) == {"ops-hook": hook}
        assert [r.name for r in default_targets(conn)] == ["ops-hook"]


def test_remove_deletes_and_a_missing_name_is_named(engine: Engine) -> None:
    add_target(engine, HOOK, T0)

    remove_target(engine, "ops-hook")

    with engine.connect() as conn:
        assert list_targets(conn) == []
        with pytest.raises(TargetNotFound, match="alert target 'ops-hook' does not exist"):
            get_target(conn, "ops-hook")
    with pytest.raises(TargetNotFound):
        remove_target(engine, "ops-hook")
