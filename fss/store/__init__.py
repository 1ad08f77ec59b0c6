"""SQL store: tables, migrations and the queries every component uses.

Import the modules themselves (fss.store.groups, fss.store.migrate, ...): this package
imports nothing, so a process that never migrates never loads alembic.
"""
