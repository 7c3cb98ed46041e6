"""The client and worker half of DaskStorage: an Optuna storage whose state lives on the
Dask scheduler (see :mod:`dasktune.storage.plugin` for the other half)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Container
from collections.abc import Generator
from collections.abc import Sequence
import copy
import itertools
import threading
from typing import Any
from typing import TYPE_CHECKING
import uuid
import warnings

from distributed import get_client
from optuna import distributions
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune.storage import backends
from dasktune.storage import wire
from dasktune.storage.context import TrialContext
from dasktune.storage.protocol import _worker_address
from dasktune.storage.protocol import Op
from dasktune.storage.protocol import SchedulerProtocol
from dasktune.storage.replica import Replica
from dasktune.storage.replica import StudyReplica
from dasktune.storage.writes import Flusher

if TYPE_CHECKING:
    from distributed import Client
    import optuna

StaleTrialCallback = Callable[["optuna.Study", FrozenTrial], None]


class DaskStorage(SchedulerProtocol, BaseStorage, BaseHeartbeat):
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
    process (parameters, intermediate values, attributes) are checked against the replica
    and sent with the thread's next request to the scheduler — Optuna always ends a trial
    with one, ``set_trial_state_values`` — so a trial with three parameters costs one round
    trip, not four. Should the scheduler still reject such a write (another process failed
    the trial meanwhile), the error is raised by that next request.

    Args:
        storage:
            What the scheduler keeps the studies in: ``None`` for memory (lost with the
            scheduler), or a URL: ``sqlite:///path.db``, ``postgresql://...``,
            ``redis://host:port/db`` (Optuna's journal over Redis) or
            ``journal:///abs/path.log`` (Optuna's journal file). An Optuna storage object is
            accepted too: a database or journal storage is passed by its URL, an in-memory
            one by copying its studies. The URL is opened on the scheduler, so paths and
            hosts are as the scheduler sees them.
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
            Optuna's ``RDBStorage`` for the heartbeat contract.
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
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError("The value of `heartbeat_interval` should be a positive integer.")
        if grace_period is not None and grace_period <= 0:
            raise ValueError("The value of `grace_period` should be a positive integer.")
        if heartbeat_stale_trial_callback is not None and failed_trial_callback is not None:
            raise ValueError(
                "Specify only one of `heartbeat_stale_trial_callback` and "
                "`failed_trial_callback`."
            )
        if failed_trial_callback is not None:
            warnings.warn(
                "`failed_trial_callback` has been deprecated in Optuna 4.9.0 and will be "
                "removed in 6.0.0. Use `heartbeat_stale_trial_callback` instead.",
                FutureWarning,
                stacklevel=2,
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"`name` must be a str or None, not {type(name).__name__}.")
        self.name = name if name is not None else f"dasktune-storage-{uuid.uuid4().hex}"
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = (
            heartbeat_stale_trial_callback or failed_trial_callback
        )
        self._client = client
        self._replica = Replica()
        self._lock = threading.RLock()
        self._thread = threading.local()  # per-thread trial context and unsent writes
        self._flusher = Flusher(self._send_pending)
        self._owned: set[int] = set()  # RUNNING trials this process runs
        self._request_prefix = uuid.uuid4().hex[:16]
        self._request_numbers = itertools.count()
        self._opened_with: tuple[str | None, None] | None = None
        _remember(self)
        if register:
            url, contents = backends.describe(storage)
            if self.client.asynchronous:
                self._registering = asyncio.ensure_future(self._register(url, contents))
            else:
                self._run(self._register, url, contents)

    @property
    def client(self) -> Client:
        """The Dask client this storage talks through (the current one if none was given)."""
        if self._client is None:
            try:
                self._client = get_client()
            except ValueError:
                raise ValueError(
                    "No Dask client found: DaskStorage talks to the scheduler through one. "
                    "Create a client first (distributed.Client(...)) or pass client=."
                ) from None
        return self._client

    def __await__(self) -> Generator[Any, None, DaskStorage]:
        registering = getattr(self, "_registering", None)

        async def _done() -> DaskStorage:
            return self if registering is None else await registering

        return _done().__await__()

    def __reduce__(self) -> tuple[Any, ...]:
        # By name: the studies live on the scheduler, a copy attaches without setup.
        return (
            _attach,
            (
                self.name,
                self.heartbeat_interval,
                self.grace_period,
                self.heartbeat_stale_trial_callback,
            ),
        )

    def __repr__(self) -> str:
        return f"DaskStorage(name={self.name!r})"

    def get_base_storage(self) -> BaseStorage:
        """An ``InMemoryStorage`` copy of every study in this storage.

        Study and trial ids are the copy's own; names, numbers and contents are kept.
        """
        reply = self._run(self._ask_scheduler, "dasktune_storage_dump", name=self.name)
        return wire.load_storage(reply["studies"])

    # -- studies -----------------------------------------------------------------

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        (study_id,) = self._call(
            [self._write("create_new_study", wire.encode_directions(list(directions)), study_name)]
        )
        return study_id

    def delete_study(self, study_id: int) -> None:
        self._call([self._write("delete_study", study_id)])
        with self._lock:
            self._replica.drop(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call([self._write("set_study_user_attr", study_id, key, wire.encode_attr(value))])

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call(
            [self._write("set_study_system_attr", study_id, key, wire.encode_attr(value))]
        )

    def get_study_id_from_name(self, study_name: str) -> int:
        (study_id,) = self._call([["get_study_id_from_name", [study_name], None]])
        return study_id

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._study(study_id, fresh=False).name

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return list(self._study(study_id, fresh=False).directions)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._study(study_id).user_attrs

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._study(study_id).system_attrs

    def get_all_studies(self) -> list[FrozenStudy]:
        (studies,) = self._call([["get_all_studies", [], None]])
        return [wire.decode_study(data) for data in studies]

    # -- trials: writes ----------------------------------------------------------

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        context = self._context()
        if template_trial is None and context is not None and context.reserved is not None:
            return context.take(study_id, was_waiting=False)
        template = None if template_trial is None else wire.encode_trial(template_trial)
        (trial_id,) = self._call([self._write("create_new_trial", study_id, template)])
        if template_trial is None or template_trial.state == TrialState.RUNNING:
            self._started(study_id, trial_id)
        return trial_id

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: distributions.BaseDistribution,
    ) -> None:
        trial = self._updatable_trial(trial_id)
        with self._lock:
            study_id = self._replica.study_of(trial_id)
            assert study_id is not None, "_updatable_trial made the trial known"
            study = self._replica.studies[study_id]
            if param_name in study.distributions:
                distributions.check_distribution_compatibility(
                    study.distributions[param_name], distribution
                )
        op = self._write(
            "set_trial_param",
            trial_id,
            param_name,
            float(param_value_internal),
            wire.encode_distribution(distribution),
        )
        self._trial_write(trial, op, "set_param", param_name, param_value_internal, distribution)

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        trial = self._updatable_trial(trial_id)
        context = self._context()
        if context is not None:
            context.snapshot = False  # pruning decisions need the other trials' latest values
        op = self._write("set_trial_intermediate_value", trial_id, step, intermediate_value)
        self._trial_write(trial, op, "set_intermediate_value", step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._set_trial_attr(trial_id, "user_attrs", key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._set_trial_attr(trial_id, "system_attrs", key, value)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        context = self._context()
        if context is not None and context.reserved is not None and state == TrialState.RUNNING:
            return context.take_waiting(trial_id)
        trial = self._updatable_trial(trial_id)
        values = None if values is None else [float(v) for v in values]
        if (
            context is not None
            and context.runner
            and state.is_finished()
            and trial.state == TrialState.RUNNING
        ):
            # A runner's tell travels with its next claim: one round trip per trial.
            op = self._write("set_trial_state_values", trial_id, state.value, values)
            self._trial_write(trial, op, "set_state", state, values)
            self._owned.discard(trial_id)
            return True
        (changed,) = self._call(
            [self._write("set_trial_state_values", trial_id, state.value, values)]
        )
        if state.is_finished():
            self._owned.discard(trial_id)
            if context is not None and not context.runner:
                self._thread.context = None  # the trial's snapshot ends with it
        elif state == TrialState.RUNNING and changed:
            study_id = self._replica.study_of(trial_id)
            assert study_id is not None, "_updatable_trial made the trial known"
            self._started(study_id, trial_id)  # claimed a WAITING trial
        return changed

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
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        context = self._context()
        if context is not None and context.reserved is not None and states == (TrialState.WAITING,):
            return context.waiting_view(self)
        study = self._study(study_id)
        with self._lock:
            trials = study.trials
            trials = list(trials) if states is None else [t for t in trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        study = self._study(study_id)
        with self._lock:
            if not 0 <= trial_number < len(study.trials):
                raise KeyError(
                    f"No trial with trial number {trial_number} exists in study with "
                    f"study_id {study_id}."
                )
            return study.trials[trial_number]._trial_id

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        study = self._study(study_id)
        with self._lock:
            if study.best is not None:
                return study.best
            if not any(t.state == TrialState.COMPLETE for t in study.trials):
                raise ValueError("No trials are completed yet.")
        raise RuntimeError("Best trial can be obtained only for single-objective optimization.")

    # -- heartbeats --------------------------------------------------------------

    def record_heartbeat(self, trial_id: int) -> None:
        self._call([["record_heartbeat", [trial_id, self._grace()], None]])

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        (stale,) = self._call([["get_stale_trial_ids", [study_id, self._grace()], None]])
        return stale

    def _grace(self) -> float:
        assert self.heartbeat_interval is not None
        return self.grace_period or 2 * self.heartbeat_interval

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> StaleTrialCallback | None:
        return self.heartbeat_stale_trial_callback

    # -- dasktune.optimize's trial runners --------------------------------------

    def _claim_trial(self, run_id: str) -> int | None:
        """Claim the next trial of ``run_id`` for this thread, or ``None`` once the run's
        budget is spent. One round trip, which also carries this thread's pending writes
        (the previous trial's tell).

        The claimed trial is then handed to Optuna's own ``study.ask()``: its query for
        WAITING trials and its ``create_new_trial`` / claim of a WAITING trial are answered
        with the claimed trial, locally. Until the trial reports an intermediate value,
        reads come from the replica as of the claim (samplers see one consistent snapshot
        per trial, as Optuna's own per-trial cache gives them).
        """
        (claimed,) = self._call([self._write("claim_trial", run_id)])
        if claimed is None:
            self._thread.context = None
            return None
        trial_id, was_waiting = claimed
        with self._lock:
            study_id = self._replica.study_of(trial_id)
        assert study_id is not None, "a claim's reply carries the study's delta"
        self._owned.add(trial_id)
        self._thread.context = TrialContext(study_id, trial_id, was_waiting, runner=True)
        return trial_id

    def _release_claim(self) -> None:
        """End this thread's runner mode after ``ask`` took the claimed trial: it reads
        fresh and tells synchronously again (a driver asking centrally)."""
        self._thread.context = None

    def _context(self) -> TrialContext | None:
        return getattr(self._thread, "context", None)

    # -- helpers -----------------------------------------------------------------

    def _study(self, study_id: int, fresh: bool = True) -> StudyReplica:
        """The replica of ``study_id``, brought up to date first unless ``fresh`` is False
        and one exists (for what never changes: name and directions)."""
        context = self._context()
        if context is not None and context.snapshot and context.study_id == study_id:
            fresh = False  # a running trial reads the snapshot its start brought
        with self._lock:
            study = self._replica.studies.get(study_id)
        if fresh or study is None:
            self._call([], want=[study_id])
            with self._lock:
                study = self._replica.studies[study_id]
        return study

    def _started(self, study_id: int, trial_id: int) -> None:
        """This thread started ``trial_id`` through Optuna's own ``ask``.

        On a worker — the ``client.submit(study.optimize, ...)`` pattern — its reads of the
        study then use the snapshot the start brought, until the trial reports or ends.
        Elsewhere (a notebook that asks and tells) reads stay fresh: such a thread may ask
        and keep reading while others optimize.
        """
        self._owned.add(trial_id)
        if _worker_address() is not None:
            self._thread.context = TrialContext(study_id, None, False, runner=False)

    def _updatable_trial(self, trial_id: int) -> FrozenTrial:
        """The trial, known to the replica, after Optuna's check that it is not finished."""
        with self._lock:
            trial = self._replica.trial(trial_id)
        if trial is None:
            trial = self.get_trial(trial_id)
        self.check_trial_is_updatable(trial_id, trial.state)
        return trial

    def _set_trial_attr(self, trial_id: int, kind: str, key: str, value: Any) -> None:
        trial = self._updatable_trial(trial_id)
        op = self._write(f"set_trial_{kind[:-1]}", trial_id, key, wire.encode_attr(value))
        self._trial_write(trial, op, "set_attr", kind, key, value)

    def _trial_write(self, trial: FrozenTrial, op: Op, apply: str, *args: Any) -> None:
        """Defer a checked write to a trial this process runs; send any other at once."""
        trial_id = trial._trial_id
        if trial_id not in self._owned:
            self._call([op])
            return
        with self._lock:
            getattr(self._replica, apply)(trial_id, *args)
        self._pending().add(op)
        self._flusher.wake()

#: The DaskStorage last made for each name in this process, most recent last. Unpickling
#: reuses it, which keeps its replica warm: in the ``client.submit(study.optimize, ...)``
#: pattern every task unpickles the storage anew, and a fresh replica would fetch the whole
#: study each time. Bounded, so a process that touches many storages keeps only recent ones.
_instances: OrderedDict[str, DaskStorage] = OrderedDict()
_instances_lock = threading.Lock()
_MAX_INSTANCES = 32


def _remember(storage: DaskStorage) -> None:
    with _instances_lock:
        _instances[storage.name] = storage
        _instances.move_to_end(storage.name)
        if len(_instances) > _MAX_INSTANCES:
            _instances.popitem(last=False)


def _attach(
    name: str,
    heartbeat_interval: int | None,
    grace_period: int | None,
    callback: StaleTrialCallback | None,
) -> DaskStorage:
    """Unpickle a DaskStorage: attach by name, with the same heartbeat settings."""
    with _instances_lock:
        storage = _instances.get(name)
    usable = storage is not None and (storage._client is None or storage._client.status == "running")
    if not usable:
        storage = DaskStorage(None, name, None, False)
    assert storage is not None
    storage.heartbeat_interval = heartbeat_interval
    storage.grace_period = grace_period
    storage.heartbeat_stale_trial_callback = callback
    return storage
