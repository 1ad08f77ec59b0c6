"""Whether a scheduler's broker belongs to its installation (pure: the caller brings the facts).

One database is one installation; its id is drawn by `fss db upgrade`. The schedulers of an
installation keep a mark on each Redis they use, the broker's and the fence's
(`fss:installation` = the id, renewed while they run). A scheduler dispatches only while each
carries its own mark (or none it may take): two installations
sharing one Redis database, or a scheduler started with another broker URL than its peers,
would otherwise send runs where no worker of theirs listens, or record each other's events.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class BrokerVerdict(Enum):
    OURS = "ours"  # the broker carries this installation's mark: dispatch
    CLAIMABLE = "claimable"  # no mark, nothing says it is the wrong broker: set the mark
    FOREIGN = "foreign"  # another installation's schedulers run on this Redis database
    WRONG_BROKER = "wrong broker"  # the installation's live workers are on another broker


@dataclass(frozen=True)
class BrokerFacts:
    installation: str
    # The mark found on the broker, None when there is none.
    mark: str | None
    # This process held the mark before (it is on the right broker): a missing mark then
    # means the broker restarted without persistence, not that the URL is wrong.
    held_before: bool
    # Live workers of the installation (per the database) that keep a presence beacon.
    live_workers: int
    # How many of those have their beacon connected to this broker's database; None when
    # the broker cannot say (CLIENT LIST refused).
    workers_here: int | None


@dataclass(frozen=True)
class BrokerJudgement:
    verdict: BrokerVerdict
    reason: str | None = None

    @property
    def may_dispatch(self) -> bool:
        return self.verdict in (BrokerVerdict.OURS, BrokerVerdict.CLAIMABLE)


def judge_broker(
    facts: BrokerFacts, broker: str, role: str = "broker", setting: str = "broker URL"
) -> BrokerJudgement:
    """`broker` names the Redis in the reason (a URL with its password masked); `role` says
    which of the scheduler's Redis it is ("broker", or "fence Redis" when FSS_FENCE_URL names
    another one) and `setting` the setting that differs."""
    if facts.mark == facts.installation:
        return BrokerJudgement(BrokerVerdict.OURS)
    if facts.mark is not None:
        return BrokerJudgement(
            BrokerVerdict.FOREIGN,
            f"{role} {broker} is in use by installation {facts.mark} (this database is "
            f"installation {facts.installation}); give each installation its own Redis "
            "database, or stop the other one's schedulers (its mark lapses 15 s after they stop)",
        )
    if facts.held_before:
        return BrokerJudgement(BrokerVerdict.CLAIMABLE)
    if facts.live_workers > 0 and facts.workers_here == 0:
        return BrokerJudgement(
            BrokerVerdict.WRONG_BROKER,
            f"none of the {facts.live_workers} live workers of installation "
            f"{facts.installation} is connected to {role} {broker}: this scheduler's "
            f"{setting} differs from theirs",
        )
    return BrokerJudgement(BrokerVerdict.CLAIMABLE)
