"""a distributed job scheduling center on Celery (task groups, tasks, run logs in SQL)."""

__version__ = "0.1.0"

# What a job raises to fail its run (`raise fss.Fail("why", retry=False)`); defined below
# every layer, so importing fss loads nothing of the worker side.
from fss.errors import Fail

__all__ = ["Fail", "__version__"]
