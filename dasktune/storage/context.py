"""What a thread is doing with the trial it runs, as its DaskStorage needs to know.

- **Snapshot reads.** From the moment a trial starts until it reports an intermediate value
  or ends, the thread reads its study from the replica as the trial's start brought it —
  samplers see one consistent snapshot per trial, as Optuna's own per-trial cache gives
  them, without a round trip per read. Reporting ends the snapshot: pruners then read the
  other trials' latest values.
- **Claims** (``dasktune.optimize``'s runners). A runner claims a trial from the scheduler,
  one round trip that enforces the run's budget, then calls Optuna's own ``study.ask()``,
  whose storage calls the context answers: the query for WAITING trials, then
  ``create_new_trial`` or the claim of a WAITING trial. A runner's tell is then deferred to
  its next claim (one round trip per trial).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial
from optuna.trial import TrialState

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


class TrialContext:
    """The trial a thread runs in ``study_id``: claimed (``reserved``, until ``ask`` takes
    it) by a runner (``runner``), or started by Optuna's own ``ask``."""

    def __init__(
        self, study_id: int, trial_id: int | None, was_waiting: bool, runner: bool
    ) -> None:
        self.study_id = study_id
        self.reserved = trial_id
        self.was_waiting = was_waiting
        self.runner = runner
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
