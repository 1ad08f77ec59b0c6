"""Which interpreter runs the fss processes that tests start.

scripts/test builds two venvs without system site packages: one with the test tools (pytest
runs there) and one with `pip install -e .` alone, named by FSS_TEST_RUNTIME_PYTHON. fss
processes started by tests run on the second, as a user's would: a dependency that only the
test tools pull in (pytest brings `packaging`, which kombu's Redis transport needs) cannot
hide there. Without the variable, tests use the interpreter running pytest.
"""

from __future__ import annotations

import os
import sys

RUNTIME_PYTHON_ENV = "FSS_TEST_RUNTIME_PYTHON"


def runtime_python() -> str:
    return os.environ.get(RUNTIME_PYTHON_ENV) or sys.executable
