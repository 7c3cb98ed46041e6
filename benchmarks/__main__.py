"""``python -m benchmarks [--quick] [--out DIR]``: every figure of the benchmark suite in one
run, against the peers measured in the same run; writes ``DIR/results.md`` and
``DIR/scaling.png`` (default ``DIR``: ``benchmarks/results``, ``benchmarks/results/quick``
with ``--quick``) and prints the report.

Sections (each module's docstring says exactly what it runs): overhead against the peers
(:mod:`benchmarks.overhead`), growth across a 10,000-trial study and memory afterwards
(:mod:`benchmarks.growth`), scaling to 32 workers (:mod:`benchmarks.scaling`) and scheduler
load from hundreds of runners (:mod:`benchmarks.load`). A full run takes about 12 minutes on
2 cores, ``--quick`` (small sizes, for a smoke check) under 2.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
import platform
import time
import warnings

import optuna
import psutil

from benchmarks import growth
from benchmarks import load
from benchmarks import overhead
from benchmarks import scaling
from benchmarks.common import process_cluster
from benchmarks.common import quiet
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


FULL = Plan([1000, 2000, 5000], 30.0, 10_000, 500, 150.0, [1, 2, 4, 8, 16, 32], 20,
            [(100, 1000.0), (250, 1000.0), (500, 1000.0), (500, None)], 10.0)
QUICK = Plan([200], 10.0, 1000, 100, 20.0, [1, 4, 32], 3, [(100, 1000.0)], 3.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run under 2 minutes")
    parser.add_argument("--out", type=Path, default=None,
                        help="where results.md and scaling.png go (default: benchmarks/results, "
                             "or benchmarks/results/quick with --quick)")
    args = parser.parse_args()
    if args.out is None:  # a smoke run must not overwrite the reported figures
        args.out = Path(__file__).parent / "results" / ("quick" if args.quick else "")
    plan = QUICK if args.quick else FULL
    quiet()
    warnings.filterwarnings("ignore", category=UserWarning, module="optuna_integration")
    began = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - began:6.1f} s] {message}", flush=True)

    machine = (f"{platform.node() or 'this machine'}: {psutil.cpu_count()} cores, "
               f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
               f"Optuna {optuna.__version__}, distributed {__import__('distributed').__version__}")
    report = Report(machine, quick=args.quick)
    report.overhead(overhead.run(plan.sizes, plan.cap, log), plan.cap)
    with process_cluster(n_workers=2) as cluster:
        results, memory = growth.run(cluster, plan.growth_trials, plan.growth_cap, log)
        report.growth(results, memory, plan.growth_window)
    report.scaling(scaling.run(plan.levels, plan.trials_per_worker, log))
    report.submission(scaling.quarter_second(log))
    with process_cluster(n_workers=1) as cluster:
        report.load(load.run(cluster, plan.runners, plan.load_seconds, processes=2, log=log))
    report.took = time.time() - began
    args.out.mkdir(parents=True, exist_ok=True)
    text = report.write(args.out)
    print()
    print(text)
    log(f"wrote {args.out / 'results.md'} and {args.out / 'scaling.png'}")


if __name__ == "__main__":
    main()
