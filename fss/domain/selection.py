"""Client selection: which live client takes a group's run (the group's `route`).

Pure functions over client ids: the dispatcher hands in the clients alive right now (already
filtered by job name, health and the group's client tag) and their loads.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence

from fss.errors import InvalidField

ROUND_ROBIN = "round_robin"
LEAST_BUSY = "least_busy"
STICKY = "sticky"
FAILOVER = "failover"
BROADCAST = "broadcast"
ROUTES = (ROUND_ROBIN, LEAST_BUSY, STICKY, FAILOVER, BROADCAST)
# Routes the dispatcher runs (broadcast, one run per live client, takes its own path:
# fss.domain.broadcast).
BUILT_ROUTES = ROUTES

# A tag is a word a client is started with (`fss worker --tag gpu`): no commas, since the
# client row keeps its tags as one comma-separated column.
MAX_TAG = 64
MAX_TAGS_TEXT = 256
# The same words a group's client_tag may be (fss.domain.group_spec.CLIENT_TAG_PATTERN).
_TAG = re.compile(r"[A-Za-z0-9_.:@\-]{1,64}")


def validate_route(route: str, field: str = "route") -> str:
    if route not in ROUTES:
        raise InvalidField(field, f"unknown route {route!r}; one of {', '.join(ROUTES)}")
    return route


def validate_tag(tag: str, field: str = "tag") -> str:
    if not isinstance(tag, str) or _TAG.fullmatch(tag) is None:
        raise InvalidField(
            field, f"{tag!r} is not a tag (1..{MAX_TAG} of letters, digits and _ . : @ -)"
        )
    return tag


def validate_tags(tags: Iterable[str], field: str = "tags") -> tuple[str, ...]:
    """The tags sorted and without repeats; each one valid and all of them fit the column."""
    unique = tuple(sorted({validate_tag(t, field) for t in tags}))
    if len(tags_text(unique) or "") > MAX_TAGS_TEXT:
        raise InvalidField(field, f"longer than {MAX_TAGS_TEXT} characters in all")
    return unique


def tags_text(tags: Iterable[str]) -> str | None:
    """How a client row stores its tags: comma separated, sorted; None for no tags."""
    joined = ",".join(sorted(set(tags)))
    return joined or None


def parse_tags(text: str | None) -> frozenset[str]:
    return frozenset(t for t in (text or "").split(",") if t)


class RoundRobin:
    def __init__(self) -> None:
        self._turns: dict[str, int] = {}
        self._lock = threading.Lock()

    def pick(self, job_name: str, candidates: Sequence[str]) -> str | None:
        """Next candidate for `job_name`; sorted first so every instance agrees on order."""
        if not candidates:
            return None
        ordered = sorted(candidates)
        with self._lock:
            turn = self._turns.get(job_name, 0)
            self._turns[job_name] = turn + 1
        return ordered[turn % len(ordered)]


def least_busy_ties(candidates: Collection[str], loads: Mapping[str, int]) -> list[str]:
    """The candidates running the fewest runs (a client missing from `loads` runs none)."""
    if not candidates:
        return []
    fewest = min(loads.get(c, 0) for c in candidates)
    return [c for c in candidates if loads.get(c, 0) == fewest]


def sticky(group_id: int, candidates: Collection[str]) -> str | None:
    """Rendezvous (highest random weight) hashing of the group over the candidates: each
    group keeps its client while that client is a candidate, and when one leaves, only its
    own groups move (each to its next-highest weight); a client that joins takes only the
    groups it now outweighs. A stable hash (not Python's salted hash()) so every scheduler
    agrees."""
    if not candidates:
        return None
    return max(candidates, key=lambda c: (_weight(group_id, c), c))


def _weight(group_id: int, client_id: str) -> bytes:
    return hashlib.blake2b(f"{group_id}\x00{client_id}".encode(), digest_size=8).digest()


def failover(candidates: Collection[str]) -> str | None:
    """The first candidate by name: every run goes there while it lives, then to the next."""
    return min(candidates) if candidates else None


class Selector:
    """Picks a client for one run by the group's route. Round robin keeps its turn per job
    name (as before routes existed) and client tag, least_busy breaks ties with the same
    turns. Per tag: a tagged group's picks among its few clients must not move the turn of
    the job's untagged groups (with two clients, alternating runs of a tagged and an untagged
    group sent every untagged run to the same client)."""

    def __init__(self, round_robin: RoundRobin | None = None) -> None:
        self.round_robin = round_robin or RoundRobin()

    def pick(
        self,
        route: str,
        job_name: str,
        group_id: int,
        candidates: Sequence[str],
        loads: Mapping[str, int] | None = None,
        client_tag: str | None = None,
    ) -> str | None:
        turns = job_name if client_tag is None else f"{job_name}\x00{client_tag}"
        if route == ROUND_ROBIN:
            return self.round_robin.pick(turns, candidates)
        if route == BROADCAST:
            raise InvalidField(
                "route", "broadcast runs on every client, not one (fss.domain.broadcast)"
            )
        if route == LEAST_BUSY:
            return self.round_robin.pick(turns, least_busy_ties(candidates, loads or {}))
        if route == STICKY:
            return sticky(group_id, candidates)
        if route == FAILOVER:
            return failover(candidates)
        raise InvalidField("route", f"unknown route {route!r}; one of {', '.join(ROUTES)}")
