"""Jitter offsets: in range, the same for every caller, spread over the window."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from fss.domain.jitter import jitter_offset_ms, jittered_start, slot_epoch_ms

UTC = timezone.utc
group_ids = st.integers(min_value=1, max_value=2**63 - 1)
slots = st.datetimes(
    min_value=datetime(1000, 1, 1), max_value=datetime(8999, 1, 1), timezones=st.just(UTC)
)
jitters = st.integers(min_value=0, max_value=3600 * 1000)


@given(group_ids, slots, jitters)
def test_the_offset_lies_within_zero_and_the_jitter(
    group_id: int, slot: datetime, jitter: int
) -> None:
    offset = jitter_offset_ms(group_id, slot, jitter)
    assert 0 <= offset <= jitter
    start = jittered_start(group_id, slot, jitter)
    assert start - slot == timedelta(milliseconds=offset)


@given(group_ids, slots, jitters)
def test_the_offset_is_the_same_for_every_caller_and_any_spelling_of_the_slot(
    group_id: int, slot: datetime, jitter: int
) -> None:
    # Another scheduler reads the slot back from the database: naive UTC, or in another zone.
    naive = slot.replace(tzinfo=None)
    elsewhere = slot.astimezone(timezone(timedelta(hours=-7)))
    first = jitter_offset_ms(group_id, slot, jitter)
    assert jitter_offset_ms(group_id, naive, jitter) == first
    assert jitter_offset_ms(group_id, elsewhere, jitter) == first
    assert jitter_offset_ms(group_id, slot, jitter) == first


@given(group_ids, slots)
def test_no_jitter_is_the_slot_itself(group_id: int, slot: datetime) -> None:
    assert jittered_start(group_id, slot, 0) is slot
    assert jitter_offset_ms(group_id, slot, 0) == 0


@given(st.integers(min_value=1, max_value=10**9), slots)
def test_a_thousand_groups_on_one_slot_spread_over_a_minute(first_id: int, slot: datetime) -> None:
    jitter = 60_000
    offsets = [jitter_offset_ms(first_id + i, slot, jitter) for i in range(1000)]
    per_second = Counter(offset // 1000 for offset in offsets)
    # Uniform: ~16.4 per second of 61; a second holding 5% (50) would be > 8 sigma off.
    assert max(per_second.values()) <= 50
    assert len(per_second) >= 55  # nearly every second of the window is used
    assert len(set(offsets)) >= 950  # not a few values repeated
    # Each quarter of the window holds about a quarter of the groups.
    quarters = Counter(min(offset * 4 // jitter, 3) for offset in offsets)
    assert all(180 <= count <= 320 for count in quarters.values())


@given(group_ids, slots)
def test_consecutive_slots_of_one_group_get_different_offsets(
    group_id: int, slot: datetime
) -> None:
    offsets = {jitter_offset_ms(group_id, slot + timedelta(minutes=k), 60_000) for k in range(50)}
    assert len(offsets) >= 40


def test_slot_epoch_ms_counts_whole_milliseconds() -> None:
    assert slot_epoch_ms(datetime(1970, 1, 1, 0, 0, 1, 999, tzinfo=UTC)) == 1000
    assert slot_epoch_ms(datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC)) == -1
