"""Growth and memory: time per trial across a 10,000-trial study, and what the scheduler and
workers hold afterwards.

On a ``dask scheduler`` and 2 single-thread ``dask worker`` processes (so the scheduler's
memory is its own), RandomSampler, the trivial objective: dasktune's storage in the seed's
``client.submit`` pattern, ``dasktune.optimize``, and the seed's storage in its pattern.
Each keeps its study, so the scheduler's RSS after each run is what that study costs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import time

import optuna
import optuna_integration

import dasktune
from benchmarks.common import make_sampler
from benchmarks.common import objective
from benchmarks.common import ProcessCluster
from benchmarks.common import Result
from benchmarks.overhead import _submitted
from benchmarks.overhead import DASKTUNE_OPTIMIZE
from benchmarks.overhead import DASKTUNE_SUBMIT
from benchmarks.overhead import SEED


@dataclass
class Memory:
    config: str
    trials: int
    scheduler_before: float  # MiB
    scheduler_after: float
    workers_after: list[float]

    @property
    def per_1000(self) -> float:
        return (self.scheduler_after - self.scheduler_before) / self.trials * 1000


def _optimize(cluster: ProcessCluster, n: int, cap: float) -> Result:
    client = cluster.client
    study = optuna.create_study(storage=dasktune.DaskStorage(client=client), sampler=make_sampler("Random"))
    stamps: list[float] = []
    start = time.time()
    dasktune.optimize(study, objective, n_trials=n, timeout=cap, client=client,
                      callbacks=[lambda s, t: stamps.append(time.time())])
    return Result(DASKTUNE_OPTIMIZE, "Random", n, start, stamps)


def run(cluster: ProcessCluster, n: int, cap: float, log: Callable[[str], None]) -> tuple[list[Result], list[Memory]]:
    client = cluster.client
    # Warm-up: imports, the plugin, first connections.
    _submitted(client, DASKTUNE_SUBMIT, dasktune.DaskStorage(client=client), "Random", 20, cap)
    _submitted(client, SEED, optuna_integration.DaskStorage(client=client), "Random", 20, cap)
    runs: list[tuple[str, Callable[[], Result]]] = [
        (DASKTUNE_SUBMIT, lambda: _submitted(client, DASKTUNE_SUBMIT, dasktune.DaskStorage(client=client), "Random", n, cap)),
        (DASKTUNE_OPTIMIZE, lambda: _optimize(cluster, n, cap)),
        (SEED, lambda: _submitted(client, SEED, optuna_integration.DaskStorage(client=client), "Random", n, cap)),
    ]
    results, memory = [], []
    for config, go in runs:
        log(f"growth and memory: {config}, {n} trials")
        client.run(lambda: __import__("gc").collect())
        _, before = cluster.scheduler_usage()
        result = go()
        time.sleep(1.0)  # let the last writes land
        _, after = cluster.scheduler_usage()
        if result.n < n:
            result.note = f"stopped by the time cap at {result.n} trials"
        results.append(result)
        memory.append(Memory(config, result.n, before, after, cluster.worker_rss()))
    return results, memory
