"""The Dask tasks a run keeps on the cluster, in its two styles.

Both keep the futures they submitted and share one interface, so the driver's loop is the
same for either:

- :class:`RunnerTasks` (define-by-run, the default): one long-lived trial runner per slot
  (``runner.run_trials``), which samples and evaluates on the worker.
- :class:`TrialTasks` (define-and-run, with ``search_space``): this process asks each trial
  from the sampler, a task evaluates ``objective(params)`` on a worker, this process tells
  the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
import uuid

from distributed import Client
from distributed import Future
from distributed import KilledWorker
from distributed import wait
import optuna
from optuna.distributions import BaseDistribution

from dasktune.storage import DaskStorage
from dasktune.submit import policy
from dasktune.submit.runner import finish_trial
from dasktune.submit.runner import run_trials

#: Longest wait for news before the driver looks around (interrupts, new workers).
WATCH_SECONDS = 0.5


class RunnerTasks:
    """Trial runners: each claims and runs trials on its worker until the budget is spent."""

    def __init__(
        self,
        client: Client,
        study: optuna.Study,
        run_id: str,
        objective: Any,
        catch: tuple[type[BaseException], ...],
        resources: Mapping[str, float] | None,
    ) -> None:
        self.client, self.study, self.run_id = client, study, run_id
        self.objective, self.catch, self.resources = objective, catch, resources
        self.futures: dict[str, Future] = {}

    @property
    def alive(self) -> int:
        return len(self.futures)

    def wait(self) -> float:
        """Seconds the driver may then wait on the scheduler for finished trials."""
        return WATCH_SECONDS if self.futures else 0.0

    def reap(self) -> BaseException | None:
        """Forget the runners that ended; the first error among them, with its traceback.

        A runner killed with its worker (``KilledWorker``) is no error of the objective:
        the scheduler failed (and retried) its trial, and a new runner replaces it.
        """
        error = None
        for key, future in list(self.futures.items()):
            if future.done():
                del self.futures[key]
                exc = future.exception() if future.status == "error" else None
                if exc is not None and not isinstance(exc, KilledWorker) and error is None:
                    error = exc.with_traceback(future.traceback())
        return error

    def start(self, status: Mapping[str, Any], slots: int, concurrency: int | None) -> None:
        for _ in range(policy.runners_to_start(status, self.alive, slots, concurrency)):
            key = f"dasktune-{self.run_id}-runner-{uuid.uuid4().hex[:8]}"
            self.futures[key] = self.client.submit(
                run_trials, self.study, self.objective, self.run_id, self.catch, key=key,
                pure=False, resources=self.resources,
            )

    def cancel(self) -> None:
        self.client.cancel(list(self.futures.values()), force=True)
        self.futures.clear()


class TrialTasks:
    """Trials asked here, evaluated as one task each, told here."""

    def __init__(
        self,
        client: Client,
        study: optuna.Study,
        run_id: str,
        objective: Any,
        catch: tuple[type[BaseException], ...],
        resources: Mapping[str, float] | None,
        search_space: dict[str, BaseDistribution],
    ) -> None:
        self.client, self.study, self.run_id = client, study, run_id
        self.objective, self.catch, self.resources = objective, catch, resources
        self.search_space = search_space
        self.futures: dict[str, tuple[Future, optuna.Trial]] = {}

    @property
    def alive(self) -> int:
        return len(self.futures)

    def wait(self) -> float:
        if self.futures:
            futures = [future for future, _ in self.futures.values()]
            wait(futures, timeout=WATCH_SECONDS, return_when="FIRST_COMPLETED")
        return 0.0

    def reap(self) -> BaseException | None:
        """Tell the trials whose evaluation ended; the first error that must stop the run."""
        stop = None
        for key, (future, trial) in list(self.futures.items()):
            if not future.done():
                continue
            del self.futures[key]
            if future.status == "error":
                error = future.exception().with_traceback(future.traceback())
                outcome = finish_trial(self.study, trial, error=error, catch=self.catch)
            else:
                outcome = finish_trial(self.study, trial, values=future.result())
            stop = stop or outcome
        return stop

    def start(self, status: Mapping[str, Any], slots: int, concurrency: int | None) -> None:
        storage = self.study._storage
        assert isinstance(storage, DaskStorage)
        for _ in range(policy.runners_to_start(status, self.alive, slots, concurrency)):
            if storage._claim_trial(self.run_id) is None:
                return
            trial = self.study.ask(fixed_distributions=self.search_space)
            storage._release_claim()  # this thread reads fresh again (callbacks run here)
            key = f"dasktune-{self.run_id}-trial-{trial.number}"
            self.futures[key] = (
                self.client.submit(
                    self.objective, trial.params, key=key, pure=False, resources=self.resources
                ),
                trial,
            )

    def cancel(self) -> None:
        self.client.cancel([future for future, _ in self.futures.values()], force=True)
        self.futures.clear()
