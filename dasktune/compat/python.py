"""Inside CPython: a workaround for a deadlock of Python 3.11 that Dask's worker profiler
meets."""

from __future__ import annotations

import gc
import sys
import threading
from types import FrameType

_lock = threading.Lock()


def guard_current_frames() -> None:
    """Make ``sys._current_frames()`` run without the garbage collector, in this process,
    on the Pythons that need it (before 3.12); once per process.

    ``sys._current_frames()`` holds the interpreter's lock on its list of threads while it
    allocates its result. On Python 3.11 (and 3.10) an allocation may run the collector
    there, and freeing a ``threading.local`` in a reference cycle takes the same lock: the
    thread waits for itself, for ever (CPython gh-106883, gh-116969; distributed issue 8616).
    Dask's worker profiler makes that call on the worker's event loop every 10 ms while a
    task runs, so the whole worker stops answering. Such garbage is ordinary: each
    ``DaskStorage`` keeps its per-thread state in a ``threading.local`` and is freed with
    its reference cycles (a worker that had attached about 900 storages stopped answering);
    an Optuna ``Study`` has a ``threading.local`` too, and ``study.optimize`` with
    ``catch=`` keeps a caught error's traceback, which holds the study, in a cycle.

    The fix proposed upstream (python/cpython PR 117332, not released for 3.11) disables the
    collector during the call; this does the same around it. A collector the process
    disabled itself is left alone. Python 3.12 collects only between bytecodes, never
    inside that call.
    """
    if sys.version_info >= (3, 12):
        return
    with _lock:
        current_frames = sys._current_frames
        if getattr(current_frames, "_dasktune_guard", False):
            return

        def guarded() -> dict[int, FrameType]:
            if not gc.isenabled():
                return current_frames()
            gc.disable()
            try:
                return current_frames()
            finally:
                gc.enable()

        guarded._dasktune_guard = True  # type: ignore[attr-defined]
        sys._current_frames = guarded
