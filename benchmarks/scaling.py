"""Scaling: a 0.1 s sleeping objective on 1 to 32 worker threads (2 processes with several
threads each: the objective sleeps, so threads stand in for workers on 2 cores).

Efficiency = ideal wall time (trials x 0.1 s / workers) / measured wall time, for
``dasktune.optimize`` and for the seed's ``client.submit`` pattern on the same cluster.

Also the submission layer's own figure: 80 trials of a 0.25 s sleeping objective on 2
single-thread workers, against the ideal 10 s (:func:`quarter_second`; fewer with
``--quick``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import time

from distributed import Client
from distributed import LocalCluster
from distributed import wait
import optuna
import optuna_integration

import dasktune
from benchmarks.common import quiet
from benchmarks.common import Sleeping

SLEEP = 0.1


@dataclass
class Point:
    config: str
    workers: int
    trials: int
    wall: float
    sleep: float = SLEEP

    @property
    def ideal(self) -> float:
        return self.trials * self.sleep / self.workers

    @property
    def efficiency(self) -> float:
        return self.ideal / self.wall


def _cluster(workers: int) -> LocalCluster:
    processes = 1 if workers == 1 else 2
    return LocalCluster(n_workers=processes, threads_per_worker=workers // processes,
                        processes=True, dashboard_address=":0")


def run(levels: list[int], trials_per_worker: int, log: Callable[[str], None]) -> list[Point]:
    points, sleeping = [], Sleeping(SLEEP)
    for workers in levels:
        n = trials_per_worker * workers
        log(f"scaling: {workers} workers, {n} trials")
        with _cluster(workers) as cluster, Client(cluster) as client:
            client.run(quiet)
            sampler = optuna.samplers.RandomSampler
            warm = optuna.create_study(storage=dasktune.DaskStorage(client=client), sampler=sampler())
            dasktune.optimize(warm, sleeping, n_trials=workers, client=client)

            study = optuna.create_study(storage=dasktune.DaskStorage(client=client), sampler=sampler())
            start = time.perf_counter()
            dasktune.optimize(study, sleeping, n_trials=n, client=client)
            points.append(Point("dasktune.optimize", workers, n, time.perf_counter() - start))

            seed = optuna.create_study(storage=optuna_integration.DaskStorage(client=client), sampler=sampler())
            wait([client.submit(seed.optimize, sleeping, n_trials=1, pure=False) for _ in range(workers)])
            start = time.perf_counter()
            wait([client.submit(seed.optimize, sleeping, n_trials=1, pure=False) for _ in range(n)])
            points.append(Point("seed: optuna_integration.DaskStorage", workers, n, time.perf_counter() - start))
    return points


def quarter_second(log: Callable[[str], None], trials: int = 80) -> Point:
    """``trials`` trials of 0.25 s on 2 single-thread worker processes with
    ``dasktune.optimize``."""
    log(f"submission: {trials} trials of 0.25 s on 2 workers")
    with _cluster(2) as cluster, Client(cluster) as client:
        client.run(quiet)
        warm = optuna.create_study(storage=dasktune.DaskStorage(client=client))
        dasktune.optimize(warm, Sleeping(SLEEP), n_trials=2, client=client)
        study = optuna.create_study(storage=dasktune.DaskStorage(client=client))
        start = time.perf_counter()
        dasktune.optimize(study, Sleeping(0.25), n_trials=trials, client=client)
        return Point("dasktune.optimize", 2, trials, time.perf_counter() - start, sleep=0.25)
