"""The group data a run's save writes: its changes applied to the data as it is now.

A run that sends a patch (what it changed since it started, fss.domain.data_merge) keeps
every change made to the group's data meanwhile — a `fss group apply`, an edit in the
console, another shard's save — where they do not touch what the run changed. The caller
reads the current data with the group row locked, in the save's transaction, so no writer
can slip in between the read and the write. A sender without a patch (an older worker)
replaces the data whole, as before.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fss.domain.data_merge import apply_patch
from fss.domain.group_spec import validate_data
from fss.errors import InvalidField
from fss.store.tables import task_group

log = logging.getLogger(__name__)


def saved_data_text(
    data: dict[str, Any] | None, patch: dict[str, Any] | None, current: str | None
) -> str:
    """The JSON text to store: `patch` applied to `current` when both are there, else the
    run's whole `data`; the whole data too when the merge would be data the group cannot
    hold (too large), which is logged."""
    if patch is not None and current is not None:
        try:
            base = json.loads(current)
        except ValueError:
            base = None
        if isinstance(base, dict):
            merged = apply_patch(base, patch)
            try:
                return validate_data(merged)
            except InvalidField as exc:
                log.warning(
                    "a run's data changes merged into its group's data would not fit (%s): "
                    "its whole data is saved instead",
                    exc,
                )
    return json.dumps(data if data is not None else {}, ensure_ascii=False, separators=(",", ":"))


def locked_group_data(conn: Connection, group_ids: Iterable[int]) -> dict[int, str]:
    """The groups' data, their rows locked (in id order, as every batch write here takes
    them) until the caller's transaction ends."""
    ids = sorted(set(group_ids))
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(task_group.c.id, task_group.c.data)
        .where(task_group.c.id.in_(ids))
        .order_by(task_group.c.id)
        .with_for_update()
    )
    return {row.id: row.data for row in rows}
