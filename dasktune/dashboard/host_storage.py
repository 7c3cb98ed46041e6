"""An Optuna storage over one storage of the scheduler, for code in the scheduler's own
process: the Tuning pages, and optuna-dashboard, which they mount.

Reads come from the host's change log, as every ``DaskStorage`` reads (a replica brought up
to date by what changed since its cursor), and never block. Writes are those
:class:`~dasktune.storage.writes.WireWrites` encodes, sent through the storage plugin's route
like every client's; they block, on a thread of optuna-dashboard's, never on the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from collections.abc import Mapping
import threading
from typing import Any
import uuid

from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from dasktune import compat
from dasktune.storage import wire
from dasktune.storage.host import StorageHost
from dasktune.storage.replica import Replica
from dasktune.storage.replica import ReplicaReads
from dasktune.storage.replica import StudyReplica
from dasktune.storage.writes import WireWrites

#: Longest a write may take on the scheduler (a database backend under load).
_WRITE_SECONDS = 60.0
#: The storage plugin's hosts by name, asked for on each use (the plugin may be replaced).
Hosts = Callable[[], Mapping[str, StorageHost]]


class HostStorage(WireWrites, ReplicaReads, BaseStorage):
    """Optuna's ``BaseStorage`` over the storage ``name`` of ``hosts()``, whose writes go
    to the storage plugin's route in ``handlers`` (the scheduler's), on its ``loop``."""

    def __init__(
        self, hosts: Hosts, name: str, handlers: Mapping[str, Callable[..., Any]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.hosts, self.name, self.handlers, self.loop = hosts, name, handlers, loop
        self._replica = Replica()
        self._lock = threading.RLock()

    def get_study_id_from_name(self, study_name: str) -> int:
        return self.host().study_id(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self.study(study_id).name

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return list(self.study(study_id).directions)

    def get_all_studies(self) -> list[compat.FrozenStudy]:
        return [wire.decode_study(meta) for meta in self.host().studies()]

    def get_trial(self, trial_id: int) -> FrozenTrial:
        study_id = self.host().study_of(trial_id)
        trial = None
        if study_id is not None:
            self.study(study_id)
            with self._lock:
                trial = self._replica.trial(trial_id)
        if trial is None:  # (or deleted with its study meanwhile)
            raise KeyError(f"No trial with trial_id {trial_id} exists.")
        return trial

    # -- what the Tuning page reads besides Optuna's interface ---------------------------

    def host(self) -> StorageHost:
        """The storage's host; ``KeyError`` naming the storage if it is gone."""
        host = self.hosts().get(self.name)
        if host is None:
            raise KeyError(f"No DaskStorage named {self.name!r} on this scheduler.")
        return host

    def study(self, study_id: int) -> StudyReplica:
        """The replica of ``study_id``, brought up to date from the host's change log; a
        new object when the host was rebuilt. ``KeyError`` if there is no such study."""
        host = self.host()
        with self._lock:
            known = self._replica.studies.get(study_id)
            cursor = known.cursor if known is not None and host.epoch == self._replica.epoch else 0
            deltas, missing = host.deltas({study_id: cursor}, [study_id])
            reply: wire.Reply = {"results": [], "error": None, "epoch": host.epoch, "deltas": deltas,
                                 "missing": missing}
            self._replica.merge(reply)
            study = self._replica.studies.get(study_id)
        if study is None:
            raise KeyError(f"No study with study_id {study_id} exists.")
        return study

    def workers(self, trial_ids: list[int]) -> list[str | None]:
        """The address of the worker that runs or ran each trial, if a worker did."""
        with self._lock:
            return [self._replica.workers.get(trial_id) for trial_id in trial_ids]

    # -- the wire ------------------------------------------------------------------------

    _study = study  # what ReplicaReads reads through

    def _write(self, name: wire.OpName, *args: Any) -> wire.Op:
        return [name, list(args), f"dashboard-{uuid.uuid4().hex}"]

    def _send(self, op: wire.Op) -> Any:
        """Apply ``op`` through the storage plugin, on the scheduler's loop; its result. Its
        error is raised here with its original type."""
        with self._lock:
            cursors, epoch = self._replica.cursors(), self._replica.epoch
        call = self.handlers[wire.CALL_ROUTE](name=self.name, ops=[op], cursors=cursors, want=[], epoch=epoch)
        reply = asyncio.run_coroutine_threadsafe(call, self.loop).result(_WRITE_SECONDS)
        if reply.get("error") is not None:
            raise wire.decode_error(reply["error"])
        with self._lock:  # the reply brings what the write changed: read-your-writes
            self._replica.merge(reply)
        return reply["results"][0]
