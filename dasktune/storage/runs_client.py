"""The proxy half of ``dasktune.optimize``'s runs: what a client, a driver and a runner ask
the scheduler's run book (:mod:`dasktune.storage.runs`, the scheduler half), and the
:class:`~dasktune.storage.session.RunnerSession` a runner thread serves its run in.

A mixin of :class:`~dasktune.storage.proxy.DaskStorage`, so that a run speaks through the
storage of its study (one connection, one replica), while ``proxy.py`` reads as Optuna's
``BaseStorage``. Every method is one request; the claim also carries the thread's held-back
writes (the last trial's tell).

When a run ends other than by its budget, the scheduler announces it (a Dask event, see
:mod:`dasktune.storage.plugin`): :meth:`RunClient.follow_run_ends` subscribes a process once,
and :meth:`RunClient.run_ended` answers from what arrived, with no request.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
import concurrent.futures
import contextlib
import threading
from typing import Any
from typing import cast
from typing import TYPE_CHECKING
import weakref

from dasktune.storage import wire
from dasktune.storage.protocol import GONE
from dasktune.storage.protocol import SchedulerProtocol
from dasktune.storage.session import RunnerSession

if TYPE_CHECKING:
    from distributed import Client

    from dasktune.storage.runs import Outcome  # the scheduler half: for annotations only


class RunClient(SchedulerProtocol):
    """The run requests of a ``DaskStorage`` (see the module docstring)."""

    def open_run(self, run_id: str, study_id: int, terms: wire.RunTerms) -> wire.RunStatus:
        """Open the run ``run_id`` of ``study_id`` on the scheduler, which then enforces its
        budget. ``terms["retries"]``: how often a trial lost with its worker is retried
        (``None``: as the stale-trial callback run by the driver decides, see
        :meth:`decide_lost`). ``terms["client"]``: the Dask client that drives it (the run
        ends if that client leaves), ``None`` for a detached run. ``terms["gated"]``: its
        driver runs callbacks, which see each trial before the trial's runner starts another
        (see :mod:`dasktune.storage.runs`)."""
        op = self._write("open_run", run_id, study_id, terms)
        (status,) = self._call([op])
        return cast(wire.RunStatus, status)

    def register_runner(self, run_id: str, key: str) -> int:
        """Register the runner task ``key`` of ``run_id``; its index (0 for the first)."""
        (index,) = self._call([self._write("register_runner", run_id, key)])
        return int(index)

    def claim_trials(
        self, run_id: str, key: str | None, wanted: int = 1, seconds_per_trial: float = 0.0
    ) -> list[int]:
        """Start up to ``wanted`` trials of ``run_id`` for this worker, as its budget allows
        (``[]``: the runner must stop). The request also carries this thread's unsent
        writes (the previous trial's tell)."""
        (claimed,) = self._call(
            [self._write("claim_trials", run_id, key, wanted, seconds_per_trial)], tolerate=GONE
        )
        return list(claimed)

    def claim_trials_soon(
        self, run_id: str, key: str | None, wanted: int = 1, seconds_per_trial: float = 0.0
    ) -> concurrent.futures.Future[list[Any]]:
        """:meth:`claim_trials` without waiting: a future of ``[claimed ids]``."""
        op = self._write("claim_trials", run_id, key, wanted, seconds_per_trial)
        return self._call_soon([op], tolerate=GONE)

    def end_run(self, run_id: str, outcome: Outcome, reason: str) -> wire.RunStatus:
        """End ``run_id``: ``outcome`` is one of ``finished``, ``stopped``, ``failed`` (its
        running trials finish), ``cancelled``, ``aborted``, ``orphaned`` (they FAIL now,
        with ``reason``)."""
        # This process's other runners stop now, not when the scheduler's announcement
        # comes back: a cheap trial they claimed ahead would start in that round trip.
        _mark_ended(self.name, run_id)
        (status,) = self._call([self._write("end_run", run_id, outcome, reason)])
        return cast(wire.RunStatus, status)

    def release_trials(self, run_id: str, trial_ids: list[int]) -> list[int]:
        """Give back trials this runner claimed for ``run_id`` and never started: they are
        WAITING again, outside the run's budget. The ids of those it gave back."""
        (released,) = self._call([self._write("release_trials", run_id, trial_ids)], tolerate=GONE)
        return list(released)

    def abandon_trials(self, run_id: str, trial_ids: list[int], reason: str) -> list[int]:
        """FAIL trials this runner started for ``run_id`` and will not finish, with
        ``reason``. The ids of those it failed."""
        (failed,) = self._call(
            [self._write("abandon_trials", run_id, trial_ids, reason)], tolerate=GONE
        )
        return list(failed)

    def decide_lost(self, run_id: str, trial_id: int, retried: bool) -> None:
        """Tell the scheduler what the stale-trial callback did for ``trial_id`` of
        ``run_id``, lost with its worker: ``retried`` (enqueued a retry) or not."""
        self._call([self._write("decide_lost", run_id, trial_id, retried)])

    def run_status(self, run_id: str) -> wire.RunStatus:
        """The run's status on the scheduler. Raises ``KeyError`` for an unknown run."""
        ((status, _),) = self._call([["run_status", [run_id, 0], None]])
        return cast(wire.RunStatus, status)

    def watch_run(
        self, run_id: str, since: int, timeout: float, linger: float = 0.0, seen: bool = False
    ) -> tuple[wire.RunStatus, list[int]]:
        """Wait up to ``timeout`` s for a trial of ``run_id`` to finish or the run to end:
        its status and the ids of its trials that finished after the first ``since``, all
        readable locally. Once a trial has finished, the answer waits until ``linger`` s
        after the call for more (never past the run's end or ``timeout``). ``seen``: the
        caller, the run's driver, has run the callbacks of the first ``since`` trials."""
        status, finished = self._watch(run_id, since, timeout, linger, seen)
        return cast(wire.RunStatus, status), list(finished)

    def follow_run_ends(self) -> None:
        """Learn, in this process, of runs that end (see :meth:`run_ended`): subscribe this
        storage's client to the scheduler's announcements, once per client."""
        client = self.client
        with _following_lock:
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
        return cast(list[wire.RunStatus], runs)

    @contextlib.contextmanager
    def runner(self, run_id: str, key: str | None, ahead: bool = True) -> Iterator[RunnerSession]:
        """Serve ``run_id`` from this thread as the runner task ``key``: the session yields
        the trials to run (see :mod:`dasktune.storage.session`). ``ahead``: it may claim
        trials before it needs them. On leaving, the trials claimed and not started go back
        to WAITING and the writes held back are sent."""
        self.follow_run_ends()
        writes = self._pending()
        session = writes.session = RunnerSession(self, writes, run_id, key, ahead)  # type: ignore[arg-type]
        try:
            yield session
        finally:
            try:
                session.close()
                if writes.ops:
                    self._call([], tolerate=GONE)
            finally:
                writes.session = None
                self._thread.snapshot = None


#: Clients subscribed to the scheduler's announcements of runs that ended.
_following: weakref.WeakSet[Client] = weakref.WeakSet()
_following_lock = threading.Lock()
#: The (storage name, run id) of runs announced as ended, or ended by this process, the
#: latest few hundred; written by the client's event loop and by runner threads.
_ended_runs: OrderedDict[tuple[str, str], None] = OrderedDict()
_ended_lock = threading.Lock()
_MAX_ENDED_RUNS = 512


def _run_ended(event: tuple[float, dict[str, str]]) -> None:
    """The scheduler announced a run that ended (on the client's event loop)."""
    _, message = event
    _mark_ended(message["storage"], message["run"])


def _mark_ended(storage: str, run_id: str) -> None:
    with _ended_lock:
        _ended_runs[(storage, run_id)] = None
        while len(_ended_runs) > _MAX_ENDED_RUNS:
            _ended_runs.popitem(last=False)
