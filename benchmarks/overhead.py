"""Overhead: trials/s of a trivial objective, dasktune against what a user would pick instead.

Every peer runs the same objective with the same sampler for N trials on a fresh
``LocalCluster`` of 2 single-thread worker processes of its own (in-process Optuna excepted):

- ``optuna in-process``: ``study.optimize`` on an ``InMemoryStorage`` in this process;
- ``seed: optuna_integration.DaskStorage``: the documented pattern, one
  ``client.submit(study.optimize, objective, n_trials=1, pure=False)`` per trial;
- ``JournalStorage, shared file``: one ``study.optimize`` task per worker process, each on a
  ``JournalFileBackend`` of one file;
- ``gRPC storage proxy``: ``run_grpc_proxy_server`` in this process (where dasktune's
  scheduler also runs), one ``study.optimize`` task per worker on a ``GrpcStorageProxy``;
- ``dasktune.DaskStorage (submit)``: the seed's pattern, with dasktune's storage;
- ``dasktune.optimize``: one call.

Samplers are unseeded on the cluster (a seeded sampler pickled into every task would sample
one point). A run that would pass the time cap is stopped there and its rate reported over
the trials it finished (marked in the table).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import bisect
import contextlib
import socket
import tempfile
import threading
import time
from typing import Any

from distributed import as_completed
from distributed import Client
from distributed import LocalCluster
import optuna
from optuna.storages import BaseStorage
from optuna.storages import InMemoryStorage
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
import optuna_integration

import dasktune
from benchmarks.common import check_complete
from benchmarks.common import make_sampler
from benchmarks.common import objective
from benchmarks.common import quiet
from benchmarks.common import Result

IN_PROCESS = "optuna in-process"
SEED = "seed: optuna_integration.DaskStorage"
JOURNAL = "JournalStorage, shared file"
GRPC = "gRPC storage proxy"
DASKTUNE_SUBMIT = "dasktune.DaskStorage (submit)"
DASKTUNE_OPTIMIZE = "dasktune.optimize"
PEERS = [IN_PROCESS, SEED, JOURNAL, GRPC, DASKTUNE_SUBMIT, DASKTUNE_OPTIMIZE]


class _Deadline:
    """An Optuna callback: stamp each finished trial with the time it completed (callbacks
    of a distributed run see trials in batches, after the fact); stop the study past
    ``deadline``."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.stamps: list[float] = []

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = trial.datetime_complete
        bisect.insort(self.stamps, time.time() if done is None else done.timestamp())
        if time.time() > self.deadline:
            study.stop()


def _capped(result: Result, asked: int) -> Result:
    if result.n < asked:
        result.note = f"stopped by the time cap at {result.n} trials"
    return result


def in_process(client: None, sampler: str, n: int, cap: float) -> Result:
    study = optuna.create_study(storage=InMemoryStorage(), sampler=make_sampler(sampler, 0))
    start = time.time()
    stamp = _Deadline(start + cap)
    study.optimize(objective, n_trials=n, callbacks=[stamp])
    return _capped(Result(IN_PROCESS, sampler, n, start, stamp.stamps, end=time.time()), n)


def _submitted(client: Client, config: str, storage: BaseStorage, sampler: str, n: int, cap: float) -> Result:
    study = optuna.create_study(storage=storage, sampler=make_sampler(sampler))
    start = time.time()
    futures = [client.submit(study.optimize, objective, n_trials=1, pure=False) for _ in range(n)]
    stamps = []
    for _ in as_completed(futures):
        stamps.append(time.time())
        if stamps[-1] > start + cap:
            break
    client.cancel(futures)
    if len(stamps) == n:
        check_complete(study, n)
    return _capped(Result(config, sampler, n, start, stamps), n)


def seed(client: Client, sampler: str, n: int, cap: float) -> Result:
    return _submitted(client, SEED, optuna_integration.DaskStorage(client=client), sampler, n, cap)


def dasktune_submit(client: Client, sampler: str, n: int, cap: float) -> Result:
    return _submitted(client, DASKTUNE_SUBMIT, dasktune.DaskStorage(client=client), sampler, n, cap)


