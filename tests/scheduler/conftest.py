"""Fixtures the scheduler's Redis tests share: a Redis database of the test's own, and a raw
client on it (to put on a queue what no fss sender would)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis


@pytest.fixture
def url(fresh_redis_url: Callable[[], str]) -> str:
    return fresh_redis_url()


@pytest.fixture
def raw(url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url)
    yield client
    client.close()
