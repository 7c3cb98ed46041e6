"""Cheap trials: is a cluster of two single-thread workers worth two processes?

Two objectives with TPE (Optuna's defaults), each against the peers a user would pick, in
one run:

- ``busy``: about 10 ms of pure-Python work (a loop calibrated once, in this process, and
  the same count everywhere) and three parameters; N = ``n_busy``;
- ``fit``: a real model fit on data that ships with scikit-learn: an SVC on 600 of the
  bundled digits, scored on 300 others, with ``C`` and ``gamma`` log-scaled; N = ``n_fit``.

Peers: ``optuna in-process`` (``study.optimize``, one thread), ``optuna n_jobs=2`` (two
threads of one process), ``JournalStorage, 2 processes`` (one ``study.optimize`` per worker
of the cluster, on one journal file), and ``dasktune.optimize`` on a fresh LocalCluster of 2
single-thread worker processes: *cold* is the first ``optimize`` on that cluster (its
workers' imports included; the storage was made just before, as a user does), *warm* a
second one on the same cluster (the journal peer runs after it, on the same warm workers).
The figures are trials/s and the ratio to in-process, each the median over ``repeats``
repetitions that measure every peer anew (a fresh cluster each), the ratios paired within a
repetition: the machine's speed drifts by tens of percent over minutes.

And the trivial objective of :mod:`benchmarks.overhead` on a fresh cluster, nothing warmed:
Random at ``n_random`` and TPE at ``n_tpe`` trials, in-process against the first
``dasktune.optimize`` of a new LocalCluster of 2 single-thread workers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import statistics
import tempfile
import time
from typing import Any

from distributed import Client
from distributed import LocalCluster
import optuna

import dasktune
from benchmarks import overhead
from benchmarks.common import quiet
from benchmarks.common import Result
from benchmarks.overhead import _Deadline
from benchmarks.overhead import completion_stamps
from benchmarks.overhead import _JournalFile
from benchmarks.overhead import _shared

IN_PROCESS = "optuna in-process"
THREADS = "optuna n_jobs=2"
JOURNAL = "JournalStorage, 2 processes"
COLD = "dasktune.optimize, cold"
WARM = "dasktune.optimize, warm"
PEERS = [IN_PROCESS, THREADS, JOURNAL, COLD, WARM]


@dataclass(frozen=True)
class Busy:
    """About ``seconds`` of pure-Python work per trial: ``loops`` iterations, counted once."""

    loops: int

    @classmethod
    def calibrated(cls, seconds: float = 0.010) -> Busy:
        loops = 20_000
        while True:
            began = time.perf_counter()
            _spin(loops)
            took = time.perf_counter() - began
            if took > 0.005:
                return cls(int(loops * seconds / took))
            loops *= 2

    def __call__(self, trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -10, 10)
        y = trial.suggest_float("y", 1e-3, 10, log=True)
        z = trial.suggest_int("z", 0, 10)
        return (x - 2) ** 2 + (y - 1) ** 2 + (z - 3) ** 2 + _spin(self.loops) * 0.0


def _spin(loops: int) -> float:
    total = 0.0
    for i in range(loops):
        total += i % 7
    return total


_DIGITS: Any = None


def fit(trial: optuna.Trial) -> float:
    """Validation error of an SVC on scikit-learn's bundled digits."""
    global _DIGITS
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    if _DIGITS is None:  # once per process
        x, y = load_digits(return_X_y=True)
        _DIGITS = (x[:600] / 16.0, y[:600], x[600:900] / 16.0, y[600:900])
    train_x, train_y, test_x, test_y = _DIGITS
    c = trial.suggest_float("C", 1e-3, 1e3, log=True)
    gamma = trial.suggest_float("gamma", 1e-4, 1.0, log=True)
    model = SVC(C=c, gamma=gamma).fit(train_x, train_y)
    return 1.0 - float(model.score(test_x, test_y))


def _tpe() -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler()


def in_process(function: Callable[[optuna.Trial], float], n: int, n_jobs: int = 1) -> Result:
    study = optuna.create_study(sampler=_tpe())
    start = time.time()
    stamp = _Deadline(float("inf"))
    study.optimize(function, n_trials=n, n_jobs=n_jobs, callbacks=[stamp])
    return Result(IN_PROCESS if n_jobs == 1 else THREADS, "TPE", n, start, stamp.stamps, end=time.time())


