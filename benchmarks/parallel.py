"""Parallel quality (issue 16): how much result a user gives up by running P trials at once.

``python -m benchmarks parallel [--quick]`` runs, for every problem of
:mod:`benchmarks.problems` and seeds ``0 .. seeds-1``:

- ``optuna sequential`` (the reference, P = 1): ``study.optimize(n_jobs=1)`` in this process,
  ``TPESampler(seed=seed)``, ``InMemoryStorage``. It does not sleep: its elapsed time is a
  *virtual clock*, the sum of its trials' simulated durations (no sampling time counted, so
  it is the ideal sequential run);
- ``optuna n_jobs threads`` (P > 1): the same study optimized with ``n_jobs=P`` threads in this
  process, sleeping objectives, real time;
- ``optuna ask/tell, P in flight`` (P > 1): the sampler's own loss at P, with nothing else in
  the way. The same sampler through ``study.ask``/``study.tell`` in this process, on a virtual
  clock: P trials are always in flight and the one whose simulated duration ends first is told
  first, so every sampling sees every result that has ended and every running trial's
  parameters (Optuna's constant liar) at once, and no sampling time is counted. Deterministic.
  No way of running P trials at once does better with this sampler: what dasktune loses
  beyond it is dasktune's, what it shares is the sampler's;
- ``dasktune, TPESampler(seed)``: the real ``dasktune.optimize(study, objective,
  n_trials=N, concurrency=P)`` on a study created with the user's own ``TPESampler(seed=seed)``;
- ``dasktune, default sampler`` (P > 1): the same on a study created without a sampler
  (Optuna's default, an unseeded ``TPESampler``).

The dasktune runs share, per P, one ``LocalCluster`` of worker processes x threads
(:func:`cluster_shape`: 1 x 1, 2 x 4, 2 x 16, 4 x 32) in which every worker thread runs one trial
runner, and one ``DaskStorage``; each run gets a fresh study there (deleted afterwards).

What is modelled. A trial's *work* is a sleep whose length is drawn from ``Durations``
(uniform 0.05-0.35 s times ``scale``) keyed by (seed, trial number), so every peer sees the
same duration for its n-th trial and trials finish out of order. Its *value* is the problem's
value at the parameters the sampler suggested, computed at once (microseconds). Sleeping
threads cost no CPU, so P = 128 fits on 2 cores; sampling does not: each runner samples TPE
on its worker, and on 2 cores at most 2 samplings (fewer, with the scheduler and the GIL)
make progress at once. When P x sampling time outgrows the trial duration the run is
CPU-bound: claimed trials wait for the CPU before they are sampled, and the elapsed-time
figures measure the 2 cores, not the P workers a user would have. The report gives the
achieved concurrency (simulated seconds of work per wall second) for each P so this shows:
in the committed baseline it stays near 3 for dasktune at P = 32 and 128 (6 for the threads
peer), on the code of ``results/parallel.md`` 7-12 (threads 7-11). So the real runs' regret at
P = 32 and 128 is that of fewer trials in flight than P; the in-flight peer gives the
sampler's own figure at P itself, with nothing in the way.

What is not modelled. Which trial finishes first among nearly equal durations is decided by
wall-clock noise (thread scheduling, the machine's other load), so only the sequential runs
and dasktune at P = 1 are deterministic (dasktune at P = 1 samples exactly the sequential
peer's trials); the parallel figures are medians over seeds for that reason. The time scale
is not neutral for dasktune: its fixed latencies (a round trip per trial, the up to 50 ms a
running trial's parameters wait in its runner before other runners see them) weigh more
against short trials; a run at the issue's own durations (``--scale 1``, committed in
``results/parallel-issue-durations``) shows no consistent difference beyond seed noise. No
worker dies, no trial fails, no trial's cost depends on its parameters.

A run of N trials is compared with the sequential run at the same N: its regret is the best
value among trials number 0 .. N-1 (what ``optimize(n_trials=N)`` would return) minus the
known optimum. Longer runs (``Plan.n_long``) give the figures at both N. The report is made by
:mod:`benchmarks.parallel_report`.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import contextlib
import copy
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
import gzip
import heapq
import json
from pathlib import Path
import subprocess
import time
from typing import Any

from distributed import Client
from distributed import LocalCluster
import numpy as np
import optuna
from optuna.storages import InMemoryStorage
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

import dasktune
from benchmarks.common import quiet
from benchmarks.problems import problem as make_problem
from benchmarks.problems import Problem

SEQUENTIAL = "optuna sequential"
THREADS = "optuna n_jobs threads"
IN_FLIGHT = "optuna ask/tell, P in flight"
DASKTUNE_SEEDED = "dasktune, TPESampler(seed)"
DASKTUNE_DEFAULT = "dasktune, default sampler"
CONFIGS = (SEQUENTIAL, IN_FLIGHT, DASKTUNE_SEEDED, DASKTUNE_DEFAULT, THREADS)
#: The peers whose elapsed time is a virtual clock (the sum of simulated durations).
VIRTUAL = (SEQUENTIAL, IN_FLIGHT)


@dataclass(frozen=True)
class Durations:
    """Simulated trial durations: uniform in ``[low, high] * scale`` seconds, drawn from
    (seed, trial number) so that every peer's n-th trial of a seed lasts as long."""

    low: float = 0.05
    high: float = 0.35
    scale: float = 1.0

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2 * self.scale

    def __call__(self, seed: int, number: int) -> float:
        rng = np.random.default_rng([seed, number, 16])  # 16: apart from the samplers' seeds
        return float(rng.uniform(self.low, self.high)) * self.scale


