"""Optuna's own storage-parametrised tests, against DaskStorage.

The test-suite ships in Optuna's source distribution: it is downloaded for the installed
Optuna version (into a cache outside the repository), and its storage-parametrised tests
run with DaskStorage's modes (see ``tests/upstream/dasktune_modes.py``) twice: from a
client process, and with pytest itself running inside a Dask worker task — the
``client.submit(study.optimize, ...)`` situation, where storage calls come from a worker.

What fails by design is listed in :data:`BY_DESIGN`, each with its reason; anything else
failing fails here, named. A listed test that passes fails here too (the list must stay
true).
"""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

import pytest

from upstream.suite import check
from upstream.suite import optuna_tests as fetch_optuna_tests
from upstream.suite import outcomes
from upstream.suite import pytest_args
from upstream.suite import UPSTREAM

pytestmark = pytest.mark.oldest  # also run on the oldest admitted Optuna and distributed


@pytest.fixture(scope="module")
def optuna_tests() -> Path:
    return fetch_optuna_tests()


def test_optunas_storage_tests_pass_from_the_client(optuna_tests: Path, tmp_path: Path) -> None:
    junit = tmp_path / "client.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(UPSTREAM), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args(optuna_tests, junit)],
        cwd=tmp_path, env=env, capture_output=True, timeout=1200,
    )
    check(*outcomes(junit))
