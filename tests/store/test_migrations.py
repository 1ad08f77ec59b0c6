"""Alembic migrations of the store: head creates the schema, base removes it, on every backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from fss.store import migrate, schema_revision
from fss.store.engine import create_engine
from fss.store.tables import metadata

# The five tables of the FSS model; later revisions may add more (all declared in tables.py).
FSS_TABLES = {"task_group", "task", "run_log", "client", "server_node"}
DECLARED = set(metadata.tables)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def _version_rows(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]


def test_fresh_database_is_not_up_to_date(engine: Engine) -> None:
    assert migrate.head_revision() is not None
    assert migrate.current_revision(engine) is None
    assert not migrate.is_up_to_date(engine)


def test_upgrade_creates_the_five_tables_at_head(engine: Engine) -> None:
    assert FSS_TABLES <= DECLARED
    migrate.upgrade(engine)

    assert _tables(engine) == DECLARED | {"alembic_version"}
    assert _tables(engine) >= FSS_TABLES
    assert _version_rows(engine) == [migrate.head_revision()]
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert migrate.is_up_to_date(engine)


def test_the_light_revision_check_agrees_with_alembic(engine: Engine) -> None:
    """Long-running processes check the schema without alembic: the two must never disagree."""
    assert migrate.head_revision() == schema_revision.HEAD_REVISION
    assert schema_revision.current_revision(engine) is None
    assert not schema_revision.is_up_to_date(engine)

    migrate.upgrade(engine, "0004")
    assert schema_revision.current_revision(engine) == migrate.current_revision(engine) == "0004"
    assert not schema_revision.is_up_to_date(engine)

    migrate.upgrade(engine)
    assert schema_revision.current_revision(engine) == migrate.current_revision(engine)
    assert schema_revision.is_up_to_date(engine)


def test_upgrade_twice_is_a_no_op(engine: Engine) -> None:
    migrate.upgrade(engine)
    migrate.upgrade(engine)

    assert _version_rows(engine) == [migrate.head_revision()]
    assert migrate.is_up_to_date(engine)


def test_migrated_schema_matches_the_table_definitions(engine: Engine) -> None:
    """What the migration builds is what fss.store.tables declares (indexes and uniques too)."""
    migrate.upgrade(engine)
    inspector = sa.inspect(engine)
    for table in metadata.tables.values():
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == set(table.columns.keys()), table.name
        indexes = {i["name"] for i in inspector.get_indexes(table.name) if not i.get("unique")}
        declared = {i.name for i in table.indexes if not i.unique}
        assert declared <= indexes, table.name
    uniques = {u["name"] for u in inspector.get_unique_constraints("task")}
    uniques |= {i["name"] for i in inspector.get_indexes("task") if i.get("unique")}
    assert "uq_task_open_group_id" in uniques
    log_uniques = {u["name"] for u in inspector.get_unique_constraints("run_log")}
    log_uniques |= {i["name"] for i in inspector.get_indexes("run_log") if i.get("unique")}
    assert "uq_run_log_event_id" in log_uniques

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diffs = compare_metadata(context, metadata)
    assert diffs == []


def test_downgrade_to_base_then_upgrade_again(engine: Engine) -> None:
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")

    assert _tables(engine) <= {"alembic_version"}
    assert migrate.current_revision(engine) is None
    assert not migrate.is_up_to_date(engine)

    migrate.upgrade(engine)
    assert _tables(engine) == DECLARED | {"alembic_version"}
    assert migrate.is_up_to_date(engine)
    assert _version_rows(engine) == [migrate.head_revision()]


def test_is_up_to_date_false_when_behind_head(engine: Engine) -> None:
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'older'")

    assert migrate.current_revision(engine) == "older"
    assert not migrate.is_up_to_date(engine)


def test_every_revision_upgrades_and_downgrades_one_step_at_a_time(engine: Engine) -> None:
    """Walk base -> head and back down, one revision per step: each downgrade undoes its upgrade."""
    script = ScriptDirectory.from_config(migrate.alembic_config())
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert revisions[-1] == migrate.head_revision()

    snapshots = [_tables(engine)]
    for revision in revisions:
        migrate.upgrade(engine, revision)
        assert migrate.current_revision(engine) == revision
        snapshots.append(_tables(engine))
    assert snapshots[-1] == DECLARED | {"alembic_version"}

    for revision in reversed(revisions):
        assert migrate.current_revision(engine) == revision
        assert _tables(engine) == snapshots.pop()
        migrate.downgrade(engine, "-1")
    assert migrate.current_revision(engine) is None
    assert _tables(engine) <= {"alembic_version"}
