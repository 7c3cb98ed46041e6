"""Writes a process has checked and applied locally but not yet sent to the scheduler.

Each thread's writes wait in its own :class:`PendingWrites`, in order, and leave with the
thread's next request — or, if the thread makes none for its delay (:data:`FLUSH_AFTER`
seconds by default; a long objective between two ``suggest`` calls), with the
:class:`Flusher`'s. A thread whose writes others should see soon (the parameters of a
trial other workers' samplers should know about) sets a short delay. Parameters do not
wait at all unless the thread says so (``params_at_once``, cleared only by a runner of
cheap trials): the write sends them, so the worker can die right after without them. A
thread's lock
is held while its writes are being sent, by whichever thread sends them, so they reach the
scheduler in the order they were made. An error the scheduler returns for writes the
flusher sent is raised by the owning thread's next request.
"""

from __future__ import annotations

from collections.abc import Callable
import threading
import time
from typing import Any
import weakref

#: Longest a write waits for its thread's next request before the flusher sends it.
FLUSH_AFTER = 0.05
#: Quiet time after which the flusher's thread ends (the next write starts another).
_IDLE_SECONDS = 1.0


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
        #: The thread is a runner of ``dasktune.optimize``: it reports refused writes with
        #: its trials' outcomes, and defers its trials' tells to its next claim.
        self.runner = False
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
