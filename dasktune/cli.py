"""The ``dasktune`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import contextlib
import sys

from distributed import as_completed
from distributed import Client
from distributed import LocalCluster
import optuna
from tqdm import tqdm

from dasktune.demo import objective
from dasktune.storage import DaskStorage


def _demo(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with contextlib.ExitStack() as stack:
        if args.scheduler:
            client = stack.enter_context(Client(args.scheduler, timeout=10))
        else:
            cluster = stack.enter_context(
                LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True)
            )
            client = stack.enter_context(Client(cluster))
        print(f"Dask dashboard: {client.dashboard_link}")
        study = optuna.create_study(
            storage=DaskStorage(client=client),
            study_name="dasktune-demo",
            sampler=optuna.samplers.TPESampler(constant_liar=True),
        )
        futures = [
            client.submit(study.optimize, objective, n_trials=1, pure=False)
            for _ in range(args.n_trials)
        ]
        for future in tqdm(as_completed(futures), total=args.n_trials, desc="trials"):
            future.result()
        best = study.best_trial
        print(f"Best trial #{best.number}: validation MSE {best.value:.4f} with {best.params}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dasktune`` console script."""
    parser = argparse.ArgumentParser(
        prog="dasktune", description="Distributed hyperparameter tuning on Dask."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="tune the bundled ridge-regression problem on a local Dask cluster"
    )
    demo.add_argument("--scheduler", help="address of an existing scheduler to use instead")
    demo.add_argument("--workers", type=int, default=2, help="local worker processes (2)")
    demo.add_argument("--n-trials", type=int, default=60, help="number of trials (60)")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
