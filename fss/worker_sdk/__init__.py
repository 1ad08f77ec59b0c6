"""Write jobs for fss: `@job("name")` on a function taking a JobContext."""

from fss.worker_sdk.context import JobContext
from fss.worker_sdk.job import JobSpec, job

__all__ = ["JobContext", "JobSpec", "job"]
