"""The ``dasktune`` console script against real scheduler and worker processes.

Every command runs as a subprocess, as a user types it; the demo's wait is driven through a
real terminal (a pty). Speed is measured in ``benchmarks/cli_timings.py``, never asserted
here; what is asserted is that the parser imports neither Optuna nor distributed.
"""

from __future__ import annotations

from collections.abc import Iterator
import json
import os
from pathlib import Path
import pty
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request

import optuna
from optuna.trial import TrialState
import pytest

from conftest import ProcessCluster
from conftest import wait_for
import dasktune
from dasktune import compat
from dasktune.demo import OPTIMUM_MSE
from dasktune.storage.backends import open_backend
from dasktune.storage.wire import METADATA_KEY

DASKTUNE = shutil.which("dasktune", path=os.path.dirname(sys.executable)) or "dasktune"

OBJECTIVE = textwrap.dedent(
    """
    import math
    import time

    def objective(trial):
        x = trial.suggest_float("x", -5, 5)
        return (x - 1.5) ** 2

    def two(trial):
        x = trial.suggest_float("x", 0, 1)
        return x, math.sqrt(1 - x)

    def broken(trial):
        raise RuntimeError("the objective broke")

    def introspect(trial):
        # What the CLI gave the study: the objective runs with the study's sampler and pruner.
        trial.set_user_attr("sampler", type(trial.study.sampler).__name__)
        trial.set_user_attr("pruner", type(trial.study.pruner).__name__)
        return trial.suggest_float("x", -5, 5) ** 2

    def uploading(trial):
        # A file uploaded to the scheduler's artifact store, as a trial would keep a plot.
        import os, optuna
        from dasktune.artifacts import DaskArtifactStore
        path = f"/tmp/dasktune-cli-{os.getpid()}-{trial.number}.txt"
        with open(path, "w") as f:
            f.write(f"trial {trial.number}")
        optuna.artifacts.upload_artifact(artifact_store=DaskArtifactStore(), file_path=path, study_or_trial=trial)
        os.remove(path)
        return trial.suggest_float("x", 0, 1)

    def slow(trial):
        x = trial.suggest_float("x", -5, 5)
        time.sleep(0.5)
        return x ** 2

    def rich(trial):
        x = trial.suggest_float("x", 1e-3, 10, log=True)
        n = trial.suggest_int("n", 1, 9, step=2)
        trial.suggest_categorical("c", [None, True, "s"])
        trial.set_user_attr("nested", {"n": n, "list": [1, None]})
        for step in range(3):
            trial.report(x * step, step)
        if trial.number % 4 == 2:
            import optuna
            raise optuna.TrialPruned()
        return float("nan") if trial.number % 4 == 3 else x * n  # NaN: the trial FAILs
    """
)


def clean_env(**changes: str) -> dict[str, str]:
    """This environment without a default scheduler (a developer's DASK_SCHEDULER_ADDRESS
    must not decide a test), plus ``changes``."""
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    return {**env, **changes}


