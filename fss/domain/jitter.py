"""Jitter: a group's planned starts pushed later by a pseudo-random 0..jitter_ms.

The offset is a hash of the group id and the slot (its epoch milliseconds), not a random draw:
every scheduler, and the same scheduler after a restart, computes the same start for the same
slot, so the task row, the claim and the dispatch guard all agree without storing the offset.
A thousand groups on `0 0 * * *` with a minute of jitter then fire spread over that minute
instead of all at 00:00:00.000.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def slot_epoch_ms(slot: datetime) -> int:
    """The slot in whole epoch milliseconds (floor); a naive time is taken as UTC, as stored."""
    aware = slot if slot.tzinfo is not None else slot.replace(tzinfo=timezone.utc)
    return (aware - _EPOCH) // _MS


def jitter_offset_ms(group_id: int, slot: datetime, jitter_ms: int) -> int:
    """The group's offset for this slot, in [0, jitter_ms] (0 when jitter_ms <= 0)."""
    if jitter_ms <= 0:
        return 0
    key = f"{int(group_id)}:{slot_epoch_ms(slot)}".encode("ascii")
    # 64 bits of blake2b: the modulo bias over at most an hour of milliseconds is < 2e-13.
    value = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
    return value % (jitter_ms + 1)


def jittered_start(group_id: int, slot: datetime, jitter_ms: int) -> datetime:
    """When a run planned for `slot` starts: the slot plus the group's offset. A group without
    jitter gets the slot itself (no hashing): jitter costs nothing where it is not used."""
    if jitter_ms <= 0:
        return slot
    return slot + timedelta(milliseconds=jitter_offset_ms(group_id, slot, jitter_ms))
