"""Which sampler gives up least at P trials in flight: Optuna's samplers and
``dasktune.ParallelSampler``, against sequential TPE.

``python -m benchmarks samplers [--levels 1,32] [--problems ...] [--samplers ...] [--seeds 10]
[--trials N] [--out DIR]`` (default ``DIR``: ``benchmarks/results/parallel-sampler``) keeps
every run in ``DIR/parallel-samplers-runs.jsonl`` as it ends, resumes from it, remakes the
report from it with ``--report-only``, and runs, for every sampler of :data:`SAMPLERS` and
every P, the in-flight peer of :mod:`benchmarks.parallel`: the sampler through
``study.ask``/``study.tell`` with P trials always in flight on a virtual clock, results told
in the order they end. Its regret after N trials is compared with sequential
``TPESampler`` — what a user gets from Optuna's default one trial at a time — so a ratio
below 1 is a better result than sequential TPE at the same N. P = 1 is each sampler's own
sequential run (and ``TPESampler`` at P = 1 the reference).

**Trials of a minute.** The simulated durations are uniform in 15-105 s (mean 60 s; the
parallel plan's 0.05-0.35 s spread, times 300): what users tune. The trials carry those
datetimes (:class:`benchmarks.parallel.VirtualClock`), and each trial starts its work only
once it is sampled: the CPU seconds its sampling really took here (the sampling thread's,
so what it takes on a core of its own, as each worker of a cluster has) are added to the
virtual clock, as a worker samples before it runs the trial. ``ParallelSampler`` measures
its own sampling cost the same way, so it weighs it against minute-long trials exactly as it
would on a cluster, and a costly sampler pays for its cost in the time figures. (The order
results come in then depends a little on this machine's timing: the runs are not exactly
deterministic.)

**Without PyTorch.** ``ParallelSampler without PyTorch`` is built with ``torch`` made
unimportable (``sys.modules["torch"] = None``): it samples as it would where PyTorch is not
installed. ``GPSampler`` needs PyTorch and ``CmaEsSampler`` the ``cmaes`` package: a sampler
whose package is missing is left out, and the report says so.

**The real thing.** ``--real 8,32 [--real-seeds 5]`` also runs ``ParallelSampler`` through
the real ``dasktune.optimize`` on a ``LocalCluster`` of this machine (:data:`REAL`), with
trials that sleep a fifteenth of the model's durations (:data:`REAL_DURATIONS`), and the
report says whether each real run's ratio is within or below the model's range. On 2 cores
the P runners' samplings queue for the CPU, so the real runs have fewer trials truly in
flight than P (the log gives the average): they check the plumbing and the sampler's
choices on a cluster, not P itself, which the model gives.

The report (``DIR/parallel-samplers.md``) gives the regret ratio at N, the issue's floors
for ``ParallelSampler`` (geometric mean over the problems at P = 32 and the largest ratio
at each P), the virtual time to reach sequential TPE's median result after N/2 trials
against sequential TPE's own time, duplicate configurations, and the sampling time per
trial.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Iterator
import contextlib
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
import importlib.util
import json
import math
from pathlib import Path
import sys
import time
import warnings

import numpy as np
import optuna

from benchmarks.parallel import cluster_for
from benchmarks.parallel import Durations
from benchmarks.parallel import in_flight
from benchmarks.parallel import Run
from benchmarks.parallel import SYNTHETIC
from benchmarks.parallel import TABLES
from benchmarks.parallel import tpe
from benchmarks.parallel import with_dasktune
from benchmarks.parallel_report import geometric_mean
from benchmarks.parallel_report import ratio
from benchmarks.parallel_report import ratio_interval
from benchmarks.parallel_report import regret_curve
from benchmarks.parallel_report import time_to
from benchmarks.problems import problem as make_problem

Sampler = Callable[[int], optuna.samplers.BaseSampler]

REFERENCE = "TPESampler"  # at P = 1: sequential TPE, Optuna's default
PARALLEL = "ParallelSampler"
NO_TORCH = "ParallelSampler without PyTorch"
#: ``ParallelSampler`` through the real ``dasktune.optimize`` on a ``LocalCluster``.
REAL = "ParallelSampler, dasktune.optimize"
#: The real runs' trials sleep 1-7 s (mean 4 s): a fifteenth of the model's, so that a run
#: takes a minute, and still over ten GP samplings long, so that the sampler chooses as it
#: does for the model's minute-long trials (a tenth of a trial is what it allows itself).
REAL_DURATIONS = Durations(scale=20.0)


@contextlib.contextmanager
def torch_hidden() -> Iterator[None]:
    """``import torch`` fails inside, as where PyTorch is not installed."""
    saved = sys.modules.get("torch")
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if saved is None:
            del sys.modules["torch"]
        else:
            sys.modules["torch"] = saved


def parallel_sampler(seed: int) -> optuna.samplers.BaseSampler:
    from dasktune.samplers import ParallelSampler

    return ParallelSampler(seed=seed)


def parallel_sampler_without_torch(seed: int) -> optuna.samplers.BaseSampler:
    from dasktune.samplers import ParallelSampler

    with torch_hidden(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its warning that PyTorch is missing: that is the point
        return ParallelSampler(seed=seed)  # decides for good that it has no GP


SAMPLERS: dict[str, Sampler] = {
    REFERENCE: tpe,
    # Optuna 5's default counts running trials as bad ones; Optuna 4's did not.
    "TPESampler(constant_liar=False)": lambda seed: optuna.samplers.TPESampler(seed=seed, constant_liar=False),
    "CmaEsSampler": lambda seed: optuna.samplers.CmaEsSampler(seed=seed),
    "GPSampler": lambda seed: optuna.samplers.GPSampler(seed=seed),
    PARALLEL: parallel_sampler,
    NO_TORCH: parallel_sampler_without_torch,
}

#: The package each sampler needs beyond Optuna's own.
NEEDS = {"GPSampler": "torch", "CmaEsSampler": "cmaes"}


def available() -> tuple[dict[str, Sampler], dict[str, str]]:
    """The samplers that can sample here, and why the others cannot."""
    ok, missing = {}, {}
    for name, make in SAMPLERS.items():
        package = NEEDS.get(name)
        if package is None or importlib.util.find_spec(package) is not None:
            ok[name] = make
        else:
            missing[name] = f"needs `pip install {package}`"
    return ok, missing


CHOICE = "Model choice diabetes"


@dataclass(frozen=True)
class Plan:
    """What ``python -m benchmarks samplers`` runs."""

    problems: tuple[str, ...] = SYNTHETIC + TABLES + (CHOICE,)
    levels: tuple[int, ...] = (1, 8, 32, 128)
    seeds: int = 10
    n: int = 200
    durations: Durations = field(default_factory=lambda: Durations(scale=300.0))
    samplers: tuple[str, ...] = tuple(SAMPLERS)


def run(plan: Plan, log: Callable[[str], None], raw: Path | None = None) -> tuple[list[Run], dict[str, str]]:
    """Every available sampler of the plan at every P, on every problem and seed. With
    ``raw``, each run is appended there as it ends, and runs already there are not run
    again (a full run takes hours)."""
    usable, missing = available()
    samplers = {name: make for name, make in usable.items() if name in plan.samplers or name == REFERENCE}
    runs = load(raw) if raw is not None and raw.exists() else []
    done = _keys(runs)
    for name in plan.problems:
        problem = make_problem(name)
        for seed in range(plan.seeds):
            for sampler, make in samplers.items():
                for p in plan.levels if sampler != REFERENCE else sorted({1, *plan.levels}):
                    if (name, sampler, p, seed) in done:
                        continue
                    r = in_flight(problem, seed, p, plan.n, plan.durations, make, sampler, count_sampling=True)
                    runs.append(r)
                    if raw is not None:
                        _keep(raw, r)
                    log(f"samplers: {sampler}, P={p}, {name}, seed {seed}: best {min(r.values):.4g}, "
                        f"{r.wall:.1f} s")
    return runs, missing


def real(plan: Plan, levels: tuple[int, ...], seeds: int, log: Callable[[str], None], raw: Path) -> list[Run]:
    """``ParallelSampler(seed)`` through the real ``dasktune.optimize``, P trials at once on
    P's cluster (:func:`benchmarks.parallel.cluster_for`), on the plan's problems, with
    trials of :data:`REAL_DURATIONS`; appended to ``raw`` as each ends, as :func:`run`'s."""
    runs = load(raw) if raw.exists() else []
    done = _keys(runs)
    for p in levels:
        todo = [(name, seed) for name in plan.problems if name in FIVE for seed in range(seeds)
                if (name, REAL, p, seed) not in done]
        if not todo:
            continue
        with cluster_for(p) as (client, storage):
            for name, seed in todo:
                r = with_dasktune(client, storage, REAL, make_problem(name), seed, p, plan.n, REAL_DURATIONS,
                                  make_sampler=parallel_sampler)
                runs.append(r)
                _keep(raw, r)
                log(f"samplers: {REAL}, P={p}, {name}, seed {seed}: best {min(r.values):.4g}, {r.wall:.1f} s, "
                    f"{r.busy / r.wall:.1f} trials at once on average")
    return runs


