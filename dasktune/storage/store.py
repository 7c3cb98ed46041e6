"""What the scheduler stores for one named storage, free of Dask so it can be tested alone.

A :class:`Store` owns the real Optuna storage (the *backend*) and keeps beside it a mirror of
every trial in the one form readers are sent — its wire form packed into msgpack bytes —
plus, per study, a change log of the trial ids each write touched
(:mod:`dasktune.storage.changelog`, compacted as it grows). That log is what makes the
question every client asks — "what changed in study S since my cursor c?" — cost
O(changes): the answer is the trial ids logged since ``c``, whose bytes are at hand.

The backend is the single source of truth: every write goes to it first (so its errors are
Optuna's own), and the touched trials are then re-read from it into the mirror, once per
batch of operations (:meth:`refresh`). Reads are answered from the mirror and never touch the
backend, so a database backend sees only writes.

Beside the trials, the store keeps what only the scheduler knows and a trial should not
carry: which worker runs (ran) each trial, and the heartbeats of running ones. It knows
nothing of ``dasktune.optimize``'s runs (see :mod:`dasktune.storage.runs`): it reports which
trials finished, and the host passes that on.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
import contextlib
import json
import threading
import time
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from dasktune import compat
from dasktune.storage import backends
from dasktune.storage import wire
from dasktune.storage.changelog import ChangeLog
from dasktune.storage.changelog import STUDY_CHANGED


class Store:
    """One named storage on the scheduler: backend, wire mirror, change logs, liveness.

    Thread-safety: writes may run on a thread of their own (blocking backends run off the
    scheduler's event loop, one batch of operations at a time), while :meth:`deltas` and the
    other reads run on the loop. The mirror is guarded by a lock that is never held across a
    backend call.
    """

    def __init__(self, backend: BaseStorage) -> None:
        self.backend = backend
        self._lock = threading.Lock()
        self._studies: dict[int, dict[str, Any]] = {}
        self._names: dict[str, int] = {}
        #: Every trial's wire form, packed once per change (what deltas carry): the mirror.
        self._packed: dict[int, bytes] = {}
        self._states: dict[int, int] = {}  # trial id -> its TrialState value
        self._trial_study: dict[int, int] = {}
        self._logs: dict[int, ChangeLog] = {}
        #: RUNNING trial id -> (time of its last heartbeat, grace period of its storage).
        self._heartbeats: dict[int, tuple[float, float]] = {}
        #: Trials written since the last :meth:`refresh`, to re-read from the backend once.
        self._dirty: dict[int, int] = {}
        #: WAITING trials of each study, oldest first, for runners to claim before new ones.
        self._waiting: dict[int, dict[int, None]] = {}
        #: Trial id -> address of the worker that runs or ran it (for display, and to fail
        #: the RUNNING ones when the scheduler removes that worker). Never written to the
        #: trial: it is the scheduler's knowledge, not the user's data.
        self._workers: dict[int, str] = {}
        self._running_on: dict[int, str] = {}  # the RUNNING subset of ``_workers``
        for data in wire.dump_storage(backend):
            trials = data.pop("trials")
            self._add_study(data)
            for trial in trials:
                self._put_trial(data["id"], trial)
                if trial["state"] == TrialState.RUNNING.value:
                    # Whoever ran it was connected to a scheduler that is gone: the trial
                    # can never be told. Fail it rather than leave a zombie.
                    self.fail(trial["id"], "the scheduler stopped while it ran")
        self.refresh()

    # -- studies -----------------------------------------------------------------------

    def create_new_study(self, directions: list[int], study_name: str | None) -> int:
        study_id = self.backend.create_new_study(wire.decode_directions(directions), study_name)
        name = self.backend.get_study_name_from_id(study_id)
        with self._lock:
            self._add_study(
                {
                    "id": study_id,
                    "name": name,
                    "directions": directions,
                    "user_attrs": "{}",
                    "system_attrs": "{}",
                }
            )
        return study_id

    def delete_study(self, study_id: int) -> None:
        """Delete the study and everything kept of it and its trials."""
        self.backend.delete_study(study_id)
        with self._lock:
            study = self._studies.pop(study_id)
            del self._names[study["name"]]
            self._waiting.pop(study_id, None)
            for trial_id in self._logs.pop(study_id).ids():
                self._states.pop(trial_id, None)
                self._packed.pop(trial_id, None)
                self._trial_study.pop(trial_id, None)
                self._heartbeats.pop(trial_id, None)
                self._workers.pop(trial_id, None)
                self._running_on.pop(trial_id, None)
                self._dirty.pop(trial_id, None)

    def set_study_user_attr(self, study_id: int, key: str, value: str) -> None:
        self.backend.set_study_user_attr(study_id, key, json.loads(value))
        self._set_study_attr(study_id, "user_attrs", key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: str) -> None:
        self.backend.set_study_system_attr(study_id, key, json.loads(value))
        self._set_study_attr(study_id, "system_attrs", key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        with self._lock:
            if study_name not in self._names:
                raise KeyError(f"No such study {study_name}.")
            return self._names[study_name]

    def get_all_studies(self) -> list[wire.StudyMeta]:
        with self._lock:
            return [self._study_meta(study_id) for study_id in sorted(self._studies)]

    def study_ids(self) -> list[int]:
        with self._lock:
            return list(self._studies)

    def study_name(self, study_id: int) -> str:
        with self._lock:
            self.check_study(study_id)
            return str(self._studies[study_id]["name"])

    # -- trials ------------------------------------------------------------------------

    def create_new_trial(
        self, study_id: int, template: wire.Trial | None, worker: str | None = None
    ) -> int:
        trial = None if template is None else wire.decode_trial(template)
        created_before = compat.journal_created_trial(self.backend, read_back=False)
        try:
            trial_id = self.backend.create_new_trial(study_id, template_trial=trial)
        except Exception as error:
            # A journal may have appended the trial and lost the reply: read it back rather
            # than leave a trial RUNNING that nobody knows of (the caller would ask again).
            if created_before is None or backends.lost_connection(error) is None:
                raise
            created = compat.journal_created_trial(self.backend, read_back=True)
            if created is None or created == created_before:
                raise
            trial_id = created
        self._dirty[trial_id] = study_id
        if trial is None or trial.state == TrialState.RUNNING:
            self._runs_on(trial_id, worker)
        return trial_id

    def start_trials(self, study_id: int, n: int, worker: str | None) -> list[int]:
        """Start ``n`` trials of the study for ``worker``: its oldest WAITING trials
        (enqueued, or retries) first, then new ones."""
        started: list[int] = []
        waiting = self._waiting.get(study_id, {})
        try:
            while waiting and len(started) < n:
                candidate = next(iter(waiting))
                del waiting[candidate]
                with self._writing(candidate):
                    claimed = self.backend.set_trial_state_values(candidate, TrialState.RUNNING)
                if claimed:
                    self._runs_on(candidate, worker)
                    started.append(candidate)
            while len(started) < n:
                started.append(self.create_new_trial(study_id, None, worker))
        except Exception:
            # No run will hold what was started before the error: WAITING again, for the
            # next claim (best effort: the database may be refusing every write just now).
            for trial_id in started:
                with contextlib.suppress(Exception):
                    self.requeue(trial_id)
            raise
        return started

    def set_trial_param(self, trial_id: int, name: str, value: float, distribution: str) -> None:
        with self._writing(trial_id):
            self.backend.set_trial_param(trial_id, name, value, wire.decode_distribution(distribution))

    def set_trial_state_values(
        self, trial_id: int, state: int, values: list[float] | None, worker: str | None = None
    ) -> bool:
        with self._writing(trial_id):
            changed = self.backend.set_trial_state_values(trial_id, TrialState(state), values)
        if changed and state == TrialState.RUNNING.value:
            self._runs_on(trial_id, worker)
        return changed

    def set_trial_intermediate_value(self, trial_id: int, step: int, value: float) -> None:
        with self._writing(trial_id):
            self.backend.set_trial_intermediate_value(trial_id, step, value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: str) -> None:
        with self._writing(trial_id):
            self.backend.set_trial_user_attr(trial_id, key, json.loads(value))

    def set_trial_system_attr(self, trial_id: int, key: str, value: str) -> None:
        with self._writing(trial_id):
            self.backend.set_trial_system_attr(trial_id, key, json.loads(value))

    def fail(self, trial_id: int, reason: str) -> bool:
        """Fail a RUNNING trial, recording ``reason`` in its ``fail_reason`` system
        attribute; ``False`` if it had finished meanwhile."""
        try:
            with self._writing(trial_id):
                self.backend.set_trial_system_attr(trial_id, wire.FAIL_REASON, reason)
                self.backend.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            return False
        return True

    def requeue(self, trial_id: int) -> bool:
        """Make a RUNNING trial that never started WAITING again (for the next claim);
        ``False`` if it had finished meanwhile."""
        try:
            with self._writing(trial_id):
                if not self.backend.set_trial_state_values(trial_id, TrialState.WAITING):
                    return False
        except UpdateFinishedTrialError:
            return False
        self._workers.pop(trial_id, None)  # no worker ran it
        return True

    def retry(self, trial_id: int, retries: int) -> int | None:
        """Enqueue a copy of a failed trial with its parameters, as Optuna's
        ``RetryFailedTrialCallback`` records it, unless ``retries`` are used up; the id of
        the new WAITING trial, or ``None``."""
        trial = self.backend.get_trial(trial_id)
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if len(history) > retries:
            return None
        template = optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=trial.user_attrs,
            system_attrs={
                # Parameters it was enqueued with count too: its own may not have been sent.
                "fixed_params": {**trial.system_attrs.get("fixed_params", {}), **trial.params},
                "failed_trial": trial.system_attrs.get("failed_trial", trial.number),
                "retry_history": history,
            },
        )
        study_id = self._trial_study[trial_id]
        new_id = self.backend.create_new_trial(study_id, template_trial=template)
        self._dirty[new_id] = study_id
        return new_id

    def locate_trial(self, trial_id: int) -> int:
        """Id of the study that holds ``trial_id``."""
        with self._lock:
            self.check_trial(trial_id)
            return self._trial_study[trial_id]

    def running_on(self, worker: str) -> list[int]:
        """The RUNNING trials that ``worker`` started."""
        return [trial_id for trial_id, w in self._running_on.items() if w == worker]

    # -- heartbeats --------------------------------------------------------------------

    def record_heartbeat(self, trial_id: int, grace_period: float) -> None:
        with self._lock:
            self.check_trial(trial_id)
            if self._states[trial_id] == TrialState.RUNNING.value:
                self._heartbeats[trial_id] = (time.monotonic(), grace_period)

    def get_stale_trial_ids(self, study_id: int, grace_period: float) -> list[int]:
        """RUNNING trials of ``study_id`` whose last heartbeat is older than ``grace_period``."""
        with self._lock:
            self.check_study(study_id)
            return [
                trial_id
                for trial_id, age, _ in self._heartbeat_ages()
                if age > grace_period and self._trial_study[trial_id] == study_id
            ]

    def long_stale_trials(self, margin: float) -> list[tuple[int, float]]:
        """``(trial id, seconds)`` of RUNNING trials whose heartbeat stopped ``margin``
        seconds beyond their grace period: the scheduler's own sweep fails them, so that a
        study nobody optimizes any more keeps no zombie RUNNING trial. The margin leaves
        ``optuna.storages.fail_stale_trials`` (which runs the stale-trial callback, e.g. a
        retry) the first chance, as clients call it, even from a busy machine."""
        with self._lock:
            return [(t, age) for t, age, grace in self._heartbeat_ages() if age > grace + margin]

    def _heartbeat_ages(self) -> list[tuple[int, float, float]]:
        now = time.monotonic()
        return [(t, now - beat, grace) for t, (beat, grace) in self._heartbeats.items()]

    # -- the mirror --------------------------------------------------------------------

    def refresh(self) -> list[int]:
        """Re-read the trials written since the last refresh into the mirror; the ids of
        those that finished (COMPLETE, PRUNED or FAIL) with these writes."""
        fresh = [
            (study_id, self.backend.get_trial(trial_id))
            for trial_id, study_id in self._dirty.items()
        ]
        self._dirty.clear()
        finished = []
        with self._lock:
            for study_id, trial in fresh:
                data = wire.encode_trial(trial, self._workers.get(compat.trial_id(trial)))
                old = self._states.get(data["id"])
                if trial.state.is_finished() and old != data["state"]:
                    finished.append(data["id"])
                self._put_trial(study_id, data)
        return finished

    def deltas(
        self, cursors: dict[int, int], studies: Iterable[int]
    ) -> tuple[list[wire.Delta], list[int]]:
        """What changed in ``studies`` since each reader's cursor (0 when it has none).

        Returns the deltas and the ids of the studies that do not exist (any more).
        """
        deltas: list[wire.Delta] = []
        missing = []
        with self._lock:
            for study_id in studies:
                log = self._logs.get(study_id)
                if log is None:
                    missing.append(study_id)
                    continue
                cursor = cursors.get(study_id, 0)
                if cursor == log.end:
                    continue
                changed = log.since(cursor)
                deltas.append(
                    {
                        "study": study_id,
                        "cursor": log.end,
                        "trials": [self._packed[t] for t in changed if t != STUDY_CHANGED],
                        "meta": self._study_meta(study_id) if STUDY_CHANGED in changed else None,
                    }
                )
        return deltas, missing

    def dump(self) -> list[dict[str, Any]]:
        """Every study and its trials, in wire form."""
        with self._lock:
            return [
                {
                    **self._study_meta(study_id),
                    "trials": sorted(
                        (wire.unpack_trial(self._packed[t]) for t in self._logs[study_id].ids()
                         if t != STUDY_CHANGED),
                        key=lambda trial: int(trial["number"]),
                    ),
                }
                for study_id in sorted(self._studies)
            ]

    def sizes(self) -> dict[str, int]:
        """How much the store keeps, by kind (its bookkeeping, for bounds and metrics)."""
        with self._lock:
            return {
                "studies": len(self._studies),
                "trials": len(self._packed),
                "log entries": sum(map(len, self._logs.values())),
                "heartbeats": len(self._heartbeats),
                "trials known to run": len(self._running_on),
                "trials' workers": len(self._workers),
            }

    def study_of(self, trial_id: int) -> int | None:
        return self._trial_study.get(trial_id)

    def check_trial(self, trial_id: int) -> None:
        if trial_id not in self._trial_study:
            raise KeyError(f"No trial with trial_id {trial_id} exists.")

    def check_study(self, study_id: int) -> None:
        if study_id not in self._studies:
            raise KeyError(f"No study with study_id {study_id} exists.")

    # -- internals ---------------------------------------------------------------------

    def _runs_on(self, trial_id: int, worker: str | None) -> None:
        if worker is not None:
            self._workers[trial_id] = self._running_on[trial_id] = worker

    def _touch(self, trial_id: int) -> None:
        self._dirty[trial_id] = self._trial_study[trial_id]

    @contextlib.contextmanager
    def _writing(self, trial_id: int) -> Iterator[None]:
        """A write to ``trial_id``, which is read back from the backend afterwards even if
        the write raised: a journal may have applied a write whose reply it lost, and a
        trial left as the mirror last saw it would never be seen to finish."""
        try:
            yield
        finally:
            if trial_id in self._trial_study:
                self._touch(trial_id)

    def _put_trial(self, study_id: int, data: wire.Trial) -> None:
        trial_id, state = data["id"], TrialState(data["state"])
        self._states[trial_id] = data["state"]
        self._packed[trial_id] = wire.pack_trial(data)
        self._trial_study[trial_id] = study_id
        self._logs[study_id].append(trial_id)
        if state == TrialState.WAITING:
            self._waiting.setdefault(study_id, {})[trial_id] = None
        else:
            self._waiting.get(study_id, {}).pop(trial_id, None)
        if state != TrialState.RUNNING:
            self._heartbeats.pop(trial_id, None)
            self._running_on.pop(trial_id, None)

    def _add_study(self, meta: dict[str, Any]) -> None:
        meta = dict(meta)
        meta["user_attrs"] = json.loads(meta["user_attrs"])
        meta["system_attrs"] = json.loads(meta["system_attrs"])
        self._studies[meta["id"]] = meta
        self._names[meta["name"]] = meta["id"]
        self._logs[meta["id"]] = log = ChangeLog()
        log.append(STUDY_CHANGED)

    def _set_study_attr(self, study_id: int, kind: str, key: str, value: str) -> None:
        with self._lock:
            self._studies[study_id][kind] = {**self._studies[study_id][kind], key: json.loads(value)}
            self._logs[study_id].append(STUDY_CHANGED)

    def _study_meta(self, study_id: int) -> wire.StudyMeta:
        study = self._studies[study_id]
        return {
            "id": study["id"],
            "name": study["name"],
            "directions": study["directions"],
            "user_attrs": wire.encode_attrs(study["user_attrs"]),
            "system_attrs": wire.encode_attrs(study["system_attrs"]),
        }
