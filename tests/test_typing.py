"""The package type-checks under ``mypy --strict`` (pyproject.toml's ``[tool.mypy]``: strict,
calls into distributed, which has no type hints, excepted)."""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).parent.parent


def test_the_package_type_checks_strictly() -> None:
    pytest.importorskip("mypy", reason="the test extra installs mypy")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "dasktune"], cwd=ROOT, capture_output=True, text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
