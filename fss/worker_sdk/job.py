"""The @job decorator and discovery of decorated functions in user modules.

The decorator only marks the function; nothing is registered globally. `fss worker -A mod`
imports the module and collects the marked functions.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from fss.domain.group_spec import validate_job_name
from fss.errors import Fail as Fail  # re-exported: fss.worker_sdk.Fail
from fss.errors import InvalidField

if TYPE_CHECKING:
    from fss.worker_sdk.context import JobContext

JOB_ATTRIBUTE = "__fss_job__"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class JobSpec:
    name: str
    function: Callable[[JobContext], Any]

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    def call(self, context: JobContext) -> Any:
        if self.is_async:
            return asyncio.run(self.function(context))
        return self.function(context)


@overload
def job(name: F) -> F: ...


@overload
def job(name: str | None = None) -> Callable[[F], F]: ...


def job(name: str | F | None = None) -> F | Callable[[F], F]:
    """Mark a function (sync or async, taking a JobContext) as the job `name`.

    `@job("sync-orders")` names the job; bare `@job` (or `@job()`) uses the function's name,
    as Celery's `@app.task` does."""
    if callable(name):
        return _mark(name, validate_job_name(name.__name__))
    if name is not None and not isinstance(name, str):
        raise InvalidField(
            "job_name", f"must be a string like @job(\"sync-orders\"), not {type(name).__name__}"
        )
    job_name = None if name is None else validate_job_name(name)

    def mark(function: F) -> F:
        return _mark(function, job_name or validate_job_name(function.__name__))

    return mark


def _mark(function: F, job_name: str) -> F:
    setattr(function, JOB_ATTRIBUTE, JobSpec(job_name, function))
    return function


class JobImportError(InvalidField):
    """A -A module that cannot be imported or serves no job: one line naming the module."""

    def __init__(self, module: str, reason: str) -> None:
        self.module = module
        super().__init__("app", f"module {module!r} {reason}")


def import_modules(names: Iterable[str]) -> list[ModuleType]:
    """Import job modules the way `celery -A` does: the current directory is importable."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return [import_module(name) for name in names]


def import_module(name: str) -> ModuleType:
    if not name.strip():
        raise InvalidField("app", "empty module name; give a module like -A myproject.jobs")
    try:
        return importlib.import_module(name)
    except (Exception, SystemExit) as exc:
        # Whatever the module raises at import time is the user's code failing, not ours:
        # name the module and the error, never a traceback.
        raise JobImportError(name, import_failure(name, exc)) from None


def import_failure(name: str, exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        missing = exc.name
        if name == missing or name.startswith(missing + "."):
            return (
                f"was not found (no module named {missing!r}; run from the directory that "
                "holds it or add that directory to PYTHONPATH)"
            )
        top = missing.split(".")[0]
        return f"cannot be imported: it needs package {top!r}, which is not installed"
    return f"cannot be imported: it raised {type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else "(no message)"


def discover_jobs(modules: Iterable[ModuleType]) -> dict[str, JobSpec]:
    jobs: dict[str, JobSpec] = {}
    for module in modules:
        for value in vars(module).values():
            spec = getattr(value, JOB_ATTRIBUTE, None)
            if not isinstance(spec, JobSpec):
                continue
            other = jobs.get(spec.name)
            if other is not None and other.function is not spec.function:
                raise JobImportError(
                    module.__name__,
                    f"defines job {spec.name!r} again ({_where(spec)}; "
                    f"first in {_where(other)})",
                )
            jobs[spec.name] = spec
    return jobs


def _where(spec: JobSpec) -> str:
    return f"{spec.function.__module__}.{spec.function.__qualname__}"

