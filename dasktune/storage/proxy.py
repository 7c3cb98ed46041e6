"""The client and worker half of DaskStorage: an Optuna storage whose state lives on the
Dask scheduler (see :mod:`dasktune.storage.plugin` for the other half)."""

from __future__ import annotations

import asyncio
import collections
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Sequence
import concurrent.futures
import importlib
import itertools
import threading
import time
from typing import Any
from typing import Literal
from typing import TYPE_CHECKING
import uuid
import warnings
import weakref

from distributed import get_client
from optuna import distributions
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune import compat
from dasktune.storage import backends
from dasktune.storage import wire
from dasktune.storage.protocol import _worker_address
from dasktune.storage.protocol import GONE
from dasktune.storage.protocol import Op
from dasktune.storage.protocol import SchedulerProtocol
from dasktune.storage.replica import Replica
from dasktune.storage.replica import ReplicaReads
from dasktune.storage.replica import StudyReplica
from dasktune.storage.writes import Flusher
from dasktune.storage.writes import FLUSH_AFTER

if TYPE_CHECKING:
    from distributed import Client
    import optuna

StaleTrialCallback = Callable[["optuna.Study", FrozenTrial], None]
#: How long a thread that listed every study reads them as the listing brought them.
LISTED_SECONDS = 1.0
#: Serialises the first use of a worker's client by this process's threads: the first one
#: makes it (and waits for its connection), the others then get it connected.
_client_lock = threading.Lock()


