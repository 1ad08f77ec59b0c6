"""The layering rules of ARCHITECTURE.md hold, and the rule for domain/ misses no module."""

from __future__ import annotations

import configparser
import pkgutil
import subprocess
import sys
from pathlib import Path

import fss

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"
DOMAIN_CONTRACT = "importlinter:contract:domain-is-pure"
# What domain/ may import: itself and the exception root.
DOMAIN_MAY_IMPORT = {"fss.domain", "fss.errors"}


def _top_level_modules() -> set[str]:
    return {f"fss.{m.name}" for m in pkgutil.iter_modules(fss.__path__) if m.name != "__main__"}


def test_every_fss_module_outside_domain_is_forbidden_to_domain() -> None:
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    forbidden = set(config[DOMAIN_CONTRACT]["forbidden_modules"].split())

    assert forbidden == _top_level_modules() - DOMAIN_MAY_IMPORT


def test_every_package_is_a_regular_package() -> None:
    """`packages = find:` skips folders without __init__.py: a wheel would lack them."""
    root = Path(fss.__file__).parent
    folders = {p.parent for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    assert sorted(str(f) for f in folders if not (f / "__init__.py").exists()) == []


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--config", str(SETUP_CFG)],
        cwd=SETUP_CFG.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
