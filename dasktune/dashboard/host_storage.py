"""An Optuna storage over one named storage of the scheduler, for code that runs in the
scheduler's own process: optuna-dashboard, which the Tuning page mounts.

Reads come from the host's change log, as every ``DaskStorage`` reads (a replica brought up
to date by what changed since its cursor, O(changes)), without a network round trip. Writes
are operations sent through the storage plugin's ``dasktune_storage_call`` route, the one
every client's writes take: they reach the backend on the storage's own thread, enter the
host's mirror and change log, wake ``optimize`` watchers, and every process's replica sees
them. Nothing here writes to the backend directly.

Its methods block: they are called from a thread of a pool (a WSGI app), never from the
scheduler's event loop, on which the writes run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from collections.abc import Sequence
import threading
from typing import Any
import uuid

from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune import compat
from dasktune.storage import wire
from dasktune.storage.host import StorageHost
from dasktune.storage.replica import Replica
from dasktune.storage.replica import ReplicaReads
from dasktune.storage.replica import StudyReplica

#: The storage plugin's route for operations (see :mod:`dasktune.storage.plugin`).
CALL = "dasktune_storage_call"
#: Longest a write may take on the scheduler (a database backend under load).
_WRITE_SECONDS = 60.0


class HostStorage(ReplicaReads, BaseStorage):
    """Optuna's ``BaseStorage`` over the storage ``name`` of the scheduler whose handlers
    and loop are given (in the scheduler's process).

    Args:
        hosts: The storage plugin's hosts by name, looked up on each use.
        name: The storage's name.
        handlers: The scheduler's handlers (``scheduler.handlers``), where the storage
            plugin's :data:`CALL` route is.
        loop: The scheduler's event loop, on which writes run.
    """

    def __init__(
        self,
        hosts: Mapping[str, StorageHost],
        name: str,
        handlers: Mapping[str, Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.hosts, self.name, self.handlers, self.loop = hosts, name, handlers, loop
        self._replica = Replica()
        self._lock = threading.RLock()

    # -- studies -------------------------------------------------------------------------

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        (study_id,) = self._write(
            "create_new_study", wire.encode_directions(list(directions)), study_name
        )
        return study_id

    def delete_study(self, study_id: int) -> None:
        self._write("delete_study", study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._write("set_study_user_attr", study_id, key, wire.encode_attr(value))

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._write("set_study_system_attr", study_id, key, wire.encode_attr(value))

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._host().store.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._study(study_id).name

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return list(self._study(study_id).directions)

    def get_all_studies(self) -> list[compat.FrozenStudy]:
        return [wire.decode_study(meta) for meta in self._host().store.get_all_studies()]

    # -- trials ----------------------------------------------------------------------------

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        template = None if template_trial is None else wire.encode_trial(template_trial)
        (trial_id,) = self._write("create_new_trial", study_id, template)
        return trial_id

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        self._write(
            "set_trial_param",
            trial_id,
            param_name,
            float(param_value_internal),
            wire.encode_distribution(distribution),
        )

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        values = None if values is None else [float(v) for v in values]
        (changed,) = self._write("set_trial_state_values", trial_id, state.value, values)
        return changed

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        self._write("set_trial_intermediate_value", trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._write("set_trial_user_attr", trial_id, key, wire.encode_attr(value))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._write("set_trial_system_attr", trial_id, key, wire.encode_attr(value))

    def get_trial(self, trial_id: int) -> FrozenTrial:
        study_id = self._host().store.study_of(trial_id)
        if study_id is None:
            raise KeyError(f"No trial with trial_id {trial_id} exists.")
        self._study(study_id)
        with self._lock:
            trial = self._replica.trial(trial_id)
        if trial is None:  # deleted with its study meanwhile
            raise KeyError(f"No trial with trial_id {trial_id} exists.")
        return trial

    # -- helpers -----------------------------------------------------------------------

    def _host(self) -> StorageHost:
        host = self.hosts.get(self.name)
        if host is None:
            raise KeyError(f"No DaskStorage named {self.name!r} on this scheduler.")
        return host

    def _study(self, study_id: int) -> StudyReplica:
        """The replica of ``study_id``, brought up to date from the host's change log."""
        host = self._host()
        with self._lock:
            if host.epoch != self._replica.epoch:
                self._replica.reset(host.epoch)
            study = self._replica.studies.get(study_id)
            cursor = 0 if study is None else study.cursor
            deltas, missing = host.deltas({study_id: cursor}, [study_id])
            if missing:
                self._replica.drop(study_id)
                raise KeyError(f"No study with study_id {study_id} exists.")
            for delta in deltas:
                self._replica.apply(delta)
            return self._replica.studies[study_id]

    def _write(self, name: str, *args: Any) -> list[Any]:
        """Apply one operation through the storage plugin, on the scheduler's loop; its
        results. The operation's error is raised here with its original type."""
        op: wire.Op = [name, list(args), f"dashboard-{uuid.uuid4().hex}"]
        with self._lock:
            cursors, epoch = self._replica.cursors(), self._replica.epoch
        call = self.handlers[CALL](name=self.name, ops=[op], cursors=cursors, want=[], epoch=epoch)
        reply = asyncio.run_coroutine_threadsafe(call, self.loop).result(_WRITE_SECONDS)
        if reply.get("error") is not None:
            raise wire.decode_error(reply["error"])
        with self._lock:  # the reply brings what the write changed: read-your-writes
            if reply["epoch"] == self._replica.epoch:
                for delta in reply["deltas"]:
                    self._replica.apply(delta)
                for study_id in reply["missing"]:
                    self._replica.drop(study_id)
        return reply["results"]
