"""``dasktune.optimize``: one call that fans an Optuna study's trials across a Dask cluster.

The driver owns the Dask side: it opens a *run* on the scheduler (the budget), submits one
trial runner per worker thread (``runner.py``), follows the cluster as it grows or shrinks,
and watches the run: every finished trial reaches the calling process, in finishing order,
for logging, the progress bar and callbacks. What to do next is decided by ``policy.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import re
import time
from typing import Any
from typing import cast
import uuid
import warnings

from distributed import Client
from distributed import fire_and_forget
from distributed import get_client
from distributed import secede
import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune import compat
from dasktune.storage import DaskStorage
from dasktune.storage import wire
from dasktune.storage.runs import Outcome
from dasktune.storage.wire import FAIL_REASON
from dasktune.submit import policy
from dasktune.submit.progress import ProgressBar
from dasktune.submit.runner import Abort
from dasktune.submit.runner import Objective
from dasktune.submit.runner import dask_storage
from dasktune.submit.runner import RunSpec
from dasktune.submit.tasks import RunnerTasks
from dasktune.submit.tasks import Tasks
from dasktune.submit.tasks import TrialTasks
from dasktune.submit.tasks import WATCH_SECONDS

_logger = optuna.logging.get_logger("optuna.dasktune")

Callback = Callable[[optuna.Study, FrozenTrial], None]
_SLOTS_EVERY_SECONDS = 1.0
#: Finished trials reach the driver (its callbacks, progress bar, log) at most this long
#: after they finish, in batches: under cheap trials a request per trial would cost the
#: scheduler and the driver as much CPU as a worker's own overhead.
WATCH_LINGER_SECONDS = 0.05
#: How long a driver waits for the runners of a run that was ended at once to report.
_SETTLE_SECONDS = 2.0


class Run:
    """One ``dasktune.optimize`` call: its budget lives on the scheduler.

    Returned by :func:`optimize` once the run has ended (or at once with ``detach=True``)
    and by :func:`attach` for a run started elsewhere.

    Attributes:
        study: The study the run optimizes.
        run_id: Identifies the run on the scheduler.
        trials: The trials this run finished, in finishing order, as far as this process
            has watched them (all of them after :meth:`wait`).
    """

    def __init__(self, study: optuna.Study, run_id: str) -> None:
        self.study = study
        self.run_id = run_id
        self.trials: list[FrozenTrial] = []

    @property
    def storage(self) -> DaskStorage:
        return dask_storage(self.study)

    def status(self) -> wire.RunStatus:
        """The run's progress on the scheduler: ``n_trials``, ``claimed``, ``finished``,
        ``running``, ``lost`` (trials whose worker died), ``undecided`` (lost trials whose
        retry the storage's stale-trial callback has yet to decide), ``end_reason`` (why the
        run ended, if something but its budget ended it: ``study.stop()``, an error, a
        cancel), ``outcome`` (how it ended: ``finished``, ``stopped``, ``failed``,
        ``cancelled``, ``aborted``, ``deleted``, ``orphaned``), ``time_left`` (seconds, with
        a timeout), ``can_claim`` and ``done``."""
        return self.storage.run_status(self.run_id)

    def done(self) -> bool:
        """Whether the run has ended: no trial running and none may start."""
        return bool(self.status()["done"])

    def wait(
        self,
        callbacks: Sequence[Callback] | None = None,
        show_progress_bar: bool = False,
    ) -> Run:
        """Watch the run until it ends; collects its trials into :attr:`trials`."""
        _drive(self, None, list(callbacks or ()), None, show_progress_bar)
        return self

    def cancel(self, reason: str = "cancelled by the user") -> wire.RunStatus:
        """Stop the run now: no trial starts any more, running ones become FAIL with
        ``reason``, and its runners leave the workers. The call that drives the run (its
        ``optimize``, or ``wait``) returns."""
        return self.storage.end_run(self.run_id, "cancelled", reason)

    @property
    def best_trial(self) -> FrozenTrial:
        """The study's best trial (Optuna's ``study.best_trial``)."""
        return self.study.best_trial

    def __repr__(self) -> str:
        return f"<dasktune.Run {self.run_id} of study {self.study.study_name!r}>"


def optimize(
    study: optuna.Study,
    objective: Objective,
    n_trials: int | None = None,
    timeout: float | None = None,
    *,
    client: Client | None = None,
    concurrency: int | None = None,
    callbacks: Sequence[Callback] | None = None,
    catch: Sequence[type[Exception]] | type[Exception] = (),
    show_progress_bar: bool = False,
    retries: int = 1,
    detach: bool = False,
    search_space: dict[str, BaseDistribution] | type | None = None,
    resources: Mapping[str, float] | None = None,
) -> Any:
    """Optimize ``study`` with ``objective`` on the Dask cluster.

    The words mirror :meth:`optuna.Study.optimize`. Trials run on the workers, one trial
    runner per worker thread, each claiming trials from the scheduler until the budget is
    spent, so exactly ``n_trials`` trials are finished by the call.

    Args:
        study: A study whose storage is a :class:`dasktune.DaskStorage`.
        objective: ``objective(trial) -> value(s)``, run on the workers.
        n_trials: Trials to finish; ``None`` runs until ``timeout`` or an interrupt.
        timeout: Seconds after which no trial starts; the call returns once running trials
            end.
        client: The Dask client; the current one by default.
        concurrency: Most trials to run at once; by default one per worker thread,
            following the cluster as workers join or leave. Each runner samples with its
            own copy of the study's sampler (reseeded, so seeded runs stay distinct), from
            every finished result and every running trial's parameters; past a few
            trials at once the result after ``n_trials`` is worse than one at a time, by
            what the sampler itself gives up with that many trials in flight (see the
            README's "Parallel quality").
        callbacks: ``callback(study, frozen_trial)``, called in this process as each trial
            finishes, in finishing order.
        catch: Exception types of the objective that fail the trial but let the
            optimization go on; any other exception fails its trial, stops the run and is
            raised here with its original type and traceback.
        show_progress_bar: Show a tqdm bar (a widget in notebooks).
        retries: How many times a trial lost to a dead worker is retried with the same
            parameters (recorded in its ``failed_trial`` / ``retry_history`` system attrs).
        detach: Hand the whole optimization to the cluster and return at once; the client
            may close, and :func:`attach` finds the run again from any process.
        search_space: Define-and-run: a dict of Optuna distributions. Trials are then asked
            here, from the study's sampler (which keeps its state in one place), and
            ``objective(params)`` receives the sampled parameters as a dict on a worker, one
            task per trial. Prefer it for expensive or stateful samplers (CMA-ES, GP) and
            costly objectives; it does not support pruning (the objective has no trial).
            A typed search space class (:func:`dasktune.tune.typed_space`) works too: the
            objective then receives an instance of it.
        resources: Dask worker resources each trial needs, e.g. ``{"GPU": 1}``: trials run
            only on workers started with them (``dask worker --resources "GPU=1"``,
            ``LocalCluster(resources={"GPU": 1})``), and as many at once per worker as its
            resources allow.

    Returns:
        The :class:`Run`, ended (its ``trials`` are those this call ran) — or still going
        with ``detach=True``. With an asynchronous client, an awaitable of it.

    Raises:
        ValueError: The storage is not a DaskStorage, or an argument is out of range.
        TypeError: The objective cannot be sent to the workers, or an argument has the
            wrong type.
    """
    storage = dask_storage(study)
    catches = _check_arguments(
        objective, n_trials, timeout, concurrency, catch, retries, callbacks, resources
    )
    if isinstance(search_space, type):
        # Imported here: the tune API builds on this module, not the other way round.
        from dasktune.tune.typed import TypedObjective

        typed = TypedObjective(objective, search_space)
        objective, search_space = cast(Objective, typed), typed.distributions
    _check_search_space(search_space)
    if client is not None:
        storage.use_client(client)
    client = storage.client
    run_id = f"{_key_name(study.study_name)}-{uuid.uuid4().hex[:12]}"
    callbacks = list(callbacks or ())
    # Define-and-run claims in this process, after the callbacks: no gate needed (or held).
    gated = bool(callbacks) and search_space is None
    spec = RunSpec(study, run_id, objective, catches, resources, search_space, gated)

    # A stale-trial callback of the storage (a RetryFailedTrialCallback, say) decides what
    # happens to a trial lost with its worker, as it does for a trial whose heartbeat stopped.
    deciding = storage.get_heartbeat_stale_trial_callback() is not None

    def start() -> Run:
        storage.open_run(
            run_id,
            compat.study_id(study),
            n_trials,
            timeout,
            None if deciding else retries,
            None if detach else client.id,
            gated=spec.gated,
        )
        if not detach:
            return _drive(Run(study, run_id), _tasks(client, spec), callbacks, concurrency, show_progress_bar)
        future = client.submit(
            _drive_detached, spec, callbacks, concurrency, key=f"dasktune-{run_id}-driver", pure=False
        )
        fire_and_forget(future)
        return Run(study, run_id)

    if client.asynchronous:
        # One synchronous core: an asynchronous client gets it on a thread, so the event
        # loop stays free while the driver waits.
        return asyncio.get_running_loop().run_in_executor(None, start)
    return start()


def attach(study: optuna.Study, run_id: str | None = None) -> Run:
    """The ``optimize`` run ``run_id`` of ``study`` (by default its latest), started by
    this or any other process; :meth:`Run.wait` follows it, :meth:`Run.cancel` stops it.

    Raises:
        KeyError: The study has no such run.
    """
    storage = dask_storage(study)
    ids = [r["run_id"] for r in storage.find_runs(compat.study_id(study))]
    if not ids or (run_id is not None and run_id not in ids):
        raise KeyError(
            f"No optimize run {run_id or ''} of study {study.study_name!r} on storage "
            f"{storage.name!r}; runs: {ids}."
        )
    return Run(study, run_id or ids[-1])


def _drive(
    run: Run,
    tasks: Tasks | None,
    callbacks: list[Callback],
    concurrency: int | None,
    show_progress_bar: bool,
) -> Run:
    """Watch ``run`` to its end in this thread, keeping ``tasks`` on the cluster (none:
    only watch a run driven elsewhere). Every way out ends the run on the scheduler."""
    study, storage = run.study, run.storage
    client = storage.client
    status, _ = storage.watch_run(run.run_id, 0, timeout=0)
    bar = ProgressBar(show_progress_bar, status["n_trials"], status["timeout"])
    maximize = _single_direction(study)
    heartbeats = storage.get_heartbeat_interval() is not None
    slots, slots_checked, warned = 0, 0.0, False
    error: BaseException | Abort | None = None
    try:
        with compat.optimize_loop(study):  # lets callbacks call study.stop()
            while True:
                watch = tasks.wait_here() if tasks is not None else WATCH_SECONDS
                # A run with callbacks holds its runners' claims until they have run: answer
                # each finished trial at once rather than in batches.
                status, finished = storage.watch_run(
                    run.run_id,
                    len(run.trials),
                    timeout=watch,
                    linger=0.0 if tasks is not None and tasks.spec.gated else WATCH_LINGER_SECONDS,
                    seen=tasks is not None,
                )
                for trial in sorted(map(storage.get_trial, finished), key=_finish_time):
                    run.trials.append(trial)
                    _log(study, trial)
                    bar.update(trial, maximize)
                    for callback in callbacks:
                        callback(study, trial)
                bar.tick(status)
                if tasks is not None:
                    for trial_id in status["undecided"]:
                        _decide_lost(run, trial_id)
                if tasks is not None and heartbeats:
                    # As Study.optimize does before each trial: fail trials whose heartbeat
                    # stopped, running the storage's stale-trial callback (e.g. a retry) here.
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        optuna.storages.fail_stale_trials(study)
                if compat.stop_requested(study) and status["end_reason"] is None:
                    status = storage.end_run(run.run_id, "stopped", "study.stop() was called")
                if tasks is None:
                    if status["done"]:
                        break
                    continue
                failure = tasks.reap()
                if failure is not None and error is None:
                    error = failure
                    outcome: Outcome = "aborted" if isinstance(failure, Abort) else "failed"
                    cause = failure.error if isinstance(failure, Abort) else failure
                    status = storage.end_run(run.run_id, outcome, f"{type(cause).__name__}: {cause}")
                if status["done"] and tasks.alive:
                    # The run has ended on the scheduler: runners that are leaving report why
                    # (an error the caller must get) within moments. Any other is no longer
                    # needed and is released: one still inside an objective of a run ended at
                    # once (its thread finishes it), or one on a worker that hangs (a stopped
                    # process, a cut network) and would hold this call until Dask gives up on
                    # that worker — its trials were failed already, or the run was not done —
                    # or one queued for resources no worker has.
                    failure = tasks.reap(wait=_SETTLE_SECONDS)
                    error = error or failure
                    tasks.cancel()
                if policy.is_finished(status, tasks.alive, len(run.trials)):
                    break
                if error is None:
                    if time.monotonic() - slots_checked > _SLOTS_EVERY_SECONDS:
                        slots, slots_checked = _slots(client, tasks.spec.resources), time.monotonic()
                        warned = warned or _warn_no_resources(slots, tasks.spec.resources)
                    tasks.start(status, slots, concurrency)
    except BaseException:
        # KeyboardInterrupt (a notebook's stop button) or anything else: leave nothing
        # running — no new trial, running ones FAIL, tasks released.
        if client.status == "running":  # else the scheduler is gone, and the run with it
            with contextlib.suppress(ConnectionError, KeyError):
                storage.end_run(run.run_id, "aborted", "interrupted")
            if tasks is not None:
                tasks.cancel()
        raise
    finally:
        bar.close()
    if isinstance(error, Abort):
        raise error.error.with_traceback(None) from RuntimeError(
            f"raised in a trial of dasktune.optimize on a worker:\n{error.traceback}"
        )
    if error is not None:
        raise error
    if status["outcome"] == "deleted":
        raise KeyError(
            f"Study {study.study_name!r} was deleted while dasktune.optimize ran on it "
            f"({status['end_reason']}); {len(run.trials)} of its trials had finished."
        )
    if status["outcome"] in ("aborted", "orphaned"):
        raise RuntimeError(f"The optimize run {run.run_id} was {status['outcome']}: {status['end_reason']}.")
    if status["outcome"] == "cancelled":
        _logger.warning(f"The optimize run {run.run_id} was cancelled: {status['end_reason']}.")
    return run


def _decide_lost(run: Run, trial_id: int) -> None:
    """Run the storage's stale-trial callback for a trial of ``run`` lost with its worker,
    as ``fail_stale_trials`` runs it for a trial whose heartbeat stopped, and tell the
    scheduler whether it enqueued a retry (which then takes the lost trial's place)."""
    study, storage = run.study, run.storage
    callback = storage.get_heartbeat_stale_trial_callback()
    waiting = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))}
    if callback is not None:
        callback(study, copy.deepcopy(storage.get_trial(trial_id)))
    retried = any(
        t.number not in waiting
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    )
    storage.decide_lost(run.run_id, trial_id, retried)