def dasktune_cli(
    *args: str, timeout: float = 120, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    # stdin is not a terminal, as in CI: nothing may wait for a key press.
    return subprocess.run(
        [DASKTUNE, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
        env=env or clean_env(), stdin=subprocess.DEVNULL,
    )


def http_status(url: str) -> int | None:
    """The HTTP status ``url`` answers with; ``None`` when nothing listens there."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, ConnectionError):
        return None


def http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def line_with(text: str, prefix: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(prefix)]
    return line[len(prefix):].strip()


@pytest.fixture
def objective_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_objective.py"
    path.write_text(OBJECTIVE)
    return path


def load(client, name: str, storage: str = "dasktune") -> optuna.Study:
    """Study ``name`` as a Python client of the cluster sees it (the CLI's default storage)."""
    return optuna.load_study(study_name=name, storage=dasktune.DaskStorage(name=storage, client=client))


# -- the parser -------------------------------------------------------------------------

COMMANDS = ["demo", "run", "studies", "show", "best", "export", "cancel", "delete"]


def test_help_for_every_command() -> None:
    for command in COMMANDS:
        shown = dasktune_cli(command, "--help")
        assert shown.returncode == 0 and "usage: dasktune " + command in shown.stdout
        assert "-v, --verbose" in shown.stdout and "DASK_SCHEDULER_ADDRESS" in shown.stdout
    assert dasktune_cli().returncode == 2


def test_every_argument_of_every_command_has_help_text() -> None:
    from dasktune.cli.parser import build_parser

    parser = build_parser()
    for name, command in parser.commands.items():
        for action in command._actions:
            assert action.help and action.help.strip(), (name, action.dest)
        shown = command.format_help()
        for action in command._actions:
            if not action.option_strings:  # a positional: listed with its help
                assert re.search(rf"^  {re.escape(action.metavar)}\s+\S", shown, re.MULTILINE), (name, shown)


def test_the_parser_imports_neither_optuna_nor_distributed() -> None:
    """--help and usage errors answer before anything heavy is imported: the parser is
    argparse only, and commands are imported after parsing."""
    code = textwrap.dedent(
        f"""
        import sys
        from dasktune.cli import main
        for argv in {[[c, "--help"] for c in COMMANDS]!r} + [
            ["run", "f.py:o", "--scheduler", "tcp://h:1", "--study", "s", "--n-trials", "-3"],
            ["show", "s", "--scheduler", "tcp://h:1", "--limit", "0"],
        ]:
            try:
                main(argv)
            except SystemExit as e:
                assert e.code in (0, 2), (argv, e.code)
            else:
                raise AssertionError(f"{{argv}} did not exit")
        heavy = {{"optuna", "distributed", "dask", "bokeh", "tornado", "numpy"}}
        print(sorted(heavy & {{m.split(".")[0] for m in sys.modules}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "[]", (out.stdout[-500:], out.stderr[-2000:])
    timed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import dasktune.cli"],
        capture_output=True, text=True, timeout=120,
    )
    imported = [line.rsplit("|", 1)[-1].strip() for line in timed.stderr.splitlines()]
    assert "dasktune.cli.parser" in imported
    assert not [m for m in imported if m.split(".")[0] in ("optuna", "distributed", "bokeh")]


# -- run, show, best, export, delete -------------------------------------------------------


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
        study = load(client, "quad", row["storage"])
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
    assert "Exported 15 trials of study 'quad'" in exported.stdout
    assert "15/15" in exported.stderr  # the progress bar
    copy = optuna.load_study(study_name="quad", storage=f"sqlite:///{tmp_path / 'q.db'}")
    assert sorted(t.params["x"] for t in copy.trials) == xs and copy.best_value == best.value
    again = dasktune_cli("export", "quad", "--scheduler", address, "--to", str(tmp_path / "q.db"))
    assert again.returncode == 2 and "--as" in again.stderr

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

    # For a person: the Pareto front as a table, a column per objective and per parameter,
    # values in full (as Optuna prints them), in `best`, `show` and a count in `studies`.
    front = sorted(stored.best_trials, key=lambda t: t.number)
    human = dasktune_cli("best", "pareto", "--scheduler", process_cluster.address).stdout.splitlines()
    assert re.fullmatch(r"\| number \| +values_0 \| +values_1 \| +params_x \| duration_s \|", human[1]), human
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in human[3:-1]]
    assert [(int(r[0]), float(r[1]), float(r[2])) for r in rows] == [(t.number, *t.values) for t in front]
    assert all(r[1] == str(t.values[0]) and r[3] == str(t.params["x"]) for r, t in zip(rows, front))
    shown = dasktune_cli("show", "pareto", "--scheduler", process_cluster.address).stdout
    assert f"Best trials: the {len(front)} on the Pareto front" in shown
    for t in front:
        cells = r" \| +".join(re.escape(str(v)) for v in (t.number, *t.values))
        assert re.search(rf"^\| +{cells} \|", shown, re.MULTILINE), (t.number, shown)
    listed = dasktune_cli("studies", "--scheduler", process_cluster.address).stdout
    (row,) = [line for line in listed.splitlines() if "| pareto " in line]
    assert f"{len(front)} on the Pareto front" in row and "[" not in row

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
    assert "dasktune cancel later" in started.stdout

    def finished() -> int:
        info = json.loads(
            dasktune_cli("show", "later", "--scheduler", process_cluster.address, "--json").stdout
        )
        return info["runs"][0]["done"] and info["trials"]["COMPLETE"]

    assert wait_for(finished, timeout=60, interval=0.5, message="the detached run to finish") == 10


def test_errors_name_the_problem_and_the_fix(
    process_cluster: ProcessCluster, objective_file: Path, tmp_path: Path
) -> None:
    address = process_cluster.address
    # A scheduler nobody installed the plugin on holds no studies.
    bare = dasktune_cli("studies", "--scheduler", address)
    assert bare.returncode == 2 and "--preload dasktune" in bare.stderr

    unreachable = dasktune_cli("studies", "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "2")
    assert unreachable.returncode == 2 and unreachable.stderr.count("\n") == 1
    assert "nothing listens at 127.0.0.1:9 (connection refused)" in unreachable.stderr

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


def test_usage_errors_exit_2_in_one_line_and_create_nothing(
    process_cluster: ProcessCluster, objective_file: Path
) -> None:
    """Each bad option is refused before connecting: exit 2, one line naming the option
    and what it takes, no traceback — and the scheduler is left as it was (no plugin, no
    study)."""
    bad = [
        (["--n-trials", "-3"], "--n-trials", "positive integer"),
        (["--n-trials", "0"], "--n-trials", "positive integer"),
        (["--n-trials", "1.5"], "--n-trials", "positive integer"),
        (["--timeout", "0"], "--timeout", "positive number of seconds"),
        (["--timeout", "soon"], "--timeout", "positive number of seconds"),
        (["--concurrency", "0"], "--concurrency", "positive integer"),
        (["--connect-timeout", "-1"], "--connect-timeout", "positive number of seconds"),
        (["--sampler", "annealing"], "--sampler", "choose from 'parallel', 'tpe', 'random'"),
        (["--pruner", "eager"], "--pruner", "choose from 'none', 'median'"),
        (["--seed", "-1"], "--seed", "integer from 0"),
        (["--direction", "minimize", "--direction", "minimize", "--pruner", "median"], "--pruner",
         "cannot prune a study with 2 objectives"),
    ]
    import importlib.util

    if importlib.util.find_spec("cmaes") is None:
        bad.append((["--sampler", "cmaes"], "--sampler", "pip install cmaes"))
    for options, option, says in bad:
        failed = dasktune_cli(
            "run", f"{objective_file}:objective", "--scheduler", process_cluster.address,
            "--study", "s", *options,
        )
        assert failed.returncode == 2, (options, failed.stderr)
        assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr, failed.stderr
        assert failed.stderr.startswith(f"error: argument {option}") and says in failed.stderr, failed.stderr
        assert "dasktune run --help" in failed.stderr
    # Nothing reached the scheduler: no command installed the plugin, so no study exists.
    with process_cluster.client() as client:
        assert not client.get_metadata(METADATA_KEY, default=False)


def test_scheduler_defaults_to_dask_scheduler_address_and_config(
    process_cluster: ProcessCluster, objective_file: Path, tmp_path: Path
) -> None:
    nowhere = tmp_path / "no-config"
    nowhere.mkdir()
    from_env = dasktune_cli(
        "run", f"{objective_file}:objective", "--study", "by-env", "--n-trials", "3", "--quiet",
        env=clean_env(DASK_SCHEDULER_ADDRESS=process_cluster.address, DASK_CONFIG=str(nowhere)),
    )
    assert from_env.returncode == 0, from_env.stderr

    config = tmp_path / "dask-config"
    config.mkdir()
    (config / "dask.yaml").write_text(f"scheduler-address: {process_cluster.address}\n")
    from_config = dasktune_cli("studies", "--json", env=clean_env(DASK_CONFIG=str(config)))
    assert from_config.returncode == 0, from_config.stderr
    assert [r["study"] for r in json.loads(from_config.stdout)] == ["by-env"]

    neither = dasktune_cli("studies", env=clean_env(DASK_CONFIG=str(nowhere)))
    assert neither.returncode == 2 and neither.stderr.count("\n") == 1
    assert "argument --scheduler is required" in neither.stderr
    assert "DASK_SCHEDULER_ADDRESS" in neither.stderr


def test_run_takes_a_sampler_a_pruner_and_a_seed(
    process_cluster: ProcessCluster, objective_file: Path
) -> None:
    def run(study: str, *options: str) -> None:
        done = dasktune_cli(
            "run", f"{objective_file}:introspect", "--scheduler", process_cluster.address,
            "--study", study, "--n-trials", "4", "--concurrency", "1", "--quiet", *options,
        )
        assert done.returncode == 0, done.stderr

    run("r1", "--sampler", "random", "--pruner", "asha", "--seed", "7")
    run("r2", "--sampler", "random", "--pruner", "successive-halving", "--seed", "7")
    run("r3", "--sampler", "random", "--pruner", "hyperband", "--seed", "8")
    run("r4", "--sampler", "tpe", "--pruner", "none")
    run("r5")
    run("r6", "--sampler", "nsga2")  # a sampler that holds a lock travels to the workers
    run("r7", "--sampler", "nsga3")
    with process_cluster.client() as client:
        trials = {name: load(client, name).trials for name in ["r1", "r2", "r3", "r4", "r5", "r6", "r7"]}

    def used(name: str) -> set[tuple[str, str]]:
        return {(t.user_attrs["sampler"], t.user_attrs["pruner"]) for t in trials[name]}

    assert used("r1") == used("r2") == {("RandomSampler", "SuccessiveHalvingPruner")}
    assert used("r3") == {("RandomSampler", "HyperbandPruner")}
    assert used("r4") == {("TPESampler", "NopPruner")}
    assert used("r5") == {("ParallelSampler", "MedianPruner")}  # dasktune's and Optuna's defaults
    assert used("r6") == {("NSGAIISampler", "MedianPruner")}
    assert used("r7") == {("NSGAIIISampler", "MedianPruner")}

    def xs(name: str) -> list[float]:
        return [t.params["x"] for t in trials[name]]

    # The seed reaches the sampler: the same seed samples the same points, another does not,
    # and they are the points Optuna's own RandomSampler(seed=7) samples.
    assert xs("r1") == xs("r2") != xs("r3")
    local = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    local.optimize(lambda t: t.suggest_float("x", -5, 5) ** 2, n_trials=4)
    assert xs("r1") == [t.params["x"] for t in local.trials]


def test_run_and_show_print_the_study_page_and_optuna_logs_only_with_verbose(
    process_cluster: ProcessCluster, objective_file: Path
) -> None:
    name = "a b/c?"  # the URL must percent-encode both path segments
    done = dasktune_cli(
        "run", f"{objective_file}:objective", "--scheduler", process_cluster.address,
        "--study", name, "--n-trials", "3", "--quiet",
    )
    assert done.returncode == 0, done.stderr
    url = line_with(done.stdout, "Study page:")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/tuning/study/dasktune/a%20b%2Fc%3F", url), url
    assert http_status(url) == 200 and name in http_text(url)
    assert "[I " not in done.stdout + done.stderr  # Optuna's INFO lines

    shown = dasktune_cli("show", name, "--scheduler", process_cluster.address)
    assert line_with(shown.stdout, "Page:") == url
    info = json.loads(dasktune_cli("show", name, "--scheduler", process_cluster.address, "--json").stdout)
    assert info["url"] == url

    verbose = dasktune_cli(
        "run", f"{objective_file}:objective", "--scheduler", process_cluster.address,
        "--study", name, "--n-trials", "2", "--quiet", "-v",
    )
    assert verbose.returncode == 0, verbose.stderr
    assert "[I " in verbose.stderr and "finished with value" in verbose.stderr


def runner_tasks(client) -> list[str]:
    """Keys of dasktune's runner and driver tasks still on the scheduler."""
    return client.run_on_scheduler(
        lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks if str(k).startswith("dasktune-")]
    )


def test_export_cancel_and_delete_of_a_live_run(
    process_cluster: ProcessCluster, objective_file: Path, tmp_path: Path
) -> None:
    """`export` of a study with a live run says what it copied (RUNNING trials too) and
    waits for the run with --wait; `cancel` and `delete` stop live runs first, and `cancel`
    and `show` then agree on every count."""
    address = process_cluster.address

    def start(study: str, n_trials: int = 200) -> None:
        started = dasktune_cli(
            "run", f"{objective_file}:slow", "--scheduler", address, "--study", study,
            "--n-trials", str(n_trials), "--detach",
        )
        assert started.returncode == 0, started.stderr

    with process_cluster.client() as client:
        start("long")
        study = load(client, "long")
        wait_for(lambda: study.get_trials(states=(TrialState.RUNNING,)), timeout=60,
                 message="a trial of the detached run to start")

        exported = dasktune_cli("export", "long", "--scheduler", address, "--to", str(tmp_path / "live.db"))
        assert exported.returncode == 0, exported.stderr
        copied = optuna.load_study(study_name="long", storage=f"sqlite:///{tmp_path / 'live.db'}").trials
        running = len([t for t in copied if t.state == TrialState.RUNNING])
        assert running  # copied as they were when read
        said = exported.stdout.splitlines()
        assert said[0].startswith(f"Exported {len(copied)} trials of study 'long'") and f"{running} RUNNING" in said[0]
        assert f"was live: its {running} RUNNING" in said[1] and "--wait" in said[1], said

        cancelled = dasktune_cli("cancel", "long", "--scheduler", address)
        assert cancelled.returncode == 0, cancelled.stderr
        (run,) = compat.study_storage(study).find_runs(compat.study_id(study))
        said = cancelled.stdout.splitlines()
        assert said[0] == f"Cancelled run {run['run_id']} of study 'long': the trials it was running FAIL."
        assert run["outcome"] == "cancelled" and run["end_reason"] == "cancelled from the command line"
        assert not study.get_trials(states=(TrialState.RUNNING,))
        failed = study.get_trials(states=(TrialState.FAIL,))  # the running ones, with the reason
        complete = study.get_trials(states=(TrialState.COMPLETE,))
        assert failed
        # The numbers agree: with the study, and with what `show` says next.
        assert said[1:] == [
            f"Run {run['run_id']}: cancelled, {len(failed) + len(complete)}/200 trials finished, 0 running; "
            "ended: cancelled from the command line",
            f"Trials: {len(complete)} COMPLETE, {len(failed)} FAIL",
        ]
        shown = dasktune_cli("show", "long", "--scheduler", address).stdout.splitlines()
        assert said[1] in shown and said[2] in shown
        wait_for(lambda: not runner_tasks(client), timeout=30, message="the run's tasks to leave")
        again = dasktune_cli("cancel", "long", "--scheduler", address)
        assert again.returncode == 0 and "Study 'long' has no live run." in again.stdout

        start("short", n_trials=40)  # 0.5 s trials on 2 workers: live for ~10 s, past export's start-up
        waited = dasktune_cli("export", "short", "--scheduler", address, "--to", str(tmp_path / "short.db"), "--wait")
        assert waited.returncode == 0, waited.stderr
        assert waited.stdout.startswith("Waiting for run short-")
        copied = optuna.load_study(study_name="short", storage=f"sqlite:///{tmp_path / 'short.db'}").trials
        assert [t.state for t in copied] == [TrialState.COMPLETE] * 40
        assert "Exported 40 trials of study 'short'" in waited.stdout and "(40 COMPLETE)" in waited.stdout
        assert "RUNNING" not in waited.stdout

        start("doomed")
        doomed = load(client, "doomed")
        wait_for(lambda: doomed.get_trials(states=(TrialState.RUNNING,)), timeout=60,
                 message="a trial of the detached run to start")
        unconfirmed = dasktune_cli("delete", "doomed", "--scheduler", address)
        assert unconfirmed.returncode == 2 and "Pass --yes" in unconfirmed.stderr
        assert doomed.get_trials(states=(TrialState.RUNNING,))  # nothing stopped, nothing deleted
        deleted = dasktune_cli("delete", "doomed", "--scheduler", address, "--yes")
        assert deleted.returncode == 0, deleted.stderr
        lines = deleted.stdout.splitlines()
        assert lines[0].startswith("Cancelled run doomed-") and lines[1].startswith("Deleted study 'doomed'")
        wait_for(lambda: not runner_tasks(client), timeout=30, message="the run's tasks to leave")
        assert dasktune_cli("show", "doomed", "--scheduler", address).returncode == 2


def run_rich(address: str, objective_file: Path, n_trials: int) -> None:
    """Study ``rich``: COMPLETE, PRUNED and FAIL trials with intermediate values and attributes."""
    done = dasktune_cli(
        "run", f"{objective_file}:rich", "--scheduler", address, "--study", "rich",
        "--n-trials", str(n_trials), "--quiet",
    )
    assert done.returncode == 0, done.stderr


def test_export_writes_what_copy_study_writes(
    process_cluster: ProcessCluster, objective_file: Path, tmp_path: Path
) -> None:
    """Every trial state and field survives the bulk export to SQLite and to a journal file,
    exactly as Optuna's own copy_study copies it; a failed export creates nothing."""
    address = process_cluster.address
    run_rich(address, objective_file, 24)
    with process_cluster.client() as client:
        study = load(client, "rich")
        study.set_user_attr("owner", "tests")
        optuna.copy_study(from_study_name="rich", from_storage=compat.study_storage(study),
                          to_storage=f"sqlite:///{tmp_path / 'reference.db'}")
    reference = optuna.load_study(study_name="rich", storage=f"sqlite:///{tmp_path / 'reference.db'}")
    assert {t.state for t in reference.trials} == {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}

    def fields(study: optuna.Study) -> list[tuple]:
        return [
            (t.number, t.state, t.values, t.datetime_start, t.datetime_complete, t.params,
             t.distributions, t.user_attrs, t.intermediate_values)
            for t in study.trials
        ]

    for to, storage in [
        (str(tmp_path / "out.db"), f"sqlite:///{tmp_path / 'out.db'}"),
        (str(tmp_path / "out.log"), optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "out.log")))),
    ]:
        exported = dasktune_cli("export", "rich", "--scheduler", address, "--to", to)
        assert exported.returncode == 0, exported.stderr
        assert "24/24" in exported.stderr
        copy = optuna.load_study(study_name="rich", storage=storage)
        assert fields(copy) == fields(reference), to
        assert copy.user_attrs == {"owner": "tests"} and copy.directions == reference.directions

    missing = dasktune_cli("export", "nope", "--scheduler", address, "--to", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and "no study named 'nope'" in missing.stderr
    assert not (tmp_path / "none.db").exists()
    wrong = dasktune_cli("export", "rich", "--scheduler", address, "--to", str(tmp_path / "x.txt"))
    assert wrong.returncode == 2 and "--to" in wrong.stderr and not (tmp_path / "x.txt").exists()


def test_export_carries_the_studys_artifacts_beside_the_file_or_where_asked(
    process_cluster: ProcessCluster, objective_file: Path, tmp_path: Path
) -> None:
    address = process_cluster.address
    done = dasktune_cli("run", f"{objective_file}:uploading", "--scheduler", address, "--study", "files",
                        "--n-trials", "3", "--quiet")
    assert done.returncode == 0, done.stderr

    def exported(directory: Path, study: optuna.Study) -> dict[int, str]:
        store = optuna.artifacts.FileSystemArtifactStore(str(directory))
        out = {}
        for trial in study.trials:
            (meta,) = optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)
            with store.open_reader(meta.artifact_id) as f:
                out[trial.number] = f.read().decode()
        return out

    beside = dasktune_cli("export", "files", "--scheduler", address, "--to", str(tmp_path / "out.db"))
    assert beside.returncode == 0, beside.stderr
    assert f"Copied 3 artifacts to {tmp_path / 'out.db-artifacts'}" in beside.stdout
    copy = optuna.load_study(study_name="files", storage=f"sqlite:///{tmp_path / 'out.db'}")
    assert exported(tmp_path / "out.db-artifacts", copy) == {n: f"trial {n}" for n in range(3)}

    asked = dasktune_cli("export", "files", "--scheduler", address, "--to", str(tmp_path / "two.log"),
                         "--artifacts", str(tmp_path / "mine"))
    assert asked.returncode == 0, asked.stderr
    assert len(list((tmp_path / "mine").iterdir())) == 3


