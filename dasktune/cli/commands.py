"""What each ``dasktune`` subcommand does, once ``dasktune/cli/parser.py`` has parsed and
checked its arguments (this module imports Optuna and distributed: ``main`` imports it only
then)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
import json
import logging
import signal
import sys
import threading
from typing import Any
import warnings

from distributed import Client
import optuna
from optuna.trial import FrozenTrial

import dasktune
from dasktune import compat
from dasktune.cli import render
from dasktune.cli.connect import CommandError
from dasktune.cli.connect import check_storage_url
from dasktune.cli.connect import connect
from dasktune.cli.connect import find_study
from dasktune.cli.connect import load_for_reading
from dasktune.cli.connect import local_cluster
from dasktune.cli.connect import open_storage
from dasktune.cli.connect import storage_name
from dasktune.cli.connect import storages
from dasktune.cli.connect import study_url
from dasktune.cli.connect import tuning_url
from dasktune.cli.parser import PRUNERS
from dasktune.cli.parser import SAMPLERS
from dasktune.storage import DaskStorage
from dasktune.storage import wire
from dasktune.storage.protocol import scheduler_rpc

# Only what every command needs is imported above: a command that reads studies must not
# pay for the modules of `run` (loading an objective, dasktune.submit) or `export`, which
# import them when they run.


def execute(args: argparse.Namespace) -> int:
    """Run the command ``args`` names; its exit code."""
    _quiet(args.verbose)
    if getattr(args, "storage", None) is not None:
        check_storage_url(args)
    return COMMANDS[args.command](args)


def _quiet(verbose: bool) -> None:
    """Optuna logs each study and trial at INFO, and warns that some samplers are
    experimental: noise in a command's output, kept for ``-v``."""
    optuna.logging.set_verbosity(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)


#: The study ``dasktune demo`` tunes.
DEMO_STUDY = "dasktune-demo"


def demo(args: argparse.Namespace) -> int:
    """Tune the bundled ridge-regression problem, print the best trial next to the known
    optimum, and keep a local cluster (and its dashboard) up until Enter or Ctrl-C."""
    from dasktune import demo as problem

    with contextlib.ExitStack() as stack:
        if args.scheduler:
            client = stack.enter_context(connect(args))
        else:
            cluster = stack.enter_context(local_cluster(args.workers))
            client = stack.enter_context(Client(cluster))
        # The CLI's default storage, so that `dasktune show dasktune-demo` finds the study.
        storage = dasktune.DaskStorage(name=storage_name(None, None), client=client)
        study = dasktune.create_study(storage=storage, study_name=DEMO_STUDY, load_if_exists=True)
        tuning = tuning_url(client)
        if tuning is None:
            print(f"The scheduler at {scheduler_rpc(client).address} serves no dashboard.")
        else:
            print(f"Tuning page: {tuning}")
            print(f"This study:  {study_url(client, storage.name, study.study_name)}")
        sys.stdout.flush()  # before the progress bar, which writes to stderr
        dasktune.optimize(study, problem.objective, n_trials=args.n_trials, show_progress_bar=True)
        best = study.best_trial
        print(f"Best trial #{best.number}: validation MSE {best.value:.4f} with {_params(best.params)}")
        print(
            f"The problem's optimum: validation MSE {problem.OPTIMUM_MSE:.4f} with "
            f"{_params(problem.OPTIMUM)} (see `python -m pydoc dasktune.demo`)"
        )
        if not args.scheduler:
            _wait_for_enter(args.no_wait)
    return 0


def _wait_for_enter(no_wait: bool) -> None:
    """Keep the local cluster and its dashboard up until Enter or Ctrl-C; not at all with
    ``--no-wait`` or when stdin is not a terminal (a script or CI: nobody can press Enter)."""
    if no_wait:
        return
    if not sys.stdin.isatty():
        print("Not waiting for Enter: stdin is not a terminal. Stopping the cluster (--no-wait skips this note).")
        return
    print("The cluster and its dashboard stay up: press Enter (or Ctrl-C) to stop them.", flush=True)
    # Ctrl-C must stop the wait however this process was started. A parent may have left
    # SIGINT ignored or blocked (both are inherited), and the kernel may hand it to any
    # thread (Dask's and Bokeh's among them), which would not interrupt a main thread
    # blocked in input(). So the main thread waits on an event, waking often enough to
    # run Python's SIGINT handler, while a daemon thread reads the line.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    entered = threading.Event()

    def read_line() -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stdin.readline()
        entered.set()  # a line, or the end of the input: stop either way

    threading.Thread(target=read_line, name="dasktune-demo-enter", daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        while not entered.wait(0.2):
            pass


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.2g}" if isinstance(v, float) else f"{k}={v!r}" for k, v in params.items())


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """The sampler ``--sampler name`` stands for, seeded with ``--seed``."""
    if name == "parallel":
        return dasktune.ParallelSampler(seed=seed)
    sampler: optuna.samplers.BaseSampler = getattr(optuna.samplers, SAMPLERS[name])(seed=seed)
    return sampler


