"""Whether the database holds the newest schema, without loading alembic.

Long-running processes check this at start; alembic (with mako and pygments) costs ~15 MB
of RSS for as long as the process lives, and only `fss db` needs it.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

# The newest revision under fss/store/migrations/versions (a test holds the two together).
HEAD_REVISION = "0014"


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    return versions[0] if len(versions) == 1 else None


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == HEAD_REVISION
