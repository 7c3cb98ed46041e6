"""The ``dasktune`` command line: a demo, running objectives on a cluster, and managing its
studies (``studies``, ``show``, ``best``, ``export``, ``delete``).

Every command exits 0 on success and non-zero on failure, with a one-line ``error:`` that
says what to do about it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import sys

from dasktune.cli import commands
from dasktune.cli.connect import add_scheduler_arguments
from dasktune.cli.connect import add_storage_arguments
from dasktune.cli.connect import CommandError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dasktune",
        description="Distributed hyperparameter tuning on Dask, built on Optuna.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="tune the bundled ridge-regression problem on a local Dask cluster",
        description="Start a LocalCluster (or use --scheduler), tune the bundled "
        "ridge-regression problem with a progress bar, and print the best trial and the "
        "dashboard URL.",
    )
    add_scheduler_arguments(demo, required=False)
    demo.add_argument("--workers", type=int, default=2, help="local worker processes (2)")
    demo.add_argument("--n-trials", type=int, default=200, help="number of trials (200)")
    demo.set_defaults(run=commands.demo)

    run = sub.add_parser(
        "run",
        help="optimize a study with an objective from a file or module",
        description="Run OBJECTIVE (MODULE:NAME, where MODULE is a .py file or an importable "
        "module) on the cluster with dasktune.optimize. The module is shipped to the workers; "
        "what it imports must be installed there.",
    )
    run.add_argument("objective", metavar="MODULE:OBJECTIVE")
    add_scheduler_arguments(run)
    run.add_argument("--study", required=True, metavar="NAME", help="study name (created if new)")
    add_storage_arguments(run)
    run.add_argument("--n-trials", type=int, metavar="N", help="trials to finish")
    run.add_argument("--timeout", type=float, metavar="S", help="no trial starts after S seconds")
    run.add_argument("--concurrency", type=int, metavar="N", help="most trials at once")
    run.add_argument(
        "--direction",
        action="append",
        choices=["minimize", "maximize"],
        help="once per objective (default: minimize)",
    )
    run.add_argument(
        "--detach", action="store_true", help="hand the run to the cluster and return at once"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(run=commands.run)

    def study_command(name: str, help: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        if name != "studies":
            command.add_argument("study", metavar="STUDY")
        add_scheduler_arguments(command)
        add_storage_arguments(command)
        if name in ("studies", "show", "best"):
            command.add_argument("--json", action="store_true", help="print JSON")
        return command

    study_command("studies", "list the studies on the scheduler").set_defaults(run=commands.studies)
    show = study_command("show", "describe a study: counts, best, runs, latest trials")
    show.add_argument("--limit", type=int, default=10, help="latest trials to list (10)")
    show.set_defaults(run=commands.show)
    study_command("best", "print a study's best trial").set_defaults(run=commands.best)
    export = study_command(
        "export", "copy a study into another storage (e.g. SQLite, for optuna-dashboard)"
    )
    export.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="sqlite:///path.db, postgresql://..., journal:///path.log, or a .db/.log path",
    )
    export.add_argument("--as", dest="as_name", metavar="NAME", help="name of the copy")
    export.set_defaults(run=commands.export)
    delete = study_command("delete", "delete a study and its trials")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(run=commands.delete)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dasktune`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except CommandError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted: the run was stopped and its running trials failed.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
