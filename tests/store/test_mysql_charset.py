"""MariaDB/MySQL databases whose default character set is not utf8mb4 store 4-byte UTF-8.

The migrations create every table as utf8mb4 explicitly, revision 0003 converts tables an
older revision made in the database's default set, and connections speak utf8mb4 even when
the URL names no charset.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from servers import SqlServer, new_database_name

from fss.domain.group_spec import GroupSpec
from fss.store import groups, migrate
from fss.store.engine import create_engine
from fss.store.tables import metadata, run_log, task_group

T0 = datetime(2026, 6, 1, tzinfo=timezone.utc)
EMOJI = "deploy \U0001f680 done \U0001f600"


@pytest.fixture
def latin1_url(mysql_server: SqlServer) -> Iterator[str]:
    """A database created latin1, addressed by a URL without a charset, as users type it."""
    name = new_database_name()
    with mysql_server.admin_connection() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET latin1")
    url = mysql_server.admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        mysql_server.drop_database(name)


def _collations(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT table_name, table_collation FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name <> 'alembic_version'"
            )
        )
        return {r[0]: r[1] for r in rows}


def _store_and_read_emoji(engine: sa.Engine) -> tuple[str, str, str]:
    group_id = groups.add_group(
        engine,
        GroupSpec(caption=EMOJI[:20], job_name="j", interval_ms=1000, data={"note": EMOJI}),
        T0,
    )
    with engine.begin() as conn:
        task_id = conn.execute(
            sa.select(task_group.c.task_id).where(task_group.c.id == group_id)
        ).scalar_one()
        conn.execute(
            run_log.insert().values(
                task_id=task_id, task_group_id=group_id, log_level=2, content=EMOJI, create_at=T0
            )
        )
    with engine.connect() as conn:
        caption, data = conn.execute(
            sa.select(task_group.c.caption, task_group.c.data).where(task_group.c.id == group_id)
        ).one()
        content = conn.execute(sa.select(run_log.c.content)).scalar_one()
    return caption, data, content


def test_given_a_latin1_database_when_migrated_then_tables_are_utf8mb4_and_keep_emoji(
    latin1_url: str,
) -> None:
    engine = create_engine(latin1_url)
    try:
        migrate.upgrade(engine)

        assert set(_collations(engine).values()) == {"utf8mb4_bin"}
        assert set(_collations(engine)) == set(metadata.tables)
        caption, data, content = _store_and_read_emoji(engine)
        assert caption == EMOJI[:20]
        assert EMOJI in data
        assert content == EMOJI
    finally:
        engine.dispose()


def test_given_tables_an_older_revision_made_in_latin1_then_0003_converts_them(
    latin1_url: str,
) -> None:
    engine = create_engine(latin1_url)
    try:
        migrate.upgrade(engine, "0002")
        with engine.begin() as conn:  # as an older fss release left them: latin1 tables
            for table in ("task_group", "task", "run_log", "client", "server_node", "lease"):
                conn.exec_driver_sql(f"ALTER TABLE {table} CONVERT TO CHARACTER SET latin1")
        assert set(_collations(engine).values()) == {"latin1_swedish_ci"}

        migrate.upgrade(engine)

        assert set(_collations(engine).values()) == {"utf8mb4_bin"}
        assert _store_and_read_emoji(engine)[2] == EMOJI
    finally:
        engine.dispose()


def test_a_url_without_charset_connects_in_utf8mb4(latin1_url: str) -> None:
    engine = create_engine(latin1_url)
    try:
        assert engine.url.query.get("charset") == "utf8mb4"
        with engine.connect() as conn:
            charset = conn.exec_driver_sql("SELECT @@character_set_connection").scalar_one()
            echoed = conn.execute(sa.select(sa.literal(EMOJI))).scalar_one()
        assert (charset, echoed) == ("utf8mb4", EMOJI)
    finally:
        engine.dispose()
