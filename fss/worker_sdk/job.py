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
from typing import TYPE_CHECKING, Any, TypeVar

from fss.domain.group_spec import validate_job_name
from fss.errors import FssError

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


def job(name: str) -> Callable[[F], F]:
    """Mark a function (sync or async, taking a JobContext) as the job `name`."""
    job_name = validate_job_name(name)

    def mark(function: F) -> F:
        setattr(function, JOB_ATTRIBUTE, JobSpec(job_name, function))
        return function

    return mark


class JobImportError(FssError):
    pass


def import_modules(names: Iterable[str]) -> list[ModuleType]:
    """Import job modules the way `celery -A` does: the current directory is importable."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:
            raise JobImportError(f"-A {name}: cannot import ({exc})") from None
    return modules


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
                    f"job {spec.name!r} is defined twice: {_where(other)} and {_where(spec)}"
                )
            jobs[spec.name] = spec
    return jobs


def _where(spec: JobSpec) -> str:
    return f"{spec.function.__module__}.{spec.function.__qualname__}"
