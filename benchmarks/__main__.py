"""``python -m benchmarks [--quick] [--out DIR]``: every figure of the benchmark suite in one
run, against the peers measured in the same run; writes ``DIR/results.md`` and
``DIR/scaling.png`` (default ``DIR``: ``benchmarks/results``, ``benchmarks/results/quick``
with ``--quick``) and prints the report.

``python -m benchmarks parallel [--quick] [--out DIR] [--baseline] [--report-only]``: the
parallel-quality figure alone (:mod:`benchmarks.parallel`, about 40 minutes; ``--quick``
under one): ``DIR/parallel.md``, ``parallel.png``, ``parallel.json`` and the raw runs
``parallel-runs.json.gz``; compared with ``DIR/parallel-baseline.json`` when that exists.
``--baseline`` writes the run as that baseline instead; ``--report-only`` remakes the report
from the raw runs without measuring. ``--scale``, ``--levels``, ``--problems``, ``--seeds`` and
``--trials`` run a part of the plan (a plan of its own: give it its own ``--out``).

``python -m benchmarks samplers [--levels] [--problems] [--samplers] [--seeds] [--trials]
[--real P,...] [--out DIR]``: which sampler gives up least at P trials in flight, and
``dasktune.ParallelSampler`` against its floors (:mod:`benchmarks.samplers`; hours with
PyTorch installed, resumable): ``DIR/parallel-samplers.md``.

``python -m benchmarks cheap-target [--n] [--repeats] [--out DIR]``: on ~15 ms trials, the
time to a result with ``ParallelSampler`` beside ``TPESampler`` (:mod:`benchmarks.cheap_target`):
``DIR/cheap-target.md``.

``python -m benchmarks pruning [--seeds] [--levels] [--problems] [--out DIR]``: pruning at P
trials at once, on learning curves (:mod:`benchmarks.pruning`; about 40 minutes for 5 seeds):
``DIR/pruning.md`` and ``pruning.png``, default ``DIR`` ``benchmarks/results/pruning``.

Sections (each module's docstring says exactly what it runs): overhead against the peers
(:mod:`benchmarks.overhead`), growth across a 10,000-trial study and memory afterwards
(:mod:`benchmarks.growth`), scaling to 32 workers (:mod:`benchmarks.scaling`), scheduler
load from hundreds of runners (:mod:`benchmarks.load`) and start-up: the first optimize on a
fresh cluster, imports, the command line (:mod:`benchmarks.startup`). A full run takes about 12 minutes on
2 cores, ``--quick`` (small sizes, for a smoke check) about 1.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace
import importlib
import json
import os
from pathlib import Path
import platform
import sys
import time
import warnings

import optuna
import psutil

from benchmarks import growth
from benchmarks import load
from benchmarks import cheap
from benchmarks import cli_timings
from benchmarks import overhead
from benchmarks import profile
from benchmarks import parallel
from benchmarks import scaling
from benchmarks import startup
from benchmarks.common import process_cluster
from benchmarks.common import quiet
from benchmarks.parallel_report import ParallelReport
from benchmarks.problems import NAMES
from benchmarks.report import Report


@dataclass(frozen=True)
class Plan:
    sizes: list[int]
    cap: float  # seconds, per overhead run
    growth_trials: int
    growth_window: int
    growth_cap: float
    levels: list[int]
    trials_per_worker: int
    runners: list[tuple[int, float | None]]  # (runners, trials/s offered; None: unpaced)
    load_seconds: float
    startup_repeats: int
    cold: tuple[int, int]  # trivial objective on a fresh cluster: N for Random, for TPE
    cheap: tuple[int, int]  # N for the ~10 ms objective, for the model fit (0: none)
    cheap_repeats: int  # interleaved repetitions of every cheap-trials peer
    profile: bool  # py-spy the runs (Random and TPE at N=1000, the ~10 ms objective)
    cli_exports: tuple[int, ...] | None  # study sizes `dasktune export` copies (None: no CLI timings)
    submission_trials: int  # of 0.25 s on 2 workers


FULL = Plan([1000, 2000, 5000], 30.0, 10_000, 500, 150.0, [1, 2, 4, 8, 16, 32], 20,
            [(100, 1000.0), (250, 1000.0), (500, 1000.0), (500, None)], 10.0, 5, (2000, 1000), (300, 200), 3, True, (300,), 80)
# Every section, each as small as still says something: a smoke run (the test suite runs it).
QUICK = Plan([100], 5.0, 400, 50, 10.0, [1, 4, 32], 3, [(100, 1000.0)], 2.0, 1, (100, 50), (30, 0), 1, False, None, 16)


def main() -> None:
    figures_of_their_own = {"pruning": "benchmarks.pruning", "samplers": "benchmarks.samplers",
                            "cheap-target": "benchmarks.cheap_target"}
    if sys.argv[1:2] and sys.argv[1] in figures_of_their_own:  # with options of their own
        importlib.import_module(figures_of_their_own[sys.argv[1]]).main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figure", nargs="?", choices=["all", "parallel"], default="all",
                        help="all (default): every figure but parallel, samplers, pruning and "
                             "cheap-target; parallel: the parallel-quality figure")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of about a minute")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the reports go (default: benchmarks/results, "
                             "or benchmarks/results/quick with --quick)")
    parser.add_argument("--baseline", action="store_true",
                        help="parallel: write the run as parallel-baseline.* (what later runs are compared with)")
    parser.add_argument("--report-only", action="store_true",
                        help="parallel: remake the report from the saved raw runs, measuring nothing")
    # A part of the parallel plan, e.g. the issue's own durations: --scale 1 --levels 8,32
    # --problems Hartmann-6,Ackley-5 --trials 200 (a plan of its own: give it its own --out).
    parser.add_argument("--scale", type=float, help="parallel: durations = the issue's 0.05-0.35 s x this")
    parser.add_argument("--levels", type=_ints, help="parallel: the P to run, e.g. 8,32")
    parser.add_argument("--problems", type=lambda text: tuple(text.split(",")),
                        help=f"parallel: comma-separated, of {', '.join(NAMES)}")
    parser.add_argument("--seeds", type=int, help="parallel: how many seeds")
    parser.add_argument("--trials", type=int, help="parallel: N of every run (no longer runs)")
    args = parser.parse_args()
    if args.out is None:  # a smoke run must not overwrite the reported figures
        args.out = Path(__file__).parent / "results" / ("quick" if args.quick else "")
    if args.figure == "parallel":
        chosen = parallel.QUICK if args.quick else parallel.FULL
        changes = {k: getattr(args, k) for k in ("levels", "problems", "seeds") if getattr(args, k) is not None}
        if args.scale is not None:
            changes["durations"] = replace(chosen.durations, scale=args.scale)
        if args.trials is not None:
            changes["n"] = changes["n_long"] = args.trials
        run_parallel(replace(chosen, **changes), args.out, args.quick, args.baseline, args.report_only)
        return
    plan = QUICK if args.quick else FULL
    quiet()
    warnings.filterwarnings("ignore", category=UserWarning, module="optuna_integration")
    began = time.time()
    log = _logger(began)
    report = Report(_machine(), quick=args.quick)
    log("start-up")
    report.startup(startup.run(repeats=plan.startup_repeats))
    if plan.cli_exports is not None:
        log("command line")
        report.cli(cli_timings.run(plan.cli_exports, repeat=plan.startup_repeats))
    report.overhead(overhead.run(plan.sizes, plan.cap, log), plan.cap)
    cold = cheap.cold(*plan.cold, plan.cheap_repeats, log)
    objectives = cheap.run(*plan.cheap, plan.cheap_repeats, log)
    report.cheap(cold, objectives, profile.tables(log) if plan.profile else "")
    with process_cluster(n_workers=2) as cluster:
        results, memory = growth.run(cluster, plan.growth_trials, plan.growth_cap, log)
        report.growth(results, memory, plan.growth_window)
    report.scaling(scaling.run(plan.levels, plan.trials_per_worker, log))
    report.submission(scaling.quarter_second(log, plan.submission_trials))
    with process_cluster(n_workers=1) as cluster:
        report.load(load.run(cluster, plan.runners, plan.load_seconds, processes=2, log=log))
    report.took = time.time() - began
    args.out.mkdir(parents=True, exist_ok=True)
    text = report.write(args.out)
    print()
    print(text)
    log(f"wrote {args.out / 'results.md'} and {args.out / 'scaling.png'}")


def run_parallel(plan: parallel.Plan, out: Path, quick: bool, baseline: bool, report_only: bool) -> None:
    name = "parallel-baseline" if baseline else "parallel"
    raw = out / f"{name}-runs.json.gz"
    if report_only:
        plan, runs, meta = parallel.load(raw)
    else:
        quiet()
        began = time.time()
        # The load average says how much the machine's other users weighed on the timings.
        meta = {"machine": _machine(), "quick": quick, "load_before": os.getloadavg(), **parallel.provenance()}
        runs = []
        out.mkdir(parents=True, exist_ok=True)
        try:
            parallel.run(plan, _logger(began), runs)
        except BaseException:
            # Keep what was measured: a full run takes most of an hour.
            partial = out / f"{name}-runs.partial.json.gz"
            parallel.save(partial, plan, runs, {**meta, "took": time.time() - began, "incomplete": True})
            print(f"kept the {len(runs)} runs that ended in {partial}")
            raise
        meta["took"], meta["load_after"] = time.time() - began, os.getloadavg()
        parallel.save(raw, plan, runs, meta)
    against = out / "parallel-baseline.json"
    compare = None if baseline or not against.exists() else json.loads(against.read_text())
    text = ParallelReport(plan, runs, meta).write(out, name, compare)
    print()
    print(text)
    print(f"wrote {out / name}.md, .png, .json and {raw.name}")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def _machine() -> str:
    return (f"{platform.node() or 'this machine'}: {psutil.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
            f"Optuna {optuna.__version__}, distributed {__import__('distributed').__version__}")


def _logger(began: float) -> Callable[[str], None]:
    def log(message: str) -> None:
        print(f"[{time.time() - began:6.1f} s] {message}", flush=True)

    return log


if __name__ == "__main__":
    main()
