"""fss's cron against peers' published test vectors (tests/domain/cron_vectors.json).

Each case is the peer's expectation, unless the file records what fss does instead
(`fss_expect`) and why: those are fss's documented rules (README, Scheduling rules).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fss.domain.cron import next_cron_time, validate_cron
from fss.errors import InvalidField

VECTORS = json.loads((Path(__file__).parent / "cron_vectors.json").read_text())
CASES: list[dict[str, Any]] = VECTORS["cases"]


def case_id(case: dict[str, Any]) -> str:
    return f"{case['source']}:{case['kind']}:{case['cron']}@{case.get('at') or case.get('after')}"


def outcome(case: dict[str, Any]) -> Any:
    """What fss does with the case, in the file's terms."""
    try:
        validate_cron(case["cron"])
    except InvalidField:
        return "invalid"
    if case["kind"] in ("invalid", "valid"):
        return "valid"
    if case["kind"] == "fires_at":
        at = datetime.fromisoformat(case["at"])
        return next_cron_time(case["cron"], at - timedelta(seconds=1), case["zone"]) == at
    return next_cron_time(case["cron"], datetime.fromisoformat(case["after"]), case["zone"])


def expected(case: dict[str, Any]) -> Any:
    if "fss_expect" in case:
        wanted = case["fss_expect"]
    elif case["kind"] in ("invalid", "valid"):
        wanted = case["kind"]
    else:
        wanted = case["expect"]
    if case["kind"] == "next" and wanted is None:
        return "invalid"  # never fires: refused when the group is created
    if case["kind"] == "next" and wanted != "invalid":
        return datetime.fromisoformat(wanted)
    return wanted


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_fss_matches_the_published_vector_or_its_documented_rule(case: dict[str, Any]) -> None:
    assert outcome(case) == expected(case)


def test_every_source_names_its_repository_path_and_commit() -> None:
    for source in VECTORS["sources"].values():
        assert source["repo"] and source["path"] and len(source["commit"]) == 40
    assert {c["source"] for c in CASES} == set(VECTORS["sources"])


def test_every_difference_from_a_peer_gives_its_reason() -> None:
    differing = [c for c in CASES if "fss_expect" in c]

    assert all(c.get("why") for c in differing)
    # Only the documented rules differ: DST (Vixie cron), Quartz's day rule, '*' = '?', L lists.
    assert len(differing) == 11
    assert len(CASES) == 99
