"""The writes of a storage that talks to a scheduler-side host: encoded once, and held back.

:class:`WireWrites` is Optuna's ``BaseStorage`` write interface encoded once as wire
operations (see :mod:`dasktune.storage.wire`), for both storages that send them to the
storage plugin: the ``DaskStorage`` proxy and the dashboard's ``HostStorage``. Each says only
how an operation is sent; ``DaskStorage`` also holds back writes to the trials its process
runs, as below.

Each thread's held-back writes wait in its own :class:`PendingWrites`, in order, and leave
with the thread's next request — or, if the thread makes none for its delay
(:data:`FLUSH_AFTER` seconds by default; a long objective between two ``suggest`` calls),
with the :class:`Flusher`'s. A thread whose writes others should see soon (the parameters of
a trial other workers' samplers should know about) sets a short delay. Parameters do not
wait at all unless the thread says so (``params_at_once``, cleared only by a runner of
cheap trials): the write sends them, so the worker can die right after without them. A
thread's lock is held while its writes are being sent, by whichever thread sends them, so
they reach the scheduler in the order they were made. An error the scheduler returns for
writes the flusher sent is raised by the owning thread's next request.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from collections.abc import Sequence
import threading
import time
from typing import Any
from typing import TYPE_CHECKING
import weakref

from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune.storage import wire

if TYPE_CHECKING:
    from dasktune.storage.session import RunnerSession

#: Longest a write waits for its thread's next request before the flusher sends it.
FLUSH_AFTER = 0.05
#: Quiet time after which the flusher's thread ends (the next write starts another).
_IDLE_SECONDS = 1.0


class WireWrites:
    """Optuna's ``BaseStorage`` writes as wire operations. A storage provides
    :meth:`_write` (an operation with a request id) and :meth:`_send` (apply it now), and
    may override :meth:`_send_trial_write` and :meth:`_send_tell` to hold back writes to
    trials it runs. Mixed in before Optuna's ``BaseStorage``."""

    @abc.abstractmethod  # abstract through BaseStorage's ABCMeta
    def _write(self, name: wire.OpName, *args: Any) -> wire.Op:
        """The write operation ``name(*args)``, with a request id."""

    @abc.abstractmethod
    def _send(self, op: wire.Op) -> Any:
        """Apply ``op`` on the scheduler now; its result, or its error raised."""

    def _send_trial_write(self, trial_id: int, op: wire.Op, apply: str, *args: Any) -> None:
        """Send a write to a trial's parameters, intermediate values or attributes
        (``apply``: the :class:`~dasktune.storage.replica.Replica` method that makes the
        same change locally, with ``args``)."""
        self._send(op)

    def _send_tell(
        self, trial_id: int, op: wire.Op, state: TrialState, values: list[float] | None
    ) -> bool:
        """Send a trial's new state; whether it changed (Optuna's contract)."""
        return bool(self._send(op))

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        directions_ = wire.encode_directions(list(directions))
        return int(self._send(self._write("create_new_study", directions_, study_name)))

    def delete_study(self, study_id: int) -> None:
        self._send(self._write("delete_study", study_id))

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._send(self._write("set_study_user_attr", study_id, key, wire.encode_attr(value)))

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._send(self._write("set_study_system_attr", study_id, key, wire.encode_attr(value)))

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        template = None if template_trial is None else wire.encode_trial(template_trial)
        return int(self._send(self._write("create_new_trial", study_id, template)))

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        value, encoded = float(param_value_internal), wire.encode_distribution(distribution)
        op = self._write("set_trial_param", trial_id, param_name, value, encoded)
        self._send_trial_write(trial_id, op, "set_param", param_name, value, distribution)

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        op = self._write("set_trial_intermediate_value", trial_id, step, intermediate_value)
        self._send_trial_write(trial_id, op, "set_intermediate_value", step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        op = self._write("set_trial_user_attr", trial_id, key, wire.encode_attr(value))
        self._send_trial_write(trial_id, op, "set_attr", "user_attrs", key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        op = self._write("set_trial_system_attr", trial_id, key, wire.encode_attr(value))
        self._send_trial_write(trial_id, op, "set_attr", "system_attrs", key, value)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        floats = None if values is None else [float(v) for v in values]
        op = self._write("set_trial_state_values", trial_id, state.value, floats)
        return self._send_tell(trial_id, op, state, floats)


class PendingWrites:
    """One thread's unsent writes."""

    def __init__(self) -> None:
        self.ops: list[list[Any]] = []
        self.since = 0.0  # when the oldest of ``ops`` was made
        self.delay = FLUSH_AFTER  # how long they may wait for the thread's own next request
        #: Whether a parameter is sent before the write returns rather than waiting too.
        self.params_at_once = True
        self.error: BaseException | None = None
        #: Trial id -> the error the scheduler refused a write of it with (the trial was
        #: failed with it), until the thread reports it.
        self.refused: dict[int, Exception] = {}
        #: The runner session of the thread, if it serves a run of ``dasktune.optimize``:
        #: it reports refused writes with its trials' outcomes, and its trials' tells wait
        #: for its next claim.
        self.session: RunnerSession | None = None
        self.lock = threading.RLock()

    @property
    def due(self) -> float:
        """When the flusher sends them (``time.monotonic()``)."""
        return self.since + self.delay

    def add(self, op: list[Any]) -> None:
        with self.lock:
            if not self.ops:
                self.since = time.monotonic()
            self.ops.append(op)

    def take(self) -> list[list[Any]]:
        """The unsent writes, now the caller's to send (lock held by the caller)."""
        ops, self.ops = self.ops, []
        return ops


class Flusher:
    """Sends every thread's writes once they are due, from a daemon thread that runs only
    while writes keep coming: it starts on the first write after a quiet spell and ends
    after :data:`_IDLE_SECONDS` without any, so an idle storage holds no thread.
    ``send(writes)`` is called with ``writes.lock`` held."""

    def __init__(self, send: Callable[[PendingWrites], None]) -> None:
        self._send = weakref.WeakMethod(send)  # the thread must not keep its storage alive
        self._all: weakref.WeakSet[PendingWrites] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._soon = threading.Event()
        self._closed = False

    def track(self, writes: PendingWrites) -> None:
        with self._lock:
            self._all.add(writes)

    def wake(self, writes: PendingWrites) -> None:
        """``writes`` has a write waiting. While the flusher runs and the write may wait as
        long as it ticks (a busy run writes all the time), this costs nothing; a write due
        sooner wakes it."""
        if self._closed:
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._closed:
                    self._thread = threading.Thread(
                        target=self._loop, name="dasktune-flusher", daemon=True
                    )
                    self._thread.start()
        if writes.delay < FLUSH_AFTER:
            self._soon.set()

    def close(self) -> None:
        """Stop the thread (after a last flush); later writes wait for their own thread."""
        self._closed = True
        self._soon.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _loop(self) -> None:
        idle = 0.0
        try:
            while idle < _IDLE_SECONDS and not self._closed:
                began = time.monotonic()
                self._soon.wait(self._until_due(began))
                self._soon.clear()
                send = self._send()
                if send is None:
                    return
                waiting = self._flush_due(send)
                del send
                idle = 0.0 if waiting else idle + time.monotonic() - began
            if self._closed:
                send = self._send()
                if send is not None:
                    self._flush_due(send, everything=True)
        finally:
            with self._lock:
                self._thread = None
        # A write made while this thread was ending must not wait for the next one.
        if not self._closed:
            for writes in list(self._all):
                if writes.ops:
                    self.wake(writes)
                    break

    def _until_due(self, now: float) -> float:
        """Seconds until the earliest waiting write is due, at most :data:`FLUSH_AFTER`."""
        with self._lock:
            dues = [w.due for w in self._all if w.ops]
        return min([FLUSH_AFTER, *(max(0.0, due - now) for due in dues)])

    def _flush_due(self, send: Callable[[PendingWrites], None], everything: bool = False) -> bool:
        """Send the writes that are due (all: ``everything``); whether any write waits."""
        now, waiting = time.monotonic(), False
        with self._lock:
            everyone = list(self._all)
        for writes in everyone:
            if not writes.ops:
                continue
            waiting = True
            if (now < writes.due and not everything) or not writes.lock.acquire(blocking=False):
                continue  # not due yet, or its own thread is sending it right now
            try:
                if writes.ops:
                    try:
                        send(writes)
                    except BaseException as e:  # the owner raises it on its next call
                        writes.error = e
            finally:
                writes.lock.release()
        return waiting
