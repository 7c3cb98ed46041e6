"""The scheduler's side of one named storage: what it stores and the runs it keeps, behind one
table of operations. Free of Dask so it can be tested alone.

A :class:`StorageHost` composes a :class:`~dasktune.storage.store.Store` (the Optuna storage
and its mirror) and a :class:`~dasktune.storage.runs.RunBook` (``dasktune.optimize``'s runs),
and passes events between them explicitly: trials that finished, a worker removed, a client
gone, a study deleted, a run ended. Neither part knows the other.

Requests arrive as *operations* ``[name, args, request_id]``; :data:`OPERATIONS` is the one
table of what a client may ask, which part answers, and which study's replica the answer
changes. A request id that was already applied returns the stored result instead of applying
again, so a client that retries after a dropped connection cannot create a second trial.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
import logging
import time
from typing import Any
from typing import cast
from typing import TypeVar
import uuid

from optuna.storages import BaseStorage

from dasktune.storage import backends
from dasktune.storage import wire
from dasktune.storage.requests import Answers
from dasktune.storage.requests import MISSING
from dasktune.storage.runs import Outcome
from dasktune.storage.runs import RunBook
from dasktune.storage.store import Store

logger = logging.getLogger(__name__)
T = TypeVar("T")

@dataclass(frozen=True)
class Operation:
    """One entry of the operation table: the method, how to find the study whose replica
    its answer changes (see :data:`~dasktune.storage.wire.Scope`), and whether applying it
    twice would do or answer something else than once (then a retry must get the first
    answer, so its request id is remembered)."""

    method: Callable[..., Any]
    scope: wire.Scope | None = None
    once: bool = False


class StorageHost:
    """One named storage on the scheduler.

    Thread-safety: :meth:`execute` and the event methods may run on a thread of the storage's
    own (blocking backends run off the scheduler's event loop, one call at a time), while
    :meth:`deltas` and :meth:`run_status` run on the loop; the store and the run book guard
    what both sides read.
    """

    def __init__(self, backend: BaseStorage, url: str | None, named: bool = True) -> None:
        self._transactional = backends.transactional(backend)
        self.url = url
        self.named = named  # its name was its user's (not made up for an unnamed storage)
        self._last_used = time.monotonic()
        #: Changes when the host is rebuilt (scheduler restart): client cursors are then void.
        self.epoch = uuid.uuid4().hex
        self.store = Store(backend)
        self.runs = RunBook()
        self._answers = Answers()
        self._worker: str | None = None  # address of the worker whose request is executed

    @property
    def backend(self) -> BaseStorage:
        return self.store.backend

    # -- requests --------------------------------------------------------------------------

    def execute(
        self, ops: list[wire.Op], worker: str | None = None
    ) -> tuple[list[Any], wire.ErrorInfo | None]:
        """Apply ``ops`` in order; stop at the first failure. ``worker`` is the address of
        the worker process that sent them, if a worker did.

        Returns the results of the operations that ran and the error envelope of the one
        that failed, if one did.
        """
        results: list[Any] = []
        self._worker = worker
        try:
            for index, (name, args, request_id) in enumerate(ops):
                first = MISSING if request_id is None else self._answers.find(request_id)
                if first is not MISSING:
                    results.append(first)
                    continue
                operation = OPERATIONS.get(cast(wire.OpName, name))
                try:
                    if operation is None:
                        raise ValueError(f"Unknown storage operation {name!r}.")
                    # A journal backend may have applied a write whose reply it lost: only
                    # a write that is the same applied twice is asked again there.
                    again = self._transactional or not operation.once
                    result = self.reconnecting(operation.method, self, *args, again=again)
                except Exception as e:  # every error goes back to the caller as data
                    return results, wire.encode_error(e, index)
                if request_id is not None and operation.once and result != []:
                    # (A refused claim, []: its retry is refused again, or granted as if
                    # first: the first answer never reached the runner.)
                    self._answers.keep(request_id, result)
                results.append(result)
            return results, None
        finally:
            self._refresh()
            self._worker = None

    def reconnecting(self, fn: Callable[..., T], *args: Any, again: bool = True) -> T:
        """``fn(*args)``, once more (``again``) if the database dropped its connection under
        it (a restart, a failover, ``pg_terminate_backend``): a transactional backend rolled
        the call back, and every backend reconnects. Raises an error naming the database if
        it drops it again, or at once when not ``again``. (A connection lost in the instant
        after a database committed would apply a write twice; that window is the commit's.)"""
        try:
            return fn(*args)
        except Exception as error:
            cause = backends.lost_connection(error)
            if cause is None:
                raise
            if not again:
                raise backends.unreachable(self.url, cause) from error
            logger.warning("DaskStorage: the database dropped its connection (%s); once more", cause)
        return self.reconnecting(fn, *args, again=False)

    def touched_studies(self, ops: list[wire.Op], results: list[Any]) -> set[int]:
        """Studies changed by the operations that ran, whose replicas a client must refresh."""
        touched = set()
        for (name, args, _), result in zip(ops, results):
            scope = OPERATIONS[cast(wire.OpName, name)].scope
            if scope == "all":
                touched.update(self.store.study_ids())
                continue
            study: int | None = None
            if scope == "study" or (scope == "result" and isinstance(result, int)):
                study = args[0] if scope == "study" else result
            elif scope == "trial":
                study = self.store.study_of(args[0])
            elif scope == "run" and args[0] in self.runs.runs:
                study = self.runs.runs[args[0]].study_id
            if study is not None:
                touched.add(study)
        return touched

    def deltas(
        self, cursors: dict[int, int], studies: Iterable[int]
    ) -> tuple[list[wire.Delta], list[int]]:
        return self.store.deltas(cursors, studies)

    def reply(
        self,
        ops: list[wire.Op],
        results: list[Any],
        error: wire.ErrorInfo | None,
        cursors: list[list[int]],
        want: list[int],
        epoch: str | None,
    ) -> dict[str, Any]:
        """The answer to a request: the results, and what changed since the caller's
        cursors in every study the operations touched or the caller wants."""
        touched = self.touched_studies(ops, results)
        # Cursors from another epoch (a scheduler restart) mean nothing here: start over.
        known = {study: cursor for study, cursor in cursors} if epoch == self.epoch else {}
        deltas, missing = self.deltas(known, touched.union(want))
        reply: wire.Reply = {
            "results": results, "error": error, "epoch": self.epoch, "deltas": deltas, "missing": missing,
        }
        return dict(reply)

    def used(self) -> None:
        """A client asked something of this storage."""
        self._last_used = time.monotonic()

    def idle(self) -> float:
        """Seconds since a client last asked something of this storage."""
        return time.monotonic() - self._last_used

    def sizes(self) -> dict[str, int]:
        """How much the host keeps, by kind: its store's, its run book's, request ids."""
        return {**self.store.sizes(), **self.runs.sizes(), "request ids": len(self._answers)}

    def dump(self) -> list[dict[str, Any]]:
        return self.store.dump()

    # -- reads for code in the scheduler's process (the dashboard) ---------------------------

    def study_id(self, name: str) -> int:
        return self.store.get_study_id_from_name(name)

    def studies(self) -> list[wire.StudyMeta]:
        return self.store.get_all_studies()

    def study_of(self, trial_id: int) -> int | None:
        return self.store.study_of(trial_id)

    def find_runs(self, study_id: int) -> list[wire.RunStatus]:
        return self.runs.find(study_id)

    # -- storage operations that involve runs --------------------------------------------

    def create_new_trial(self, study_id: int, template: wire.Trial | None) -> int:
        return self.store.create_new_trial(study_id, template, self._worker)

    def set_trial_state_values(
        self, trial_id: int, state: int, values: list[float] | None
    ) -> bool:
        return self.store.set_trial_state_values(trial_id, state, values, self._worker)

    def delete_study(self, study_id: int) -> None:
        """Delete the study; its live runs end (their drivers learn why) and every other
        record of it is dropped at once."""
        name = self.store.study_name(study_id)
        self.store.delete_study(study_id)
        self.runs.study_deleted(study_id, f"study {name!r} was deleted")

    # -- runs: the operations that involve the store too -----------------------------------

    def open_run(self, run_id: str, study_id: int, terms: wire.RunTerms) -> wire.RunStatus:
        """Start accounting for one ``optimize`` call in a study that exists (again: the
        existing run's status)."""
        self.store.check_study(study_id)
        return self.runs.open(run_id, study_id, terms)

    def claim_trials(
        self, run_id: str, key: str | None, wanted: int, seconds_per_trial: float
    ) -> list[int]:
        """See :meth:`RunBook.claim`: for the worker that asks, from the store."""
        return self.runs.claim(
            run_id,
            key,
            wanted,
            seconds_per_trial,
            self._worker,
            lambda study_id, n: self.store.start_trials(study_id, n, self._worker),
        )

    def end_run(self, run_id: str, outcome: Outcome, reason: str) -> wire.RunStatus:
        """End ``run_id`` (see :meth:`RunBook.end`), failing its running trials unless the
        end is graceful."""
        for trial_id in self.runs.end(run_id, outcome, reason):
            self.store.fail(trial_id, f"run {outcome}: {reason}")
        self._refresh()
        return self.runs.status(run_id)[0]

    def release_trials(self, run_id: str, trial_ids: list[int]) -> list[int]:
        """Give back trials a runner of ``run_id`` claimed and never started (the run ended
        before it took them, or the runner stops on an error of its own): WAITING again,
        for a later run. The ids of those given back."""
        released = [t for t in self.runs.held(run_id, trial_ids) if self.store.requeue(t)]
        self.runs.released(released)
        return released

    def abandon_trials(self, run_id: str, trial_ids: list[int], reason: str) -> list[int]:
        """FAIL trials a runner of ``run_id`` started and will not finish (it stops on an
        error of its own), recording ``reason``; the ids of those it failed."""
        return [t for t in self.runs.held(run_id, trial_ids) if self.store.fail(t, reason)]

    # -- cluster events ------------------------------------------------------------------

    def worker_removed(self, worker: str, reason: str) -> list[int]:
        """The scheduler removed ``worker``: its RUNNING trials become FAIL with ``reason``,
        and those of runs with retries left are retried with the same parameters. The failed
        trials' ids."""
        failed = [t for t in self.store.running_on(worker) if self._lose(t, reason)]
        self._refresh()
        return failed

    def client_removed(self, client: str) -> list[str]:
        """The Dask client ``client`` left: the runs it drove are orphaned. Their ids."""
        orphaned = self.runs.client_removed(client)
        for run_id in orphaned:
            self.end_run(run_id, "orphaned", f"the client {client} that drove it left")
        return orphaned

    def fail_stale_trials(self, study_id: int, grace_period: float) -> list[int]:
        """Fail the RUNNING trials of ``study_id`` whose heartbeat is older than
        ``grace_period``, as Optuna's ``fail_stale_trials`` does before each trial: those of
        an ``optimize`` run as lost with their worker (retried as the run says, or as the
        caller's stale-trial callback decides), the others plain FAIL. Returns the ids of
        the others, whose stale-trial callback the caller runs, as Optuna does."""
        reason = wire.stale_reason(grace_period)
        others = []
        for trial_id in self.store.get_stale_trial_ids(study_id, grace_period):
            if self.runs.run_of(trial_id) is not None:
                self._lose(trial_id, reason)
            elif self.store.fail(trial_id, reason):
                others.append(trial_id)
        self._refresh()
        return others

    def fail_long_stale_trials(self, margin: float) -> list[int]:
        """Fail RUNNING trials whose heartbeat stopped ``margin`` seconds beyond their grace
        period (see :meth:`Store.long_stale_trials`), those of runs as lost; their ids."""
        failed = [
            trial_id
            for trial_id, age in self.store.long_stale_trials(margin)
            if self._lose(trial_id, f"no heartbeat for {age:.0f} s")
        ]
        self._refresh()
        return failed

    def expire(self) -> None:
        """Drop what is kept only for a while: ended runs, old request ids."""
        self.runs.expire()
        self._answers.expire()

    # -- internals -----------------------------------------------------------------------

    def _lose(self, trial_id: int, reason: str) -> bool:
        """A RUNNING trial is lost (its worker left, or went silent): FAIL with ``reason``,
        and, if an ``optimize`` run has retries left for it, retried with its parameters.
        ``False`` if it had finished already."""
        if not self.store.fail(trial_id, reason):
            return False
        run = self.runs.run_of(trial_id)
        retried = run is not None and run.retries is not None and self.store.retry(trial_id, run.retries) is not None
        self.runs.lost(trial_id, retried)
        return True

    def _refresh(self) -> None:
        finished = self.reconnecting(self.store.refresh)
        if finished:
            self.runs.trials_finished(finished)



def _store(name: str) -> Callable[..., Any]:
    """An operation the store answers alone."""

    def call(host: StorageHost, *args: Any) -> Any:
        return getattr(host.store, name)(*args)

    call.__name__ = name
    return call


def _runs(name: str) -> Callable[..., Any]:
    """An operation the run book answers alone."""

    def call(host: StorageHost, *args: Any) -> Any:
        return getattr(host.runs, name)(*args)

    call.__name__ = name
    return call


def _host(name: str) -> Callable[..., Any]:
    """An operation that takes the store and the run book together."""
    method: Callable[..., Any] = getattr(StorageHost, name)
    return method


#: The operations a client may ask for, by wire name. Nothing outside this table runs.
OPERATIONS: dict[wire.OpName, Operation] = {
    "create_new_study": Operation(_store("create_new_study"), "result", once=True),
    "delete_study": Operation(_host("delete_study"), once=True),
    "set_study_user_attr": Operation(_store("set_study_user_attr"), "study"),
    "set_study_system_attr": Operation(_store("set_study_system_attr"), "study"),
    "get_study_id_from_name": Operation(_store("get_study_id_from_name")),
    "get_all_studies": Operation(_store("get_all_studies"), "all"),
    "create_new_trial": Operation(_host("create_new_trial"), "study", once=True),
    "set_trial_param": Operation(_store("set_trial_param"), "trial"),
    "set_trial_state_values": Operation(_host("set_trial_state_values"), "trial", once=True),
    "set_trial_intermediate_value": Operation(_store("set_trial_intermediate_value"), "trial"),
    "set_trial_user_attr": Operation(_store("set_trial_user_attr"), "trial"),
    "set_trial_system_attr": Operation(_store("set_trial_system_attr"), "trial"),
    "locate_trial": Operation(_store("locate_trial"), "trial"),
    "record_heartbeat": Operation(_store("record_heartbeat")),
    "get_stale_trial_ids": Operation(_store("get_stale_trial_ids")),
    "fail_stale_trials": Operation(_host("fail_stale_trials"), "study"),
    "open_run": Operation(_host("open_run"), "run"),
    "register_runner": Operation(_runs("register_runner"), once=True),
    "claim_trials": Operation(_host("claim_trials"), "run", once=True),
    "end_run": Operation(_host("end_run"), "run"),
    "release_trials": Operation(_host("release_trials"), "run"),
    "abandon_trials": Operation(_host("abandon_trials"), "run"),
    "decide_lost": Operation(_runs("decide_lost"), "run"),
    "run_status": Operation(_runs("status")),
    "find_runs": Operation(_runs("find")),
}
