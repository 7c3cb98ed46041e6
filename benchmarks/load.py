"""Scheduler load: hundreds of trial runners against one scheduler at once.

Each simulated runner is an asyncio task with a connection of its own to a ``dask
scheduler`` process, speaking the plugin's protocol exactly as a DaskStorage in a worker
does (``dasktune_storage_call``: operations with request ids, the runner's cursor, and the
deltas that come back). A trial is two requests and five storage operations: create the
trial (the reply brings the study's changes since the runner's last request), then two
parameters, an intermediate value and the final state in one batch — what a runner's
batched writes send. Runners are paced: together they offer a given rate of trials (the
rate the floor asks for, 1,000 trials/s = 5,000 operations/s), each one trial per
``runners / rate`` seconds, started at random offsets; one level runs them unpaced, to
see what the scheduler sustains flat out. They are spread over a few load processes; meanwhile this
process times a trivial ``client.submit(...).result()`` every 50 ms, to see whether Dask's
own scheduling stays responsive.

Reported: storage operations and requests per second the scheduler sustained, request
latency p50/p99, the scheduler's CPU seconds and RSS growth per 1,000 trials, and the
``client.submit`` round trip p50/p99/max during the load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
import multiprocessing
import os
import random
import time

from distributed.core import rpc
import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

import dasktune
from benchmarks.common import ProcessCluster
from dasktune.storage import wire

OPS_PER_TRIAL = 5
REQUESTS_PER_TRIAL = 2


@dataclass
class Load:
    runners: int
    offered: float | None  # trials/s asked of all runners together; None: as fast as they can
    seconds: float
    trials: int
    latencies: list[float]  # seconds, per request
    scheduler_cpu: float  # seconds over the run
    scheduler_rss_growth: float  # MiB over the run
    submit_latencies: list[float]

    @property
    def ops_per_s(self) -> float:
        return self.trials * OPS_PER_TRIAL / self.seconds

    @property
    def requests_per_s(self) -> float:
        return self.trials * REQUESTS_PER_TRIAL / self.seconds

    def percentile(self, which: list[float], q: float) -> float:
        return float(np.percentile(which, q)) * 1e3 if which else float("nan")

    @property
    def cpu_per_1000(self) -> float:
        return self.scheduler_cpu / self.trials * 1000

    @property
    def rss_per_1000(self) -> float:
        return self.scheduler_rss_growth / self.trials * 1000


async def _runner(address: str, name: str, study_id: int, epoch: str, until: float,
                  period: float, tag: str, latencies: list[float]) -> int:
    """One runner: a trial every ``period`` seconds (as fast as it can with 0)."""
    distribution = wire.encode_distribution(FloatDistribution(0, 1))
    trials, cursor = 0, 0
    async with rpc(address) as scheduler:
        await asyncio.sleep(random.uniform(0, period))  # runners' trials do not end in step
        begin = time.time()
        while time.time() < until:
            await asyncio.sleep(max(0.0, begin + trials * period - time.time()))
            ops: list[list] = [["create_new_trial", [study_id, None], f"{tag}-{trials}-c"]]
            for batch in range(2):
                start = time.perf_counter()
                reply = await scheduler.dasktune_storage_call(
                    name=name, ops=ops, cursors=[[study_id, cursor]], want=[], epoch=epoch, worker=None
                )
                latencies.append(time.perf_counter() - start)
                if reply["error"] is not None:
                    raise RuntimeError(reply["error"])
                for delta in reply["deltas"]:
                    cursor = delta["cursor"]
                if batch == 0:
                    trial_id = reply["results"][0]
                    ops = [
                        ["set_trial_param", [trial_id, "x", 0.5, distribution], f"{tag}-{trials}-x"],
                        ["set_trial_param", [trial_id, "y", 0.25, distribution], f"{tag}-{trials}-y"],
                        ["set_trial_intermediate_value", [trial_id, 0, 0.75], f"{tag}-{trials}-i"],
                        ["set_trial_state_values", [trial_id, TrialState.COMPLETE.value, [0.75]], f"{tag}-{trials}-s"],
                    ]
            trials += 1
    return trials


def _load_process(address: str, name: str, study_id: int, epoch: str, runners: int, period: float,
                  start_at: float, until: float, queue: multiprocessing.Queue) -> None:
    async def main() -> tuple[int, list[float]]:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        latencies: list[float] = []
        counts = await asyncio.gather(*(
            _runner(address, name, study_id, epoch, until, period, f"{os.getpid()}-{i}", latencies)
            for i in range(runners)
        ))
        return sum(counts), latencies

    queue.put(asyncio.run(main()))


def _inc(x: int) -> int:
    return x + 1


def run(cluster: ProcessCluster, levels: list[tuple[int, float | None]], seconds: float,
        processes: int, log: Callable[[str], None]) -> list[Load]:
    """Each level: (runners, trials/s they offer together, or None for as fast as they can)."""
    client = cluster.client
    address = client.scheduler.address
    results = []
    for runners, offered in levels:
        period = 0.0 if offered is None else runners / offered
        log(f"scheduler load: {runners} runners, {offered or 'unpaced'} trials/s, for {seconds:g} s")
        storage = dasktune.DaskStorage(client=client)
        study = optuna.create_study(storage=storage)
        epoch = storage._replica.epoch  # the host's epoch, learnt when the storage opened
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        start_at = time.time() + 3.0  # the load processes start and import first
        until = start_at + seconds
        shares = [runners // processes + (i < runners % processes) for i in range(processes)]
        workers = [
            context.Process(target=_load_process, args=(address, storage.name, study._study_id, epoch,
                                                        share, period, start_at, until, queue))
            for share in shares
        ]
        for process in workers:
            process.start()
        time.sleep(max(0.0, start_at - time.time()))
        cpu_before, rss_before = cluster.scheduler_usage()
        submits: list[float] = []
        while time.time() < until:
            begin = time.perf_counter()
            client.submit(_inc, len(submits), pure=False).result()
            submits.append(time.perf_counter() - begin)
            time.sleep(0.05)
        parts = [queue.get(timeout=120) for _ in workers]
        cpu_after, rss_after = cluster.scheduler_usage()
        for process in workers:
            process.join(30)
        trials = sum(n for n, _ in parts)
        latencies = [x for _, lat in parts for x in lat]
        stored = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if stored != trials:
            raise RuntimeError(f"the runners finished {trials} trials but the study holds {stored}")
        results.append(Load(runners, offered, seconds, trials, latencies, cpu_after - cpu_before,
                            rss_after - rss_before, submits))
        optuna.delete_study(study_name=study.study_name, storage=storage)
    return results


