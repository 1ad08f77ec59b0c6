"""SQL store: tables, migrations and the queries every component uses."""

from fss.store.engine import create_engine
from fss.store.migrate import upgrade

__all__ = ["create_engine", "upgrade"]