def completion_stamps(study: optuna.Study) -> list[float]:
    """When each COMPLETE trial of a ``dasktune.optimize`` run ended, as its storage
    recorded it, read after the run. Not through a callback: a run with callbacks lets each
    runner start a trial only once the caller's callbacks have seen the trials before it
    (``Study.optimize``'s order, see the README), a slower path than a run without, which
    is what these figures are about."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return sorted(t.datetime_complete.timestamp() for t in complete if t.datetime_complete is not None)


def dasktune_optimize(client: Client, sampler: str, n: int, cap: float) -> Result:
    study = optuna.create_study(storage=dasktune.DaskStorage(client=client), sampler=make_sampler(sampler))
    start = time.time()
    dasktune.optimize(study, objective, n_trials=n, timeout=cap, client=client)
    end = time.time()
    stamps = completion_stamps(study)
    if len(stamps) == n:
        check_complete(study, n)
    return _capped(Result(DASKTUNE_OPTIMIZE, sampler, n, start, stamps, end=end), n)


def _optimize_share(make_storage: Callable[[], BaseStorage], name: str, sampler: str, n: int, deadline: float,
                    function: Callable[[optuna.Trial], float] = objective) -> list[float]:
    """A worker's share of a peer that runs ``study.optimize`` on each worker."""
    quiet()
    study = optuna.load_study(study_name=name, storage=make_storage(), sampler=make_sampler(sampler))
    stamp = _Deadline(deadline)
    study.optimize(function, n_trials=n, callbacks=[stamp])
    return stamp.stamps


def _shared(client: Client, config: str, make_storage: Callable[[], BaseStorage], sampler: str, n: int, cap: float,
            function: Callable[[optuna.Trial], float] = objective) -> Result:
    study = optuna.create_study(storage=make_storage())
    slots = sum(client.nthreads().values())
    shares = [n // slots + (i < n % slots) for i in range(slots)]
    start = time.time()
    futures = [
        client.submit(_optimize_share, make_storage, study.study_name, sampler, k, start + cap, function, pure=False)
        for k in shares
    ]
    stamps = sorted(s for part in client.gather(futures) for s in part)
    if len(stamps) == n:
        check_complete(study, n)
    return _capped(Result(config, sampler, n, start, stamps), n)


class _JournalFile:
    """A picklable factory of JournalStorages on one file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> BaseStorage:
        return JournalStorage(JournalFileBackend(self.path))


def journal(client: Client, sampler: str, n: int, cap: float) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        return _shared(client, JOURNAL, _JournalFile(f"{tmp}/journal.log"), sampler, n, cap)


class _Grpc:
    """The gRPC proxy server (one per benchmark run, in this process) and a picklable
    factory of proxies to it."""

    port: int | None = None

    def __call__(self) -> BaseStorage:
        assert self.port is not None
        return optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=self.port)

    @classmethod
    def started(cls) -> "_Grpc":
        if cls.port is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                cls.port = s.getsockname()[1]
            server = threading.Thread(
                target=optuna.storages.run_grpc_proxy_server, args=(InMemoryStorage(),),
                kwargs={"host": "127.0.0.1", "port": cls.port}, daemon=True,
            )
            server.start()
            time.sleep(1.0)  # the server binds its port
        factory = cls()
        factory.port = cls.port
        return factory


def grpc(client: Client, sampler: str, n: int, cap: float) -> Result:
    return _shared(client, GRPC, _Grpc.started(), sampler, n, cap)


SAMPLERS = ("Random", "TPE")
RUNNERS: dict[str, Callable[[Any, str, int, float], Result]] = {
    IN_PROCESS: in_process, SEED: seed, JOURNAL: journal, GRPC: grpc,
    DASKTUNE_SUBMIT: dasktune_submit, DASKTUNE_OPTIMIZE: dasktune_optimize,
}


@contextlib.contextmanager
def _cluster(peer: str) -> Iterator[Client | None]:
    """A fresh LocalCluster of 2 single-thread worker processes for each peer, so no peer
    runs next to what an earlier one left behind (gRPC channels, journal readers, tasks);
    none for in-process Optuna."""
    if peer == IN_PROCESS:
        yield None
        return
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            client.run(quiet)
            yield client


def run(sizes: list[int], cap: float, log: Callable[[str], None]) -> list[Result]:
    """Every peer at each size, Random then TPE, after a short warm-up of both."""
    results = []
    for n in sizes:
        for peer, runner in RUNNERS.items():
            with _cluster(peer) as client:
                for sampler in SAMPLERS:
                    runner(client, sampler, 20, cap)
                for sampler in SAMPLERS:
                    log(f"overhead: {peer}, {sampler}, N={n}")
                    results.append(runner(client, sampler, n, cap))
    return results
