"""Print setup.cfg's dependency floors as a pip constraints file: `name>=X` becomes `name==X`.

scripts/test installs a third venv with these constraints (`pip install -c`), so the oldest
versions fss declares it works with are the ones a test run actually used. Reading the
floors from setup.cfg itself keeps the two from drifting apart. Usage:

    python scripts/floors.py [setup.cfg] > floors.txt
"""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

# `name[extra]>=1.2.3,<4`: the name and the version after `>=` (a floor given as `==` counts).
REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?P<spec>[^;#]*)"
)
FLOOR = re.compile(r"(?:>=|==)\s*(?P<version>[0-9][^,\s]*)")


def install_requires(setup_cfg: Path) -> list[str]:
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=("#", ";"),
                                       inline_comment_prefixes=None)
    parser.read(setup_cfg, encoding="utf-8")
    raw = parser.get("options", "install_requires", fallback="")
    return [line.strip() for line in raw.splitlines() if line.strip()]


def floors(requirements: list[str]) -> dict[str, str]:
    """Each requirement's floor; a requirement without one (tzdata) is left free."""
    found: dict[str, str] = {}
    for requirement in requirements:
        match = REQUIREMENT.match(requirement)
        if match is None:
            continue
        floor = FLOOR.search(match.group("spec"))
        if floor is not None:
            found[match.group("name")] = floor.group("version")
    return found


def main(argv: list[str]) -> int:
    default = Path(__file__).resolve().parents[1] / "setup.cfg"
    setup_cfg = Path(argv[1]) if len(argv) > 1 else default
    for name, version in floors(install_requires(setup_cfg)).items():
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
