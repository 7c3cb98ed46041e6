"""Which of Optuna's samplers gives up least at P trials in flight: the option the parallel
report offers for large P.

``python -m benchmarks samplers [--levels 1,32] [--problems ...] [--seeds 10] [--out DIR]``
runs, for every sampler of :data:`SAMPLERS` and every P, the in-flight peer of
:mod:`benchmarks.parallel`: the sampler through ``study.ask``/``study.tell`` with P trials
always in flight on a virtual clock (the simulated durations of the parallel plan, results
told in the order they end; deterministic, no CPU limit, no sampling time counted). Its
regret after N trials is compared with sequential ``TPESampler`` — the parallel report's
reference, what a user gets from Optuna's default one trial at a time — so a ratio below 1
is a better result than sequential TPE at the same N. P = 1 is each sampler's own
sequential run. dasktune drives any of these samplers the same way (every running trial's
parameters reach the other runners' samplers; the parallel report shows it loses nothing
against this peer with TPE), so the table is what a user may expect from choosing one.

``GPSampler`` needs PyTorch and ``CmaEsSampler`` the ``cmaes`` package: a sampler whose
package is missing is left out, and the report says so. ``GPSampler`` fits a Gaussian
process at every sampling (0.1-0.3 s each over a 200-trial run on one of this machine's
cores, with ``OMP_NUM_THREADS=1``): fine for trials of seconds, not for the ~50 ms simulated
ones, which is why this figure uses the virtual clock alone.
Writes ``DIR/parallel-samplers.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import importlib.util

import numpy as np
import optuna

from benchmarks.parallel import Durations
from benchmarks.parallel import FULL
from benchmarks.parallel import in_flight
from benchmarks.parallel import Run
from benchmarks.parallel import sequential
from benchmarks.parallel import SEQUENTIAL
from benchmarks.parallel import SYNTHETIC
from benchmarks.parallel import tpe
from benchmarks.parallel_report import geometric_mean
from benchmarks.parallel_report import ratio
from benchmarks.parallel_report import ratio_interval
from benchmarks.problems import problem as make_problem

Sampler = Callable[[int], optuna.samplers.BaseSampler]

SAMPLERS: dict[str, Sampler] = {
    "TPESampler": tpe,
    # Optuna 5's default counts running trials as bad ones; Optuna 4's did not.
    "TPESampler(constant_liar=False)": lambda seed: optuna.samplers.TPESampler(seed=seed, constant_liar=False),
    "GPSampler": lambda seed: optuna.samplers.GPSampler(seed=seed),
    "CmaEsSampler": lambda seed: optuna.samplers.CmaEsSampler(seed=seed),
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


@dataclass(frozen=True)
class Plan:
    """What ``python -m benchmarks samplers`` runs (the parallel plan's N and durations)."""

    problems: tuple[str, ...] = SYNTHETIC
    levels: tuple[int, ...] = (1, 32)
    seeds: int = 10
    n: int = FULL.n
    durations: Durations = FULL.durations


def run(plan: Plan, log: Callable[[str], None]) -> tuple[list[Run], dict[str, str]]:
    """Sequential TPE, then every available sampler at every P, on every problem and seed."""
    samplers, missing = available()
    runs = []
    for name in plan.problems:
        problem = make_problem(name)
        for seed in range(plan.seeds):
            runs.append(sequential(problem, seed, plan.n, plan.durations))
            for sampler, make in samplers.items():
                for p in plan.levels:
                    runs.append(in_flight(problem, seed, p, plan.n, plan.durations, make, sampler))
                    log(f"samplers: {sampler}, P={p}, {name}, seed {seed}: best {min(runs[-1].values):.4g}, "
                        f"{runs[-1].wall:.1f} s")
    return runs, missing


def report(runs: list[Run], plan: Plan, missing: dict[str, str]) -> str:
    problems = plan.problems
    optimum = {name: make_problem(name).optimum for name in problems}

    def regrets(config: str, problem: str, p: int) -> np.ndarray:
        return np.array([min(r.values) - optimum[problem] for r in runs
                         if (r.config, r.problem, r.p) == (config, problem, p)])

    reference = {problem: regrets(SEQUENTIAL, problem, 1) for problem in problems}
    configs = sorted({(r.config, r.p) for r in runs if r.config != SEQUENTIAL},
                     key=lambda cp: (list(SAMPLERS).index(cp[0]), cp[1]))
    lines = ["# Parallel quality by sampler: P trials in flight against sequential TPE", "",
             f"Made by `python -m benchmarks samplers` (see `benchmarks/samplers.py`). {plan.seeds} seeds, "
             f"N = {plan.n}, simulated durations of mean {plan.durations.mean * 1e3:g} ms; "
             "regret after N trials, median over seeds, of the sampler with P trials in flight (virtual clock, "
             "deterministic) / that of sequential `TPESampler` at the same N: below 1, better than Optuna's "
             "default one trial at a time. In brackets the 10%-90% bootstrap range, then the ratio of "
             "geometric means.", ""]
    if missing:
        lines += ["Left out (package missing): " + "; ".join(f"{k}: {v}" for k, v in missing.items()) + ".", ""]
    lines += [f"| sampler | P | {' | '.join(problems)} |", f"|---|---:|{'|'.join(['---:'] * len(problems))}|"]
    for config, p in configs:
        cells = []
        for problem in problems:
            mine, seq = regrets(config, problem, p), reference[problem]
            low, high = ratio_interval(mine, seq)
            cells.append(f"{ratio(float(np.median(mine)), float(np.median(seq))):.3g} ({low:.2g}-{high:.2g}), "
                         f"{ratio(float(geometric_mean(mine)), float(geometric_mean(seq))):.3g}")
        lines.append(f"| {config} | {p} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"

