"""A process's local copy of the studies it reads, kept current by deltas.

Free of Dask so it can be tested alone. Each :class:`StudyReplica` holds the study's trials
as ``FrozenTrial`` objects (indexed by number) and the cursor into the scheduler's change
log up to which it is current. A delta from the scheduler replaces the trials it names and
moves the cursor; a delta older than the cursor (replies can overtake one another when
threads share a storage) is ignored, since a newer one already covered it. Two exceptions
keep what this process knows better: a trial with writes of this process the scheduler has
not acknowledged yet keeps its local form unless the delta says it finished elsewhere, and
a finished trial never goes back to running (a reply sent before this process told it).

Trial objects are never modified once handed out: a local write replaces the trial with a
changed copy, as Optuna's ``InMemoryStorage`` does, so lists returned earlier stay as they
were.
"""

from __future__ import annotations

import abc
from collections.abc import Container
import copy
from datetime import datetime
import math
import threading
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.exceptions import StorageInternalError
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune import compat
from dasktune.storage import wire


def better(value: float, number: int, best_value: float, best_number: int, maximize: bool) -> bool:
    """Whether a COMPLETE trial's value beats the best so far: the one rule shared by the
    replica, the dashboard and the progress bar. Ties go to the earlier trial, as Optuna's
    ``best_trial`` does; NaN never wins."""
    if math.isnan(value):
        return False
    if value == best_value or math.isnan(best_value):
        return math.isnan(best_value) or number < best_number
    return (value > best_value) == maximize


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

    def select(self, states: Container[TrialState] | None) -> list[FrozenTrial]:
        """Its trials in number order (those in ``states`` only, if given): Optuna's
        ``get_all_trials`` without the copy."""
        return list(self.trials) if states is None else [t for t in self.trials if t.state in states]

    def trial_id(self, number: int) -> int:
        """The id of its trial ``number``; ``KeyError`` with Optuna's message if none."""
        if not 0 <= number < len(self.trials):
            raise KeyError(
                f"No trial with trial number {number} exists in study with study_id {self.study_id}."
            )
        return compat.trial_id(self.trials[number])

    def is_better(self, trial: FrozenTrial) -> bool:
        if trial.state != TrialState.COMPLETE or len(self.directions) != 1 or not trial.values:
            return False  # (a storage may hold a COMPLETE trial without values)
        if self.best is None:
            return not math.isnan(trial.values[0])
        return better(
            trial.values[0],
            trial.number,
            self.best.values[0],
            self.best.number,
            self.directions[0] == StudyDirection.MAXIMIZE,
        )


class Replica:
    """Local copies of studies, by id, with an index from trial id to study and number."""

    def __init__(self) -> None:
        #: Epoch of the scheduler-side host the cursors refer to.
        self.epoch: str | None = None
        self.studies: dict[int, StudyReplica] = {}
        self._index: dict[int, tuple[int, int]] = {}
        #: Trial id -> address of the worker that runs or ran it (what the scheduler knows).
        self.workers: dict[int, str] = {}

    def reset(self, epoch: str) -> None:
        """Forget everything: the host was rebuilt, so every cursor is void."""
        self.epoch = epoch
        self.studies.clear()
        self._index.clear()
        self.workers.clear()

    def cursors(self) -> list[list[int]]:
        return [[study_id, study.cursor] for study_id, study in self.studies.items()]

    def drop(self, study_id: int) -> None:
        study = self.studies.pop(study_id, None)
        if study is not None:
            for trial in study.trials:
                self._index.pop(compat.trial_id(trial), None)
                self.workers.pop(compat.trial_id(trial), None)

    def apply(self, delta: wire.Delta, keep: Container[int] = ()) -> None:
        """Apply a delta from the scheduler. ``keep``: ids of the trials with writes of this
        process not yet acknowledged, whose local form stays unless the delta says they
        finished."""
        study_id, cursor, meta = delta["study"], delta["cursor"], delta["meta"]
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
        unpacked = [wire.unpack_trial(packed) for packed in delta["trials"]]
        for data in sorted(unpacked, key=lambda d: d["number"]):
            if data["worker"] is not None:
                self.workers[data["id"]] = data["worker"]
            local = self.trial(data["id"])
            if local is not None and not TrialState(data["state"]).is_finished():
                if local.state.is_finished() or data["id"] in keep:
                    continue
            self._put(study, wire.decode_trial(data))

    def merge(self, reply: wire.Reply, keep: Container[int] = ()) -> None:
        """Bring the replica up to date from a reply of the scheduler's storage routes: its
        deltas (see :meth:`apply` for ``keep``), the studies it says are gone, a new epoch."""
        if reply["epoch"] != self.epoch:
            self.reset(reply["epoch"])
        for delta in reply["deltas"]:
            self.apply(delta, keep=keep)
        for study_id in reply["missing"]:
            self.drop(study_id)

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
        study_id, _ = self._index[compat.trial_id(trial)]
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
        self._index[compat.trial_id(trial)] = (study.study_id, trial.number)
        study.distributions.update(trial.distributions)
        if study.is_better(trial):
            study.best = trial


class ReplicaReads:
    """The reads every storage kept in a :class:`Replica` answers alike — the ``DaskStorage``
    proxy and the dashboard's ``HostStorage``, which differ only in how they bring a study's
    replica up to date (their ``_study``). Mixed in before Optuna's ``BaseStorage``."""

    _replica: Replica
    _lock: threading.RLock

    @abc.abstractmethod  # abstract through BaseStorage's ABCMeta
    def _study(self, study_id: int) -> StudyReplica:
        """The replica of ``study_id``, up to date; ``KeyError`` if there is no such study."""

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._study(study_id).user_attrs

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._study(study_id).system_attrs

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        study = self._study(study_id)
        with self._lock:
            trials = study.select(states)
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        study = self._study(study_id)
        with self._lock:
            return study.trial_id(trial_number)
