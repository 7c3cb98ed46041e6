"""Following a run from the calling process: every finished trial reaches it, and the run's
own driver keeps the run's tasks on the cluster until it ends.

:class:`RunWatch` is one step of following a run, shared by both ways of doing it: each step
waits on the scheduler for trials to finish (``dasktune_storage_watch``), then logs them,
moves the progress bar and runs the callbacks, in finishing order, and honours
``study.stop()``. :func:`follow` only watches (``Run.wait`` of a run driven elsewhere);
:func:`drive` is the driver of ``optimize``: it also decides what a lost trial's retry is
(the storage's stale-trial callback), fails stale trials as ``Study.optimize`` does, and
keeps the run's tasks — reaping them, releasing them once the run has ended, starting more
as the cluster grows (:mod:`dasktune.submit.policy` decides how many).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
import contextlib
import copy
import time
from typing import TYPE_CHECKING
import warnings

from distributed import Client
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune import compat
from dasktune.storage import wire
from dasktune.storage.runs import Outcome
from dasktune.storage.wire import FAIL_REASON
from dasktune.submit import policy
from dasktune.submit.progress import ProgressBar
from dasktune.submit.tasks import Tasks
from dasktune.submit.tasks import WATCH_SECONDS

if TYPE_CHECKING:
    from dasktune.submit.driver import Run

_logger = optuna.logging.get_logger("optuna.dasktune")
Callback = Callable[[optuna.Study, FrozenTrial], None]
#: How often the driver asks how many trials the cluster can run at once.
_SLOTS_EVERY_SECONDS = 1.0
#: Finished trials reach the driver (its callbacks, progress bar, log) at most this long
#: after they finish, in batches: under cheap trials a request per trial would cost the
#: scheduler and the driver as much CPU as a worker's own overhead.
WATCH_LINGER_SECONDS = 0.05
#: How long a driver waits for the runners of a run that has ended to report, and for the
#: scheduler to let go of the results of its tasks.
_SETTLE_SECONDS = 2.0
#: How long a driver whose run has ended, with no task left, waits to have seen every trial
#: the scheduler counts as finished before it returns anyway (saying so): never for ever.
_SEEN_GRACE_SECONDS = 10.0


class RunWatch:
    """One process following ``run``: its trials as they finish (into ``run.trials``), its
    progress bar and callbacks. ``tasks``: the run's tasks, if this process drives it."""

    def __init__(
        self, run: Run, tasks: Tasks | None, callbacks: list[Callback], show_progress_bar: bool
    ) -> None:
        self.run, self.tasks, self.callbacks = run, tasks, callbacks
        self.storage = run.storage
        self.status, _ = self.storage.watch_run(run.run_id, 0, timeout=0)
        self.bar = ProgressBar(show_progress_bar, self.status["n_trials"], self.status["timeout"])
        directions = run.study.directions
        self._maximize = directions[0] == StudyDirection.MAXIMIZE if len(directions) == 1 else None

    def step(self, timeout: float) -> wire.RunStatus:
        """Wait up to ``timeout`` s for trials to finish and report them; the run's status.
        A driver also tells the scheduler it has run their callbacks: a run with callbacks
        (gated) lets a runner go on only then, so its trials are answered one by one."""
        gated = self.tasks is not None and self.tasks.spec.gated
        study, run = self.run.study, self.run
        status, finished = self.storage.watch_run(
            run.run_id,
            len(run.trials),
            timeout=timeout,
            linger=0.0 if gated else WATCH_LINGER_SECONDS,
            seen=self.tasks is not None,
        )
        for trial in sorted(map(self.storage.get_trial, finished), key=_finish_time):
            run.trials.append(trial)
            _log(trial)
            self.bar.update(trial, self._maximize)
            for callback in self.callbacks:
                callback(study, trial)
        self.bar.tick(status)
        if compat.stop_requested(study) and status["end_reason"] is None:
            status = self.end("stopped", "study.stop() was called")
        self.status = status
        return status

    def end(self, outcome: Outcome, reason: str) -> wire.RunStatus:
        self.status = self.storage.end_run(self.run.run_id, outcome, reason)
        return self.status

    def result(self, error: BaseException | None) -> Run:
        """The run, or the error it ended with (with its traceback on the worker)."""
        run, status = self.run, self.status
        if error is not None:
            raise error
        if status["outcome"] == "deleted":
            raise KeyError(
                f"Study {run.study.study_name!r} was deleted while dasktune.optimize ran on it "
                f"({status['end_reason']}); {len(run.trials)} of its trials had finished."
            )
        if status["outcome"] in ("aborted", "orphaned"):
            raise RuntimeError(
                f"The optimize run {run.run_id} was {status['outcome']}: {status['end_reason']}."
            )
        if status["outcome"] == "cancelled":
            _logger.warning(f"The optimize run {run.run_id} was cancelled: {status['end_reason']}.")
        return run


def follow(run: Run, callbacks: list[Callback], show_progress_bar: bool) -> Run:
    """Watch ``run``, driven elsewhere, to its end (``Run.wait``)."""
    watch = RunWatch(run, None, callbacks, show_progress_bar)
    try:
        with compat.optimize_loop(run.study):  # lets callbacks call study.stop()
            while not watch.step(WATCH_SECONDS)["done"]:
                pass
    finally:
        watch.bar.close()
    return watch.result(None)


