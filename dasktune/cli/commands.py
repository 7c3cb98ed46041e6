"""What each ``dasktune`` subcommand does; ``dasktune/cli/__init__.py`` parses the arguments."""

from __future__ import annotations

import argparse
import contextlib
from collections import Counter
import json
import math
from pathlib import Path
from typing import Any

from distributed import Client
import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

import dasktune
from dasktune.cli.connect import CommandError
from dasktune.cli.connect import connect
from dasktune.cli.connect import find_study
from dasktune.cli.connect import local_cluster
from dasktune.cli.connect import open_storage
from dasktune.cli.connect import storages
from dasktune.cli.objective import load_objective
from dasktune.demo import objective as demo_objective
from dasktune.storage.backends import open_backend
from dasktune.submit.driver import dask_storage

_STATES = [s.name for s in TrialState]


def demo(args: argparse.Namespace) -> int:
    """Tune the bundled ridge-regression problem and print the best trial."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with contextlib.ExitStack() as stack:
        if args.scheduler:
            client = stack.enter_context(connect(args))
        else:
            cluster = stack.enter_context(local_cluster(args.workers))
            client = stack.enter_context(Client(cluster))
        print(f"Dask dashboard: {client.dashboard_link}")
        study = optuna.create_study(
            storage=dasktune.DaskStorage(client=client),
            study_name="dasktune-demo",
            load_if_exists=True,
        )
        dasktune.optimize(study, demo_objective, n_trials=args.n_trials, show_progress_bar=True)
        best = study.best_trial
        print(f"Best trial #{best.number}: validation MSE {best.value:.4f} with {best.params}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Optimize a study with an objective from a file or module on the cluster."""
    objective = load_objective(args.objective)
    with connect(args) as client:
        storage = open_storage(client, args)
        directions = args.direction or ["minimize"]
        study = optuna.create_study(
            storage=storage, study_name=args.study, directions=directions, load_if_exists=True
        )
        if args.direction and [d.name.lower() for d in study.directions] != directions:
            raise CommandError(
                f"study {args.study!r} already exists with directions "
                f"{[d.name.lower() for d in study.directions]}, not {directions}; use another "
                "--study name or drop --direction."
            )
        result = dasktune.optimize(
            study,
            objective,
            n_trials=args.n_trials,
            timeout=args.timeout,
            concurrency=args.concurrency,
            show_progress_bar=not args.detach and not args.quiet,
            detach=args.detach,
        )
        if args.detach:
            print(f"Started run {result.run_id} of study {args.study!r} on storage {storage.name!r}.")
            print(f"Follow it with: dasktune show {args.study} --scheduler {args.scheduler}")
            return 0
        print(f"Finished {len(result.trials)} trials of study {args.study!r}.")
        _print_best(study)
    return 0


def studies(args: argparse.Namespace) -> int:
    """List the studies on the scheduler."""
    with connect(args) as client:
        rows = []
        for storage in storages(client, args):
            for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
                study = optuna.load_study(study_name=summary.study_name, storage=storage)
                counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
                rows.append(
                    {
                        "study": summary.study_name,
                        "storage": storage.name,
                        "directions": ",".join(d.name.lower() for d in summary.directions),
                        **{state: counts.get(state, 0) for state in _STATES},
                        "best": _best_values(study),
                    }
                )
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        _print_table(rows)
    else:
        print("No studies.")
    return 0