def make_pruner(name: str | None) -> optuna.pruners.BasePruner | None:
    """The Optuna pruner ``--pruner name`` stands for (``None``: Optuna's default)."""
    return None if name is None else getattr(optuna.pruners, PRUNERS[name])()


def run(args: argparse.Namespace) -> int:
    """Optimize a study with an objective from a file or module on the cluster."""
    from dasktune.cli.objective import load_objective

    objective = load_objective(args.objective)  # before connecting: a bad one creates nothing
    sampler, pruner = make_sampler(args.sampler, args.seed), make_pruner(args.pruner)
    with connect(args) as client:
        storage = open_storage(client, args)
        directions = args.direction or ["minimize"]
        study = optuna.create_study(
            storage=storage,
            study_name=args.study,
            directions=directions,
            load_if_exists=True,
            sampler=sampler,
            pruner=pruner,
        )
        if args.direction and [d.name.lower() for d in study.directions] != directions:
            raise CommandError(
                f"study {args.study!r} already exists with directions "
                f"{[d.name.lower() for d in study.directions]}, not {directions}; use another "
                "--study name or drop --direction."
            )
        url = study_url(client, storage.name, args.study)
        if url is not None:
            print(f"Study page: {url}", flush=True)
        result = dasktune.optimize(
            study,
            objective,
            n_trials=args.n_trials,
            timeout=args.timeout,
            concurrency=args.concurrency,
            show_progress_bar=not args.detach and not args.quiet,
            detach=args.detach,
            max_resource=args.max_resource,
        )
        if args.detach:
            print(f"Started run {result.run_id} of study {args.study!r} on storage {storage.name!r}.")
            print(f"Follow it with: dasktune show {args.study} --scheduler {args.scheduler}")
            print(f"Stop it with:   dasktune cancel {args.study} --scheduler {args.scheduler}")
            return 0
        print(f"Finished {len(result.trials)} trials of study {args.study!r}.")
        _print_best(study)
    return 0


def studies(args: argparse.Namespace) -> int:
    """List the studies on the scheduler."""
    with connect(args) as client:
        rows = []
        for storage in storages(client, args):
            # One request brings every study and its trials; the reads below answer from it.
            for frozen in storage.get_all_studies():
                study = load_for_reading(frozen.study_name, storage)
                rows.append(
                    {
                        "study": study.study_name,
                        "storage": storage.name,
                        "directions": ",".join(d.name.lower() for d in study.directions),
                        **render.counts(study.get_trials(deepcopy=False)),
                        "best": _best_values(study),
                    }
                )
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        for row in rows:
            if isinstance(row["best"], list):  # several objectives: `best` prints the front
                row["best"] = f"{len(row['best'])} on the Pareto front"
        print(render.table(rows))
    else:
        print("No studies.")
    return 0


def show(args: argparse.Namespace) -> int:
    """Describe one study: counts, best trials, runs and its latest trials."""
    with connect(args) as client:
        study, storage = find_study(client, args)
        trials = study.get_trials(deepcopy=False)
        runs = storage.find_runs(compat.study_id(study))
        best_trials = _best_trials(study)
        columns = render.value_columns(len(study.directions), study.metric_names)
        info = {
            "study": study.study_name,
            "storage": storage.name,
            "directions": [d.name.lower() for d in study.directions],
            "trials": render.counts(trials),
            "best": _best_values(study),
            "user_attrs": study.user_attrs,
            "runs": runs,
            "latest_trials": [_trial_row(t) for t in trials[-args.limit :]],
            "url": study_url(client, storage.name, study.study_name),
        }
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"Study {info['study']!r} (storage {info['storage']!r}, {', '.join(info['directions'])})")
    print(render.counts_line(info["trials"]))
    if info["url"] is not None:
        print(f"Page: {info['url']}")
    for run in runs:
        print(render.run_line(run))
    if len(study.directions) == 1 and best_trials:
        print(render.best_line(best_trials[0]))
    elif best_trials:
        print(f"Best trials: the {len(best_trials)} on the Pareto front")
        print(render.table([render.trial_row(t, columns, state=False) for t in best_trials]))
    if trials:
        latest = trials[-args.limit :]
        print(f"Latest {len(latest)} trials:")
        print(render.table([render.trial_row(t, columns) for t in latest]))
    return 0