def drive(
    run: Run,
    tasks: Tasks,
    callbacks: list[Callback],
    concurrency: int | None,
    show_progress_bar: bool,
) -> Run:
    """Drive ``run`` to its end in this thread, keeping ``tasks`` on the cluster. Every way
    out ends the run on the scheduler."""
    study, storage = run.study, run.storage
    client = storage.client
    heartbeats = storage.get_heartbeat_interval() is not None
    study_id = compat.study_id(study)
    watch = RunWatch(run, tasks, callbacks, show_progress_bar)  # closed by the finally below
    slots, slots_checked, warned = 0, 0.0, False
    ended_at: float | None = None  # when the run was first seen done with no task left
    error: BaseException | None = None
    try:
        with compat.optimize_loop(study):  # lets callbacks call study.stop()
            while True:
                status = watch.step(tasks.wait_for_news())
                for trial_id in status["undecided"]:
                    _decide_lost(run, trial_id)
                if heartbeats:
                    # As Study.optimize does before each trial: fail trials whose heartbeat
                    # stopped. The run's own are lost trials (retried as a dead worker's,
                    # or decided above by the stale-trial callback); the callback runs here
                    # for the others, as Optuna runs it.
                    for trial_id in storage.fail_stale_trials(study_id):
                        _stale_callback(run, trial_id)
                failure = tasks.reap()
                if failure is not None and error is None:
                    error = failure
                    outcome: Outcome = "failed" if isinstance(failure, Exception) else "aborted"
                    status = watch.end(outcome, f"{type(failure).__name__}: {failure}")
                if status["done"] and tasks.alive:
                    # The run has ended on the scheduler: runners that are leaving report why
                    # (an error the caller must get) within moments. Any other is no longer
                    # needed and is released: one still inside an objective of a run ended at
                    # once (its thread finishes it), one on a worker that hangs (a stopped
                    # process, a cut network) and would hold this call until Dask gives up on
                    # that worker — its trials were failed already, or the run was not done —
                    # or one queued for resources no worker has.
                    error = error or tasks.reap(wait=_SETTLE_SECONDS)
                    tasks.cancel()
                if policy.is_finished(status, tasks.alive, len(run.trials)):
                    break
                if status["done"] and not tasks.alive:
                    ended_at = ended_at or time.monotonic()
                    if time.monotonic() - ended_at > _SEEN_GRACE_SECONDS:
                        _logger.warning(
                            f"Run {run.run_id}: the scheduler counts {status['finished']} finished "
                            f"trials, {len(run.trials)} were reported here; returning without the rest."
                        )
                        break
                if error is None:
                    if time.monotonic() - slots_checked > _SLOTS_EVERY_SECONDS:
                        slots, slots_checked = _slots(client, tasks.spec.resources), time.monotonic()
                        warned = warned or _warn_no_resources(slots, tasks.spec.resources)
                    tasks.start(status, slots, concurrency)
        with contextlib.suppress(OSError):  # a scheduler gone holds no result any more
            tasks.settle(_SETTLE_SECONDS)
    except BaseException:
        # KeyboardInterrupt (a notebook's stop button) or anything else: leave nothing
        # running — no new trial, running ones FAIL, tasks released.
        if client.status == "running":  # else the scheduler is gone, and the run with it
            with contextlib.suppress(ConnectionError, KeyError):
                watch.end("aborted", "interrupted")
            tasks.cancel()
        raise
    finally:
        watch.bar.close()
    return watch.result(error)


def _decide_lost(run: Run, trial_id: int) -> None:
    """Run the storage's stale-trial callback for a trial of ``run`` lost with its worker,
    as ``fail_stale_trials`` runs it for a trial whose heartbeat stopped, and tell the
    scheduler whether it enqueued a retry (which then takes the lost trial's place)."""
    study = run.study
    waiting = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))}
    _stale_callback(run, trial_id)
    retried = any(
        t.number not in waiting
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    )
    run.storage.decide_lost(run.run_id, trial_id, retried)


def _stale_callback(run: Run, trial_id: int) -> None:
    """The storage's stale-trial callback, if it has one, for the FAIL trial ``trial_id``
    of ``run``'s study, given a copy as Optuna's ``fail_stale_trials`` gives it."""
    callback = run.storage.get_heartbeat_stale_trial_callback()
    if callback is not None:
        callback(run.study, copy.deepcopy(run.storage.get_trial(trial_id)))


def _warn_no_resources(slots: int, resources: Mapping[str, float] | None) -> bool:
    """Warn (once: returns whether it did) that no worker has the ``resources`` a trial
    needs."""
    if slots or not resources:
        return False
    wanted = " ".join(f"{k}={v:g}" for k, v in resources.items())
    warnings.warn(
        f"No worker of the cluster has the resources {dict(resources)} a trial needs: "
        f'trials wait until one joins (start it with `dask worker --resources "{wanted}"`).',
        stacklevel=5,  # _warn_no_resources, drive, start, optimize: the caller's line
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


def _finish_time(trial: FrozenTrial) -> float:
    return trial.datetime_complete.timestamp() if trial.datetime_complete else 0.0


def _log(trial: FrozenTrial) -> None:
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
