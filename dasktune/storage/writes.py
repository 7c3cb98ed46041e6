"""Writes a process has checked and applied locally but not yet sent to the scheduler.

Each thread's writes wait in its own :class:`PendingWrites`, in order, and leave with the
thread's next request — or, if the thread makes none for :data:`FLUSH_AFTER` seconds (a
long objective between two ``suggest`` calls), with the :class:`Flusher`'s. A thread's lock
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
#: Quiet time after which the flusher stops ticking and sleeps until woken.
_IDLE_SECONDS = 1.0


class PendingWrites:
    """One thread's unsent writes."""

    def __init__(self) -> None:
        self.ops: list[list[Any]] = []
        self.since = 0.0  # when the oldest of ``ops`` was made
        self.error: BaseException | None = None
        self.lock = threading.RLock()

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
    """Sends every thread's writes that waited :data:`FLUSH_AFTER`, from a daemon thread
    started on first use. ``send(writes)`` is called with ``writes.lock`` held."""

    def __init__(self, send: Callable[[PendingWrites], None]) -> None:
        self._send = weakref.WeakMethod(send)  # the thread must not keep its storage alive
        self._all: weakref.WeakSet[PendingWrites] = weakref.WeakSet()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ticking = False

    def track(self, writes: PendingWrites) -> None:
        with self._lock:
            self._all.add(writes)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="dasktune-flusher", daemon=True
                )
                self._thread.start()

    def wake(self) -> None:
        """A thread has writes waiting. While the flusher is already ticking (a busy run
        writes all the time) this costs nothing: waking a thread per write would."""
        if not self._ticking:
            self._ticking = True
            self._wake.set()

    def _loop(self) -> None:
        idle = 0.0
        while True:
            self._wake.wait(timeout=FLUSH_AFTER if self._ticking else None)
            self._wake.clear()
            send = self._send()
            if send is None:
                return
            waiting = self._flush_due(send)
            del send
            # Tick while writes keep coming; go to sleep after a quiet second.
            idle = 0.0 if waiting else idle + FLUSH_AFTER
            if idle >= _IDLE_SECONDS:
                self._ticking = False

    def _flush_due(self, send: Callable[[PendingWrites], None]) -> bool:
        """Send the writes that waited :data:`FLUSH_AFTER`; whether any write waits."""
        now, waiting = time.monotonic(), False
        with self._lock:
            everyone = list(self._all)
        for writes in everyone:
            if not writes.ops:
                continue
            waiting = True
            if now - writes.since < FLUSH_AFTER or not writes.lock.acquire(blocking=False):
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