@dataclass(frozen=True)
class Simulated:
    """The objective every peer runs: the problem's value, then the trial's simulated work."""

    problem: Problem
    seed: int
    durations: Durations
    sleep: bool = True  # False: the sequential peer's virtual clock

    def __call__(self, trial: optuna.Trial) -> float:
        value = self.problem(trial)
        if self.sleep:
            time.sleep(self.durations(self.seed, trial.number))
        return value


@dataclass(frozen=True)
class Plan:
    """What one ``python -m benchmarks parallel`` measures."""

    problems: tuple[str, ...]
    seeds: int
    levels: tuple[int, ...]  # P of the dasktune runs (and of the threads peer, P > 1)
    n: int  # trials of every run ...
    n_long: int  # ... but these for long_configs at long_levels on long_problems
    long_problems: tuple[str, ...]
    long_levels: tuple[int, ...]
    long_configs: tuple[str, ...]
    durations: Durations = field(default_factory=Durations)

    def trials(self, config: str, problem: str, p: int) -> int:
        long = (problem in self.long_problems and config in self.long_configs
                and (p in self.long_levels or config == SEQUENTIAL))
        return self.n_long if long else self.n


SYNTHETIC = ("Hartmann-6", "Ackley-5", "Rosenbrock-10")
TABLES = ("GBM breast_cancer", "SVR diabetes")
# About 40 minutes on 2 shared cores. Durations are a quarter of the 0.05-0.35 s
# (12.5-87.5 ms, mean 50 ms): the ratio of longest to shortest, hence the out-of-order
# finishing, is the issue's. N = 1000 only on Hartmann-6 at P = 32 (the worst case):
# TPE's sampling time grows with N, and past P = 8 the runs are CPU-bound, so a 1000-trial
# dasktune run costs about 40 s whatever the durations.
FULL = Plan(SYNTHETIC + TABLES, 10, (1, 8, 32, 128), 200, 1000, ("Hartmann-6",), (32,),
            (SEQUENTIAL, DASKTUNE_SEEDED, THREADS), Durations(scale=0.25))
QUICK = Plan(SYNTHETIC + TABLES, 2, (1, 8), 24, 48, ("Hartmann-6",), (8,),
             (SEQUENTIAL, DASKTUNE_SEEDED, THREADS), Durations(scale=0.1))


@dataclass
class Run:
    """One optimization: its trials' values and completion times, in trial-number order."""

    problem: str
    config: str
    p: int
    seed: int
    values: list[float]
    finished: list[float]  # seconds from the run's start (virtual for the sequential peer)
    duplicates: int  # trials whose parameters repeat an earlier trial's exactly
    wall: float  # seconds of the whole run, real
    busy: float  # simulated seconds of work: busy / wall is the achieved concurrency
    sampling: float = 0.0  # CPU seconds of sampling, all trials (in-flight peer counting it only)


def cluster_shape(p: int) -> tuple[int, int]:
    """(worker processes, threads each) of the cluster that runs P trials at once."""
    processes = 1 if p == 1 else 2 if p <= 32 else 4
    return processes, p // processes


def sequential(problem: Problem, seed: int, n: int, durations: Durations) -> Run:
    study = optuna.create_study(sampler=tpe(seed))
    start = time.time()
    study.optimize(Simulated(problem, seed, durations, sleep=False), n_trials=n)
    wall = time.time() - start
    trials = _complete(study, n)
    clock = np.cumsum([durations(seed, t.number) for t in trials]).tolist()
    return _run(problem, SEQUENTIAL, 1, seed, trials, clock, wall, durations)


def tpe(seed: int) -> optuna.samplers.BaseSampler:
    """The sampler of every peer but ``dasktune, default sampler``."""
    return optuna.samplers.TPESampler(seed=seed)