def best(args: argparse.Namespace) -> int:
    """Print a study's best trial (all Pareto-optimal ones for several objectives)."""
    with connect(args) as client:
        study, _ = find_study(client, args)
        best_trials = _best_trials(study)
        if not best_trials:
            raise CommandError(f"study {args.study!r} has no completed trial yet.")
        columns = render.value_columns(len(study.directions), study.metric_names)
    if args.json:
        rows = [_trial_row(t) for t in best_trials]
        print(json.dumps(rows if len(rows) > 1 else rows[0], indent=2, default=str))
    else:
        print(render.table([render.trial_row(t, columns, state=False) for t in best_trials]))
    return 0


def cancel(args: argparse.Namespace) -> int:
    """Cancel the live runs of a study."""
    with connect(args) as client:
        study, storage = find_study(client, args)
        ended = _cancel_runs(study, storage, "cancelled from the command line")
        if not ended:
            print(f"Study {args.study!r} has no live run.")
            return 0
        for status in ended:  # as `show` prints them, so that the numbers agree
            print(render.run_line(status))
        print(render.counts_line(render.counts(study.get_trials(deepcopy=False))))
    return 0


def delete(args: argparse.Namespace) -> int:
    """Delete a study and all its trials, cancelling its live runs first."""
    with connect(args) as client:
        study, storage = find_study(client, args)
        n = len(study.get_trials(deepcopy=False))
        if not args.yes and not sys.stdin.isatty():
            raise CommandError(
                f"nobody can confirm deleting study {args.study!r} ({n} trials): stdin is not "
                "a terminal. Pass --yes to delete it."
            )
        if not args.yes:
            answer = input(f"Delete study {args.study!r} and its {n} trials? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("Nothing deleted.")
                return 1
        _cancel_runs(study, storage, "its study is being deleted")
        optuna.delete_study(study_name=args.study, storage=storage)
    print(f"Deleted study {args.study!r} ({n} trials).")
    return 0


def _cancel_runs(study: optuna.Study, storage: DaskStorage, reason: str) -> list[wire.RunStatus]:
    """Cancel every live run of ``study`` (kept in ``storage``), saying so; how each ended."""
    ended = []
    for run in storage.find_runs(compat.study_id(study)):
        if not run["done"]:
            ended.append(storage.end_run(run["run_id"], "cancelled", reason))
            print(f"Cancelled run {run['run_id']} of study {study.study_name!r}: the trials it was running FAIL.")
    return ended


def _print_best(study: optuna.Study) -> None:
    best_trials = _best_trials(study)
    if not best_trials:
        print("No trial completed.")
    elif len(study.directions) == 1:
        print(render.best_line(best_trials[0]))
    else:
        print(f"Best trials: the {len(best_trials)} on the Pareto front")
        columns = render.value_columns(len(study.directions), study.metric_names)
        print(render.table([render.trial_row(t, columns, state=False) for t in best_trials]))


def _best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial, or the Pareto front of several objectives; none before one completes."""
    try:
        return [study.best_trial] if len(study.directions) == 1 else study.best_trials
    except ValueError:  # no (feasible) trial completed yet
        return []


def _best_values(study: optuna.Study) -> Any:
    trials = _best_trials(study)
    if not trials:
        return None
    if len(study.directions) == 1:
        return trials[0].value
    return [t.values for t in trials]


def _values(trial: FrozenTrial) -> Any:
    if trial.values is None:
        return None
    return trial.values[0] if len(trial.values) == 1 else trial.values


def _trial_row(trial: FrozenTrial) -> dict[str, Any]:
    """A trial for ``--json``."""
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": _values(trial),
        "params": trial.params,
        "duration_s": None if duration is None else round(duration, 3),
    }


def export(args: argparse.Namespace) -> int:
    """Copy a study into another Optuna storage: :func:`dasktune.cli.export.export`."""
    from dasktune.cli.export import export as export_study

    return export_study(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": demo,
    "run": run,
    "studies": studies,
    "show": show,
    "best": best,
    "export": export,
    "cancel": cancel,
    "delete": delete,
}
