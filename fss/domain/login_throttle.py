"""How long refused logins lock a user name or an address out (pure: no clock, no I/O).

Each refused login counts against two keys, the user name and the client address. After the
n-th consecutive failure of a key, every login of that key is refused unchecked for a while:
not at all after the first (one typo costs nothing), 1, 2 and 4 s after failures 2-4 (a
person retyping hardly notices; a script can no longer try 20 passwords in 0.1 s), then
1 min after the 5th, doubling with each further failure up to 15 min. A failure more than
FORGET_AFTER after the key's previous one counts from 1 again; a successful login clears the
user's count (not the address's: one good account must not reset an address that guesses at
others).
"""

from __future__ import annotations

from datetime import datetime, timedelta

SHORT_WAITS_S = (0, 1, 2, 4)
FIRST_LOCK = timedelta(minutes=1)
MAX_LOCK = timedelta(minutes=15)
FORGET_AFTER = timedelta(hours=1)
# A name is stored as the key "user:<name>"; the key column holds 200 characters.
MAX_KEY_LENGTH = 200


def lock_for(failures: int) -> timedelta:
    """How long a key stays locked after its `failures`-th consecutive refused login."""
    if failures <= 0:
        return timedelta(0)
    if failures <= len(SHORT_WAITS_S):
        return timedelta(seconds=SHORT_WAITS_S[failures - 1])
    doublings = failures - len(SHORT_WAITS_S) - 1
    if doublings >= 8:  # 2**8 minutes is far past the cap; no huge powers
        return MAX_LOCK
    lock: timedelta = FIRST_LOCK * (2**doublings)
    return min(lock, MAX_LOCK)


def lock_schedule(now: datetime) -> tuple[datetime, ...]:
    """`now + lock_for(n)` for n = 1, 2, ... up to the first n that reaches the cap: the last
    entry holds for every count past the end (what a guarded UPDATE picks by count)."""
    schedule: list[datetime] = []
    failures = 1
    while True:
        duration = lock_for(failures)
        schedule.append(now + duration)
        if duration >= MAX_LOCK:
            return tuple(schedule)
        failures += 1


def user_key(name: str) -> str:
    return f"user:{name}"[:MAX_KEY_LENGTH]


def address_key(address: str) -> str:
    return f"ip:{address}"[:MAX_KEY_LENGTH]
