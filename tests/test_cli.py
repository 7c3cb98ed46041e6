"""The ``dasktune`` console script against real scheduler and worker processes."""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import textwrap
import time

import optuna
import pytest

from conftest import ProcessCluster

DASKTUNE = shutil.which("dasktune", path=os.path.dirname(sys.executable)) or "dasktune"

OBJECTIVE = textwrap.dedent(
    """
    import math

    def objective(trial):
        x = trial.suggest_float("x", -5, 5)
        return (x - 1.5) ** 2

    def two(trial):
        x = trial.suggest_float("x", 0, 1)
        return x, math.sqrt(1 - x)

    def broken(trial):
        raise RuntimeError("the objective broke")
    """
)


def dasktune_cli(*args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DASKTUNE, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


@pytest.fixture
def objective_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_objective.py"
    path.write_text(OBJECTIVE)
    return path


def test_run_then_manage_the_study(
    process_cluster: ProcessCluster, objective_file: Path, tmp_path: Path
) -> None:
    """The whole life of a study through the CLI: run, list, show, best, export, delete."""
    address = process_cluster.address
    done = dasktune_cli(
        "run", f"{objective_file}:objective", "--scheduler", address, "--study", "quad",
        "--n-trials", "15", "--quiet",
    )
    assert done.returncode == 0, done.stderr
    assert "Finished 15 trials of study 'quad'" in done.stdout

    listing = dasktune_cli("studies", "--scheduler", address, "--json")
    assert listing.returncode == 0, listing.stderr
    (row,) = [r for r in json.loads(listing.stdout) if r["study"] == "quad"]
    assert row["COMPLETE"] == 15 and row["RUNNING"] == 0 and row["directions"] == "minimize"

    # What the CLI says agrees with the study as a Python client loads it.
    with process_cluster.client() as client:
        import dasktune

        study = optuna.load_study(
            study_name="quad", storage=dasktune.DaskStorage(name=row["storage"], client=client)
        )
        best = study.best_trial
        xs = sorted(t.params["x"] for t in study.trials)
    assert row["best"] == best.value

    best_cli = json.loads(dasktune_cli("best", "quad", "--scheduler", address, "--json").stdout)
    assert best_cli["number"] == best.number and best_cli["params"] == best.params

    shown = dasktune_cli("show", "quad", "--scheduler", address, "--json", "--limit", "5")
    info = json.loads(shown.stdout)
    assert info["trials"]["COMPLETE"] == 15
    assert [r["finished"] for r in info["runs"]] == [15] and info["runs"][0]["done"]
    assert [t["number"] for t in info["latest_trials"]] == [10, 11, 12, 13, 14]
    human = dasktune_cli("show", "quad", "--scheduler", address)
    assert "15 COMPLETE" in human.stdout and "Latest 10 trials" in human.stdout

    exported = dasktune_cli("export", "quad", "--scheduler", address, "--to", str(tmp_path / "q.db"))
    assert exported.returncode == 0, exported.stderr
    copy = optuna.load_study(study_name="quad", storage=f"sqlite:///{tmp_path / 'q.db'}")
    assert sorted(t.params["x"] for t in copy.trials) == xs and copy.best_value == best.value
    again = dasktune_cli("export", "quad", "--scheduler", address, "--to", str(tmp_path / "q.db"))
    assert again.returncode != 0 and "--as" in again.stderr

    journal = tmp_path / "q.log"
    assert dasktune_cli(
        "export", "quad", "--scheduler", address, "--to", f"journal://{journal}", "--as", "q2"
    ).returncode == 0
    assert len(optuna.load_study(study_name="q2", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )).trials) == 15

    deleted = dasktune_cli("delete", "quad", "--scheduler", address, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    gone = dasktune_cli("show", "quad", "--scheduler", address)
    assert gone.returncode != 0 and "no study named 'quad'" in gone.stderr


def test_run_with_a_durable_storage_a_module_and_two_objectives(
    process_cluster: ProcessCluster, objective_file: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    done = dasktune_cli(
        "run", "my_objective:two", "--scheduler", process_cluster.address, "--study", "pareto",
        "--storage", url, "--n-trials", "8", "--direction", "minimize", "--direction",
        "minimize", "--quiet", cwd=objective_file.parent,
    )
    assert done.returncode == 0, done.stderr
    stored = optuna.load_study(study_name="pareto", storage=url)
    assert len(stored.trials) == 8 and len(stored.directions) == 2
    best = json.loads(
        dasktune_cli("best", "pareto", "--scheduler", process_cluster.address, "--json").stdout
    )
    assert {t["number"] for t in best} == {t.number for t in stored.best_trials}

    mismatch = dasktune_cli(
        "run", f"{objective_file}:objective", "--scheduler", process_cluster.address,
        "--study", "pareto", "--storage", url, "--n-trials", "1", "--direction", "maximize",
    )
    assert mismatch.returncode == 2 and "already exists with directions" in mismatch.stderr
    assert len(optuna.load_study(study_name="pareto", storage=url).trials) == 8


def test_detached_run_is_followed_by_show(
    process_cluster: ProcessCluster, objective_file: Path
) -> None:
    started = dasktune_cli(
        "run", f"{objective_file}:objective", "--scheduler", process_cluster.address,
        "--study", "later", "--n-trials", "10", "--detach",
    )
    assert started.returncode == 0, started.stderr
    assert "Started run" in started.stdout and "dasktune show later" in started.stdout

    def finished() -> int:
        info = json.loads(
            dasktune_cli("show", "later", "--scheduler", process_cluster.address, "--json").stdout
        )
        return info["runs"][0]["done"] and info["trials"]["COMPLETE"]

    deadline = time.monotonic() + 60
    while not finished():
        assert time.monotonic() < deadline, "the detached run did not finish"
        time.sleep(0.5)
    assert finished() == 10


def test_errors_name_the_problem_and_the_fix(
    process_cluster: ProcessCluster, objective_file: Path, tmp_path: Path
) -> None:
    address = process_cluster.address
    # A scheduler nobody installed the plugin on holds no studies.
    bare = dasktune_cli("studies", "--scheduler", address)
    assert bare.returncode == 2 and "--preload dasktune" in bare.stderr

    unreachable = dasktune_cli("studies", "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "2")
    assert unreachable.returncode == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in unreachable.stderr

    for spec, message in [
        (f"{tmp_path / 'missing.py'}:objective", "cannot import"),
        ("no_such_module_anywhere:objective", "No module named 'no_such_module_anywhere'"),
        (f"{objective_file}:nothing", "has no attribute 'nothing'"),
        (str(objective_file), "must be MODULE:NAME"),
    ]:
        failed = dasktune_cli("run", spec, "--scheduler", address, "--study", "s", "--n-trials", "1")
        assert failed.returncode == 2 and message in failed.stderr, failed.stderr

    broken = dasktune_cli(
        "run", f"{objective_file}:broken", "--scheduler", address, "--study", "b",
        "--n-trials", "3", "--quiet",
    )
    assert broken.returncode == 1 and "the objective broke" in broken.stderr

    unknown = dasktune_cli("best", "nope", "--scheduler", address)
    assert unknown.returncode == 2 and "no study named 'nope'" in unknown.stderr
    assert "dasktune studies" in unknown.stderr
    empty = dasktune_cli(
        "run", f"{objective_file}:broken", "--scheduler", address, "--study", "b",
        "--n-trials", "1", "--quiet",
    )
    assert empty.returncode == 1
    no_best = dasktune_cli("best", "b", "--scheduler", address)
    assert no_best.returncode == 2 and "no completed trial" in no_best.stderr


def test_help_for_every_command() -> None:
    for command in ["demo", "run", "studies", "show", "best", "export", "delete"]:
        shown = dasktune_cli(command, "--help")
        assert shown.returncode == 0 and "usage: dasktune " + command in shown.stdout
    assert dasktune_cli().returncode == 2