def show(args: argparse.Namespace) -> int:
    """Describe one study: counts, best trial, runs and its latest trials."""
    with connect(args) as client:
        study = find_study(client, args)
        trials = study.get_trials(deepcopy=False)
        counts = Counter(t.state.name for t in trials)
        storage = dask_storage(study)
        (runs,) = storage._call([["find_runs", [study._study_id], None]])
        info = {
            "study": study.study_name,
            "storage": storage.name,
            "directions": [d.name.lower() for d in study.directions],
            "trials": {state: counts.get(state, 0) for state in _STATES},
            "best": _best_values(study),
            "user_attrs": study.user_attrs,
            "runs": runs,
            "latest_trials": [_trial_row(t) for t in trials[-args.limit :]],
        }
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"Study {info['study']!r} (storage {info['storage']!r}, {', '.join(info['directions'])})")
    print("Trials: " + ", ".join(f"{n} {s}" for s, n in info["trials"].items() if n))
    print(f"Best: {info['best']}")
    for r in runs:
        state = "done" if r["done"] else "running"
        print(
            f"Run {r['run_id']}: {state}, {r['finished']}/{r['n_trials'] or '∞'} finished, "
            f"{r['running']} running" + (f", stopped: {r['stopped']}" if r["stopped"] else "")
        )
    if info["latest_trials"]:
        print(f"Latest {len(info['latest_trials'])} trials:")
        _print_table(info["latest_trials"])
    return 0


def best(args: argparse.Namespace) -> int:
    """Print a study's best trial (all Pareto-optimal ones for several objectives)."""
    with connect(args) as client:
        study = find_study(client, args)
        best_trials = study.best_trials
        if not best_trials:
            raise CommandError(f"study {args.study!r} has no completed trial yet.")
        rows = [_trial_row(t) for t in best_trials]
    if args.json:
        print(json.dumps(rows if len(rows) > 1 else rows[0], indent=2, default=str))
    else:
        for row in rows:
            print(f"Trial #{row['number']}: value {row['value']} with {row['params']}")
    return 0


def export(args: argparse.Namespace) -> int:
    """Copy a study into another Optuna storage (e.g. SQLite for optuna-dashboard)."""
    try:
        target = open_backend(_export_url(args.to))
    except (ValueError, TypeError, ImportError) as e:
        raise CommandError(f"cannot open --to {args.to!r}: {e}") from None
    with connect(args) as client:
        study = find_study(client, args)
        name = args.as_name or study.study_name
        try:
            optuna.copy_study(
                from_study_name=study.study_name,
                from_storage=study._storage,
                to_storage=target,
                to_study_name=name,
            )
        except optuna.exceptions.DuplicatedStudyError:
            raise CommandError(
                f"{args.to} already has a study named {name!r}; choose another with --as."
            ) from None
        n = len(study.get_trials(deepcopy=False))
    print(f"Exported {n} trials of study {args.study!r} to {args.to} as {name!r}.")
    return 0


def delete(args: argparse.Namespace) -> int:
    """Delete a study and all its trials."""
    with connect(args) as client:
        study = find_study(client, args)
        n = len(study.get_trials(deepcopy=False))
        if not args.yes:
            answer = input(f"Delete study {args.study!r} and its {n} trials? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("Nothing deleted.")
                return 1
        optuna.delete_study(study_name=args.study, storage=study._storage)
    print(f"Deleted study {args.study!r} ({n} trials).")
    return 0


def _export_url(to: str) -> str:
    """A storage URL as DaskStorage takes them; a bare ``*.db`` or ``*.log`` path means a
    SQLite file or a journal file."""
    if "://" in to:
        return to
    path = Path(to).resolve()
    if path.suffix == ".db":
        return f"sqlite:///{path}"
    if path.suffix == ".log":
        return f"journal://{path}"
    raise CommandError(
        f"--to {to!r} is neither a storage URL nor a .db (SQLite) or .log (journal) file path."
    )


def _print_best(study: optuna.Study) -> None:
    best = _best_values(study)
    if best is None:
        print("No trial completed.")
        return
    for trial in study.best_trials:
        print(f"Best trial #{trial.number}: value {_values(trial)} with {trial.params}")


def _best_values(study: optuna.Study) -> Any:
    try:
        trials = study.best_trials
    except ValueError:
        return None
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
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": _values(trial),
        "params": trial.params,
        "duration_s": None if duration is None else round(duration, 3),
    }


def _print_table(rows: list[dict[str, Any]]) -> None:
    def cell(v: Any) -> str:
        if isinstance(v, float) and math.isfinite(v):
            return f"{v:.6g}"
        return str(v)

    columns = list(rows[0])
    cells = [[cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
