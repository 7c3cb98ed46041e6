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

from benchmarks.common import ProcessCluster
from benchmarks.common import Result
from benchmarks.overhead import DASKTUNE_OPTIMIZE
from benchmarks.overhead import DASKTUNE_SUBMIT
from benchmarks.overhead import RUNNERS
from benchmarks.overhead import SEED

RUNS = [DASKTUNE_SUBMIT, DASKTUNE_OPTIMIZE, SEED]


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


def run(cluster: ProcessCluster, n: int, cap: float, log: Callable[[str], None]) -> tuple[list[Result], list[Memory]]:
    client = cluster.client
    for config in RUNS:  # warm-up: imports, the plugin, first connections
        RUNNERS[config](client, "Random", 20, cap)
    results, memory = [], []
    for config in RUNS:
        log(f"growth and memory: {config}, {n} trials")
        client.run(lambda: __import__("gc").collect())
        _, before = cluster.scheduler_usage()
        result = RUNNERS[config](client, "Random", n, cap)
        time.sleep(1.0)  # let the last writes land
        _, after = cluster.scheduler_usage()
        results.append(result)
        memory.append(Memory(config, result.n, before, after, cluster.worker_rss()))
    return results, memory