class VirtualClock(InMemoryStorage):
    """Optuna's in-memory storage, but a trial's ``datetime_start`` and ``datetime_complete``
    are read from the virtual clock (``now``, seconds from the run's start) rather than the
    machine's: a sampler that times the trials it learns from (``dasktune.ParallelSampler``
    weighs its own sampling cost against them) sees the simulated durations, as it would see
    real ones on a cluster."""

    EPOCH = datetime(2026, 1, 1)

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def _stamp(self) -> datetime:
        return self.EPOCH + timedelta(seconds=self.now)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is None:
            template_trial = FrozenTrial(number=-1, trial_id=-1, state=TrialState.RUNNING, value=None,
                                         datetime_start=self._stamp(), datetime_complete=None, params={},
                                         distributions={}, user_attrs={}, system_attrs={}, intermediate_values={})
        return super().create_new_trial(study_id, template_trial)

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        changed = super().set_trial_state_values(trial_id, state, values)
        if changed and state.is_finished():
            with self._lock:
                trial = copy.copy(self._get_trial(trial_id))
                trial.datetime_complete = self._stamp()
                self._set_trial(trial_id, trial)
        return changed


def in_flight(problem: Problem, seed: int, p: int, n: int, durations: Durations,
              sampler: Callable[[int], optuna.samplers.BaseSampler] = tpe, config: str = IN_FLIGHT,
              count_sampling: bool = False) -> Run:
    """The sampler alone at P trials in flight, on a virtual clock (see the module docstring).

    The trials' datetimes are the virtual clock's (:class:`VirtualClock`). With
    ``count_sampling``, a trial also starts its simulated work only once it is sampled: the
    CPU seconds its sampling took here (this thread's, so what it takes on a core of its own
    whatever else the machine runs) are added to the clock, as a worker samples before it
    runs the trial; the order results come in then depends on this machine's timing, so the
    run is no longer exactly deterministic. Without it, sampling takes no time."""
    storage = VirtualClock()
    study = optuna.create_study(storage=storage, sampler=sampler(seed))
    objective = Simulated(problem, seed, durations, sleep=False)
    start = time.time()
    flying: list[tuple[float, int, optuna.Trial, float]] = []  # (ends at, number, trial, value)
    clock, finished, sampling = 0.0, [0.0] * n, 0.0
    while len(study.trials) < n or flying:
        while len(study.trials) < n and len(flying) < p:
            storage.now = clock
            began = time.thread_time()
            trial = study.ask()
            value = objective(trial)  # suggests the parameters: the trial is RUNNING with them
            sampled = time.thread_time() - began if count_sampling else 0.0
            sampling += sampled
            heapq.heappush(flying, (clock + sampled + durations(seed, trial.number), trial.number, trial, value))
        clock, number, trial, value = heapq.heappop(flying)
        storage.now = clock
        study.tell(trial, value)
        finished[number] = clock
    run = _run(problem, config, p, seed, _complete(study, n), finished, time.time() - start, durations)
    run.sampling = round(sampling, 4)
    return run


def threads(problem: Problem, seed: int, p: int, n: int, durations: Durations) -> Run:
    study = optuna.create_study(sampler=tpe(seed))
    start = time.time()
    study.optimize(Simulated(problem, seed, durations), n_trials=n, n_jobs=p)
    return _timed(problem, THREADS, p, seed, study, n, start, durations)


def with_dasktune(client: Client, storage: dasktune.DaskStorage, config: str, problem: Problem,
                  seed: int, p: int, n: int, durations: Durations,
                  make_sampler: Callable[[int], optuna.samplers.BaseSampler] | None = None) -> Run:
    """The real ``dasktune.optimize``, P trials at once, on a fresh study in ``storage``,
    sampled by ``make_sampler(seed)`` if given, else as ``config`` says."""
    sampler = make_sampler(seed) if make_sampler else tpe(seed) if config == DASKTUNE_SEEDED else None
    study = optuna.create_study(storage=storage, sampler=sampler)
    try:
        start = time.time()
        dasktune.optimize(study, Simulated(problem, seed, durations), n_trials=n, client=client,
                          concurrency=p)
        return _timed(problem, config, p, seed, study, n, start, durations)
    finally:  # the scheduler keeps every study otherwise
        optuna.delete_study(study_name=study.study_name, storage=storage)


def _timed(problem: Problem, config: str, p: int, seed: int, study: optuna.Study, n: int,
           start: float, durations: Durations) -> Run:
    wall = time.time() - start
    trials = _complete(study, n)
    finished = [t.datetime_complete.timestamp() - start for t in trials if t.datetime_complete]
    return _run(problem, config, p, seed, trials, finished, wall, durations)


def _complete(study: optuna.Study, n: int) -> list[optuna.trial.FrozenTrial]:
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if len(trials) != n or len(complete) != n:
        raise RuntimeError(f"expected {n} complete trials, found {len(trials)}, {len(complete)} complete")
    return trials


