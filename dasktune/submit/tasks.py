"""The Dask tasks a run keeps on the cluster, in its two styles.

Both keep the futures they submitted and share one interface, so the driver's loop is the
same for either:

- :class:`RunnerTasks` (define-by-run, the default): one long-lived trial runner per slot
  (``runner.run_trials``), which samples and evaluates on the worker.
- :class:`TrialTasks` (define-and-run, with ``search_space``): this process asks each trial
  from the sampler, a task evaluates ``objective(params)`` on a worker, this process tells
  the result.

Either returns the error that ends the run rather than raise it (see
:mod:`dasktune.submit.errors`); a task that raises met something else.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
import contextlib
import time
from typing import Any
import uuid

import distributed
from distributed import Client
from distributed import Future
from distributed import KilledWorker
import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution

from dasktune import compat
from dasktune.submit import devices
from dasktune.submit import policy
from dasktune.submit.errors import RemoteError
from dasktune.submit.runner import StopRun
from dasktune.submit.runner import fail_trial
from dasktune.submit.runner import run_trials
from dasktune.submit.runner import dask_storage
from dasktune.submit.runner import RunSpec
from dasktune.submit.runner import tell

#: Longest wait for news before the driver looks around (interrupts, new workers).
WATCH_SECONDS = 0.5


def submit(client: Client, fn: Callable[..., Any], *args: Any, key: str,
           resources: Mapping[str, float] | None = None) -> Future[Any]:
    """One of a run's tasks (its detached driver, a runner, a define-and-run trial), in the
    Dask span all of dasktune's tasks share (``compat.dasktune_span``), never taken for a
    result Dask already has (``pure=False``)."""
    with compat.dasktune_span():
        return client.submit(fn, *args, key=key, pure=False, resources=resources)


class Tasks:
    """The futures of one run's tasks."""

    def __init__(self, client: Client, spec: RunSpec) -> None:
        self.client, self.spec = client, spec
        self.futures: dict[str, Any] = {}
        self._let_go: list[str] = []  # keys of the tasks forgotten here, maybe not yet there

    @property
    def alive(self) -> int:
        return len(self.futures)

    def wait_for_news(self) -> float:
        """Spend part of the driver's wait for news (at most :data:`WATCH_SECONDS`) on the
        news these tasks bring this process themselves; the rest, in seconds, is for the
        scheduler's. Runners report through the scheduler (their claims and tells): all of
        it is the scheduler's, none is spent here."""
        return WATCH_SECONDS if self.futures else 0.0

    def reap(self, wait: float = 0.0) -> BaseException | None:
        """Forget the tasks that ended (waiting up to ``wait`` seconds for all to end); the
        first error among them that must stop the run."""
        if wait > 0 and self.futures:
            with contextlib.suppress(distributed.TimeoutError):
                distributed.wait(self._all_futures(), timeout=wait)
        keys = list(self.futures)
        error = self._reap()
        self._let_go += [key for key in keys if key not in self.futures]
        return error

    def _reap(self) -> BaseException | None:
        raise NotImplementedError

    def start(self, status: Mapping[str, Any], slots: int, concurrency: int | None) -> None:
        raise NotImplementedError

    def cancel(self) -> None:
        """Release the tasks (code already running in a worker thread finishes there)."""
        if self.futures:  # (the scheduler logs every cancel, of nothing too)
            self.client.cancel(list(self._all_futures()), force=True)
            self._let_go += list(self.futures)
            self.futures.clear()

    def settle(self, timeout: float) -> None:
        """Wait, up to ``timeout`` s, until no worker holds the result of a task let go here.

        Dropping a future tells the scheduler in a message sent moments later: a script
        that exits as ``optimize`` returns would close its cluster before, which logs that
        it lost those results ("Removing worker ... caused the cluster to lose already
        computed task(s)")."""
        deadline = time.monotonic() + timeout
        keys, self._let_go = self._let_go, []
        while keys:
            keys = compat.results_held(self.client, keys)
            if not keys or time.monotonic() > deadline:
                return
            time.sleep(0.01)

    def _all_futures(self) -> list[Future[Any]]:
        return list(self.futures.values())