def test_export_to_postgresql_and_redis_writes_every_trial(
    process_cluster: ProcessCluster, objective_file: Path, postgres_url: str, redis_url: str
) -> None:
    """The other targets: a database server (one transaction) and a Redis journal (trial by
    trial, as copy_study writes it)."""
    address = process_cluster.address
    run_rich(address, objective_file, 12)
    with process_cluster.client() as client:
        source = [(t.number, t.state, t.params, t.intermediate_values, t.user_attrs)
                  for t in load(client, "rich").trials]
    for url in [postgres_url, redis_url]:
        exported = dasktune_cli("export", "rich", "--scheduler", address, "--to", url)
        assert exported.returncode == 0, exported.stderr
        storage = open_backend(url)
        copy = optuna.load_study(study_name="rich", storage=storage)
        assert [(t.number, t.state, t.params, t.intermediate_values, t.user_attrs)
                for t in copy.trials] == source
        if isinstance(storage, optuna.storages.RDBStorage):
            storage.engine.dispose()  # the fixture drops the database


# -- the demo ----------------------------------------------------------------------------


def test_demo_on_a_cluster_prints_its_pages_and_the_optimum(process_cluster: ProcessCluster) -> None:
    shown = dasktune_cli("demo", "--scheduler", process_cluster.address, "--n-trials", "40")
    assert shown.returncode == 0, shown.stderr
    tuning = line_with(shown.stdout, "Tuning page:")
    page = line_with(shown.stdout, "This study:")
    assert page == tuning + "/study/dasktune/dasktune-demo"
    assert http_status(tuning) == 200 and "dasktune-demo" in http_text(page)
    best = float(re.search(r"Best trial #\d+: validation MSE ([\d.]+)", shown.stdout).group(1))
    assert best >= OPTIMUM_MSE - 5e-5  # nothing beats the known optimum
    assert f"The problem's optimum: validation MSE {OPTIMUM_MSE:.4f}" in shown.stdout
    assert "press Enter" not in shown.stdout  # not its cluster: nothing to keep up
    # In the CLI's default storage, where the other commands look.
    found = dasktune_cli("show", "dasktune-demo", "--scheduler", process_cluster.address, "--json")
    assert json.loads(found.stdout)["trials"]["COMPLETE"] == 40


