"""a distributed job scheduling center on Celery (task groups, tasks, run logs in SQL)."""

__version__ = "0.1.0"
