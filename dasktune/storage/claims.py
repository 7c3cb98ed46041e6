"""A trial claimed for a ``dasktune.optimize`` runner thread, until Optuna's ``ask`` takes it.

The runner claims a trial from the scheduler (one round trip that enforces the run's budget)
and then calls Optuna's own ``study.ask()``, whose storage calls this object answers: the
query for WAITING trials, then ``create_new_trial`` or the claim of a WAITING trial.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial
from optuna.trial import TrialState

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


class RunnerThread:
    """A runner thread's claimed trial, until Optuna's ``ask`` has taken it."""

    def __init__(self, study_id: int, trial_id: int, was_waiting: bool) -> None:
        self.study_id = study_id
        self.reserved: int | None = trial_id
        self.was_waiting = was_waiting
        self.snapshot = True

    def waiting_view(self, storage: BaseStorage) -> list[FrozenTrial]:
        """What ``ask`` sees as the study's WAITING trials: the claimed one, as it was
        before the claim, if it was WAITING; else none, so that ``ask`` creates a trial."""
        if not self.was_waiting or self.reserved is None:
            return []
        trial = copy.copy(storage.get_trial(self.reserved))
        trial.state = TrialState.WAITING
        return [trial]

    def take(self, study_id: int, was_waiting: bool) -> int:
        if study_id != self.study_id or was_waiting != self.was_waiting:
            raise RuntimeError(
                "Optuna's ask() did not take the trial dasktune claimed for it; this Optuna "
                "version is not supported by dasktune.optimize's runners."
            )
        trial_id, self.reserved = self.reserved, None
        assert trial_id is not None
        return trial_id

    def take_waiting(self, trial_id: int) -> bool:
        if trial_id != self.reserved:
            return False  # another WAITING trial: the claimed one is ours
        return self.take(self.study_id, was_waiting=True) == trial_id
