"""The ``dasktune`` command line's arguments: every option, its default, and the checks that
need no cluster.

This module imports only the standard library (argparse), so ``dasktune COMMAND --help``
and a usage error cost no Optuna or distributed import time: ``dasktune.cli.main`` imports
``commands`` only once the arguments are known to be good. Whatever can be checked before
connecting is checked here, so a bad command line exits 2 with one line and creates nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Mapping
import importlib.util
import os
from pathlib import Path
from typing import NoReturn

#: ``--sampler`` names and the sampler class each stands for (all take ``seed``):
#: ``dasktune.ParallelSampler`` for ``parallel``, ``optuna.samplers``' for the others.
SAMPLERS = {
    "parallel": "ParallelSampler",
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "cmaes": "CmaEsSampler",
    "gp": "GPSampler",
    "qmc": "QMCSampler",
    "nsga2": "NSGAIISampler",
    "nsga3": "NSGAIIISampler",
    "bruteforce": "BruteForceSampler",
}
#: Packages a sampler imports when it first samples: checked here, where a missing one is
#: one line, rather than in every trial on the workers.
SAMPLER_PACKAGES = {"cmaes": ["cmaes"], "gp": ["torch", "scipy"], "qmc": ["scipy"]}
#: ``--pruner`` names and the ``optuna.pruners`` class each stands for, with its defaults.
PRUNERS = {
    "none": "NopPruner",
    "median": "MedianPruner",
    "asha": "SuccessiveHalvingPruner",
    "successive-halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "wilcoxon": "WilcoxonPruner",
}
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors in one line that names the fix (exit status 2)."""

    #: The parser of each command, by name (set on the top-level parser).
    commands: Mapping[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _number(
    kind: Callable[[str], float], what: str, low: float, inclusive: bool, high: float | None = None
) -> Callable[[str], float]:
    """An argparse ``type`` that accepts a number of ``kind`` above ``low`` (or equal, if
    ``inclusive``) and at most ``high``, and otherwise says what it wants."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if (
            value is None
            or value != value  # NaN
            or (value < low if inclusive else value <= low)
            or (high is not None and value > high)
        ):
            raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}")
        return value

    parse.__name__ = what  # what argparse would call the type in its own messages
    return parse


positive_int = _number(int, "a positive integer", 1, inclusive=True)
positive_float = _number(float, "a positive number of seconds", 0.0, inclusive=False)
seed_int = _number(int, "an integer from 0 to 2**32 - 1", 0, inclusive=True, high=2**32 - 1)


def build_parser() -> Parser:
    """The ``dasktune`` argument parser, with one subparser per command."""
    parser = Parser(
        prog="dasktune",
        description="Distributed hyperparameter tuning on Dask, built on Optuna.",
        epilog="Every command takes --help. Exit status: 0 done, 1 the objective failed, "
        "2 a usage or connection error (one line says what to do), 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices
    # Options every command takes, listed after the command name (`dasktune run -v ...`).
    common = Parser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", help="show Optuna's log lines (quiet otherwise)"
    )

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="tune the bundled ridge-regression problem on a local Dask cluster",
        description="Start a LocalCluster (or use --scheduler), print the URLs of the "
        "dashboard's Tuning page, tune the bundled ridge-regression problem with a progress "
        "bar, print the best trial next to the problem's known optimum, and keep the "
        "cluster and its dashboard up until Enter or Ctrl-C. When stdin is not a terminal "
        "(a script, CI) there is nobody to press Enter: it does not wait, and says so.",
    )
    add_scheduler_arguments(demo, otherwise="a new LocalCluster")
    demo.add_argument(
        "--workers", type=positive_int, default=2, metavar="N", help="local worker processes (2)"
    )
    demo.add_argument(
        "--n-trials", type=positive_int, default=200, metavar="N", help="number of trials (200)"
    )
    demo.add_argument(
        "--no-wait",
        action="store_true",
        help="stop the cluster as soon as the trials finish (for scripts and tests)",
    )

    run = sub.add_parser(
        "run",
        parents=[common],
        help="optimize a study with an objective from a file or module",
        description="Run OBJECTIVE (MODULE:NAME, where MODULE is a .py file or an importable "
        "module) on the cluster with dasktune.optimize. The module is shipped to the workers; "
        "what it imports must be installed there.",
    )
    run.add_argument(
        "objective",
        metavar="MODULE:OBJECTIVE",
        help="the objective: NAME in MODULE, a .py file (train.py:objective) or an importable "
        "module (mypackage.tuning:objective)",
    )
    add_scheduler_arguments(run)
    run.add_argument("--study", required=True, metavar="NAME", help="study name (created if new)")
    add_storage_arguments(run)
    run.add_argument("--n-trials", type=positive_int, metavar="N", help="trials to finish")
    run.add_argument("--timeout", type=positive_float, metavar="S", help="no trial starts after S seconds")
    run.add_argument("--concurrency", type=positive_int, metavar="N", help="most trials at once")
    run.add_argument(
        "--direction",
        action="append",
        choices=["minimize", "maximize"],
        help="once per objective (default: minimize)",
    )
    run.add_argument(
        "--sampler",
        choices=list(SAMPLERS),
        default="parallel",
        help="the sampler: parallel is dasktune.ParallelSampler, which chooses how to sample "
        "for the trials in flight; the others are Optuna's of that name, with their defaults "
        "(default: parallel)",
    )
    run.add_argument(
        "--pruner",
        choices=list(PRUNERS),
        help="Optuna's pruner of that name, with its defaults; asha is successive-halving "
        "(default: Optuna's, median)",
    )
    run.add_argument(
        "--max-resource",
        type=positive_int,
        metavar="STEP",
        help="the step of a trial's last report (its epochs, say): lets asha and hyperband "
        "prune from the first trials, not only once one has completed",
    )
    run.add_argument(
        "--seed",
        type=seed_int,
        metavar="N",
        help="the sampler's seed: the same seed, objective and --n-trials give the same "
        "parameters at --concurrency 1",
    )
    run.add_argument(
        "--detach", action="store_true", help="hand the run to the cluster and return at once"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    def study_command(name: str, help: str) -> argparse.ArgumentParser:
        command = sub.add_parser(
            name, parents=[common], help=help, description=help[0].upper() + help[1:] + "."
        )
        if name != "studies":
            command.add_argument(
                "study", metavar="STUDY", help="the study's name (`dasktune studies` lists them)"
            )
        add_scheduler_arguments(command)
        add_storage_arguments(command)
        if name in ("studies", "show", "best"):
            command.add_argument("--json", action="store_true", help="print JSON")
        return command

    study_command("studies", "list the studies on the scheduler")
    show = study_command("show", "describe a study: counts, best, runs, latest trials, its page URL")
    show.add_argument("--limit", type=positive_int, default=10, help="latest trials to list (10)")
    study_command("best", "print a study's best trial")
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
    export.add_argument(
        "--artifacts",
        type=Path,
        metavar="DIR",
        help="copy the study's artifacts from the scheduler into DIR, for optuna-dashboard's "
        "--artifact-dir (default: beside a .db or .log target, as <file>-artifacts)",
    )
    export.add_argument(
        "--wait",
        action="store_true",
        help="if a run of the study is live, wait for it to end before copying (without "
        "--wait, a terminal asks; a script copies at once, RUNNING trials as RUNNING)",
    )
    study_command("cancel", "stop a study's live runs: running trials FAIL, runners leave")
    delete = study_command("delete", "delete a study and its trials (cancelling its live runs first)")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def add_scheduler_arguments(parser: argparse.ArgumentParser, otherwise: str | None = None) -> None:
    """``--scheduler`` (by default the one Dask itself would use, else ``otherwise``) and
    the TLS options every cluster command takes."""
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="the Dask scheduler, e.g. tcp://10.0.0.5:8786 or tls://host:8786 (default: "
        f"${SCHEDULER_ENV} or Dask's scheduler-address config"
        + (f", else {otherwise})" if otherwise else ")"),
    )
    parser.add_argument(
        "--connect-timeout",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="seconds to wait for the scheduler before giving up (5)",
    )
    tls = parser.add_argument_group(
        "TLS", "for a tls:// scheduler (or set them in Dask's distributed.comm.tls config)"
    )
    tls.add_argument("--tls-ca-file", metavar="PATH", help="CA certificate to trust")
    tls.add_argument("--tls-cert", metavar="PATH", help="this client's certificate")
    tls.add_argument("--tls-key", metavar="PATH", help="this client's private key")


def add_storage_arguments(parser: argparse.ArgumentParser) -> None:
    """``--storage`` / ``--storage-name``: which DaskStorage of the scheduler to use."""
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="where the scheduler keeps the studies: sqlite:///path.db, postgresql://..., "
        "redis://host:port/db or journal:///path.log, as the scheduler sees them "
        "(default: the scheduler's memory)",
    )
    parser.add_argument(
        "--storage-name",
        metavar="NAME",
        help="the DaskStorage name on the scheduler (default: derived from --storage, so "
        "the same URL always means the same storage)",
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's arguments, checked as far as possible without a cluster; a usage
    error exits 2 with one line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser.commands[args.command], args)
    return args


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What argparse's per-option types cannot see: combinations, the environment."""
    if args.scheduler is None:
        args.scheduler = default_scheduler()
        if args.scheduler is None and args.command != "demo":  # the demo starts a LocalCluster
            parser.error(
                f"argument --scheduler is required: pass --scheduler tcp://HOST:8786, or set "
                f"{SCHEDULER_ENV} (or Dask's scheduler-address config)"
            )
    tls_files = {"--tls-ca-file": args.tls_ca_file, "--tls-cert": args.tls_cert, "--tls-key": args.tls_key}
    for option, path in tls_files.items():
        if path is not None and not os.path.isfile(path):
            parser.error(f"argument {option}: no file {path!r}")
    if args.command == "run":
        missing = [p for p in SAMPLER_PACKAGES.get(args.sampler, []) if importlib.util.find_spec(p) is None]
        if missing:
            parser.error(
                f"argument --sampler: {args.sampler} needs {' and '.join(missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} not installed: pip install "
                f"{' '.join(missing)} (here and on the workers), or choose another sampler"
            )
        if args.direction and len(args.direction) > 1 and args.pruner not in (None, "none"):
            parser.error(
                f"argument --pruner: Optuna cannot prune a study with {len(args.direction)} "
                "objectives; drop --pruner (or pass --pruner none)"
            )


def default_scheduler() -> str | None:
    """The scheduler Dask itself would connect to: ``DASK_SCHEDULER_ADDRESS`` or the
    ``scheduler-address`` config (``~/.config/dask/*.yaml``)."""
    if os.environ.get(SCHEDULER_ENV):  # the common case, without importing dask
        return os.environ[SCHEDULER_ENV]
    import dask.config  # reads the YAML files and DASK_* variables; only when needed

    address = dask.config.get("scheduler-address", default=None)
    return str(address) if address else None
