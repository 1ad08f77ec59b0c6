"""Prove ``SchemaTemplates`` (tests/servers.py): a copy of the migrated template is the very
schema ``fss.store.migrate.upgrade`` makes on a fresh database, on every backend.

Compared: every table's columns (type, nullability, default, autoincrement, comment), primary
key, foreign keys, indexes, unique and check constraints, table options; every row (the
alembic revision); and what the inspector does not show: triggers, functions, sequences and
views (PostgreSQL), triggers with their sql_mode and character set, views, routines and
``SHOW CREATE TABLE`` (MariaDB), the whole ``sqlite_master`` (SQLite).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from servers import SchemaTemplates, SqlServer
from sqlalchemy.engine import Engine, make_url

from fss.store.engine import create_engine
from fss.store.migrate import current_revision, head_revision, upgrade


def _plain(value: Any) -> Any:
    """``value`` with SQL expressions (a partial index's WHERE) as their text, comparable."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    if isinstance(value, sa.sql.ClauseElement):
        return str(value)
    return value


def _inspected(engine: Engine) -> dict[str, Any]:
    inspector = sa.inspect(engine)
    schema: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        columns = [
            {key: str(value) if key == "type" else value for key, value in column.items()}
            for column in inspector.get_columns(table)
        ]
        schema[table] = {
            "columns": columns,
            "pk": inspector.get_pk_constraint(table),
            "fks": sorted(inspector.get_foreign_keys(table), key=repr),
            "indexes": sorted(inspector.get_indexes(table), key=repr),
            "uniques": sorted(inspector.get_unique_constraints(table), key=repr),
            "checks": sorted(inspector.get_check_constraints(table), key=repr),
            "options": inspector.get_table_options(table),
        }
        if engine.dialect.name != "sqlite":  # no table comments there
            schema[table]["comment"] = inspector.get_table_comment(table)
    schema["views"] = sorted(inspector.get_view_names())
    if engine.dialect.name != "sqlite":
        schema["sequences"] = sorted(inspector.get_sequence_names())
    return schema


def _rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        return {
            name: sorted((tuple(r) for r in conn.execute(sa.select(table))), key=repr)
            for name, table in sorted(meta.tables.items())
        }


def _catalog(engine: Engine) -> dict[str, Any]:
    """What the inspector does not compare, read from the backend's own catalog."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
            )
            return {"sqlite_master": [tuple(r) for r in rows]}
        if engine.dialect.name == "postgresql":
            triggers = conn.exec_driver_sql(
                "SELECT tgname, tgrelid::regclass::text, pg_get_triggerdef(oid), tgenabled "
                "FROM pg_trigger WHERE NOT tgisinternal ORDER BY tgname"
            )
            functions = conn.exec_driver_sql(
                "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public' ORDER BY p.proname"
            )
            sequences = conn.exec_driver_sql(
                "SELECT sequencename, data_type::text, start_value, increment_by, last_value "
                "FROM pg_sequences WHERE schemaname = 'public' ORDER BY sequencename"
            )
            relations = conn.exec_driver_sql(
                "SELECT c.relname, c.relkind, c.relpersistence FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' ORDER BY c.relname"
            )
            return {
                "triggers": [tuple(r) for r in triggers],
                "functions": [tuple(r) for r in functions],
                "sequences": [tuple(r) for r in sequences],
                "relations": [tuple(r) for r in relations],
            }
        database = conn.exec_driver_sql("SELECT DATABASE()").scalar_one()
        triggers = conn.execute(
            sa.text(
                "SELECT TRIGGER_NAME, EVENT_MANIPULATION, EVENT_OBJECT_TABLE, ACTION_ORDER, "
                "ACTION_STATEMENT, ACTION_ORIENTATION, ACTION_TIMING, SQL_MODE, DEFINER, "
                "CHARACTER_SET_CLIENT, COLLATION_CONNECTION, DATABASE_COLLATION "
                "FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = :db "
                "ORDER BY TRIGGER_NAME"
            ),
            {"db": database},
        )
        tables = conn.execute(
            sa.text(
                "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, ROW_FORMAT, TABLE_COLLATION, "
                "CREATE_OPTIONS, TABLE_COMMENT FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = :db ORDER BY TABLE_NAME"
            ),
            {"db": database},
        )
        routines = conn.execute(
            sa.text("SELECT ROUTINE_NAME FROM information_schema.ROUTINES "
                    "WHERE ROUTINE_SCHEMA = :db"),
            {"db": database},
        )
        names = [r[0] for r in conn.execute(
            sa.text("SELECT TABLE_NAME FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = :db ORDER BY TABLE_NAME"),
            {"db": database},
        )]
        creates = {
            name: conn.exec_driver_sql(f"SHOW CREATE TABLE `{name}`").one()[1] for name in names
        }
        collation = conn.execute(
            sa.text("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
                    "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :db"),
            {"db": database},
        ).one()
        return {
            "triggers": [tuple(r) for r in triggers],
            "tables": [tuple(r) for r in tables],
            "routines": [tuple(r) for r in routines],
            "show_create_table": creates,
            "database": tuple(collation),
        }


def _described(url: str) -> dict[str, Any]:
    """The database's schema and rows; the installation row (migration 0006 draws a random
    id, made now, on each database) as ``identity``, apart."""
    engine = create_engine(url)
    try:
        rows = _rows(engine)
        return {
            "revision": current_revision(engine),
            "schema": _plain(_inspected(engine)),
            "identity": rows.pop("installation"),
            "rows": rows,
            "catalog": _catalog(engine),
        }
    finally:
        engine.dispose()


def _assert_drawn_now(identity: list[tuple[Any, ...]], before: datetime) -> str:
    """One installation row, a random 8 hex digit id, made between ``before`` and now."""
    [(installation_id, created_at, broker_token)] = identity
    assert re.fullmatch("[0-9a-f]{8}", installation_id), installation_id
    if isinstance(created_at, str):  # SQLite's text, as the migration's bulk_insert wrote it
        created_at = datetime.fromisoformat(created_at)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert before - timedelta(seconds=1) <= created_at <= now, (before, created_at, now)
    assert broker_token is None
    return str(installation_id)


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def backend_pair(
    request: pytest.FixtureRequest, schema_templates: SchemaTemplates, tmp_path: Path
) -> Iterator[tuple[str, str, datetime]]:
    """(a database migrated by alembic, a template copy, a time before both), both new, on
    the backend. The template is built first, so the copy's identity is drawn later."""
    backend: str = request.param
    if backend != "sqlite":  # build the template, then start the clock
        scratch = schema_templates.new_database(backend)
        schema_templates.server(backend).drop_database(scratch)
    else:
        schema_templates.fill(f"sqlite:///{tmp_path / 'scratch.db'}")
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    if backend == "sqlite":
        migrated = f"sqlite:///{tmp_path / 'migrated.db'}"
        copied = schema_templates.fill(f"sqlite:///{tmp_path / 'copied.db'}")
        created: list[str] = []
    else:
        server: SqlServer = request.getfixturevalue(f"{backend}_server")
        migrated = server.create_database()
        created = [migrated]
        created.append(schema_templates.new_database(backend))
        copied = created[1]
    engine = create_engine(migrated)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    try:
        yield migrated, copied, before
    finally:
        for url in created:
            server.drop_database(url)