class RunnerTasks(Tasks):
    """Trial runners: each claims and runs trials on its worker until the budget is spent."""

    futures: dict[str, Future[Any]]

    def _reap(self) -> BaseException | None:
        """A runner killed with its worker (``KilledWorker``) is no error of the objective:
        the scheduler failed (and retried) its trial, and a new runner replaces it."""
        error: BaseException | None = None
        for key, future in list(self.futures.items()):
            if not future.done():
                continue
            del self.futures[key]
            if future.status == "error":
                exc = future.exception()
                if not isinstance(exc, KilledWorker) and error is None:
                    error = exc.with_traceback(future.traceback())
            elif future.status == "finished" and error is None:
                result = future.result()
                if isinstance(result, RemoteError):
                    error = result.error
        return error

    def start(self, status: Mapping[str, Any], slots: int, concurrency: int | None) -> None:
        spec = self.spec
        for _ in range(policy.runners_to_start(status, self.alive, slots, concurrency)):
            key = f"dasktune-{spec.run_id}-runner-{uuid.uuid4().hex[:8]}"
            self.futures[key] = submit(self.client, run_trials, spec, key=key, resources=spec.resources)


class TrialTasks(Tasks):
    """Trials asked here, evaluated as one task each, told here."""

    futures: dict[str, tuple[Future[Any], optuna.Trial]]

    def _all_futures(self) -> list[Future[Any]]:
        return [future for future, _ in self.futures.values()]

    def wait_for_news(self) -> float:
        """Trial tasks report here, their results the trials to tell: wait for one."""
        if self.futures:
            with contextlib.suppress(distributed.TimeoutError):
                distributed.wait(self._all_futures(), timeout=WATCH_SECONDS, return_when="FIRST_COMPLETED")
        return 0.0

    def _reap(self) -> BaseException | None:
        """Tell the trials whose evaluation ended; the first error that must stop the run."""
        study, storage = self.spec.study, dask_storage(self.spec.study)
        stop = None
        for key, (future, trial) in list(self.futures.items()):
            if not future.done():
                continue
            del self.futures[key]
            try:
                if future.status == "error":  # its worker died, say
                    value, error = None, future.exception().with_traceback(future.traceback())
                else:
                    value = future.result()
                    error = value.error if isinstance(value, RemoteError) else None
                if error is not None:
                    fail_trial(study, storage, compat.trial_id(trial), f"{type(error).__name__}: {error}")
                    if not isinstance(error, self.spec.catch):
                        stop = stop or error
                else:
                    tell(study, storage, trial, value)
            except StopRun as e:
                stop = stop or e.error
        return stop

    def start(self, status: Mapping[str, Any], slots: int, concurrency: int | None) -> None:
        spec = self.spec
        assert spec.search_space is not None
        storage = dask_storage(spec.study)
        for _ in range(policy.runners_to_start(status, self.alive, slots, concurrency)):
            claimed = storage.claim_trials(spec.run_id, None, 1)
            if not claimed:
                return
            (trial_id,) = claimed
            if not storage.adopt_trial(trial_id):
                continue  # failed on the scheduler since the claim (its run was aborted)
            trial = compat.new_trial(spec.study, trial_id)
            for name, distribution in spec.search_space.items():
                suggest(trial, name, distribution)
            key = f"dasktune-{spec.run_id}-trial-{trial.number}"
            future = submit(
                self.client, evaluate, spec.objective, trial.params, spec.resources,
                key=key, resources=spec.resources,
            )
            self.futures[key] = (future, trial)


def evaluate(
    objective: Callable[[dict[str, Any]], Any],
    params: dict[str, Any],
    resources: Mapping[str, float] | None = None,
) -> Any:
    """A define-and-run trial's task: ``objective(params)``, or its error, returned; it
    holds its worker's devices if ``resources`` names GPUs (see :mod:`.devices`)."""
    try:
        with devices.holding(resources):
            return objective(params)
    except BaseException as e:
        return RemoteError(e)


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Suggest ``name`` from ``distribution`` through the trial's public API (what
    ``Study.ask(fixed_distributions=...)`` does)."""
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(
        f"Parameter {name!r}: search_space takes FloatDistribution, IntDistribution or "
        f"CategoricalDistribution, not {type(distribution).__name__}."
    )
