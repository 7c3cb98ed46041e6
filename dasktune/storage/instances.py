"""The ``DaskStorage`` objects of this process, by name, and the workers they warmed up.

Unpickling a storage (it pickles by name) reuses the one this process made last for that
name, which keeps its replica warm: in the ``client.submit(study.optimize, ...)`` pattern
every task unpickles the storage anew, and a fresh replica would fetch the whole study each
time. Bounded, so a process that touches many storages keeps only recent ones.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
import importlib
import logging
import threading
from typing import TYPE_CHECKING
import weakref

from dasktune import compat

if TYPE_CHECKING:
    from distributed import Client
    import optuna
    from optuna.trial import FrozenTrial

    from dasktune.storage.proxy import DaskStorage

_instances: OrderedDict[str, DaskStorage] = OrderedDict()
_lock = threading.Lock()
_MAX_INSTANCES = 8
#: Clients whose workers were asked to import the runner's modules.
_warmed: weakref.WeakSet[Client] = weakref.WeakSet()
#: How long a warm-up may wait for every worker's answer before it is given up.
_WARM_UP_SECONDS = 30.0
_logger = logging.getLogger("optuna.dasktune")  # the client half's logger (optuna not imported here)


def remember(storage: DaskStorage) -> None:
    """``storage`` is the one to reuse for its name. The first storage of a process also
    guards it against a deadlock of Python 3.11 that a worker's profiler meets (see
    :func:`dasktune.compat.guard_current_frames`). Any process may be a worker, and one
    unpickles a task's storage as the task's message arrives, outside the task's thread."""
    compat.guard_current_frames()
    with _lock:
        _instances[storage.name] = storage
        _instances.move_to_end(storage.name)
        if len(_instances) > _MAX_INSTANCES:
            _instances.popitem(last=False)


def forget(storage: DaskStorage) -> None:
    with _lock:
        if _instances.get(storage.name) is storage:
            del _instances[storage.name]


def attach(
    name: str,
    heartbeat_interval: int | None,
    grace_period: int | None,
    callback: Callable[[optuna.Study, FrozenTrial], None] | None,
) -> DaskStorage:
    """Unpickle a DaskStorage: attach by name, with the same heartbeat settings."""
    from dasktune.storage.proxy import DaskStorage

    with _lock:
        storage = _instances.get(name)
    if (
        storage is None
        or not storage.has_live_client()
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


def warm_up(client: Client) -> None:
    """A study made on a storage is soon optimized: let the workers import what a trial
    runner needs now, in the background, rather than when the first runner arrives (once
    per client: its workers keep what they imported).

    Nothing waits for it. A broadcast answers only once every worker has, and a worker
    whose event loop is blocked (a task holding the GIL, a stopped process) would hold the
    caller's ``DaskStorage()`` until Dask removed that worker, minutes later."""
    if client in _warmed:
        return
    _warmed.add(client)
    if client.loop is not None:  # None once the client closed: no workers to warm
        client.loop.add_callback(_warm_up, client)


async def _warm_up(client: Client) -> None:
    """On the client's event loop: ask every worker to import the runner's modules."""
    try:
        await asyncio.wait_for(client.run(_import_runner, asynchronous=True), _WARM_UP_SECONDS)
    except Exception as e:  # noqa: BLE001 - an optimization: the first runner imports them
        _logger.debug(f"Workers not warmed up: {type(e).__name__}: {e}")


def _import_runner() -> None:
    """On a worker: import the trial runner's modules (Optuna's included), so that the
    first runner to arrive finds them imported, and guard the worker against Python 3.11's
    deadlock before any trial runs there.

    On the worker's event loop, where Dask unpickles tasks and so imports what they need
    (the first runner's import costs the loop no more): an import on a thread of its own
    raced with the loop's, and a package imported by two threads at once can hand one of
    them a partially initialized module (an ``ImportError`` "most likely due to a circular
    import" that broke the worker's connection to the scheduler)."""
    compat.guard_current_frames()
    importlib.import_module("dasktune.submit.runner")
