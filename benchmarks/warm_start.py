"""Warm starts (issue 30): trials to a target on a shifted problem, with and without the
completed trials of an earlier study.

``python -m benchmarks.warm_start [--seeds N] [--out DIR]``: for each seed, an *earlier*
study optimizes Hartmann-6 for :data:`EARLIER` trials (``TPESampler(seed)``); then a *new*
study optimizes Hartmann-6 shifted by :data:`SHIFT` in every coordinate (the optimum moves
from (0.20, 0.15, 0.48, 0.28, 0.31, 0.66) to 0.05 higher in each, still inside the box, with
the same value), once cold and once created by ``dasktune.create_study(warm_start=[earlier])``
(both with ``TPESampler(seed + 1000)``, in this process: the figure is the sampler's, not
the cluster's). Reported: the trials the new study needs to reach a value within
:data:`TARGET` of the optimum (the warm start's trials not counted), median over seeds with
a 90% bootstrap range; "not reached" past :data:`BUDGET`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
import statistics
import time

import numpy as np
import optuna

import dasktune
from benchmarks.problems import hartmann6

EARLIER = 100
BUDGET = 200
SHIFT = 0.05
TARGET = 0.2  # regret: within 0.2 of -3.3224 (about 6%), what TPE reaches in ~100 trials
OPTIMUM = -3.322368


def objective(shift: float) -> Callable[[optuna.Trial], float]:
    def f(trial: optuna.Trial) -> float:
        x = np.array([trial.suggest_float(f"x{i}", 0, 1) for i in range(6)])
        # The shifted problem's argmin is the original's + shift (inside the box).
        return hartmann6(np.clip(x - shift, 0, 1))

    return f


def trials_to_target(study: optuna.Study, skip: int) -> float:
    for i, t in enumerate(study.trials[skip:]):
        if t.value is not None and t.value <= OPTIMUM + TARGET:
            return i + 1
    return float("inf")


def run(seed: int) -> tuple[float, float, int]:
    storage = optuna.storages.InMemoryStorage()
    earlier = optuna.create_study(storage=storage, sampler=optuna.samplers.TPESampler(seed=seed))
    earlier.optimize(objective(0.0), n_trials=EARLIER)
    cold = optuna.create_study(storage=storage, sampler=optuna.samplers.TPESampler(seed=seed + 1000))
    cold.optimize(objective(SHIFT), n_trials=BUDGET, callbacks=[_stop_at_target(0)])
    warm = dasktune.create_study(storage=storage, sampler=optuna.samplers.TPESampler(seed=seed + 1000),
                                 warm_start=[earlier])
    taken = len(warm.trials)
    warm.optimize(objective(SHIFT), n_trials=BUDGET, callbacks=[_stop_at_target(taken)])
    return trials_to_target(cold, 0), trials_to_target(warm, taken), taken


def _stop_at_target(skip: int) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    def stop(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.number >= skip and trial.value is not None and trial.value <= OPTIMUM + TARGET:
            study.stop()

    return stop


def _cell(values: list[float]) -> str:
    rng = np.random.default_rng(0)
    data = np.array(values)
    stats = [np.median(rng.choice(data, len(data))) for _ in range(2000)]
    fmt = lambda x: "not reached" if not np.isfinite(x) else f"{x:.0f}"  # noqa: E731
    return f"{fmt(np.median(data))} [{fmt(np.quantile(stats, 0.05))}, {fmt(np.quantile(stats, 0.95))}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    began = time.time()
    rows = [run(seed) for seed in range(args.seeds)]
    cold, warm = [r[0] for r in rows], [r[1] for r in rows]
    text = "\n".join([
        "# Warm start on a shifted problem",
        "",
        f"`python -m benchmarks.warm_start --seeds {args.seeds}` ({time.time() - began:.0f} s): Hartmann-6 "
        f"shifted by {SHIFT} in every coordinate, seeded with the {EARLIER} trials of an earlier study of "
        f"the unshifted problem (TPE). Trials to reach {OPTIMUM} + {TARGET}, median [90% bootstrap range] "
        f"over {args.seeds} seeds; the earlier trials are not counted.",
        "",
        "| new study | trials to target | reached within the budget |",
        "|---|---|---|",
        f"| cold (`optuna.create_study`) | {_cell(cold)} | {sum(np.isfinite(cold))}/{len(cold)} |",
        f"| warm (`dasktune.create_study(warm_start=[earlier])`) | {_cell(warm)} | "
        f"{sum(np.isfinite(warm))}/{len(warm)} |",
        "",
        f"Median ratio warm / cold, paired by seed: "
        f"{statistics.median(w / c for w, c in zip(warm, cold) if np.isfinite(c)):.2f}.",
        "",
    ])
    (args.out / "warm-start.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