def _keys(runs: list[Run]) -> set[tuple[str, str, int, int]]:
    """What identifies a run, so that a resumed plan does not run it again."""
    return {(r.problem, r.config, r.p, r.seed) for r in runs}


def _keep(raw: Path, r: Run) -> None:
    """Append ``r`` to the runs file, as it ends (a full plan takes hours)."""
    with raw.open("a") as f:
        f.write(json.dumps(asdict(r)) + "\n")


def load(raw: Path) -> list[Run]:
    with raw.open() as f:
        return [Run(**json.loads(line)) for line in f if line.strip()]


class Figures:
    """The statistics of the report, by (sampler, problem, P)."""

    def __init__(self, runs: list[Run], plan: Plan) -> None:
        self.plan = plan
        self.optimum = {name: make_problem(name).optimum for name in plan.problems}
        self.runs: dict[tuple[str, str, int], list[Run]] = {}
        for r in sorted(runs, key=lambda r: r.seed):
            if r.problem in self.optimum:
                self.runs.setdefault((r.config, r.problem, r.p), []).append(r)
        order = list(SAMPLERS)
        self.rows = sorted({(c, p) for c, _, p in self.runs},
                           key=lambda cp: (order.index(cp[0]) if cp[0] in order else len(order), cp[1]))

    def regrets(self, config: str, problem: str, p: int, n: int | None = None) -> np.ndarray:
        n = self.plan.n if n is None else n
        return np.array([regret_curve(r, self.optimum[problem])[n - 1] for r in self.runs.get((config, problem, p), [])])

    def reference(self, problem: str, n: int | None = None) -> np.ndarray:
        return self.regrets(REFERENCE, problem, 1, n)

    def ratio(self, config: str, problem: str, p: int) -> float:
        mine = self.regrets(config, problem, p)
        return ratio(float(np.median(mine)), float(np.median(self.reference(problem)))) if len(mine) else math.nan

    def target(self, problem: str) -> float:
        """Sequential TPE's median regret after N/2 trials."""
        return float(np.median(self.reference(problem, self.plan.n // 2)))

    def times_to_target(self, config: str, problem: str, p: int) -> list[float]:
        """Virtual seconds to the target; none for the real runs, whose clock is another."""
        if config == REAL:
            return []
        target = self.target(problem)
        return [time_to(r, self.optimum[problem], target) for r in self.runs.get((config, problem, p), [])]

    def sampling_seconds(self, config: str, p: int) -> float:
        """Median over the runs of every problem of the CPU seconds of sampling per trial."""
        costs = [r.sampling / len(r.values) for (c, _, q), rs in self.runs.items() if (c, q) == (config, p) for r in rs]
        return float(np.median(costs)) if costs else math.nan


def report(runs: list[Run], plan: Plan, missing: dict[str, str]) -> str:
    f = Figures(runs, plan)
    problems = plan.problems
    head = [f"| sampler | P | {' | '.join(problems)} |", f"|---|---:|{'|'.join(['---:'] * len(problems))}|"]
    lines = ["# Parallel quality by sampler: P trials in flight against sequential TPE", "",
             f"Made by `python -m benchmarks samplers` (see `benchmarks/samplers.py`). {plan.seeds} seeds, "
             f"N = {plan.n}, simulated trials of {plan.durations.low * plan.durations.scale:g}-"
             f"{plan.durations.high * plan.durations.scale:g} s (mean {plan.durations.mean:g} s) on a virtual clock "
             "that also counts each trial's sampling (CPU seconds, measured); Optuna "
             f"{optuna.__version__}. Regret after N trials, median over seeds, of the sampler with P trials in "
             "flight / that of sequential `TPESampler` at the same N: below 1, better than Optuna's default one "
             "trial at a time. In brackets the 10%-90% bootstrap range, then the ratio of geometric means; a cell "
             "over fewer seeds says how many.", ""]
    if missing:
        lines += ["Left out (package missing): " + "; ".join(f"{k}: {v}" for k, v in missing.items()) + ".", ""]
    lines += _floors(f) + ["", "## Regret ratio at equal N", "", *head]
    for config, p in f.rows:
        cells = []
        for problem in problems:
            mine, seq = f.regrets(config, problem, p), f.reference(problem)
            if not len(mine):
                cells.append("—")
                continue
            low, high = ratio_interval(mine, seq)
            fewer = f" [{len(mine)} seeds]" if len(mine) != f.plan.seeds else ""
            cells.append(f"{ratio(float(np.median(mine)), float(np.median(seq))):.3g} ({low:.2g}-{high:.2g}), "
                         f"{ratio(float(geometric_mean(mine)), float(geometric_mean(seq))):.3g}{fewer}")
        lines.append(f"| {config} | {p} | {' | '.join(cells)} |")
    lines += ["", "## Time to reach sequential TPE's median result after N/2 trials", "",
              f"Virtual seconds (sampling included) until a run's best reaches sequential `TPESampler`'s median "
              f"regret after {plan.n // 2} trials; median over seeds (infinite when fewer than half reach it "
              f"within the run's {plan.n} trials). In brackets sequential TPE's own median time over this one "
              "(the speed-up; the issue asks for at least 10 at P = 32), then how many seeds reached it.", "",
              *head]
    for config, p in f.rows:
        cells = []
        for problem in problems:
            times = f.times_to_target(config, problem, p)
            if not times:
                cells.append("—")
                continue
            median = float(np.median(times))
            own = float(np.median(f.times_to_target(REFERENCE, problem, 1)))
            speedup = f" (x{own / median:.1f})" if math.isfinite(median) and math.isfinite(own) and median > 0 else ""
            reached = sum(math.isfinite(t) for t in times)
            cells.append(f"{_duration(median)}{speedup}, {reached}/{len(times)}")
        lines.append(f"| {config} | {p} | {' | '.join(cells)} |")
    lines += ["", "## Duplicate configurations and sampling time", "",
              "Trials whose parameters repeat an earlier trial's of the same run, over all seeds, on the problems "
              "whose parameters are all floats (where any repeat is the sampler's), and the median over runs of "
              "the CPU seconds of sampling per trial (one core of this machine, P - 1 trials in flight).", "",
              "| sampler | P | duplicates | seconds per trial |", "|---|---:|---:|---:|"]
    continuous = [name for name in problems if make_problem(name).continuous]
    for config, p in f.rows:
        duplicates = sum(r.duplicates for name in continuous for r in f.runs.get((config, name, p), []))
        cost = "—" if config == REAL else f"{f.sampling_seconds(config, p):.3g}"  # not measured there
        lines.append(f"| {config} | {p} | {duplicates} | {cost} |")
    return "\n".join(lines) + "\n"


#: Issue 25's floors for ParallelSampler, on the five problems it names.
FIVE = SYNTHETIC + TABLES
FLOORS = {8: 1.25, 32: 2.0, 128: 4.0}


def _floors(f: Figures) -> list[str]:
    """Issue 25's floors, for each ParallelSampler row."""
    five = [name for name in FIVE if name in f.plan.problems]
    lines = ["## The floors (issue 25), on " + ", ".join(five), "",
             f"Median-regret ratio at N = {f.plan.n} against sequential TPE: at P = 32 a geometric mean over the five "
             "problems <= 1.0 and none above 2.0; at P = 8 none above 1.25; at P = 128 none above 4.0; at P = 32 "
             "sequential TPE's median result after N/2 trials reached in a tenth of its own time or less on 4 of 5.",
             "", "| sampler | P | ratios | geometric mean | largest | floor | time to target x10 | result |",
             "|---|---:|---|---:|---:|---:|---:|---|"]
    for config in (PARALLEL, NO_TORCH, "GPSampler", REFERENCE):
        for p in sorted({p for c, p in f.rows if c == config and p in FLOORS}):
            ratios = [f.ratio(config, name, p) for name in five]
            if any(math.isnan(r) for r in ratios):
                continue
            mean = float(np.exp(np.mean(np.log(np.maximum(ratios, 1e-12)))))
            largest = max(ratios)
            ok = largest <= FLOORS[p] and (p != 32 or mean <= 1.0)
            fast = ""
            if p == 32:
                own = {name: float(np.median(f.times_to_target(REFERENCE, name, 1))) for name in five}
                quick = sum(float(np.median(f.times_to_target(config, name, p))) <= own[name] / 10 for name in five)
                fast = f"{quick}/{len(five)}"
                ok = ok and quick >= 4
            floor = f"<= {FLOORS[p]:g}" + (", mean <= 1" if p == 32 else "")
            counts = {len(f.regrets(config, name, p)) for name in five}
            if counts != {f.plan.seeds}:  # not the whole plan yet: say over how many seeds
                floor += f" ({min(counts)}-{max(counts)} seeds)" if len(counts) > 1 else f" ({min(counts)} seeds)"
            lines.append(f"| {config} | {p} | {' / '.join(f'{r:.3g}' for r in ratios)} | {mean:.3g} | "
                         f"{largest:.3g} | {floor} | {fast} | {'PASS' if ok else '**FAIL**'} |")
    return lines + _real_against_model(f, five)


def _real_against_model(f: Figures, five: list[str]) -> list[str]:
    """Whether the real ``dasktune.optimize`` runs are within or below the model's range."""
    levels = sorted({p for c, p in f.rows if c == REAL})
    if not levels:
        return []
    lines = ["", f"`{REAL}` (trials of {REAL_DURATIONS.low * REAL_DURATIONS.scale:g}-"
             f"{REAL_DURATIONS.high * REAL_DURATIONS.scale:g} s on a `LocalCluster` of this machine) against the "
             f"model's `{PARALLEL}` at the same P: the real run's median-regret ratio, then the model's 10%-90% "
             "bootstrap range; the issue asks for within or below it.", "",
             "| P | problem | seeds | real | model | result |", "|---:|---|---:|---:|---:|---|"]
    for p in levels:
        for name in five:
            mine, seq = f.regrets(REAL, name, p), f.reference(name)
            model = f.regrets(PARALLEL, name, p)
            if not len(mine) or not len(model):
                continue
            actual = ratio(float(np.median(mine)), float(np.median(seq)))
            low, high = ratio_interval(model, seq)
            where = "below" if actual < low else "within" if actual <= high else "**above**"
            lines.append(f"| {p} | {name} | {len(mine)} | {actual:.3g} | {low:.2g}-{high:.2g} | {where} |")
    return lines


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "not reached"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "parallel-sampler")
    parser.add_argument("--levels", type=lambda text: tuple(int(x) for x in text.split(",")))
    parser.add_argument("--problems", type=lambda text: tuple(text.split(",")))
    parser.add_argument("--samplers", type=lambda text: tuple(text.split(",")), help=f"of {', '.join(SAMPLERS)}")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--trials", type=int)
    parser.add_argument("--report-only", action="store_true", help="remake the report from the kept runs")
    parser.add_argument("--real", type=lambda text: tuple(int(x) for x in text.split(",")), default=(),
                        help=f"also run {REAL} at these P (--real-seeds seeds each)")
    parser.add_argument("--real-seeds", type=int, default=5)
    args = parser.parse_args(argv)
    given = {"problems": args.problems, "levels": args.levels, "seeds": args.seeds, "n": args.trials,
             "samplers": args.samplers}
    plan = replace(Plan(), **{k: v for k, v in given.items() if v is not None})
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / "parallel-samplers-runs.jsonl"
    if args.report_only:
        runs, missing = load(raw), available()[1]
    else:
        from benchmarks.common import quiet

        quiet()
        began = time.time()
        def log(message: str) -> None:
            print(f"[{time.time() - began:7.1f} s] {message}", flush=True)

        runs, missing = run(plan, log, raw)
        if args.real:
            runs = real(plan, args.real, args.real_seeds, log, raw)
    text = report(runs, plan, missing)
    (args.out / "parallel-samplers.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
