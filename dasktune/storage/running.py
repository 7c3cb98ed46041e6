"""The trials this process runs, as a :class:`~dasktune.storage.proxy.DaskStorage` keeps
them: their writes are checked here as Optuna would check them, applied to the replica at
once, and held back to leave with the thread's next request (see
:mod:`dasktune.storage.writes`); their reads use the study as the trial's start brought it.

A mixin of ``DaskStorage``, so that ``proxy.py`` reads as Optuna's ``BaseStorage`` and
:mod:`dasktune.storage.runs_client` as the runs' requests. A trial is this process's from
Optuna's ``ask`` in this process, or from a claim (:meth:`RunningTrials.adopt_trial`), until
its tell.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from typing import Any
from typing import TYPE_CHECKING

from optuna import distributions
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune.storage import wire
from dasktune.storage.protocol import _worker_address
from dasktune.storage.protocol import Op
from dasktune.storage.protocol import SchedulerProtocol


class RunningTrials(SchedulerProtocol):
    """Writes held back and reads kept steady for the trials this process runs (see the
    module docstring). Mixed in before ``WireWrites``, whose send hooks it overrides."""

    if TYPE_CHECKING:  # provided by DaskStorage (Optuna's BaseStorage and Heartbeats)

        def get_trial(self, trial_id: int) -> FrozenTrial: ...

        def check_trial_is_updatable(self, trial_id: int, trial_state: TrialState) -> None: ...

        def _stale_reason(self, trial_id: int, state: TrialState) -> list[wire.Op]: ...

    def _send_trial_write(self, trial_id: int, op: Op, apply: str, *args: Any) -> None:
        """Check a write to a trial as Optuna would; hold it back if this process runs the
        trial (see :mod:`dasktune.storage.writes`), send it at once otherwise."""
        self._updatable_trial(trial_id)
        if apply == "set_param":
            name, _, distribution = args
            with self._lock:
                study_id = self._replica.study_of(trial_id)
                assert study_id is not None, "_updatable_trial made the trial known"
                known = self._replica.studies[study_id].distributions.get(name)
            if known is not None:
                distributions.check_distribution_compatibility(known, distribution)
        elif apply == "set_intermediate_value":
            # Pruning decisions need the other trials' latest values: this thread reads fresh.
            self._thread.snapshot = None
        if trial_id not in self._owned:
            self._call([op])
            return
        self._hold_back(trial_id, op, apply, *args)
        writes = self._pending()
        if apply == "set_param" and writes.params_at_once:
            # Before suggest returns: a worker that dies next keeps nothing of the trial's,
            # and a parameter the scheduler refuses raises here, in the objective.
            self._call([])
            if trial_id in writes.refused:  # a runner's: the others' raise in _call
                raise writes.refused.pop(trial_id)

    def _send_tell(
        self, trial_id: int, op: Op, state: TrialState, values: list[float] | None
    ) -> bool:
        self._updatable_trial(trial_id)
        if self._pending().session is not None and state.is_finished() and trial_id in self._owned:
            # A runner's tell travels with its next request (the next claim): no round trip.
            self._hold_back(trial_id, op, "set_state", state, values)
            self._owned.discard(trial_id)
            return True
        *_, changed = self._call([*self._stale_reason(trial_id, state), op])
        if state.is_finished():
            self._owned.discard(trial_id)
            self._thread.snapshot = None  # the trial's snapshot ends with it
        elif state == TrialState.RUNNING and changed:
            study_id = self._replica.study_of(trial_id)
            assert study_id is not None, "_updatable_trial made the trial known"
            self._took(study_id, trial_id)  # a WAITING trial
        return bool(changed)

    # -- trials this process runs ------------------------------------------------

    def adopt_trial(self, trial_id: int) -> bool:
        """This process now runs ``trial_id``, which it claimed: writes to the trial are
        checked here and held back. A thread in a runner session (see :meth:`runner`) also
        reads the trial's study as the claim brought it, until the trial reports or ends.

        Returns ``False`` (and takes nothing on) if the trial already finished, as far as
        this process knows: the scheduler failed it since the claim (its run was aborted).
        """
        with self._lock:
            trial = self._replica.trial(trial_id)
            if trial is None or trial.state.is_finished():
                return False
            self._owned.add(trial_id)
        if self._pending().session is not None:
            self._thread.snapshot = self._replica.study_of(trial_id)
        return True

    def flush(self) -> None:
        """Send this thread's held-back writes (see :mod:`dasktune.storage.writes`) and
        return once the scheduler applied them: what a worker that dies next must not
        take with it (the id of a checkpoint that replaces one about to be removed)."""
        self._call([])

    # -- one consistent view, for a pruning decision -------------------------------

    @contextlib.contextmanager
    def one_view(self, study_id: int) -> Iterator[None]:
        """Inside, this thread's reads of the study all see one state of it: the first is
        fresh (this thread's held-back writes go with it), later ones reuse it, so a
        pruner that reads several times costs one round trip. Writes made inside (a
        pruner's record of the trial's rung, which the trials deciding next must see) are
        sent on leaving; without reads or writes inside, nothing is sent."""
        previous = getattr(self._thread, "snapshot", None)
        self._thread.snapshot, self._thread.one_view = None, study_id
        writes = self._pending()
        last = writes.ops[-1] if writes.ops else None
        try:
            yield
        finally:
            self._thread.snapshot, self._thread.one_view, self._thread.view = previous, None, None
        if writes.ops and writes.ops[-1] is not last:
            self.flush()

    def _took(self, study_id: int, trial_id: int) -> None:
        """This thread took ``trial_id`` to run through Optuna's own ``ask`` (not a claim).

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

    def _hold_back(self, trial_id: int, op: Op, apply: str, *args: Any) -> None:
        """Apply a checked write to a trial this process runs locally, and let it wait for
        the thread's next request (or the flusher)."""
        with self._lock:
            getattr(self._replica, apply)(trial_id, *args)
            self._unacked[trial_id] += 1
        writes = self._pending()
        writes.add(op)
        self._flusher.wake(writes)
