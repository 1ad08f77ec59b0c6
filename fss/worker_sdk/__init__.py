"""Write jobs for fss: `@job("name")` on a function taking a JobContext."""

from fss.worker_sdk.context import JobContext
from fss.worker_sdk.job import Fail, JobSpec, job

__all__ = ["Fail", "JobContext", "JobSpec", "job"]
