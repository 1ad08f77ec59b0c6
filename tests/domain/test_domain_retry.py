"""Retry delays: exponential backoff, a cap, full jitter from an injectable random source."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from fss.domain.retry import MAX_RETRY_DELAY_MS, RetryPolicy, failure_summary, retry_bound_ms

attempts = st.integers(min_value=1, max_value=5000)
delays = st.integers(min_value=0, max_value=10**9)
backoffs = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
caps = st.one_of(st.none(), st.integers(min_value=0, max_value=10**12))


def exact_bound(attempt: int, delay: int, backoff: float, cap: int | None) -> float:
    """The bound by the definition, in exact arithmetic where a float would overflow."""
    ceiling = MAX_RETRY_DELAY_MS if cap is None else min(cap, MAX_RETRY_DELAY_MS)
    try:
        value = delay * backoff ** (attempt - 1)
    except OverflowError:
        # backoff^(attempt-1) beyond a float: infinite, unless the first delay is 0 (0 x inf
        # is no number; the delay is 0 then, whatever the factor).
        value = 0.0 if delay == 0 else float("inf")
    return min(ceiling, value)


@given(attempts, delays, backoffs, caps)
@example(attempt=172, delay=0, backoff=64.0, cap=None)  # the oracle once took 0 x inf for inf
def test_without_jitter_the_delay_is_exactly_delay_times_backoff_capped(
    attempt: int, delay: int, backoff: float, cap: int | None
) -> None:
    policy = RetryPolicy(retries=attempt, delay_ms=delay, backoff=backoff, max_delay_ms=cap,
                         jitter=False)
    got = policy.delay_ms_after(attempt)
    expected = exact_bound(attempt, delay, backoff, cap)
    # int() of the float product: within one millisecond of the exact value, never above it.
    assert expected - 1 <= got <= expected


@given(attempts, delays, backoffs, caps, st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_with_jitter_the_delay_lies_within_zero_and_the_bound(
    attempt: int, delay: int, backoff: float, cap: int | None, draw: float
) -> None:
    policy = RetryPolicy(retries=attempt, delay_ms=delay, backoff=backoff, max_delay_ms=cap)
    got = policy.delay_ms_after(attempt, uniform=lambda: draw)
    assert 0 <= got <= policy.bound_ms(attempt) <= exact_bound(attempt, delay, backoff, cap)


def test_full_jitter_spans_the_whole_range_from_zero_to_the_bound() -> None:
    policy = RetryPolicy(retries=5, delay_ms=1000, backoff=2.0, max_delay_ms=5000)
    assert [policy.bound_ms(n) for n in (1, 2, 3, 4, 5)] == [1000, 2000, 4000, 5000, 5000]
    assert policy.delay_ms_after(3, uniform=lambda: 0.0) == 0
    assert policy.delay_ms_after(3, uniform=lambda: 0.5) == 2000
    assert policy.delay_ms_after(3, uniform=lambda: 0.999999999) == 4000


def test_huge_attempts_and_factors_stop_at_the_cap_without_overflow() -> None:
    assert retry_bound_ms(10**6, 1000, 10.0, 60_000) == 60_000
    assert retry_bound_ms(10**6, 1000, 10.0, None) == MAX_RETRY_DELAY_MS
    assert retry_bound_ms(10**6, 1000, 1.0, None) == 1000
    assert retry_bound_ms(3, 1000, 0.5, None) == 250


@given(st.integers(min_value=0, max_value=20), st.integers(min_value=-2, max_value=25))
def test_attempts_one_to_retries_are_retried_and_no_other(retries: int, attempt: int) -> None:
    allowed = RetryPolicy(retries=retries).allows(attempt)
    assert allowed == (1 <= attempt <= retries)


def test_a_failure_is_summarized_by_its_last_line() -> None:
    trace = 'Traceback (most recent call last):\n  File "x", line 1\nValueError: boom\n'
    assert failure_summary(trace) == "ValueError: boom"
    assert failure_summary(None) == "failed"
    assert len(failure_summary("x" * 1000)) == 300
