"""a distributed job scheduling center on Celery (task groups, tasks, run logs in SQL)."""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fss.worker_sdk.job import Fail

__all__ = ["Fail", "__version__"]


def __getattr__(name: str) -> Any:
    # `fss.Fail` for jobs, imported on first use: a scheduler or the CLI importing `fss`
    # loads nothing of the worker side.
    if name == "Fail":
        from fss.worker_sdk.job import Fail

        return Fail
    raise AttributeError(f"module 'fss' has no attribute {name!r}")
