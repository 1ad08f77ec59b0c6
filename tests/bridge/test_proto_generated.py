"""The checked-in Python code of the bridge protocol is what scripts/gen_proto.sh makes now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "fss" / "bridge" / "proto" / "fss" / "v1"
FILES = ("fss_pb2.py", "fss_pb2.pyi", "fss_pb2_grpc.py")


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_proto.sh"), str(tmp_path)],
        check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    for name in FILES:
        fresh = (tmp_path / "fss" / "v1" / name).read_text()
        checked_in = (GENERATED / name).read_text()
        assert fresh == checked_in, f"{name} is stale: run bash scripts/gen_proto.sh"