def _tasks(client: Client, spec: RunSpec) -> Tasks:
    return RunnerTasks(client, spec) if spec.search_space is None else TrialTasks(client, spec)


def _warn_no_resources(slots: int, resources: Mapping[str, float] | None) -> bool:
    """Warn (once: returns whether it did) that no worker has the ``resources`` a trial
    needs."""
    if slots or not resources:
        return False
    wanted = " ".join(f"{k}={v:g}" for k, v in resources.items())
    warnings.warn(
        f"No worker of the cluster has the resources {dict(resources)} a trial needs: "
        f'trials wait until one joins (start it with `dask worker --resources "{wanted}"`).',
        stacklevel=5,  # _warn_no_resources, _drive, start, optimize: the caller's line
    )
    return True


def _slots(client: Client, resources: Mapping[str, float] | None) -> int:
    """How many trials the cluster can run at once: its threads, or with ``resources``,
    how many times each worker holds them (never more than its threads)."""
    if resources is None:
        return sum(client.nthreads().values())
    slots = 0
    for worker in client.scheduler_info(n_workers=-1)["workers"].values():
        held = worker.get("resources", {})
        fits = min(int(held.get(name, 0) // need) for name, need in resources.items())
        slots += min(fits, worker["nthreads"])
    return slots


def _drive_detached(spec: RunSpec, callbacks: list[Callback], concurrency: int | None) -> int:
    """The driver of a detached run, as a task on the cluster."""
    secede()  # a driver waits; it must not hold a worker thread that a runner could use
    client = get_client()
    dask_storage(spec.study).use_client(client)
    return len(_drive(Run(spec.study, spec.run_id), _tasks(client, spec), callbacks, concurrency, False).trials)


def _check_arguments(
    objective: Objective,
    n_trials: int | None,
    timeout: float | None,
    concurrency: int | None,
    catch: Sequence[type[Exception]] | type[Exception],
    retries: int,
    callbacks: Sequence[Callback] | None,
    resources: Mapping[str, float] | None,
) -> tuple[type[BaseException], ...]:
    if not callable(objective):
        raise TypeError(f"objective must be callable, not {type(objective).__name__}.")
    if n_trials is not None and (not isinstance(n_trials, int) or n_trials < 1):
        raise ValueError(f"n_trials must be a positive int or None, not {n_trials!r}.")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}.")
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise ValueError(f"concurrency must be a positive int or None, not {concurrency!r}.")
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, not {retries!r}.")
    catches = tuple(catch) if isinstance(catch, (list, tuple)) else (catch,)
    if not all(isinstance(c, type) and issubclass(c, BaseException) for c in catches):
        raise TypeError(f"catch must be exception types, not {catch!r}.")
    for callback in callbacks or ():
        if not callable(callback):
            raise TypeError(f"callbacks must be callables, not {callback!r}.")
    if resources is not None and not (
        isinstance(resources, Mapping)
        and resources
        and all(isinstance(k, str) and isinstance(v, (int, float)) and v > 0 for k, v in resources.items())
    ):
        raise ValueError(
            f"resources must map Dask worker resource names to positive amounts, e.g. "
            f"{{'GPU': 1}}, not {resources!r}."
        )
    return catches


def _check_search_space(search_space: dict[str, BaseDistribution] | None) -> None:
    if search_space is not None and not (
        isinstance(search_space, dict)
        and search_space
        and all(isinstance(d, BaseDistribution) for d in search_space.values())
    ):
        raise TypeError(
            "search_space must be a non-empty dict of parameter name -> Optuna distribution "
            f"(e.g. optuna.distributions.FloatDistribution(0, 1)), not {search_space!r}."
        )


def _single_direction(study: optuna.Study) -> bool | None:
    """Whether the single objective is maximized; ``None`` for several objectives."""
    directions = study.directions
    return directions[0] == StudyDirection.MAXIMIZE if len(directions) == 1 else None


def _finish_time(trial: FrozenTrial) -> float:
    return trial.datetime_complete.timestamp() if trial.datetime_complete else 0.0


def _log(study: optuna.Study, trial: FrozenTrial) -> None:
    if trial.state == TrialState.COMPLETE:
        _logger.info(
            f"Trial {trial.number} finished with value{'s' if len(trial.values) > 1 else ''}: "
            f"{trial.values if len(trial.values) > 1 else trial.value} and parameters: "
            f"{trial.params}."
        )
    elif trial.state == TrialState.PRUNED:
        _logger.info(f"Trial {trial.number} pruned.")
    elif trial.state == TrialState.FAIL:
        _logger.warning(
            f"Trial {trial.number} failed with parameters: {trial.params} because of the "
            f"following error: {trial.system_attrs.get(FAIL_REASON, 'unknown')}."
        )


def _key_name(study_name: str) -> str:
    """The study's name as it may appear in a Dask key (readable on the dashboard)."""
    return re.sub(r"[^A-Za-z0-9_.]+", "_", study_name)[:40] or "study"
