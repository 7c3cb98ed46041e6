"""What both upstream test modules share: Optuna's test-suite from its sdist, how it is
run against DaskStorage, and how its outcome is judged (see ``tests/test_upstream.py``).

The two ways of running it are two test modules, so that parallel test runs put them on
different processes.
"""

from __future__ import annotations

import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import xml.etree.ElementTree as ElementTree

import optuna
import pytest

UPSTREAM = Path(__file__).parent
FILES = [
    "storages_tests/test_storages.py",
    "storages_tests/test_heartbeat.py",
    "study_tests/test_study.py",
    "study_tests/test_optimize.py",
    "study_tests/test_dataframe.py",
    "trial_tests",
]
#: Tests that cannot pass against DaskStorage, by design: node id pattern -> why.
BY_DESIGN: dict[str, str] = {
    r"test_create_new_study_unique_id\[dasktune_sqlite\]": (
        "SQLite behind the scheduler reuses a deleted study's id, as Optuna's own RDBStorage "
        "does; the test exempts RDBStorage by an isinstance check that a proxy cannot pass"
    ),
}


def optuna_tests() -> Path:
    """Optuna's ``tests`` directory from the sdist of the installed version (cached)."""
    cache = Path(
        os.environ.get("DASKTUNE_UPSTREAM_CACHE", Path.home() / ".cache" / "dasktune-upstream")
    ) / f"optuna-{optuna.__version__}"
    if not (cache / "tests").is_dir():
        with tempfile.TemporaryDirectory() as download:
            fetched = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                 "--quiet", f"optuna=={optuna.__version__}", "-d", download],
                capture_output=True, text=True, timeout=600,
            )
            if fetched.returncode != 0:
                pytest.fail(f"could not download Optuna's sdist: {fetched.stderr[-2000:]}")
            (archive,) = Path(download).glob("optuna-*.tar.gz")
            staging = Path(download) / "x"
            with tarfile.open(archive) as tar:
                members = [m for m in tar.getmembers() if "/tests/" in m.name + "/"]
                tar.extractall(staging, members=members, filter="data")
            (source,) = staging.glob("optuna-*/tests")
            # Both test modules may fetch at once: the cache appears whole, by one rename.
            mine = cache.with_name(f"{cache.name}.{os.getpid()}")
            mine.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source), mine / "tests")
            try:
                os.rename(mine, cache)
            except OSError:  # the other one was first
                shutil.rmtree(mine, ignore_errors=True)
    return cache


def outcomes(junit: Path) -> tuple[dict[str, str], int]:
    """``{node id: failure message}`` of the tests that failed, and how many ran."""
    failed, ran = {}, 0
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        ran += 1
        for kind in ("failure", "error"):
            element = case.find(kind)
            if element is not None:
                name = f"{case.get('classname')}::{case.get('name')}"
                failed[name] = (element.get("message") or "")[:300]
    return failed, ran


def check(failed: dict[str, str], ran: int, modes: str = "dasktune") -> None:
    """Every test of ``modes`` (as :func:`pytest_args` selected them) passed but those
    :data:`BY_DESIGN` lists, and each of those listed for them failed."""
    assert ran > 100, f"only {ran} of Optuna's tests ran"
    unexpected = {
        name: message
        for name, message in failed.items()
        if not any(re.search(pattern, name) for pattern in BY_DESIGN)
    }
    assert not unexpected, "Optuna's own tests failed against DaskStorage:\n" + "\n".join(
        f"{name}: {message}" for name, message in sorted(unexpected.items())
    )
    listed = [p for p in BY_DESIGN if modes in p.replace("\\", "")]
    stale = [p for p in listed if not any(re.search(p, name) for name in failed)]
    assert not stale, f"listed as failing by design, but passed: {stale}"


def pytest_args(tests: Path, junit: Path, modes: str = "dasktune") -> list[str]:
    """Optuna's storage tests, of DaskStorage's modes whose names start with ``modes``."""
    return [
        *[str(tests / "tests" / f) for f in FILES],
        "-p", "dasktune_modes",
        "-p", "no:cacheprovider",
        "-p", "no:timeout",
        "-k", modes,  # the storage-parametrised cases: DaskStorage's modes only
        "-q",
        "-W", "ignore::optuna.exceptions.ExperimentalWarning",
        f"--rootdir={tests}",
        f"--junitxml={junit}",
    ]


IN_WORKER = textwrap.dedent(
    """
    import os, sys
    from distributed import Client, LocalCluster

    def run_pytest(args, upstream):
        # pytest itself runs in this task: every storage call comes from a worker thread.
        os.environ["DASKTUNE_UPSTREAM_IN_WORKER"] = "1"
        sys.path.insert(0, upstream)
        import pytest
        return pytest.main(args)

    if __name__ == "__main__":
        args, upstream = sys.argv[1:-1], sys.argv[-1]
        with LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            code = client.submit(run_pytest, args, upstream, pure=False).result()
        print("pytest exit code", int(code))
    """
)
