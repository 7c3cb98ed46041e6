"""A process's local copy of the studies it reads, kept current by deltas.

Free of Dask so it can be tested alone. Each :class:`StudyReplica` holds the study's trials
as ``FrozenTrial`` objects (indexed by number) and the cursor into the scheduler's change
log up to which it is current. A delta from the scheduler replaces the trials it names and
moves the cursor; a delta older than the cursor (replies can overtake one another when
threads share a storage) is ignored, since a newer one already covered it.

Trial objects are never modified once handed out: a local write replaces the trial with a
changed copy, as Optuna's ``InMemoryStorage`` does, so lists returned earlier stay as they
were.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.exceptions import StorageInternalError
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune.storage import wire


class StudyReplica:
    """The local copy of one study."""

    def __init__(self, study_id: int) -> None:
        self.study_id = study_id
        self.name = ""
        self.directions: list[StudyDirection] = []
        self.user_attrs: dict[str, Any] = {}
        self.system_attrs: dict[str, Any] = {}
        self.trials: list[FrozenTrial] = []
        self.cursor = 0
        #: Distribution of each parameter name seen in the study, for compatibility checks.
        self.distributions: dict[str, BaseDistribution] = {}
        #: Best COMPLETE trial of a single-objective study, kept as trials finish.
        self.best: FrozenTrial | None = None

    def is_better(self, trial: FrozenTrial) -> bool:
        if trial.state != TrialState.COMPLETE or len(self.directions) != 1:
            return False
        if self.best is None:
            return True
        value, best = trial.values[0], self.best.values[0]
        if value == best:
            return trial.number < self.best.number
        return (value > best) == (self.directions[0] == StudyDirection.MAXIMIZE)


class Replica:
    """Local copies of studies, by id, with an index from trial id to study and number."""

    def __init__(self) -> None:
        #: Epoch of the scheduler-side host the cursors refer to.
        self.epoch: str | None = None
        self.studies: dict[int, StudyReplica] = {}
        self._index: dict[int, tuple[int, int]] = {}

    def reset(self, epoch: str) -> None:
        """Forget everything: the host was rebuilt, so every cursor is void."""
        self.epoch = epoch
        self.studies.clear()
        self._index.clear()

    def cursors(self) -> list[list[int]]:
        return [[study_id, study.cursor] for study_id, study in self.studies.items()]

    def drop(self, study_id: int) -> None:
        study = self.studies.pop(study_id, None)
        if study is not None:
            for trial in study.trials:
                self._index.pop(trial._trial_id, None)

    def apply(self, delta: list[Any]) -> None:
        """Apply ``[study_id, cursor, packed wire trials, study meta or None]`` from the
        scheduler."""
        study_id, cursor, trials, meta = delta
        study = self.studies.get(study_id)
        if study is None:
            study = self.studies[study_id] = StudyReplica(study_id)
        elif cursor <= study.cursor:
            return
        study.cursor = cursor
        if meta is not None:
            study.name = meta["name"]
            study.directions = wire.decode_directions(meta["directions"])
            study.user_attrs = wire.decode_attrs(meta["user_attrs"])
            study.system_attrs = wire.decode_attrs(meta["system_attrs"])
        decoded = (wire.decode_trial(wire.unpack_trial(packed)) for packed in trials)
        for trial in sorted(decoded, key=lambda t: t.number):
            self._put(study, trial)

    def study_of(self, trial_id: int) -> int | None:
        located = self._index.get(trial_id)
        return None if located is None else located[0]

    def trial(self, trial_id: int) -> FrozenTrial | None:
        located = self._index.get(trial_id)
        if located is None:
            return None
        study_id, number = located
        return self.studies[study_id].trials[number]

    # -- local writes (this process's own, applied before the scheduler confirms) ----

    def set_param(
        self, trial_id: int, name: str, value: float, distribution: BaseDistribution
    ) -> None:
        trial = self._copy(trial_id)
        trial.params = {**trial.params, name: distribution.to_external_repr(value)}
        trial.distributions = {**trial.distributions, name: distribution}
        self._replace(trial)

    def set_intermediate_value(self, trial_id: int, step: int, value: float) -> None:
        trial = self._copy(trial_id)
        trial.intermediate_values = {**trial.intermediate_values, step: value}
        self._replace(trial)

    def set_state(
        self, trial_id: int, state: TrialState, values: list[float] | None
    ) -> None:
        trial = self._copy(trial_id)
        trial.state = state
        if values is not None:
            trial.values = values
        if state.is_finished():
            trial.datetime_complete = datetime.now()
        self._replace(trial)

    def set_attr(self, trial_id: int, kind: str, key: str, value: Any) -> None:
        trial = self._copy(trial_id)
        setattr(trial, kind, {**getattr(trial, kind), key: value})
        self._replace(trial)

    # -- internals -------------------------------------------------------------------

    def _copy(self, trial_id: int) -> FrozenTrial:
        trial = self.trial(trial_id)
        assert trial is not None, "local writes follow a check that the trial is known"
        return copy.copy(trial)

    def _replace(self, trial: FrozenTrial) -> None:
        study_id, _ = self._index[trial._trial_id]
        self._put(self.studies[study_id], trial)

    def _put(self, study: StudyReplica, trial: FrozenTrial) -> None:
        if trial.number < len(study.trials):
            study.trials[trial.number] = trial
        elif trial.number == len(study.trials):
            study.trials.append(trial)
        else:
            raise StorageInternalError(
                f"Trial number {trial.number} of study {study.study_id} arrived before trial "
                f"{len(study.trials)}; the replica cannot be kept in order."
            )
        self._index[trial._trial_id] = (study.study_id, trial.number)
        study.distributions.update(trial.distributions)
        if study.is_better(trial):
            study.best = trial
