"""Path and query parameters shared by the API routes: ids the databases can hold."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

# BIGINT: larger ids cannot exist, and SQLite refuses to bind them (OverflowError -> 500).
MAX_ID = 2**63 - 1

GroupId = Annotated[int, Path(ge=1, le=MAX_ID, description="Task group id")]
TaskId = Annotated[int, Path(ge=1, le=MAX_ID, description="Task id")]
GroupIdFilter = Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only this group")]
AfterLogId = Annotated[
    int, Query(ge=0, le=MAX_ID, description="Only log lines with a larger id")
]
