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
    """``storage`` is the one to reuse for its name."""
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
        await asyncio.wait_for(
            client.run(_import_runner_in_background, wait=False, asynchronous=True),
            _WARM_UP_SECONDS,
        )
    except Exception as e:  # noqa: BLE001 - an optimization: the first runner imports them
        _logger.debug(f"Workers not warmed up: {type(e).__name__}: {e}")


async def _import_runner_in_background() -> None:
    """On a worker: import the trial runner's modules (Optuna's included) on a thread of
    their own, so that the first runner to arrive finds them imported (or nearly)."""
    threading.Thread(
        target=importlib.import_module, args=("dasktune.submit.runner",), daemon=True,
        name="dasktune-import",
    ).start()