def test_demo_without_a_terminal_does_not_wait_and_says_so() -> None:
    shown = dasktune_cli("demo", "--n-trials", "10", "--workers", "1", timeout=180)
    assert shown.returncode == 0, shown.stderr
    assert "/tuning/study/dasktune/dasktune-demo" in shown.stdout
    assert "Not waiting for Enter: stdin is not a terminal" in shown.stdout


class Terminal:
    """``dasktune demo`` with a pseudo-terminal as stdin, its output collected as it comes."""

    def __init__(self, *args: str, preexec_fn=None) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [DASKTUNE, "demo", "--n-trials", "10", "--workers", "1", *args],
            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env(),
            preexec_fn=preexec_fn,
        )
        os.close(slave)
        self.output = ""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output += line

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        os.close(self.master)


@pytest.fixture
def terminal() -> Iterator[type[Terminal]]:
    made: list[Terminal] = []

    def make(*args: str, **kwargs) -> Terminal:
        made.append(Terminal(*args, **kwargs))
        return made[-1]

    yield make  # type: ignore[misc]
    for t in made:
        t.close()


def _ignore_and_block_sigint() -> None:
    """What a parent may leave a child (both are inherited across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])


@pytest.mark.parametrize("stop", ["enter", "ctrl-c", "ctrl-c, SIGINT ignored and blocked by the parent"])
def test_demo_keeps_its_cluster_and_dashboard_up_until_enter_or_ctrl_c(terminal, stop: str) -> None:
    demo = terminal(preexec_fn=_ignore_and_block_sigint if "parent" in stop else None)
    wait_for(lambda: "press Enter" in demo.output, timeout=180, message="the demo to wait for Enter")
    page = line_with(demo.output, "This study:")
    # The trials are done, and the page still answers: the demo waits with its cluster up.
    assert "Best trial #" in demo.output
    assert http_status(page) == 200 and demo.process.poll() is None
    if stop == "enter":
        os.write(demo.master, b"\n")
    else:
        demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(timeout=60) == 0, demo.output
    wait_for(lambda: http_status(page) is None, timeout=30, message="the dashboard to stop")


def test_demo_no_wait_does_not_wait_even_at_a_terminal(terminal) -> None:
    demo = terminal("--no-wait")
    assert demo.process.wait(timeout=180) == 0
    demo.reader.join(10)
    assert "Best trial #" in demo.output and "press Enter" not in demo.output
    assert "Not waiting" not in demo.output
