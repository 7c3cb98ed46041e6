"""The client and worker half of DaskStorage: an Optuna storage whose state lives on the
Dask scheduler (see :mod:`dasktune.storage.plugin` for the other half)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Container
from collections.abc import Generator
import copy
import itertools
import threading
import time
from typing import Any
from typing import Literal
from typing import TYPE_CHECKING
import uuid

from distributed import get_client
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune import compat
from dasktune.storage import backends
from dasktune.storage import instances
from dasktune.storage import wire
from dasktune.storage.heartbeats import Heartbeats
from dasktune.storage.heartbeats import StaleTrialCallback
from dasktune.storage.protocol import Op
from dasktune.storage.running import RunningTrials
from dasktune.storage.runs_client import RunClient
from dasktune.storage.replica import Replica
from dasktune.storage.replica import ReplicaReads
from dasktune.storage.replica import StudyReplica
from dasktune.storage.writes import Flusher
from dasktune.storage.writes import WireWrites

if TYPE_CHECKING:
    from distributed import Client

#: How long a thread that listed every study reads them as the listing brought them.
LISTED_SECONDS = 1.0
#: Serialises the first use of a worker's client by this process's threads: the first one
#: makes it (and waits for its connection), the others then get it connected.
_client_lock = threading.Lock()


class DaskStorage(RunClient, RunningTrials, Heartbeats, WireWrites, ReplicaReads, BaseStorage):
    """An Optuna storage held by the Dask scheduler, shared by every client and worker.

    A drop-in for ``optuna_integration.DaskStorage`` (same arguments, same meaning): the
    real Optuna storage lives inside a scheduler plugin, and every process that holds a
    ``DaskStorage`` with the same ``name`` sees the same studies. Unlike the original, no
    pickle crosses to the scheduler (requests and replies are plain data), and each process
    keeps a replica of the studies it reads, asking the scheduler only for what changed
    since it last asked, so a call costs the same at trial 10 and at trial 10,000.

    Consistency: every read of trials that may have changed elsewhere makes one round trip
    that brings the replica up to date, so a process sees every write the scheduler had
    acknowledged when the read started. Finished trials never change and are read locally,
    as are the trials this process is running itself. Writes to a running trial of this
    process are checked against the replica; parameters reach the scheduler before
    ``suggest`` returns, intermediate values and attributes go with the thread's next
    request (see :mod:`dasktune.storage.writes`). A write the scheduler refuses after
    all fails its trial, and its error is raised by that next request.

    Args:
        storage:
            What the scheduler keeps the studies in: ``None`` for memory (lost with the
            scheduler), or a URL: ``sqlite:///path.db``, ``postgresql://...``,
            ``redis://host:port/db`` (Optuna's journal over Redis) or
            ``journal:///abs/path.log`` (Optuna's journal file). An ``RDBStorage`` is
            accepted as its URL and an ``InMemoryStorage`` by copying its studies; other
            storage objects raise ``TypeError`` (pass their URL). The URL is opened on the
            scheduler, so paths and hosts are as the scheduler sees them.
        name:
            Identifies the storage on the scheduler; random when omitted. Processes share
            studies by using the same name.
        client:
            The Dask client to talk through; the current client (on a worker, the worker's
            client) by default.
        register:
            Create the storage on the scheduler if it does not exist yet (installing the
            scheduler plugin when the cluster has none). ``False`` attaches to an existing
            storage without any setup call.
        heartbeat_interval:
            Seconds between heartbeats of a running trial (``None``: no heartbeats). See
            Optuna's ``RDBStorage`` for the heartbeat contract. Experimental, as in Optuna.
        grace_period:
            Seconds without a heartbeat after which a running trial is stale and failed;
            ``2 * heartbeat_interval`` by default.
        heartbeat_stale_trial_callback:
            Called as ``callback(study, frozen_trial)`` for each stale trial that was failed,
            e.g. ``optuna.storages.RetryHeartbeatStaleTrialCallback()``.
        failed_trial_callback:
            Deprecated alias of ``heartbeat_stale_trial_callback`` (as in Optuna 5).

    Raises:
        ValueError: No client was given and none exists, the URL is not one of the forms
            above, or a heartbeat setting is not positive.
        TypeError: ``storage`` is a storage object that cannot be moved to the scheduler.
    """

    def __init__(
        self,
        storage: None | str | BaseStorage = None,
        name: str | None = None,
        client: Client | None = None,
        register: bool = True,
        *,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        heartbeat_stale_trial_callback: StaleTrialCallback | None = None,
        failed_trial_callback: StaleTrialCallback | None = None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"`name` must be a str or None, not {type(name).__name__}.")
        self.name = name if name is not None else f"dasktune-storage-{uuid.uuid4().hex}"
        self._named = name is not None
        self._set_heartbeats(
            heartbeat_interval, grace_period, heartbeat_stale_trial_callback,
            failed_trial_callback, warn=register,
        )
        self._client = client
        self._replica = Replica()
        self._lock = threading.RLock()
        self._thread = threading.local()  # per thread: unsent writes, snapshot, runner mode
        self._flusher = Flusher(self._send_pending)
        self._owned: set[int] = set()  # RUNNING trials this process runs
        self._unacked: collections.Counter[int] = collections.Counter()
        self._request_prefix = uuid.uuid4().hex[:16]
        self._request_numbers = itertools.count()
        self._opened_with: str | None | Literal[False] = False
        instances.remember(self)
        if register:
            url, contents = backends.describe(storage)
            if self.client.asynchronous:
                self._registering = asyncio.ensure_future(self._register(url, contents))
            else:
                self._sync(self._register(url, contents))
            instances.warm_up(self.client)

    @property
    def client(self) -> Client:
        """The Dask client this storage talks through (the current one if none was given:
        inside a task, the worker's client, as ``distributed.get_client()`` gives it)."""
        if self._client is None:
            with _client_lock:
                if self._client is None:
                    try:
                        self._client = get_client()
                    except ValueError as e:
                        raise ValueError(
                            f"{e}. DaskStorage talks to the Dask scheduler through a client: "
                            "create one first (distributed.Client(...)) or pass client=."
                        ) from None
        return self._client

    def has_live_client(self) -> bool:
        """Whether this storage may still talk through the client it has (or will find one)."""
        return self._client is None or self._client.status == "running"

    def use_client(self, client: Client) -> None:
        """Talk through ``client`` from now on, unless a client was given or found
        already (a storage keeps the client it started with)."""
        with _client_lock:
            if self._client is None:
                self._client = client

    def __await__(self) -> Generator[Any, None, DaskStorage]:
        registering = getattr(self, "_registering", None)

        async def _done() -> DaskStorage:
            if registering is not None:
                await registering
            return self

        return _done().__await__()

    def __reduce__(self) -> tuple[Any, ...]:
        # By name: the studies live on the scheduler, a copy attaches without setup.
        return (
            instances.attach,
            (
                self.name,
                self.heartbeat_interval,
                self.grace_period,
                self.heartbeat_stale_trial_callback,
            ),
        )

    def __repr__(self) -> str:
        return f"DaskStorage(name={self.name!r})"

    def close(self) -> None:
        """This process is done with the storage: send this thread's unsent writes, stop
        the background flusher, and let the scheduler drop the storage if nothing else needs
        it (no other client that opened it, no live run): an unnamed in-memory storage goes
        with its studies, a durable one keeps them in its backend and is opened again on
        use. A client that leaves the cluster closes its storages this way too."""
        self._flush()
        self._flusher.close()
        instances.forget(self)
        if self._opened_with is not False and self.client.status == "running":
            self._sync(self._ask_scheduler("dasktune_storage_close", name=self.name, client=self.client.id))
            if self._opened_with is None:
                self._opened_with = False  # its studies may be gone: never re-create it empty

    def get_base_storage(self) -> BaseStorage:
        """An ``InMemoryStorage`` copy of every study in this storage.

        Study and trial ids are the copy's own; names, numbers and contents are kept.
        """
        reply = self._sync(self._ask_scheduler("dasktune_storage_dump", name=self.name))
        return wire.load_storage(reply["studies"])

    # -- studies -----------------------------------------------------------------

    def delete_study(self, study_id: int) -> None:
        super().delete_study(study_id)
        with self._lock:
            self._replica.drop(study_id)

    def get_study_id_from_name(self, study_name: str) -> int:
        if self._listed():
            with self._lock:
                for study in self._replica.studies.values():
                    if study.name == study_name:
                        return study.study_id
        (study_id,) = self._call([["get_study_id_from_name", [study_name], None]])
        return int(study_id)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._study(study_id, fresh=False).name

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return list(self._study(study_id, fresh=False).directions)

    def get_all_studies(self) -> list[compat.FrozenStudy]:
        """Every study, with every study's trials brought up to date in the same request:
        for :data:`LISTED_SECONDS` after, until it writes, this thread reads them as this
        listing brought them — ``optuna.get_all_study_summaries`` (and a dashboard's list
        of studies) then reads each study's trials without a request of its own."""
        (studies,) = self._call([["get_all_studies", [], None]])
        with self._lock:
            for study_id in set(self._replica.studies) - {data["id"] for data in studies}:
                self._replica.drop(study_id)  # deleted meanwhile
        self._thread.listed = time.monotonic() + LISTED_SECONDS
        return [wire.decode_study(data) for data in studies]

    # -- trials: writes (encoded by WireWrites; held back by RunningTrials for trials this
    # process runs)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)
        if template_trial is None or template_trial.state == TrialState.RUNNING:
            self._took(study_id, trial_id)
        return trial_id

    def _send(self, op: Op) -> Any:
        (result,) = self._call([op])
        return result

    # -- trials: reads -----------------------------------------------------------

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            trial = self._replica.trial(trial_id)
            study_id = self._replica.study_of(trial_id)
        if trial is not None and (trial.state.is_finished() or trial_id in self._owned):
            return trial
        if study_id is None:
            self._call([["locate_trial", [trial_id], None]])
        else:
            self._call([], want=[study_id])
        with self._lock:
            trial = self._replica.trial(trial_id)
        if trial is None:  # deleted with its study meanwhile
            raise KeyError(f"No trial with trial_id {trial_id} exists.")
        return trial

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        view = getattr(self._thread, "view", None)
        if view is None or self._thread.one_view != study_id:
            return super().get_all_trials(study_id, deepcopy, states)
        trials = [t for t in view if states is None or t.state in states]  # see one_view
        return copy.deepcopy(trials) if deepcopy else trials

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        study = self._study(study_id)
        with self._lock:
            if study.best is not None:
                return study.best
            if not any(t.state == TrialState.COMPLETE for t in study.trials):
                raise ValueError("No trials are completed yet.")
        raise RuntimeError("Best trial can be obtained only for single-objective optimization.")

    def get_trial_worker(self, trial_id: int) -> str | None:
        """Address of the Dask worker that runs or ran the trial (``None`` if no worker did,
        or the scheduler restarted since). Kept on the scheduler, not in the trial."""
        self.get_trial(trial_id)  # brings the replica up to date for an unfinished trial
        with self._lock:
            return self._replica.workers.get(trial_id)

    # -- helpers -----------------------------------------------------------------

    def _study(self, study_id: int, fresh: bool = True) -> StudyReplica:
        """The replica of ``study_id``, brought up to date first unless ``fresh`` is False
        and one exists (for what never changes: name and directions)."""
        if getattr(self._thread, "snapshot", None) == study_id or self._listed():
            fresh = False  # a running trial reads the study as its start brought it
        with self._lock:
            study = self._replica.studies.get(study_id)
        if fresh or study is None:
            self._call([], want=[study_id])
            with self._lock:
                study = self._replica.studies[study_id]
            if getattr(self._thread, "one_view", None) == study_id:
                # The rest of the view reads these trials, as they are now: the replica
                # itself may move on meanwhile, brought up to date by other threads.
                self._thread.snapshot = study_id
                with self._lock:
                    self._thread.view = list(study.trials)
        return study

    def _listed(self) -> bool:
        """Whether this thread reads every study as its last :meth:`get_all_studies`
        brought it (see there)."""
        return getattr(self._thread, "listed", 0.0) > time.monotonic()
