"""The scheduler half of DaskStorage: a scheduler plugin that hosts named storages.

Routes it adds to ``scheduler.handlers`` (all plain data, see :mod:`dasktune.storage.wire`):

``dasktune_storage_open(name, url, contents)``
    Create the storage ``name`` backed by ``url`` unless it exists; returns its epoch.
``dasktune_storage_call(name, ops, cursors, want, epoch)``
    Apply write/read operations in order, then answer, for every study the operations
    touched or the caller wants, what changed since the caller's cursor.
``dasktune_storage_watch(name, run_id, since, cursors, epoch, timeout)``
    Wait (at most ``timeout`` seconds) until a trial of the ``optimize`` run ``run_id``
    finishes or the run ends, then answer as ``call`` does for ``run_status``.
``dasktune_storage_dump(name)``
    Every study and trial of ``name`` (for ``get_base_storage`` and exports).
``dasktune_storage_names()``
    The names of the storages on this scheduler.

State and memory: the plugin owns one :class:`~dasktune.storage.host.StorageHost` per name
for the life of the scheduler; a host holds its backend and a wire mirror of it. In-memory
backends are served on the event loop (microseconds per operation); every other backend
runs on a thread of its own, one operation at a time, so disk or database I/O never blocks
the scheduler.

Install it from a client (``DaskStorage`` does that when it is missing) or once by the
cluster's operator with ``dask scheduler --preload dasktune``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
import logging
from typing import Any
from typing import TypeVar

from distributed import Scheduler
from distributed.diagnostics.plugin import SchedulerPlugin

from dasktune.dashboard import app
from dasktune.dashboard import handlers
from dasktune.dashboard import metrics
from dasktune.dashboard.state import TuningState
from dasktune.storage import backends
from dasktune.storage import wire
from dasktune.storage.host import StorageHost

logger = logging.getLogger(__name__)
T = TypeVar("T")

PLUGIN_NAME = "dasktune-storage"
#: How often the scheduler looks for RUNNING trials whose heartbeats stopped.
_SWEEP_SECONDS = 1.0
#: Scheduler metadata key set while the plugin runs, so a client can tell it is there.
METADATA_KEY = "dasktune-storage-plugin"


class StoragePlugin(SchedulerPlugin):
    """Hosts every ``DaskStorage`` of the cluster on the scheduler."""

    name = PLUGIN_NAME

    def __init__(self) -> None:
        self.scheduler: Scheduler | None = None
        self.hosts: dict[str, StorageHost] = {}
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        #: Set (and replaced) whenever a storage's state changes, to wake its watchers.
        self._changed: dict[str, asyncio.Event] = {}
        self._sweeper: asyncio.Task | None = None
        #: What the Tuning page and /metrics show; it only reads the hosts.
        self.dashboard = TuningState(self.hosts)

    async def start(self, scheduler: Scheduler) -> None:
        """Register the ``dasktune_storage_*`` handlers on ``scheduler``."""
        self.scheduler = scheduler
        scheduler.handlers.update(
            {
                "dasktune_storage_open": self.open,
                "dasktune_storage_call": self.call,
                "dasktune_storage_watch": self.watch,
                "dasktune_storage_dump": self.dump,
                "dasktune_storage_names": self.names,
            }
        )
        scheduler.set_metadata(keys=[METADATA_KEY], value=True)
        self._sweeper = asyncio.create_task(self._sweep_stale_trials())
        if getattr(scheduler, "http_application", None) is not None:  # None: no dashboard
            scheduler.http_application.add_handlers(r".*", handlers.routes(scheduler, self.dashboard))
        metrics.track(self.dashboard)

    async def _sweep_stale_trials(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            for name, host in list(self.hosts.items()):
                try:
                    failed = await self._run(name, host.fail_stale_trials)
                except Exception:  # a backend outage must not end the sweep
                    logger.exception("DaskStorage %r: failing stale trials failed", name)
                    continue
                if failed:
                    logger.warning("DaskStorage %r: trials %s had no heartbeat; FAIL", name, failed)
                    self._notify(name)

    async def close(self) -> None:
        """Release backends' threads and connections."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for executor in self._executors.values():
            executor.shutdown(wait=True)
        for host in self.hosts.values():
            host.backend.remove_session()

    async def remove_worker(
        self, scheduler: Scheduler, worker: str, *, stimulus_id: str, **kwargs: Any
    ) -> None:
        """A worker left (crash, lost network, scale-down): its RUNNING trials become FAIL,
        and those of ``dasktune.optimize`` runs are retried."""
        for name, host in list(self.hosts.items()):
            failed = await self._run(name, host.fail_worker_trials, worker)
            if failed:
                logger.warning(
                    "DaskStorage %r: worker %s left with trials %s running; marked FAIL",
                    name,
                    worker,
                    failed,
                )
                self._notify(name)

    # -- handlers --------------------------------------------------------------------

    async def open(
        self, name: str, url: str | None = None, contents: list[Any] | None = None
    ) -> dict[str, Any]:
        created = name not in self.hosts
        try:
            host = await self._open(name, url, contents)
        except Exception as e:
            return {"error": wire.encode_error(e)}
        return {"epoch": host.epoch, "url": host.url, "created": created}

    async def call(
        self,
        name: str,
        ops: list[list[Any]],
        cursors: list[list[int]],
        want: list[int],
        epoch: str | None,
        worker: str | None = None,
    ) -> dict[str, Any]:
        host = self.hosts.get(name)
        if host is None:
            return _no_storage(name)
        results, error = await self._run(name, host.execute, ops, worker) if ops else ([], None)
        if ops:
            self._notify(name)
        return self._reply(host, ops, results, error, cursors, want, epoch)

    async def watch(
        self,
        name: str,
        run_id: str,
        since: int,
        cursors: list[list[int]],
        epoch: str | None,
        timeout: float,
    ) -> dict[str, Any]:
        host = self.hosts.get(name)
        if host is None:
            return _no_storage(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        op = ["run_status", [run_id, since], None]
        while True:
            # Read directly, not through execute(): that may be running on the backend's
            # thread right now, and a read needs no backend.
            try:
                results, error = [host.run_status(run_id, since)], None
            except KeyError as e:
                results, error = [], [0, *wire.encode_error(e)]
            if error is not None or results[0][1] or results[0][0]["done"]:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                changed = self._changed.setdefault(name, asyncio.Event())
                await asyncio.wait_for(changed.wait(), remaining)
        want = [] if error is not None else [results[0][0]["study_id"]]
        return self._reply(host, [op], results, error, cursors, want, epoch)

    def _notify(self, name: str) -> None:
        changed = self._changed.pop(name, None)
        if changed is not None:
            changed.set()

    @staticmethod
    def _reply(
        host: StorageHost,
        ops: list[list[Any]],
        results: list[Any],
        error: list[Any] | None,
        cursors: list[list[int]],
        want: list[int],
        epoch: str | None,
    ) -> dict[str, Any]:
        touched = host.touched_studies(ops, results)
        # Cursors from another epoch (a scheduler restart) mean nothing here: start over.
        known = {study: cursor for study, cursor in cursors} if epoch == host.epoch else {}
        deltas, missing = host.deltas(known, touched.union(want))
        return {
            "results": results,
            "error": error,
            "epoch": host.epoch,
            "deltas": deltas,
            "missing": missing,
        }

    async def dump(self, name: str) -> dict[str, Any]:
        host = self.hosts.get(name)
        if host is None:
            return _no_storage(name)
        return {"studies": host.dump()}

    def names(self) -> list[str]:
        return sorted(self.hosts)

    # -- helpers ---------------------------------------------------------------------

    async def _open(
        self, name: str, url: str | None, contents: list[Any] | None
    ) -> StorageHost:
        async with self._opening.setdefault(name, asyncio.Lock()):
            host = self.hosts.get(name)
            if host is not None:
                if url is not None and url != host.url:
                    raise ValueError(
                        f"Storage {name!r} already exists on the scheduler with URL "
                        f"{host.url!r}; attach with the same URL or storage=None, or choose "
                        "another name."
                    )
                return host
            if url is not None:  # anything but memory does I/O: keep it off the loop
                self._executors[name] = ThreadPoolExecutor(1, f"dasktune-storage-{name}")
            try:
                host = await self._run(name, _build_host, url, contents)
            except Exception:
                executor = self._executors.pop(name, None)
                if executor is not None:
                    executor.shutdown(wait=False)
                raise
            self.hosts[name] = host
            logger.info("Opened DaskStorage %r backed by %s", name, url or "memory")
            return host

    async def _run(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        executor = self._executors.get(name)
        if executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)


def _build_host(url: str | None, contents: list[Any] | None) -> StorageHost:
    backend = backends.open_backend(url)
    if contents:
        wire.load_storage(contents, backend)
    return StorageHost(backend, url)


def _no_storage(name: str) -> dict[str, Any]:
    error = KeyError(
        f"No DaskStorage named {name!r} on this scheduler; create it with "
        f"DaskStorage(name={name!r}) (register=True), or check the name."
    )
    return {"error": wire.encode_error(error), "missing_storage": True}


def dask_setup(scheduler: Scheduler) -> None:
    """Preload hook: ``dask scheduler --preload dasktune`` installs the plugin at start."""
    if isinstance(scheduler, Scheduler):
        scheduler.add_plugin(StoragePlugin(), name=PLUGIN_NAME, idempotent=True)


# A scheduler imports its preload modules before it starts its dashboard, and calls their
# dask_setup after: the Bokeh app must be added on import. A LocalCluster started in a
# process that imported dasktune gets it too.
app.register()