def test_a_template_copy_is_the_schema_alembic_makes(
    backend_pair: tuple[str, str, datetime]
) -> None:
    migrated, copied, before = backend_pair
    assert make_url(migrated).database != make_url(copied).database
    expected = _described(migrated)
    assert expected["revision"] == head_revision()
    assert "task" in expected["schema"] and expected["rows"]["alembic_version"]
    if "triggers" in expected["catalog"]:
        assert expected["catalog"]["triggers"], "the run_report trigger of migration 0012"
    else:
        assert any(r[0] == "trigger" for r in expected["catalog"]["sqlite_master"])
    got = _described(copied)
    ids = {_assert_drawn_now(got.pop("identity"), before),
           _assert_drawn_now(expected.pop("identity"), before)}
    assert len(ids) == 2, "the copy has an installation id of its own"
    assert got == expected


def test_fill_gives_an_empty_database_the_schema(
    database_url: str, schema_templates: SchemaTemplates
) -> None:
    """``fill`` on the per-test ``database_url`` (PostgreSQL: the reused session database,
    recreated from the template), then the copy is writable and its trigger fires."""
    schema_templates.fill(database_url)
    engine = create_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO alembic_version VALUES ('probe')"))
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            found = sorted(str(v) for v in versions.scalars())
        assert found == sorted([str(head_revision()), "probe"])
    finally:
        engine.dispose()


def test_copies_are_private(schema_templates: SchemaTemplates, postgres_server: SqlServer,
                            mysql_server: SqlServer) -> None:
    """Writing into one copy leaves the template and the next copy empty."""
    for server in (postgres_server, mysql_server):
        first = schema_templates.new_database(server.kind)
        second: str | None = None
        try:
            engine = create_engine(first)
            try:
                with engine.begin() as conn:
                    conn.execute(sa.text(
                        "INSERT INTO installation (id, created_at) VALUES ('x', :now)"
                    ), {"now": "2031-03-14 09:26:53"})
            finally:
                engine.dispose()
            second = schema_templates.new_database(server.kind)
            engine = create_engine(second)
            try:
                with engine.connect() as conn:
                    ids = conn.execute(sa.text("SELECT id FROM installation")).scalars().all()
                    assert len(ids) == 1 and ids != ["x"], ids
            finally:
                engine.dispose()
        finally:
            server.drop_database(first)
            if second is not None:
                server.drop_database(second)
