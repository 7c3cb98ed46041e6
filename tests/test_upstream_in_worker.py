"""Optuna's own storage-parametrised tests, against DaskStorage, with pytest itself running
inside a Dask worker task (see ``tests/test_upstream.py``).

The scheduler's memory only: what this adds to the run from the client is where the calls
come from (a worker's client, in a task's thread); the backend behind the scheduler is the
same for both, and the client's run tests SQLite there (and ``tests/test_conformance.py``
every backend)."""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys

import pytest

from upstream.suite import check
from upstream.suite import IN_WORKER
from upstream.suite import optuna_tests as fetch_optuna_tests
from upstream.suite import outcomes
from upstream.suite import pytest_args
from upstream.suite import UPSTREAM

MODES = "dasktune_inmemory"


@pytest.fixture(scope="module")
def optuna_tests() -> Path:
    return fetch_optuna_tests()


def test_optunas_storage_tests_pass_inside_a_worker_task(optuna_tests: Path, tmp_path: Path) -> None:
    junit = tmp_path / "worker.xml"
    script = tmp_path / "in_worker.py"
    script.write_text(IN_WORKER)
    out = subprocess.run(
        [sys.executable, str(script), *pytest_args(optuna_tests, junit, MODES), "--capture=sys", str(UPSTREAM)],
        cwd=tmp_path, capture_output=True, text=True, timeout=1200,
    )
    assert junit.exists(), out.stdout[-3000:] + out.stderr[-3000:]
    check(*outcomes(junit), MODES)
