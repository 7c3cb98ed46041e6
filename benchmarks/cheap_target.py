"""Cheap trials, time to a result: ``dasktune.ParallelSampler`` beside ``TPESampler`` (issue 25).

``python -m benchmarks.cheap_target [--n 200] [--repeats 10] [--out DIR]`` writes
``DIR/cheap-target.md`` (default ``benchmarks/results``).

The other end from the minute-long trials of :mod:`benchmarks.samplers`: a trial of about
15 ms, :func:`benchmarks.cheap.fit` (an SVC on scikit-learn's digits, ``C`` and ``gamma``),
where sampling with a Gaussian process would cost more than the trial. ``ParallelSampler``
must notice and sample as cheaply as TPE; this measures whether a user pays for it anyway.

Each repetition runs, in an order that alternates between repetitions:

- ``optuna in-process``: ``study.optimize`` with ``TPESampler()``, one thread (the target's
  source, and a reference);
- ``TPESampler``: ``dasktune.optimize`` on ``optuna.create_study(storage=DaskStorage(),
  sampler=TPESampler())``;
- ``ParallelSampler``: ``dasktune.optimize`` on ``dasktune.create_study()``, the default;

each ``dasktune`` peer on a fresh ``LocalCluster`` of 2 single-thread worker processes,
cold: its first ``optimize``, the workers' imports included, as a user's first call.

The target is the in-process runs' median best value after ``n / 2`` trials. A run's time
to target is the seconds from its ``optimize`` call until the calling process learns of a
trial at or below it (a callback's clock: what a user's progress bar shows); infinite if
none of its ``n`` trials gets there. The report gives the median over repetitions with the
10%-90% bootstrap range of that median, how many reached it, and the ratio of the
``ParallelSampler`` median to the ``TPESampler`` one, with its bootstrap range: the issue
asks for no worse (a ratio of at most 1, within noise).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
import math
from pathlib import Path
import time

import numpy as np
import optuna

import dasktune
from benchmarks.cheap import two_workers
from benchmarks.cheap import fit
from benchmarks.common import quiet

IN_PROCESS = "optuna in-process"
TPE = "TPESampler"
PARALLEL = "ParallelSampler"
PEERS = (IN_PROCESS, TPE, PARALLEL)


@dataclass(frozen=True)
class Run:
    """One peer's run: when the caller learnt of each trial's value (seconds from the call)."""

    peer: str
    seconds: list[float]
    values: list[float]

    def best_after(self, n: int) -> float:
        return min(self.values[:n])

    def time_to(self, target: float) -> float:
        return next((s for s, v in zip(self.seconds, self.values) if v <= target), math.inf)


class _Stamps:
    """An ``optimize`` callback: the time and value of each finished trial, as they arrive."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: list[float] = []
        self.values: list[float] = []

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.value is not None:
            self.seconds.append(time.perf_counter() - self.start)
            self.values.append(trial.value)


def one(peer: str, n: int) -> Run:
    """One cold run of ``peer``."""
    if peer == IN_PROCESS:
        study = optuna.create_study(sampler=optuna.samplers.TPESampler())
        stamps = _Stamps()
        study.optimize(fit, n_trials=n, callbacks=[stamps])
        return Run(peer, stamps.seconds, stamps.values)
    cluster, client = two_workers()
    with cluster, client:
        if peer == TPE:
            study = optuna.create_study(storage=dasktune.DaskStorage(client=client),
                                        sampler=optuna.samplers.TPESampler())
        else:
            study = dasktune.create_study(storage=dasktune.DaskStorage(client=client))
            assert isinstance(study.sampler, dasktune.ParallelSampler)
        stamps = _Stamps()
        dasktune.optimize(study, fit, n_trials=n, callbacks=[stamps], client=client)
    return Run(peer, stamps.seconds, stamps.values)


def run(n: int, repeats: int, log: Callable[[str], None]) -> list[Run]:
    quiet()
    fit(optuna.create_study().ask())  # this process's imports and data, not timed
    runs = []
    for i in range(repeats):
        order = PEERS if i % 2 == 0 else (IN_PROCESS, *reversed(PEERS[1:]))
        for peer in order:
            r = one(peer, n)
            runs.append(r)
            log(f"cheap target: {peer} ({i + 1}/{repeats}): best {min(r.values):.4g}, "
                f"{len(r.values)} trials in {r.seconds[-1]:.2f} s")
    return runs


def _bootstrap(times: np.ndarray, resamples: int = 2000) -> np.ndarray:
    """Medians of resampled sets of ``times`` (seeded: the report is the same each time);
    "lower": a median of an even count is one of the times, never (inf + x) / 2."""
    rng = np.random.default_rng(25)
    return np.percentile(rng.choice(times, (resamples, len(times))), 50, axis=1, method="lower")


def _range(values: np.ndarray) -> str:
    low, high = np.percentile(values, [10, 90], method="nearest")
    return f"{_s(float(low))}-{_s(float(high))}"


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s" if math.isfinite(seconds) else "not reached"


def report(runs: list[Run], n: int) -> str:
    by_peer = {peer: [r for r in runs if r.peer == peer] for peer in PEERS}
    target = float(np.median([r.best_after(n // 2) for r in by_peer[IN_PROCESS]]))
    times = {peer: np.array([r.time_to(target) for r in rs]) for peer, rs in by_peer.items()}
    boot = {peer: _bootstrap(t) for peer, t in times.items()}
    lines = ["# Cheap trials: time to a result, ParallelSampler beside TPESampler", "",
             f"Made by `python -m benchmarks.cheap_target` (see `benchmarks/cheap_target.py`). An SVC on "
             f"scikit-learn's digits (about 15 ms a trial), N = {n}, {len(by_peer[IN_PROCESS])} repetitions; "
             f"each `dasktune.optimize` on a fresh `LocalCluster` of 2 single-thread workers, cold. Target: the "
             f"in-process runs' median best validation error after {n // 2} trials, {target:.4g}. Optuna "
             f"{optuna.__version__}.", "",
             "| peer | time to target, median (10%-90% bootstrap) | reached | final best, median |",
             "|---|---|---:|---:|"]
    for peer in PEERS:
        t = times[peer]
        best = float(np.median([min(r.values) for r in by_peer[peer]]))
        lines.append(f"| {peer} | {_s(float(np.median(t)))} ({_range(boot[peer])}) | "
                     f"{int(np.isfinite(t).sum())}/{len(t)} | {best:.4g} |")
    ratios = boot[PARALLEL] / boot[TPE]
    ratios = ratios[np.isfinite(ratios)]
    if len(ratios):
        mid = float(np.median(times[PARALLEL]) / np.median(times[TPE]))
        low, high = np.percentile(ratios, [10, 90])
        lines += ["", f"ParallelSampler's median time over TPESampler's: {mid:.2f} (bootstrap 10%-90%: "
                      f"{low:.2f}-{high:.2f}); at most 1 is no worse."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    began = time.time()
    runs = run(args.n, args.repeats, lambda m: print(f"[{time.time() - began:6.1f} s] {m}", flush=True))
    text = report(runs, args.n)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cheap-target.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
