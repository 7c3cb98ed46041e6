"""Benchmark: dasktune.DaskStorage against optuna_integration.DaskStorage and plain Optuna.

Runs the same trivial three-parameter objective with RandomSampler and TPESampler under
three configurations:

1. "optuna in-process": ``study.optimize`` on an ``InMemoryStorage`` in this process
   (seeded samplers);
2. "optuna_integration.DaskStorage" and
3. "dasktune.DaskStorage": the documented pattern
   ``client.submit(study.optimize, objective, n_trials=1, pure=False)`` once per trial on one
   shared ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` (unseeded
   samplers: a seeded one is pickled into every task with the same random state).

Both Dask storages are warmed up on the cluster first, and their runs alternate in order.
For each configuration and sampler it reports the total wall time, trials per second and
the milliseconds per trial over the first and the last 100 completions (completion times
come from an Optuna callback in-process and from ``distributed.as_completed`` otherwise),
then the ratios the spec puts floors on, with PASS/FAIL.

Run from the repository root, either way::

    python -m benchmarks.storage [--n-trials N | --quick]
    python benchmarks/storage.py [--n-trials N | --quick]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
import time
import warnings

from distributed import as_completed
from distributed import Client
from distributed import LocalCluster
import optuna
from optuna.storages import BaseStorage
from optuna.storages import InMemoryStorage
import optuna_integration

import dasktune

IN_PROCESS = "optuna in-process"
SEED = "optuna_integration.DaskStorage"
DASKTUNE = "dasktune.DaskStorage"
SAMPLERS = ("Random", "TPE")
WINDOW = 100
WARMUP_TRIALS = 20
SEED_FLOORS = {"Random": 3.0, "TPE": 5.0}
GROWTH_CEILING = 1.5

StorageFactory = Callable[[], BaseStorage]
STORAGES: dict[str, StorageFactory] = {
    SEED: optuna_integration.DaskStorage,
    DASKTUNE: dasktune.DaskStorage,
}


def objective(trial: optuna.Trial) -> float:
    """The trivial objective every configuration optimizes."""
    x = trial.suggest_float("x", -10, 10)
    y = trial.suggest_float("y", 1e-3, 1.0, log=True)
    c = trial.suggest_categorical("c", ["a", "b", "c"])
    return x**2 + y + (c == "a")


def quiet() -> None:
    """Silence Optuna's per-trial INFO logs and ExperimentalWarning (in any process)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """A RandomSampler or a default TPESampler, seeded only when ``seed`` is given."""
    if name == "Random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


@dataclass(frozen=True)
class Result:
    """Completion times of one configuration's trials, relative to its start."""

    config: str
    sampler: str
    start: float
    stamps: list[float]

    @property
    def n(self) -> int:
        return len(self.stamps)

    @property
    def wall(self) -> float:
        return self.stamps[-1] - self.start

    @property
    def trials_per_s(self) -> float:
        return self.n / self.wall

    def ms_per_trial(self, first: int) -> float:
        """Milliseconds per trial over the window of completions ``first .. first+WINDOW-1``."""
        size = min(WINDOW, self.n)
        before = self.start if first == 0 else self.stamps[first - 1]
        return (self.stamps[first + size - 1] - before) / size * 1e3

    @property
    def ms_first(self) -> float:
        return self.ms_per_trial(0)

    @property
    def ms_last(self) -> float:
        return self.ms_per_trial(self.n - min(WINDOW, self.n))

    @property
    def growth(self) -> float:
        return self.ms_last / self.ms_first


