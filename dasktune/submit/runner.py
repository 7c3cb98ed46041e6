"""The trial runner: a long-lived Dask task that runs trials of one ``optimize`` call.

One runner occupies one worker thread and loops: claim a trial from the scheduler (the
claim enforces ``n_trials`` and ``timeout`` there), run the objective through Optuna's own
``ask`` / ``tell``, repeat until the claim is refused. A trial costs one round trip to the
scheduler: the claim, which also carries the previous trial's tell (see
``DaskStorage._claim_trial``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.trial import TrialState

from dasktune.storage import DaskStorage
from dasktune.storage.runs import FAIL_REASON
from dasktune.submit.policy import infeasible_values

Objective = Callable[[optuna.Trial], Any]


def run_trials(
    study: optuna.Study,
    objective: Objective,
    run_id: str,
    catch: tuple[type[BaseException], ...],
) -> int:
    """Run trials of ``run_id`` until its budget is spent; return how many this runner ran.

    An error of the objective not listed in ``catch`` fails its trial and is raised, ending
    this runner; the driver then stops the run.
    """
    storage = study._storage  # Optuna offers no public accessor
    assert isinstance(storage, DaskStorage)
    (index,) = storage._call([["register_runner", [run_id], None]])
    if index > 0:
        # Each runner got the study pickled with the same sampler state: without this,
        # a seeded sampler would sample the same points in every runner.
        study.sampler.reseed_rng()
    if isinstance(study.sampler, optuna.samplers.TPESampler):
        # Parallel TPE: count running trials as bad ones so runners do not pile up on the
        # same point (Optuna's constant liar; no public setter after construction).
        study.sampler._constant_liar = True
    # Lets the objective call study.stop(), as inside Study.optimize.
    study._thread_local.in_optimize_loop = True
    ran = 0
    try:
        while True:
            try:
                trial_id = storage._claim_trial(run_id)
            except UpdateFinishedTrialError:
                # The previous trial's tell, sent with this claim, was refused: the trial was
                # failed meanwhile (run aborted, trial stale). Nothing left to do for it.
                continue
            if trial_id is None:
                return ran
            trial = study.ask()
            if trial._trial_id != trial_id:
                raise RuntimeError(
                    f"Optuna's ask() returned trial {trial._trial_id}, not the claimed "
                    f"trial {trial_id}; this Optuna version is not supported."
                )
            with get_heartbeat_thread(trial_id, storage):
                _run_trial(study, objective, trial, catch)
            ran += 1
            if study._stop_flag:
                storage._call([["stop_run", [run_id, "study.stop() called"], None]])
    finally:
        study._thread_local.in_optimize_loop = False
        storage._flush()


def _run_trial(
    study: optuna.Study,
    objective: Objective,
    trial: optuna.Trial,
    catch: tuple[type[BaseException], ...],
) -> None:
    try:
        values = objective(trial)
    except Exception as e:
        error = finish_trial(study, trial, error=e, catch=catch)
    else:
        error = finish_trial(study, trial, values=values)
    if error is not None:
        raise error


def finish_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    values: Any = None,
    error: BaseException | None = None,
    catch: tuple[type[BaseException], ...] = (),
) -> BaseException | None:
    """Tell ``trial``'s outcome as ``Study.optimize`` would: PRUNED for ``TrialPruned``,
    FAIL (with the reason recorded) for an error or values Optuna cannot take, COMPLETE
    otherwise. Returns ``error`` if the optimization must stop for it (not in ``catch``)."""
    if isinstance(error, optuna.TrialPruned):
        study.tell(trial, state=TrialState.PRUNED)
        return None
    reason = (
        f"{type(error).__name__}: {error}"
        if error is not None
        else infeasible_values(values, len(study.directions))
    )
    if reason is None:
        study.tell(trial, values)
        return None
    study._storage.set_trial_system_attr(trial._trial_id, FAIL_REASON, reason)
    study.tell(trial, state=TrialState.FAIL)
    return None if error is None or isinstance(error, catch) else error
