"""What every benchmark shares: the objectives, samplers, timing records and the clusters."""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from dataclasses import dataclass
from dataclasses import field
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

from distributed import Client
import optuna
import psutil


def objective(trial: optuna.Trial) -> float:
    """The trivial objective of the overhead and growth figures: two floats (one
    log-scaled) and a categorical."""
    x = trial.suggest_float("x", -10, 10)
    y = trial.suggest_float("y", 1e-3, 1.0, log=True)
    c = trial.suggest_categorical("c", ["a", "b", "c"])
    return x**2 + y + (c == "a")


@dataclass(frozen=True)
class Sleeping:
    """The scaling figures' objective: ``seconds`` of "work" that uses no CPU."""

    seconds: float

    def __call__(self, trial: optuna.Trial) -> float:
        time.sleep(self.seconds)
        return trial.suggest_float("x", -1, 1) ** 2


def quiet() -> None:
    """Silence Optuna's per-trial INFO logs and ExperimentalWarning (in any process)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_sampler(name: str, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """A RandomSampler or a default TPESampler."""
    if name == "Random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


@dataclass
class Result:
    """Completion times (``time.time()``) of one configuration's trials."""

    config: str
    sampler: str
    n_asked: int
    start: float
    stamps: list[float] = field(default_factory=list)
    note: str = ""
    end: float | None = None  # when the call returned, if it was timed (else the last stamp)

    @property
    def n(self) -> int:
        return len(self.stamps)

    @property
    def wall(self) -> float:
        return (self.end if self.end is not None else self.stamps[-1]) - self.start

    @property
    def trials_per_s(self) -> float:
        return self.n / self.wall

    def ms_per_trial(self, first: int, size: int) -> float:
        """Milliseconds per trial over completions ``first .. first+size-1``."""
        before = self.start if first == 0 else self.stamps[first - 1]
        return (self.stamps[first + size - 1] - before) / size * 1e3

    def growth(self, window: int) -> tuple[float, float]:
        """ms/trial over the first and the last ``window`` completions."""
        window = min(window, self.n)
        return self.ms_per_trial(0, window), self.ms_per_trial(self.n - window, window)


def check_complete(study: optuna.Study, n_trials: int) -> None:
    """Raise unless the study holds exactly ``n_trials`` trials, all complete."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    if len(states) != n_trials or complete != n_trials:
        raise RuntimeError(f"expected {n_trials} complete trials, found {len(states)}, {complete} complete")


class ProcessCluster:
    """A ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, so the scheduler's
    CPU time and memory can be read apart from this process's."""

    def __init__(self, n_workers: int = 2, nthreads: int = 1) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dasktune-bench-"))
        file = self.dir / "scheduler.json"
        dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
        # The workers unpickle this package's functions: they import it from the repository.
        root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        quiet_env = {**os.environ, "DASK_LOGGING__DISTRIBUTED": "error", "PYTHONPATH": path}
        self.scheduler = subprocess.Popen(
            [*dask, "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
             "--scheduler-file", str(file)],
            env=quiet_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.workers = [
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(file),
                 "--nthreads", str(nthreads), "--no-nanny", "--host", "127.0.0.1"],
                env=quiet_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for _ in range(n_workers)
        ]
        self.client = Client(scheduler_file=str(file), timeout=60)
        self.client.wait_for_workers(n_workers, timeout=60)
        self.client.run(quiet)

    def scheduler_usage(self) -> tuple[float, float]:
        """The scheduler process's CPU seconds so far and its RSS in MiB."""
        process = psutil.Process(self.scheduler.pid)
        cpu = process.cpu_times()
        return cpu.user + cpu.system, process.memory_info().rss / 2**20

    def worker_rss(self) -> list[float]:
        return [psutil.Process(w.pid).memory_info().rss / 2**20 for w in self.workers]

    def close(self) -> None:
        self.client.close()
        for process in [*self.workers, self.scheduler]:
            process.terminate()
        for process in [*self.workers, self.scheduler]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            if process.poll() is None:
                process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def process_cluster(n_workers: int = 2, nthreads: int = 1) -> Iterator[ProcessCluster]:
    cluster = ProcessCluster(n_workers, nthreads)
    try:
        yield cluster
    finally:
        cluster.close()