def with_dasktune(client: Client, function: Callable[[optuna.Trial], float], n: int, config: str) -> Result:
    study = optuna.create_study(storage=dasktune.DaskStorage(client=client), sampler=_tpe())
    start = time.time()
    dasktune.optimize(study, function, n_trials=n, client=client)
    return Result(config, "TPE", n, start, completion_stamps(study), end=time.time())


def two_workers() -> tuple[LocalCluster, Client]:
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster)
    client.run(quiet)
    return cluster, client


@dataclass(frozen=True)
class Figure:
    """One peer on one objective, over interleaved repetitions: the machine's speed drifts
    (this is a VM), so each repetition measures every peer anew, and its ratio to in-process
    pairs runs made moments apart."""

    objective: str
    sampler: str
    n: int
    config: str
    rates: list[float]  # trials/s, one per repetition
    ratios: list[float]  # x the in-process rate of the same repetition

    @property
    def trials_per_s(self) -> float:
        return statistics.median(self.rates)

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)


def _figures(objective: str, sampler: str, repetitions: list[list[Result]]) -> list[Figure]:
    """``repetitions``: each a list of results, in-process first, in the same order."""
    figures = []
    for i, first in enumerate(repetitions[0]):
        rates = [rows[i].trials_per_s for rows in repetitions]
        ratios = [rows[i].trials_per_s / rows[0].trials_per_s for rows in repetitions]
        figures.append(Figure(objective, sampler, first.n_asked, first.config, rates, ratios))
    return figures


def cold(n_random: int, n_tpe: int, repeats: int, log: Callable[[str], None]) -> list[Figure]:
    """The trivial objective, Random then TPE: in-process, and the first ``optimize`` of a
    fresh cluster (its workers' imports, the plugin's install and the first claims counted)."""
    figures = []
    for sampler, n in (("Random", n_random), ("TPE", n_tpe)):
        repetitions = []
        for i in range(repeats):
            log(f"cheap trials: trivial objective, {sampler}, cold ({i + 1}/{repeats})")
            local = overhead.in_process(None, sampler, n, 600.0)
            cluster, client = two_workers()
            with cluster, client:
                result = overhead.dasktune_optimize(client, sampler, n, 600.0)
            repetitions.append([local, Result(COLD, sampler, n, result.start, result.stamps, end=result.end)])
        figures += _figures("trivial", sampler, repetitions)
    return figures


def run(n_busy: int, n_fit: int, repeats: int, log: Callable[[str], None]) -> dict[str, list[Figure]]:
    """Every peer on both objectives (``n_fit`` 0: no model fit), ``repeats`` times each,
    interleaved; ``{objective: figures}``, in :data:`PEERS` order."""
    quiet()
    busy = Busy.calibrated()
    results: dict[str, list[Figure]] = {}
    for name, function, n in (("busy", busy, n_busy), ("fit", fit, n_fit)):
        if n == 0:
            continue
        function(optuna.create_study().ask())  # this process's imports and data, not timed
        repetitions = []
        for i in range(repeats):
            log(f"cheap trials: {name}, every peer ({i + 1}/{repeats})")
            rows = [in_process(function, n), in_process(function, n, n_jobs=2)]
            cluster, client = two_workers()
            with cluster, client:
                rows.append(with_dasktune(client, function, n, COLD))
                rows.append(with_dasktune(client, function, n, WARM))
                with tempfile.TemporaryDirectory() as tmp:
                    rows.append(_shared(client, JOURNAL, _JournalFile(f"{tmp}/journal.log"), "TPE", n,
                                        float("inf"), function))
            repetitions.append(sorted(rows, key=lambda r: PEERS.index(r.config)))
        results[name] = _figures(name, "TPE", repetitions)
    return results


if __name__ == "__main__":
    for figures in [cold(2000, 1000, 3, print), *run(300, 200, 3, print).values()]:
        for f in figures:
            print(f"{f.objective:7} {f.sampler:6} {f.config:30} {f.trials_per_s:8.1f} trials/s  {f.ratio:.2f}x "
                  f"({min(f.ratios):.2f}-{max(f.ratios):.2f})")