class DaskStorage(SchedulerProtocol, ReplicaReads, BaseStorage, compat.BaseHeartbeat):
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
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError("The value of `heartbeat_interval` should be a positive integer.")
        if grace_period is not None and grace_period <= 0:
            raise ValueError("The value of `grace_period` should be a positive integer.")
        if heartbeat_stale_trial_callback is not None and failed_trial_callback is not None:
            raise ValueError(
                "Specify only one of `heartbeat_stale_trial_callback` and "
                "`failed_trial_callback`."
            )
        if heartbeat_interval is not None and register:
            # As Optuna's RDBStorage says of the same argument.
            warnings.warn(
                "Argument ``heartbeat_interval`` is an experimental feature. The interface "
                "can change in the future.",
                ExperimentalWarning,
                stacklevel=2,
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
        self._thread = threading.local()  # per thread: unsent writes, snapshot, runner mode
        self._flusher = Flusher(self._send_pending)
        self._owned: set[int] = set()  # RUNNING trials this process runs
        self._stale: set[int] = set()  # the stale trials last reported, which Optuna fails
        self._unacked: collections.Counter[int] = collections.Counter()
        self._request_prefix = uuid.uuid4().hex[:16]
        self._request_numbers = itertools.count()
        self._opened_with: str | None | Literal[False] = False
        _remember(self)
        if register:
            url, contents = backends.describe(storage)
            if self.client.asynchronous:
                self._registering = asyncio.ensure_future(self._register(url, contents))
            else:
                self._sync(self._register(url, contents))
            # A study made on this storage is soon optimized: let the workers import what a
            # trial runner needs now, in the background, rather than when the first arrives
            # (once per client: its workers keep what they imported).
            if self.client not in _warmed:
                _warmed.add(self.client)
                warming = self.client.run(_import_runner_in_background, wait=False)
                if self.client.asynchronous:
                    asyncio.ensure_future(warming)

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

    def close(self) -> None:
        """Send this thread's unsent writes and stop the background flusher: what a
        process should call before it drops a storage it wrote to from several threads.
        The object stays usable (each thread then sends its writes with its own calls)."""
        self._flush()
        self._flusher.close()
        _forget(self)

    def get_base_storage(self) -> BaseStorage:
        """An ``InMemoryStorage`` copy of every study in this storage.

        Study and trial ids are the copy's own; names, numbers and contents are kept.
        """
        reply = self._sync(self._ask_scheduler("dasktune_storage_dump", name=self.name))
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
        if self._listed():
            with self._lock:
                for study in self._replica.studies.values():
                    if study.name == study_name:
                        return study.study_id
        (study_id,) = self._call([["get_study_id_from_name", [study_name], None]])
        return study_id

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

    # -- trials: writes ----------------------------------------------------------

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
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
        # Pruning decisions need the other trials' latest values: this thread reads fresh.
        self._thread.snapshot = None
        op = self._write("set_trial_intermediate_value", trial_id, step, intermediate_value)
        self._trial_write(trial, op, "set_intermediate_value", step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._set_trial_attr(trial_id, "user_attrs", key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._set_trial_attr(trial_id, "system_attrs", key, value)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        trial = self._updatable_trial(trial_id)
        values = None if values is None else [float(v) for v in values]
        if self._pending().runner and state.is_finished() and trial_id in self._owned:
            # A runner's tell travels with its next request (the next claim): no round trip.
            op = self._write("set_trial_state_values", trial_id, state.value, values)
            self._trial_write(trial, op, "set_state", state, values)
            self._owned.discard(trial_id)
            return True
        ops = [self._write("set_trial_state_values", trial_id, state.value, values)]
        if state == TrialState.FAIL and trial_id in self._stale:
            # Optuna's fail_stale_trials fails it, and records no reason: say why.
            reason = f"no heartbeat for over {self._grace():g} s, its grace period"
            ops.insert(0, self._write("set_trial_system_attr", trial_id, wire.FAIL_REASON,
                                      wire.encode_attr(reason)))
        *_, changed = self._call(ops)
        if state.is_finished():
            self._owned.discard(trial_id)
            self._thread.snapshot = None  # the trial's snapshot ends with it
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

    # -- heartbeats --------------------------------------------------------------

    def record_heartbeat(self, trial_id: int) -> None:
        self._call([["record_heartbeat", [trial_id, self._grace()], None]])

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        (stale,) = self._call([["get_stale_trial_ids", [study_id, self._grace()], None]])
        self._stale = set(stale)  # Optuna fails them next
        return stale

    def _grace(self) -> float:
        assert self.heartbeat_interval is not None
        return self.grace_period or 2 * self.heartbeat_interval

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> StaleTrialCallback | None:
        return self.heartbeat_stale_trial_callback

    def get_failed_trial_callback(self) -> StaleTrialCallback | None:
        # The name Optuna 4 asks for (and Optuna 5 keeps as an alias).
        return self.heartbeat_stale_trial_callback

    # -- dasktune.optimize's runs (see dasktune.storage.runs) ------------------------

    def open_run(
        self,
        run_id: str,
        study_id: int,
        n_trials: int | None,
        timeout: float | None,
        retries: int | None,
        client_id: str | None,
        gated: bool = False,
    ) -> wire.RunStatus:
        """Open the run ``run_id`` of ``study_id`` on the scheduler, which then enforces its
        budget. ``retries``: how often a trial lost with its worker is retried (``None``:
        as the stale-trial callback run by the driver decides, see :meth:`decide_lost`).
        ``client_id``: the Dask client that drives it (the run ends if that client
        leaves), ``None`` for a detached run. ``gated``: its driver runs callbacks, which
        see each trial before the trial's runner starts another (see
        :mod:`dasktune.storage.runs`)."""
        op = self._write("open_run", run_id, study_id, n_trials, timeout, retries, client_id, gated)
        (status,) = self._call([op])
        return status

    def register_runner(self, run_id: str, key: str) -> int:
        """Register the runner task ``key`` of ``run_id``; its index (0 for the first)."""
        (index,) = self._call([self._write("register_runner", run_id, key)])
        return index

    def claim_trials(
        self, run_id: str, key: str | None, wanted: int = 1, seconds_per_trial: float = 0.0
    ) -> list[int]:
        """Start up to ``wanted`` trials of ``run_id`` for this worker, as its budget allows
        (``[]``: the runner must stop). The request also carries this thread's unsent
        writes (the previous trial's tell)."""
        (claimed,) = self._call(
            [self._write("claim_trials", run_id, key, wanted, seconds_per_trial)], tolerate=GONE
        )
        return claimed

    def claim_trials_soon(
        self, run_id: str, key: str | None, wanted: int = 1, seconds_per_trial: float = 0.0
    ) -> concurrent.futures.Future[list[Any]]:
        """:meth:`claim_trials` without waiting: a future of ``[claimed ids]``."""
        op = self._write("claim_trials", run_id, key, wanted, seconds_per_trial)
        return self._call_soon([op], tolerate=GONE)

    def end_run(self, run_id: str, outcome: str, reason: str) -> wire.RunStatus:
        """End ``run_id``: ``outcome`` is one of ``finished``, ``stopped``, ``failed`` (its
        running trials finish), ``cancelled``, ``aborted``, ``orphaned`` (they FAIL now,
        with ``reason``)."""
        (status,) = self._call([self._write("end_run", run_id, outcome, reason)])
        return status

    def release_trials(self, run_id: str, trial_ids: list[int]) -> list[int]:
        """Give back trials this runner claimed for ``run_id`` and never started: they are
        WAITING again, outside the run's budget. The ids of those it gave back."""
        (released,) = self._call([self._write("release_trials", run_id, trial_ids)], tolerate=GONE)
        return released

    def abandon_trials(self, run_id: str, trial_ids: list[int], reason: str) -> list[int]:
        """FAIL trials this runner started for ``run_id`` and will not finish, with
        ``reason``. The ids of those it failed."""
        (failed,) = self._call(
            [self._write("abandon_trials", run_id, trial_ids, reason)], tolerate=GONE
        )
        return failed

    def decide_lost(self, run_id: str, trial_id: int, retried: bool) -> None:
        """Tell the scheduler what the stale-trial callback did for ``trial_id`` of
        ``run_id``, lost with its worker: ``retried`` (enqueued a retry) or not."""
        self._call([self._write("decide_lost", run_id, trial_id, retried)])

    def run_status(self, run_id: str) -> wire.RunStatus:
        """The run's status on the scheduler. Raises ``KeyError`` for an unknown run."""
        ((status, _),) = self._call([["run_status", [run_id, 0], None]])
        return status

    def watch_run(
        self, run_id: str, since: int, timeout: float, linger: float = 0.0, seen: bool = False
    ) -> tuple[wire.RunStatus, list[int]]:
        """Wait up to ``timeout`` s for a trial of ``run_id`` to finish or the run to end:
        its status and the ids of its trials that finished after the first ``since``, all
        readable locally. Once a trial has finished, the answer waits until ``linger`` s
        after the call for more (never past the run's end or ``timeout``). ``seen``: the
        caller, the run's driver, has run the callbacks of the first ``since`` trials."""
        status, finished = self._watch(run_id, since, timeout, linger, seen)
        return status, finished

    def follow_run_ends(self) -> None:
        """Learn, in this process, of runs that end (see :meth:`run_ended`): subscribe this
        storage's client to the scheduler's announcements, once per client."""
        client = self.client
        with _instances_lock:
            if client in _following:
                return
            _following.add(client)
        client.subscribe_topic(wire.RUN_ENDED_TOPIC, _run_ended)

    def run_ended(self, run_id: str) -> bool:
        """Whether the scheduler announced that ``run_id`` ended (``study.stop()``, an error,
        a cancel) to this process since :meth:`follow_run_ends`; no request is made."""
        return (self.name, run_id) in _ended_runs

    def find_runs(self, study_id: int) -> list[wire.RunStatus]:
        """Every run of ``study_id`` the scheduler keeps, oldest first."""
        (runs,) = self._call([["find_runs", [study_id], None]])
        return runs

    def run_trial(self, trial_id: int, runner: bool = True) -> bool:
        """This thread now runs ``trial_id``, which it claimed: writes to the trial are
        checked here and sent with the thread's next request. A ``runner`` thread (one that
        claims again after each trial) also defers the trial's tell to that next claim, and
        reads its study from the replica until the trial reports or ends.

        Returns ``False`` (and takes nothing on) if the trial already finished, as far as
        this process knows: the scheduler failed it since the claim (its run was aborted).
        """
        with self._lock:
            trial = self._replica.trial(trial_id)
            if trial is None or trial.state.is_finished():
                return False
            self._owned.add(trial_id)
        if runner:
            self._pending().runner = True
            self._thread.snapshot = self._replica.study_of(trial_id)
        return True

    def send_writes_within(self, seconds: float | None, params_at_once: bool = True) -> None:
        """Let this thread's deferred writes wait at most ``seconds`` (``None``: the
        default, :data:`~dasktune.storage.writes.FLUSH_AFTER`) for its next request before
        the flusher sends them: a runner of slow trials sends a trial's writes at once, so
        that other workers' samplers know what runs. ``params_at_once``: its parameters
        reach the scheduler before ``suggest`` returns (the default of every thread); a
        runner of cheap trials lets them wait with the rest."""
        writes = self._pending()
        writes.delay = FLUSH_AFTER if seconds is None else seconds
        writes.params_at_once = params_at_once

    def end_runner(self) -> None:
        """This thread runs no more trials: send what it holds back, read fresh again.
        Writes the scheduler refuses meanwhile stay for :meth:`take_refused`."""
        writes = self._pending()
        self._thread.snapshot = None
        if writes.ops:
            self._call([], tolerate=GONE)
        writes.runner = False

    def take_refused(self) -> dict[int, Exception]:
        """The trials of this runner thread that the scheduler failed since the last call
        because it refused a write of theirs sent after the trial's objective had moved on
        (a cheap trial's parameter, or its tell): trial id -> the error, which is also the
        trial's ``fail_reason``. The runner reports each as an error of that trial."""
        writes = self._pending()
        with writes.lock:
            refused, writes.refused = writes.refused, {}
        return refused

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
        return study

    def _listed(self) -> bool:
        """Whether this thread reads every study as its last :meth:`get_all_studies`
        brought it (see there)."""
        return getattr(self._thread, "listed", 0.0) > time.monotonic()

    def _started(self, study_id: int, trial_id: int) -> None:
        """This thread started ``trial_id`` through Optuna's own ``ask``.

        On a worker — the ``client.submit(study.optimize, ...)`` pattern — its reads of the
        study then use the replica as the start brought it, until the trial reports or ends.
        Elsewhere (a notebook that asks and tells) reads stay fresh: such a thread may ask
        and keep reading while others optimize.
        """
        self._owned.add(trial_id)
        if _worker_address() is not None:
            self._thread.snapshot = study_id

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
        trial_id = compat.trial_id(trial)
        if trial_id not in self._owned:
            self._call([op])
            return
        with self._lock:
            getattr(self._replica, apply)(trial_id, *args)
            self._unacked[trial_id] += 1
        writes = self._pending()
        writes.add(op)
        if apply == "set_param" and writes.params_at_once:
            # Before suggest returns: a worker that dies next keeps nothing of the trial's,
            # and a parameter the scheduler refuses raises here, in the objective.
            self._call([])
            if trial_id in writes.refused:  # a runner's: the others' raise in _call
                raise writes.refused.pop(trial_id)
        else:
            self._flusher.wake(writes)


#: The DaskStorage last made for each name in this process, most recent last. Unpickling
#: reuses it, which keeps its replica warm: in the ``client.submit(study.optimize, ...)``
#: pattern every task unpickles the storage anew, and a fresh replica would fetch the whole
#: study each time. Bounded, so a process that touches many storages keeps only recent ones.
_instances: OrderedDict[str, DaskStorage] = OrderedDict()
_instances_lock = threading.Lock()
_MAX_INSTANCES = 8


def _remember(storage: DaskStorage) -> None:
    with _instances_lock:
        _instances[storage.name] = storage
        _instances.move_to_end(storage.name)
        if len(_instances) > _MAX_INSTANCES:
            _instances.popitem(last=False)


def _forget(storage: DaskStorage) -> None:
    with _instances_lock:
        if _instances.get(storage.name) is storage:
            del _instances[storage.name]


#: Clients whose workers were asked to import the runner's modules.
_warmed: weakref.WeakSet[Client] = weakref.WeakSet()
#: Clients subscribed to the scheduler's announcements of runs that ended ...
_following: weakref.WeakSet[Client] = weakref.WeakSet()
#: ... and the (storage name, run id) of those announced, the latest few hundred.
_ended_runs: OrderedDict[tuple[str, str], None] = OrderedDict()
_MAX_ENDED_RUNS = 512


def _run_ended(event: tuple[float, dict[str, str]]) -> None:
    """The scheduler announced a run that ended (on the client's event loop)."""
    _, message = event
    _ended_runs[(message["storage"], message["run"])] = None
    while len(_ended_runs) > _MAX_ENDED_RUNS:
        _ended_runs.popitem(last=False)


async def _import_runner_in_background() -> None:
    """On a worker: import the trial runner's modules (Optuna's included) on a thread of
    their own, so that the first runner to arrive finds them imported (or nearly)."""
    threading.Thread(
        target=importlib.import_module, args=("dasktune.submit.runner",), daemon=True,
        name="dasktune-import",
    ).start()


def _attach(
    name: str,
    heartbeat_interval: int | None,
    grace_period: int | None,
    callback: StaleTrialCallback | None,
) -> DaskStorage:
    """Unpickle a DaskStorage: attach by name, with the same heartbeat settings."""
    with _instances_lock:
        storage = _instances.get(name)
    if (
        storage is None
        or (storage._client is not None and storage._client.status != "running")
        or (storage.heartbeat_interval, storage.grace_period) != (heartbeat_interval, grace_period)
    ):
        storage = DaskStorage(
            None,
            name,
            None,
            False,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=callback,
        )
    return storage