def _run(problem: Problem, config: str, p: int, seed: int, trials: list[optuna.trial.FrozenTrial],
         finished: list[float], wall: float, durations: Durations) -> Run:
    distinct = {tuple(sorted(t.params.items())) for t in trials}
    # Rounded here, as saved: a report remade from the saved runs is the same report.
    values = [float(f"{t.value:.10g}") for t in trials if t.value is not None]
    finished = [round(t, 4) for t in finished]
    busy = sum(durations(seed, t.number) for t in trials)
    return Run(problem.name, config, p, seed, values, finished, len(trials) - len(distinct), wall, busy)


def warm_up_workers(client: Client) -> None:
    """One throwaway optimize with a trial per worker thread before the measured runs, so
    that no run's elapsed time includes the workers' imports (the quality figures compare
    runs with one another; start-up is measured in ``benchmarks/startup.py``)."""
    storage = dasktune.DaskStorage(client=client)
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    dasktune.optimize(study, _warm_up_objective, n_trials=sum(client.nthreads().values()), client=client)
    optuna.delete_study(study_name=study.study_name, storage=storage)


def _warm_up_objective(trial: optuna.Trial) -> float:
    time.sleep(0.01)
    return trial.suggest_float("x", 0, 1)


@contextlib.contextmanager
def cluster_for(p: int) -> Iterator[tuple[Client, dasktune.DaskStorage]]:
    """P's cluster, and the one storage its runs keep their studies in (as a user's would)."""
    processes, threads_each = cluster_shape(p)
    with LocalCluster(n_workers=processes, threads_per_worker=threads_each, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.run(quiet)
        warm_up_workers(client)
        yield client, dasktune.DaskStorage(client=client)


def run(plan: Plan, log: Callable[[str], None], runs: list[Run]) -> None:
    """Every run of ``plan``, appended to ``runs`` as it ends (so an error leaves the runs
    before it): the sequential peer, then per P the in-flight and threads peers (with no
    cluster running) and the dasktune runs on that P's cluster."""
    problems = [make_problem(name) for name in plan.problems]
    cases = [(problem, seed) for problem in problems for seed in range(plan.seeds)]

    def done(r: Run) -> None:
        runs.append(r)
        log(f"parallel: {r.config}, P={r.p}, {r.problem}, seed {r.seed}: N={len(r.values)}, "
            f"best {min(r.values):.4g}, {r.wall:.1f} s")

    for problem, seed in cases:
        done(sequential(problem, seed, plan.trials(SEQUENTIAL, problem.name, 1), plan.durations))
    for p in plan.levels:
        if p > 1:
            for problem, seed in cases:
                done(in_flight(problem, seed, p, plan.trials(IN_FLIGHT, problem.name, p), plan.durations))
                done(threads(problem, seed, p, plan.trials(THREADS, problem.name, p), plan.durations))
        with cluster_for(p) as (client, storage):
            for problem, seed in cases:
                for config in (DASKTUNE_SEEDED, DASKTUNE_DEFAULT) if p > 1 else (DASKTUNE_SEEDED,):
                    done(with_dasktune(client, storage, config, problem, seed, p,
                                       plan.trials(config, problem.name, p), plan.durations))


def provenance() -> dict[str, str]:
    """The commit measured: ``commit`` (HEAD) and ``dasktune``, the commit of the main branch
    whose ``dasktune/`` this run measured (HEAD's own when it changes ``dasktune/``)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return {"commit": "unknown", "dasktune": "unknown"}
    base = git("merge-base", "HEAD", "main") if git("rev-parse", "--verify", "-q", "main") else ""
    base = git("rev-parse", "--short", base) if base else ""
    same = base and not git("diff", "--name-only", base, "HEAD", "--", "dasktune")
    dasktune = base if same else head
    if git("status", "--porcelain", "--", "dasktune"):
        dasktune += " + uncommitted changes"
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    return {"commit": f"{head} ({branch})", "dasktune": dasktune}


def save(path: Path, plan: Plan, runs: list[Run], meta: dict[str, Any]) -> None:
    """Every run's trials, to remake the report."""
    data = {"plan": asdict(plan), "meta": meta, "runs": [asdict(r) for r in runs]}
    with gzip.open(path, "wt") as f:
        json.dump(data, f)


def load(path: Path) -> tuple[Plan, list[Run], dict[str, Any]]:
    with gzip.open(path, "rt") as f:
        data = json.load(f)
    plan = data["plan"]
    plan = Plan(**{**plan, **{k: tuple(plan[k]) for k in ("problems", "levels", "long_problems", "long_levels", "long_configs")},
                   "durations": Durations(**plan["durations"])})
    return plan, [Run(**r) for r in data["runs"]], data["meta"]