def check_study(study: optuna.Study, n_trials: int) -> None:
    """Raise unless the study holds exactly ``n_trials`` complete trials."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    if len(states) != n_trials or complete != n_trials:
        raise RuntimeError(
            f"expected {n_trials} complete trials, found {len(states)} trials, "
            f"{complete} complete"
        )


def run_in_process(sampler: str, n_trials: int) -> Result:
    """Optimize in this process on an InMemoryStorage with a seeded sampler."""
    study = optuna.create_study(storage=InMemoryStorage(), sampler=make_sampler(sampler, 0))
    stamps: list[float] = []
    start = time.perf_counter()
    study.optimize(
        objective, n_trials=n_trials, callbacks=[lambda s, t: stamps.append(time.perf_counter())]
    )
    check_study(study, n_trials)
    return Result(IN_PROCESS, sampler, start, stamps)


def run_submitted(client: Client, config: str, sampler: str, n_trials: int) -> Result:
    """One ``client.submit(study.optimize, ..., n_trials=1)`` task per trial on ``config``."""
    storage = STORAGES[config]()
    study = optuna.create_study(storage=storage, sampler=make_sampler(sampler, None))
    start = time.perf_counter()
    futures = [
        client.submit(study.optimize, objective, n_trials=1, pure=False) for _ in range(n_trials)
    ]
    stamps = [time.perf_counter() for _ in as_completed(futures)]
    client.gather(futures)
    check_study(study, n_trials)
    optuna.delete_study(study_name=study.study_name, storage=storage)
    return Result(config, sampler, start, stamps)


def warm_up(client: Client) -> None:
    """Run a few trials of every configuration so imports and first connections are paid."""
    for sampler in SAMPLERS:
        run_in_process(sampler, WARMUP_TRIALS)
        for config in STORAGES:
            run_submitted(client, config, sampler, WARMUP_TRIALS)


def run_all(client: Client, n_trials: int) -> list[Result]:
    """Every configuration for every sampler; the two Dask storages alternate who goes first."""
    results: list[Result] = []
    for i, sampler in enumerate(SAMPLERS):
        results.append(run_in_process(sampler, n_trials))
        order = [SEED, DASKTUNE] if i % 2 == 0 else [DASKTUNE, SEED]
        for config in order:
            print(f"  running {config} / {sampler} ...", flush=True)
            results.append(run_submitted(client, config, sampler, n_trials))
    return results


def print_table(results: list[Result]) -> None:
    window = min(WINDOW, results[0].n)
    print(f"| configuration | sampler | trials | wall s | trials/s | ms/trial first {window} "
          f"| ms/trial last {window} | last/first |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for config in (IN_PROCESS, SEED, DASKTUNE):
        for r in (r for r in results if r.config == config):
            print(f"| {r.config} | {r.sampler} | {r.n} | {r.wall:.2f} | {r.trials_per_s:.1f} "
                  f"| {r.ms_first:.2f} | {r.ms_last:.2f} | {r.growth:.2f} |")


def print_ratios(results: list[Result]) -> None:
    by_key = {(r.config, r.sampler): r for r in results}
    print("| ratio | sampler | value | floor | result |")
    print("|---|---|---:|---:|---|")
    for sampler in SAMPLERS:
        ours, seed, local = (by_key[c, sampler] for c in (DASKTUNE, SEED, IN_PROCESS))
        vs_seed = ours.trials_per_s / seed.trials_per_s
        vs_local = ours.trials_per_s / local.trials_per_s
        growth = ours.growth / local.growth
        floor = SEED_FLOORS[sampler]
        print(f"| dasktune / seed trials/s | {sampler} | {vs_seed:.2f}x | >= {floor:g}x "
              f"| {verdict(vs_seed >= floor)} |")
        print(f"| dasktune / in-process trials/s | {sampler} | {vs_local:.3f}x | - | - |")
        print(f"| growth beyond in-process | {sampler} | {growth:.2f} | <= {GROWTH_CEILING:g} "
              f"| {verdict(growth <= GROWTH_CEILING)} |")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--n-trials", type=int, default=1000, help="trials per run (1000)")
    group.add_argument("--quick", action="store_true", help="200 trials per run")
    args = parser.parse_args()
    if args.quick:
        args.n_trials = 200
    if args.n_trials < 1:
        parser.error("--n-trials must be positive")
    return args


def main() -> None:
    args = parse_args()
    quiet()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        with Client(cluster) as client:
            client.run(quiet)
            print("warming up ...", flush=True)
            warm_up(client)
            print(f"timing {args.n_trials} trials per run ...", flush=True)
            results = run_all(client, args.n_trials)
    print()
    print(f"## {args.n_trials} trials per run "
          f"(LocalCluster: 2 worker processes x 1 thread)")
    print()
    print_table(results)
    print()
    print_ratios(results)


if __name__ == "__main__":
    main()
