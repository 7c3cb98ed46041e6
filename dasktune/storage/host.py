"""The scheduler's side of one named storage, free of Dask so it can be tested alone.

A :class:`StorageHost` owns the real Optuna storage (the *backend*) and keeps beside it a
mirror of every study and trial in wire form, plus, per study, an append-only change log
of the trial ids each write touched. That log is what makes the question every client asks
— "what changed in study S since my cursor c?" — cost O(changes): the answer is the set of
trial ids in ``log[c:]``, whose current wire form is already at hand.

The backend is the single source of truth: every write goes to it first (so its errors
are Optuna's own), and the touched trials are then re-read from it into the mirror. Reads
are answered from the mirror and never touch the backend, so a database backend sees only
writes.

Writes arrive as *operations* ``[name, args, request_id]``. A request id that was already
applied returns the stored result instead of applying again, so a client that retries after
a dropped connection cannot create a second trial.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Iterable
import json
import threading
import time
from typing import Any
import uuid

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from dasktune.storage import wire
from dasktune.storage.runs import FAIL_REASON
from dasktune.storage.runs import Run
from dasktune.storage.runs import WORKER

#: How many request ids of applied writes are remembered for idempotent retries.
_REMEMBERED_REQUESTS = 100_000
#: Marks a change to the study itself (attributes) in a change log of trial ids.
STUDY_CHANGED = -1

Delta = list[Any]  # [study_id, cursor, [packed wire trials], study meta or None]


class StorageHost:
    """One named storage on the scheduler: backend, wire mirror, change logs, heartbeats.

    Thread-safety: :meth:`execute` may run on a worker thread (blocking backends run off the
    scheduler's event loop, one operation at a time), while :meth:`deltas` runs on the loop.
    The mirror is guarded by a lock that is never held across a backend call.
    """

    def __init__(self, backend: BaseStorage, url: str | None) -> None:
        self.backend = backend
        self.url = url
        #: Changes when the host is rebuilt (scheduler restart): client cursors are then void.
        self.epoch = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._studies: dict[int, dict[str, Any]] = {}
        self._names: dict[str, int] = {}
        self._trials: dict[int, wire.Trial] = {}
        #: The same trials packed (what deltas carry), packed once per change.
        self._packed: dict[int, bytes] = {}
        self._trial_study: dict[int, int] = {}
        self._logs: dict[int, list[int]] = {}
        self._applied: OrderedDict[str, Any] = OrderedDict()
        #: RUNNING trial id -> (time of its last heartbeat, grace period of its storage).
        self._heartbeats: dict[int, tuple[float, float]] = {}
        #: Trials written by the operations of the current :meth:`execute`, re-read from the
        #: backend once at its end however many operations touched them.
        self._dirty: dict[int, int] = {}
        #: WAITING trials of each study, oldest first, for runners to claim before new ones.
        self._waiting: dict[int, dict[int, None]] = {}
        self.runs: dict[str, Run] = {}
        self._run_of: dict[int, Run] = {}  # RUNNING trial id -> the run that claimed it
        #: RUNNING trials started by a worker process -> its address, to fail them (and
        #: retry those of runs) when the scheduler removes that worker.
        self._running_on: dict[int, str] = {}
        self._caller: str | None = None  # worker address of the request being executed
        for data in wire.dump_storage(backend):
            trials = data.pop("trials")
            self._add_study(data)
            for trial in trials:
                self._put_trial(data["id"], trial)
                self._track_state(data["id"], trial)
                if trial["state"] == TrialState.RUNNING.value:
                    # Whoever ran it was connected to a scheduler that is gone: the trial
                    # can never be told. Fail it rather than leave a zombie.
                    self.backend.set_trial_system_attr(
                        trial["id"], FAIL_REASON, "the scheduler stopped while it ran"
                    )
                    self.backend.set_trial_state_values(trial["id"], TrialState.FAIL)
                    self._dirty[trial["id"]] = data["id"]
        self._refresh_dirty()

    # -- operations ------------------------------------------------------------------

    def execute(
        self, ops: list[list[Any]], worker: str | None = None
    ) -> tuple[list[Any], list[Any] | None]:
        """Apply ``ops`` in order; stop at the first failure. ``worker`` is the address of
        the worker process that sent them, if a worker did.

        Returns the results of the operations that ran and ``None``, or those results and
        ``[index, type_name, message]`` for the one that failed.
        """
        results: list[Any] = []
        self._caller = worker
        try:
            for index, (name, args, request_id) in enumerate(ops):
                if request_id is not None and request_id in self._applied:
                    results.append(self._applied[request_id])
                    continue
                handler = OPERATIONS.get(name)
                try:
                    if handler is None:
                        raise ValueError(f"Unknown storage operation {name!r}.")
                    result = handler(self, *args)
                except Exception as e:  # every error goes back to the caller as data
                    return results, [index, *wire.encode_error(e)]
                if request_id is not None:
                    self._applied[request_id] = result
                    if len(self._applied) > _REMEMBERED_REQUESTS:
                        self._applied.popitem(last=False)
                results.append(result)
            return results, None
        finally:
            self._refresh_dirty()
            self._caller = None

    def touched_studies(self, ops: list[list[Any]], results: list[Any]) -> set[int]:
        """Studies changed by the operations that ran, whose replicas a client must refresh."""
        touched = set()
        with self._lock:
            for (name, args, _), result in zip(ops, results):
                if name == "create_new_study":
                    touched.add(result)
                elif name in _BY_STUDY:
                    touched.add(args[0])
                elif name in _BY_TRIAL and args[0] in self._trial_study:
                    touched.add(self._trial_study[args[0]])
                elif name == "claim_trial" and result is not None:
                    touched.add(self._trial_study[result[0]])
                elif name == "abort_run":
                    touched.add(self.runs[args[0]].study_id)
        return touched

    def deltas(
        self, cursors: dict[int, int], studies: Iterable[int]
    ) -> tuple[list[Delta], list[int]]:
        """What changed in ``studies`` since each client's cursor (0 when it has none).

        Returns the deltas and the ids of the studies that do not exist (any more).
        """
        deltas, missing = [], []
        with self._lock:
            for study_id in studies:
                log = self._logs.get(study_id)
                if log is None:
                    missing.append(study_id)
                    continue
                cursor = cursors.get(study_id, 0)
                if cursor > len(log):  # a cursor from another host: start over
                    cursor = 0
                if cursor == len(log):
                    continue
                changed = dict.fromkeys(log[cursor:])
                meta = self._study_meta(study_id) if STUDY_CHANGED in changed else None
                trials = [self._packed[t] for t in changed if t != STUDY_CHANGED]
                deltas.append([study_id, len(log), trials, meta])
        return deltas, missing

    def dump(self) -> list[dict[str, Any]]:
        """Every study and its trials, in wire form."""
        with self._lock:
            return [
                {
                    **self._study_meta(study_id),
                    "trials": [
                        self._trials[t] for t in dict.fromkeys(self._logs[study_id]) if t >= 0
                    ],
                }
                for study_id in sorted(self._studies)
            ]

    # -- study operations ------------------------------------------------------------

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
        self.backend.delete_study(study_id)
        with self._lock:
            study = self._studies.pop(study_id)
            del self._names[study["name"]]
            for trial_id in self._logs.pop(study_id):
                self._trials.pop(trial_id, None)
                self._packed.pop(trial_id, None)
                self._trial_study.pop(trial_id, None)
                self._heartbeats.pop(trial_id, None)

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

    def get_all_studies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._study_meta(study_id) for study_id in sorted(self._studies)]

    # -- trial operations ------------------------------------------------------------

    def create_new_trial(self, study_id: int, template: wire.Trial | None) -> int:
        trial = None if template is None else wire.decode_trial(template)
        trial_id = self.backend.create_new_trial(study_id, template_trial=trial)
        self._dirty[trial_id] = study_id
        if trial is None or trial.state == TrialState.RUNNING:
            self._started(trial_id)
        return trial_id

    def set_trial_param(self, trial_id: int, name: str, value: float, distribution: str) -> None:
        self.backend.set_trial_param(
            trial_id, name, value, wire.decode_distribution(distribution)
        )
        self._touch(trial_id)

    def set_trial_state_values(
        self, trial_id: int, state: int, values: list[float] | None
    ) -> bool:
        changed = self.backend.set_trial_state_values(trial_id, TrialState(state), values)
        self._touch(trial_id)
        if changed and state == TrialState.RUNNING.value:
            self._started(trial_id)
        return changed

    def set_trial_intermediate_value(self, trial_id: int, step: int, value: float) -> None:
        self.backend.set_trial_intermediate_value(trial_id, step, value)
        self._touch(trial_id)

    def set_trial_user_attr(self, trial_id: int, key: str, value: str) -> None:
        self.backend.set_trial_user_attr(trial_id, key, json.loads(value))
        self._touch(trial_id)

    def set_trial_system_attr(self, trial_id: int, key: str, value: str) -> None:
        self.backend.set_trial_system_attr(trial_id, key, json.loads(value))
        self._touch(trial_id)

    def locate_trial(self, trial_id: int) -> int:
        """Id of the study that holds ``trial_id``."""
        with self._lock:
            self._check_trial(trial_id)
            return self._trial_study[trial_id]

    def record_heartbeat(self, trial_id: int, grace_period: float) -> None:
        with self._lock:
            self._check_trial(trial_id)
            if self._trials[trial_id]["state"] == TrialState.RUNNING.value:
                self._heartbeats[trial_id] = (time.monotonic(), grace_period)

    def get_stale_trial_ids(self, study_id: int, grace_period: float) -> list[int]:
        """RUNNING trials of ``study_id`` whose last heartbeat is older than ``grace_period``."""
        with self._lock:
            self._check_study(study_id)
            return [
                trial_id
                for trial_id, age, _ in self._heartbeat_ages()
                if age > grace_period and self._trial_study[trial_id] == study_id
            ]

    def fail_stale_trials(self) -> list[int]:
        """Fail RUNNING trials whose heartbeat stopped twice their grace period ago.

        The scheduler's own sweep, so that a study nobody optimizes any more keeps no zombie
        RUNNING trial. The margin leaves ``optuna.storages.fail_stale_trials`` (which runs
        the stale-trial callback, e.g. a retry) the first chance, as clients call it.
        """
        with self._lock:
            stale = [(t, age) for t, age, grace in self._heartbeat_ages() if age > 2 * grace]
        failed = []
        for trial_id, age in stale:
            try:
                self.backend.set_trial_system_attr(
                    trial_id, FAIL_REASON, f"no heartbeat for {age:.0f} s"
                )
                self.backend.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue
            failed.append(trial_id)
            self._touch(trial_id)
        self._refresh_dirty()
        return failed

    def _heartbeat_ages(self) -> list[tuple[int, float, float]]:
        now = time.monotonic()
        return [(t, now - beat, grace) for t, (beat, grace) in self._heartbeats.items()]

    # -- runs (budgets of dasktune.optimize) -----------------------------------------

    def open_run(
        self,
        run_id: str,
        study_id: int,
        n_trials: int | None,
        timeout: float | None,
        retries: int,
    ) -> dict[str, Any]:
        """Start accounting for one ``optimize`` call (again: the existing run's status)."""
        with self._lock:
            self._check_study(study_id)
            if run_id not in self.runs:
                deadline = None if timeout is None else time.monotonic() + timeout
                self.runs[run_id] = Run(run_id, study_id, n_trials, deadline, retries, timeout)
            return self.runs[run_id].status()

    def claim_trial(self, run_id: str) -> list[Any] | None:
        """Start a trial of ``run_id`` for the calling worker if the budget allows: the
        oldest WAITING trial of the study, else a new one. Returns ``[trial_id,
        was_waiting]`` or ``None``."""
        run = self._run(run_id)
        if not run.can_claim():
            return None
        waiting = self._waiting.get(run.study_id, {})
        trial_id, was_waiting = None, False
        for candidate in list(waiting):
            del waiting[candidate]
            if self.backend.set_trial_state_values(candidate, TrialState.RUNNING):
                trial_id, was_waiting = candidate, True
                break
        if trial_id is None:
            trial_id = self.backend.create_new_trial(run.study_id)
        self._dirty[trial_id] = run.study_id
        self._started(trial_id)
        run.claimed += 1
        run.running[trial_id] = self._caller or ""
        self._run_of[trial_id] = run
        return [trial_id, was_waiting]

    def register_runner(self, run_id: str) -> int:
        """A sequence number for a runner of ``run_id`` (0 for the first)."""
        run = self._run(run_id)
        run.runners += 1
        return run.runners - 1

    def stop_run(self, run_id: str, reason: str) -> dict[str, Any]:
        """Let no new trial of ``run_id`` start."""
        run = self._run(run_id)
        if run.stopped is None:
            run.stopped = reason
        return run.status()

    def abort_run(self, run_id: str, reason: str) -> None:
        """Stop ``run_id`` and fail its running trials, recording ``reason`` on them."""
        run = self._run(run_id)
        if run.stopped is None:
            run.stopped = reason
        for trial_id in list(run.running):
            self.backend.set_trial_system_attr(trial_id, FAIL_REASON, f"run {reason}")
            self.backend.set_trial_state_values(trial_id, TrialState.FAIL)
            self._dirty[trial_id] = run.study_id

    def run_status(self, run_id: str, since: int = 0) -> list[Any]:
        """``[status, ids of the trials that finished after the first since]``."""
        with self._lock:
            run = self._run(run_id)
            return [run.status(), run.finished_ids[since:]]

    def find_runs(self, study_id: int) -> list[dict[str, Any]]:
        """Status of every run of ``study_id``, oldest first."""
        return [run.status() for run in self.runs.values() if run.study_id == study_id]

    def fail_worker_trials(self, worker: str) -> list[int]:
        """Fail the RUNNING trials of ``worker``, which the scheduler removed; retry those of
        runs that have retries left. Returns the ids of the failed trials."""
        failed = []
        for trial_id in [t for t, w in self._running_on.items() if w == worker]:
            self._running_on.pop(trial_id)
            reason = f"worker {worker} died while running this trial"
            try:
                self.backend.set_trial_system_attr(trial_id, FAIL_REASON, reason)
                self.backend.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue  # it finished just before
            failed.append(trial_id)
            self._touch(trial_id)
            run = self._run_of.pop(trial_id, None)
            if run is not None:
                run.running.pop(trial_id, None)
                run.lost += 1
                if self._retry(trial_id, run.retries):
                    run.claimed -= 1  # the retry takes this trial's place in the budget
                else:
                    run.finished += 1
                    run.finished_ids.append(trial_id)
        self._refresh_dirty()
        return failed

    def _retry(self, trial_id: int, retries: int) -> bool:
        """Enqueue a copy of a lost trial with its parameters, as Optuna's
        ``RetryFailedTrialCallback`` records it, unless ``retries`` are used up."""
        trial = self.backend.get_trial(trial_id)
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if len(history) > retries:
            return False
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
        self._dirty[self.backend.create_new_trial(study_id, template_trial=template)] = study_id
        return True

    def _started(self, trial_id: int) -> None:
        """Record the worker that runs a trial now RUNNING (on the trial too, for display)."""
        if self._caller is not None:
            self._running_on[trial_id] = self._caller
            self.backend.set_trial_system_attr(trial_id, WORKER, self._caller)

    def _run(self, run_id: str) -> Run:
        if run_id not in self.runs:
            raise KeyError(f"No optimize run {run_id!r} on this storage.")
        return self.runs[run_id]

    # -- mirror ----------------------------------------------------------------------

    def _touch(self, trial_id: int) -> None:
        self._dirty[trial_id] = self._trial_study[trial_id]

    def _refresh_dirty(self) -> None:
        fresh = [
            (study_id, wire.encode_trial(self.backend.get_trial(trial_id)))
            for trial_id, study_id in self._dirty.items()
        ]
        self._dirty.clear()
        with self._lock:
            for study_id, data in fresh:
                self._put_trial(study_id, data)
                self._track_state(study_id, data)

    def _track_state(self, study_id: int, data: wire.Trial) -> None:
        """Keep the WAITING queue, heartbeats and run progress in step with a trial's state."""
        trial_id, state = data["id"], TrialState(data["state"])
        if state == TrialState.WAITING:
            self._waiting.setdefault(study_id, {})[trial_id] = None
        else:
            self._waiting.get(study_id, {}).pop(trial_id, None)
        if state != TrialState.RUNNING:
            self._heartbeats.pop(trial_id, None)
            self._running_on.pop(trial_id, None)
        if state.is_finished() and trial_id in self._run_of:
            run = self._run_of.pop(trial_id)
            run.running.pop(trial_id, None)
            run.finished += 1
            run.finished_ids.append(trial_id)

    def _put_trial(self, study_id: int, data: wire.Trial) -> None:
        self._trials[data["id"]] = data
        self._packed[data["id"]] = wire.pack_trial(data)
        self._trial_study[data["id"]] = study_id
        self._logs[study_id].append(data["id"])

    def _add_study(self, meta: dict[str, Any]) -> None:
        meta = dict(meta)
        meta["user_attrs"] = json.loads(meta["user_attrs"])
        meta["system_attrs"] = json.loads(meta["system_attrs"])
        self._studies[meta["id"]] = meta
        self._names[meta["name"]] = meta["id"]
        self._logs[meta["id"]] = [STUDY_CHANGED]

    def _set_study_attr(self, study_id: int, kind: str, key: str, value: str) -> None:
        with self._lock:
            self._studies[study_id][kind] = {**self._studies[study_id][kind], key: json.loads(value)}
            self._logs[study_id].append(STUDY_CHANGED)

    def _study_meta(self, study_id: int) -> dict[str, Any]:
        study = self._studies[study_id]
        return {
            **study,
            "user_attrs": wire.encode_attrs(study["user_attrs"]),
            "system_attrs": wire.encode_attrs(study["system_attrs"]),
        }

    def _check_trial(self, trial_id: int) -> None:
        if trial_id not in self._trial_study:
            raise KeyError(f"No trial with trial_id {trial_id} exists.")

    def _check_study(self, study_id: int) -> None:
        if study_id not in self._studies:
            raise KeyError(f"No study with study_id {study_id} exists.")


#: The operations a client may ask for, by wire name. Nothing outside this table runs.
OPERATIONS: dict[str, Callable[..., Any]] = {
    name: getattr(StorageHost, name)
    for name in (
        "create_new_study",
        "delete_study",
        "set_study_user_attr",
        "set_study_system_attr",
        "get_study_id_from_name",
        "get_all_studies",
        "create_new_trial",
        "set_trial_param",
        "set_trial_state_values",
        "set_trial_intermediate_value",
        "set_trial_user_attr",
        "set_trial_system_attr",
        "locate_trial",
        "record_heartbeat",
        "get_stale_trial_ids",
        "open_run",
        "claim_trial",
        "register_runner",
        "stop_run",
        "abort_run",
        "run_status",
        "find_runs",
    )
}
# Operations whose first argument names the study (trial) whose replica a caller refreshes.
_BY_STUDY = {"set_study_user_attr", "set_study_system_attr", "create_new_trial"}
_BY_TRIAL = {
    "set_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "locate_trial",
}
