"""The scheduler half of DaskStorage: a scheduler plugin that hosts named storages.

Routes it adds to ``scheduler.handlers`` (all plain data, see :mod:`dasktune.storage.wire`):

``dasktune_storage_open(name, url, contents, client, lasting)``
    Create the storage ``name`` backed by ``url`` unless it exists; returns its epoch. The
    Dask client ``client`` holds it from then on (see the cleanup model below).
``dasktune_storage_close(name, client)``
    ``client`` holds the storage no more.
``dasktune_storage_call(name, ops, cursors, want, epoch, worker)``
    Apply write/read operations in order, then answer, for every study the operations
    touched or the caller wants, what changed since the caller's cursor.
``dasktune_storage_watch(name, run_id, since, cursors, epoch, timeout, linger, seen)``
    Wait (at most ``timeout`` seconds) until a trial of the ``optimize`` run ``run_id``
    finishes or the run ends, then answer as ``call`` does for ``run_status``. The run's
    driver says ``seen``: it has run the callbacks of the first ``since`` finished trials,
    which lets the claims of a run with callbacks go on (see :mod:`dasktune.storage.runs`).
``dasktune_storage_dump(name)``
    Every study and trial of ``name`` (for ``get_base_storage`` and exports).
``dasktune_storage_names()``
    The names of the storages on this scheduler.

When a run ends other than by its budget (``study.stop()``, an error, a cancel), the plugin
logs a scheduler event under the topic ``dasktune-run-ended`` (``{"storage", "run"}``): the
processes that run its trials subscribe to it, so that a runner starts none of the trials it
claimed ahead once the run has ended, without asking.

Cluster events reach the storages through the plugin hooks: ``remove_worker`` fails the
trials the worker was running (and retries those of runs), ``remove_client`` orphans the
runs that client drove, ``transition`` tells a run that Dask released one of its runner
tasks. None of them polls; each costs a dictionary lookup when it concerns no storage.

State and cleanup: what the plugin keeps, and until when, is stated in
:mod:`dasktune.storage.holders` (a storage's host while a client holds it or a run of it is
live, then dropped or, named and durable, dormant). A sweep every second fails trials whose
heartbeat stopped a minute past their grace period (Dask config
``distributed.dasktune.stale-trial-margin``), drops what has expired, the storages nothing
holds and ended runs' task groups (``compat.dasktune_span``). In-memory backends are served
on the event loop (microseconds per operation); every other backend runs on a thread of its
own, one call at a time, so disk or database I/O never blocks the scheduler.

Other packages extend the scheduler side through the ``dasktune.scheduler`` entry point
group: each entry is a ``SchedulerPlugin`` class, added when this plugin starts (the Tuning
page of :mod:`dasktune.dashboard` is one). The storage does not import them.

Install it from a client (``DaskStorage`` does that when it is missing) or once by the
cluster's operator with ``dask scheduler --preload dasktune``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
import contextlib
import functools
from importlib.metadata import entry_points
import logging
from typing import Any
from typing import TypeVar

import dask.config
from dask.utils import parse_timedelta
from distributed import Scheduler
from distributed.diagnostics.plugin import SchedulerPlugin

from dasktune import compat
from dasktune.storage import backends
from dasktune.storage import wire
from dasktune.storage.backend_thread import run_on
from dasktune.storage.departures import why_removed
from dasktune.storage.holders import Holders
from dasktune.storage.host import StorageHost

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: How often the scheduler fails RUNNING trials whose heartbeats stopped and drops what expired.
_SWEEP_SECONDS = 1.0
#: Dask config key: how long past a trial's grace period the scheduler's own sweep fails it
#: (clients' ``fail_stale_trials``, which runs the stale-trial callback, comes first).
STALE_MARGIN = "distributed.dasktune.stale-trial-margin"
#: Entry point group of scheduler plugins installed with this one.
EXTENSIONS = "dasktune.scheduler"
#: Task states in which a runner's task no longer runs for anyone.
_RELEASED = ("released", "forgotten", "erred")


def _handler(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T | dict[str, Any]]]:
    """Answer a handler's error as the error envelope its caller raises again, and log it
    on the scheduler, as distributed's ``@log_errors`` does for its own handlers: one line
    for an error of a kind the caller expects (a URL that cannot be opened, say), the
    traceback for any other."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> T | dict[str, Any]:
        try:
            return await fn(*args, **kwargs)
        except Exception as e:
            if wire.ERROR_TYPES.get(type(e).__name__) is type(e):
                logger.info("dasktune: %s: %s: %s", fn.__name__, type(e).__name__, e)
            else:
                logger.exception("dasktune: %s failed", fn.__name__)
            return {"error": wire.encode_error(e)}

    return wrapper


class StoragePlugin(SchedulerPlugin):
    """Hosts every ``DaskStorage`` of the cluster on the scheduler."""

    name = wire.PLUGIN_NAME

    def __init__(self) -> None:
        self.scheduler: Scheduler | None = None
        self.hosts: dict[str, StorageHost] = {}
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        #: Set (and replaced) whenever a storage's state changes, to wake its watchers.
        self._changed: dict[str, asyncio.Event] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._memory_limits: dict[str, int] = {}  # worker address -> its memory limit
        self._holders = Holders()
        self._background: set[asyncio.Task[None]] = set()

    async def start(self, scheduler: Scheduler) -> None:
        """Register the ``dasktune_storage_*`` handlers on ``scheduler``, then the plugins
        of the ``dasktune.scheduler`` entry point group."""
        self.scheduler = scheduler
        scheduler.handlers.update(
            {
                "dasktune_storage_open": self.open,
                "dasktune_storage_close": self.close_storage,
                wire.CALL_ROUTE: self.call,
                "dasktune_storage_watch": self.watch,
                "dasktune_storage_dump": self.dump,
                "dasktune_storage_names": self.names,
            }
        )
        scheduler.set_metadata(keys=[wire.METADATA_KEY], value=True)
        for worker in scheduler.workers:  # those that joined before the plugin
            self.add_worker(scheduler, worker)
        self._sweeper = asyncio.create_task(self._sweep(scheduler))
        for entry in entry_points(group=EXTENSIONS):
            try:
                plugin = entry.load()()
                await scheduler.register_scheduler_plugin(plugin, name=entry.name, idempotent=True)
            except Exception:  # an extension must not take the storage down with it
                logger.exception("dasktune: could not start the scheduler extension %s", entry.value)

    async def close(self) -> None:
        """Release backends' threads and connections (the scheduler is closing)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for name, host in list(self.hosts.items()):
            executor = self._executors.pop(name, None)
            with contextlib.suppress(Exception):  # closing anyway: nothing to tell anyone
                await run_on(executor, backends.close, host.backend)
            if executor is not None:
                executor.shutdown(wait=True)

    async def _sweep(self, scheduler: Scheduler) -> None:
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            await self._sweep_once(scheduler)  # (its own frame: no host stays referenced while asleep)

    async def _sweep_once(self, scheduler: Scheduler) -> None:
        margin = parse_timedelta(dask.config.get(STALE_MARGIN, "60s"), "seconds")
        compat.forget_released_groups(scheduler)  # the tasks of ended runs
        for name, host in list(self.hosts.items()):
            try:
                failed = await self._on_backend_thread(name, host.reconnecting, host.fail_long_stale_trials, margin)
                host.expire()
            except Exception:  # a backend outage must not end the sweep
                logger.exception("DaskStorage %r: the periodic sweep failed", name)
                continue
            if failed:
                logger.warning("DaskStorage %r: trials %s had no heartbeat; FAIL", name, failed)
            self._notify(name)  # a deadline may have passed: watchers look again
            await self._drop_if_unused(name)  # its last run may have ended

    # -- cluster events ------------------------------------------------------------------

    def add_worker(self, scheduler: Scheduler, worker: str) -> None:
        # Kept for the reason a worker's trials fail if its nanny restarts it for memory:
        # the scheduler forgets the worker before ``remove_worker`` runs.
        self._memory_limits[worker] = scheduler.workers[worker].memory_limit

    async def remove_worker(
        self, scheduler: Scheduler, worker: str, *, stimulus_id: str, **kwargs: Any
    ) -> None:
        """A worker left (crash, memory kill, lost network, scale-down): its RUNNING trials
        become FAIL, saying why where Dask knows it, and those of ``dasktune.optimize`` runs
        are retried."""
        reason = why_removed(scheduler, worker, stimulus_id, self._memory_limits.pop(worker, 0))
        for name, host in list(self.hosts.items()):
            try:
                failed = await self._on_backend_thread(name, host.reconnecting, host.worker_removed, worker, reason)
            except Exception:  # one storage's outage must not spare the others' trials
                logger.exception("DaskStorage %r: failing the trials of %s failed", name, worker)
                continue
            if failed:
                logger.warning("DaskStorage %r: worker %s left with trials %s running; FAIL", name, worker, failed)
                self._notify(name)

    def remove_client(self, scheduler: Scheduler, client: str) -> None:
        """A client left: the runs it drove (attached ``optimize`` calls) are orphaned, and
        it holds no storage any more."""
        for name, host in list(self.hosts.items()):
            if host.runs.client_removed(client):
                self._in_background(self._orphan(name, host, client))
            if self._holders.released(name, client):
                self._in_background(self._drop_if_unused(name))

    async def _orphan(self, name: str, host: StorageHost, client: str) -> None:
        orphaned = await self._on_backend_thread(name, host.reconnecting, host.client_removed, client)
        logger.warning("DaskStorage %r: client %s left; runs %s orphaned", name, client, orphaned)
        self._notify(name)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        """A runner's task that Dask released (cancelled, its client gone) must stop
        claiming trials. Called for every task: a string prefix test for all others."""
        if finish in _RELEASED and isinstance(key, str) and key.startswith("dasktune-"):
            for name, host in list(self.hosts.items()):
                if host.runs.runner_released(key):
                    self._notify(name)

    # -- handlers --------------------------------------------------------------------------

    @_handler
    async def open(
        self,
        name: str,
        url: str | None = None,
        contents: list[Any] | None = None,
        client: str | None = None,
        named: bool = True,
    ) -> dict[str, Any]:
        created = name not in self.hosts and name not in self._holders.dormant
        host = await self._open(name, url, contents, named)
        self._holders.opened(name, client, named, in_memory=host.url is None)
        reply: wire.OpenReply = {"error": None, "epoch": host.epoch, "url": host.url, "created": created}
        return dict(reply)

    @_handler
    async def close_storage(self, name: str, client: str) -> dict[str, Any]:
        self._holders.released(name, client)
        await self._drop_if_unused(name)
        return {"error": None}

    @_handler
    async def call(
        self,
        name: str,
        ops: list[wire.Op],
        cursors: list[list[int]],
        want: list[int],
        epoch: str | None,
        worker: str | None = None,
    ) -> dict[str, Any]:
        host = await self._host(name)
        if host is None:
            return _no_storage(name)
        if not ops:
            return host.reply(ops, [], None, cursors, want, epoch)
        gated = host.runs.gated_claim(ops)
        if gated is None:
            results, error = await self._on_backend_thread(name, host.execute, ops, worker)
        else:
            # The writes before the claim (the runner's last tell) first: the driver must see
            # that trial to let the claim go on.
            split, run_id = gated
            results, error = await self._on_backend_thread(name, host.execute, ops[:split], worker)
            self._notify(name)
            if error is None:
                await self._until_gate_opens(name, host, run_id)
                more, error = await self._on_backend_thread(name, host.execute, ops[split:], worker)
                results += more
                if error is not None and error["op"] is not None:
                    error["op"] += split
        self._notify(name)
        return host.reply(ops, results, error, cursors, want, epoch)

    @_handler
    async def watch(
        self,
        name: str,
        run_id: str,
        since: int,
        cursors: list[list[int]],
        epoch: str | None,
        timeout: float,
        linger: float = 0.0,
        seen: bool = False,
    ) -> dict[str, Any]:
        host = await self._host(name)
        if host is None:
            return _no_storage(name)
        if seen and host.runs.seen(run_id, since):
            self._notify(name)  # claims waiting for the driver go on
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # A watcher that asks for it waits ``linger`` s from its call for more trials to
        # finish before it is answered: under cheap trials it gets them in batches, not one
        # request (scheduler and driver CPU) per trial.
        batched = loop.time() + min(linger, timeout)
        op: wire.Op = ["run_status", [run_id, since], None]
        while True:
            # Read directly, not through execute(): that may be running on the backend's
            # thread right now, and a read needs no backend.
            try:
                status, finished = host.runs.status(run_id, since)
                results, error = [[status, finished]], None
            except KeyError as e:
                results, error = [], wire.encode_error(e, 0)
            if error is not None or status["done"] or (finished and loop.time() >= batched):
                break
            remaining = (batched if finished else deadline) - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                changed = self._changed.setdefault(name, asyncio.Event())
                await asyncio.wait_for(changed.wait(), remaining)
        want = [] if error is not None else [status["study_id"]]
        return host.reply([op], results, error, cursors, want, epoch)

    @_handler
    async def dump(self, name: str) -> dict[str, Any]:
        host = await self._host(name)
        if host is None:
            return _no_storage(name)
        return {"error": None, "studies": host.dump()}

    @_handler
    async def names(self) -> list[str]:
        return sorted({*self.hosts, *self._holders.dormant})

    # -- helpers -------------------------------------------------------------------------

    async def _until_gate_opens(self, name: str, host: StorageHost, run_id: str) -> None:
        """Hold a claim of a gated run until its driver has seen every trial finished now."""
        is_open = host.runs.gate(run_id)
        while is_open is not None and not is_open():
            changed = self._changed.setdefault(name, asyncio.Event())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), _SWEEP_SECONDS)  # a deadline may pass

    def _notify(self, name: str) -> None:
        """The storage ``name`` changed: wake what waits on it, tell runners of runs that
        ended."""
        changed = self._changed.pop(name, None)
        if changed is not None:
            changed.set()
        host = self.hosts.get(name)
        if host is not None and self.scheduler is not None:
            for run_id in host.runs.take_ended():
                self.scheduler.log_event(wire.RUN_ENDED_TOPIC, {"storage": name, "run": run_id})

    async def _open(
        self, name: str, url: str | None, contents: list[Any] | None, named: bool = True
    ) -> StorageHost:
        async with self._opening.setdefault(name, asyncio.Lock()):
            host = self.hosts.get(name)
            if host is None:
                url = self._holders.wake(name, url) or url  # its backend gives everything back
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
                host = await self._on_backend_thread(name, _build_host, url, contents, named)
            except Exception:
                executor = self._executors.pop(name, None)
                if executor is not None:
                    executor.shutdown(wait=False)
                raise
            self.hosts[name] = host
            logger.info("Opened DaskStorage %r backed by %s", name, url or "memory")
            return host

    async def _host(self, name: str) -> StorageHost | None:
        """The host of the storage ``name``, woken if it was dormant (``None``: no such
        storage). A woken storage is kept while it is used (see ``_drop_if_unused``)."""
        if name in self._holders.dormant and name not in self.hosts:
            await self._open(name, None, None)
        host = self.hosts.get(name)
        if host is not None:
            host.used()
        return host

    async def _drop_if_unused(self, name: str) -> None:
        """Drop the storage ``name`` — host, thread, backend connections — if nothing needs
        it (the model: :mod:`dasktune.storage.holders`)."""
        host = self.hosts.get(name)
        if host is None or host.runs.live() or not self._holders.may_drop(name, host.idle()):
            return
        async with self._opening.setdefault(name, asyncio.Lock()):
            if self.hosts.get(name) is not host:
                return
            del self.hosts[name]
        self._holders.dropped(name, host.url, host.named)
        self._opening.pop(name, None)
        self._notify(name)  # anyone still waiting on it looks again, and finds it gone
        self._changed.pop(name, None)
        executor = self._executors.pop(name, None)
        try:
            await run_on(executor, backends.close, host.backend)
        finally:
            if executor is not None:
                executor.shutdown(wait=False)
        logger.info("Closed DaskStorage %r: no client holds it and no run of it is live", name)

    async def _on_backend_thread(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` where the storage ``name`` does its I/O: its own thread for a database
        or file backend, one call at a time; the event loop for memory (and see
        :mod:`dasktune.storage.backend_thread` for interpreter exit)."""
        return await run_on(self._executors.get(name), fn, *args)

    def _in_background(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)  # keep a reference until it is done
        task.add_done_callback(self._background.discard)


def _build_host(url: str | None, contents: list[Any] | None, named: bool) -> StorageHost:
    backend = backends.open_on_scheduler(url)
    if contents:
        wire.load_storage(contents, backend)
    return StorageHost(backend, url, named)


def _no_storage(name: str) -> dict[str, Any]:
    error = KeyError(
        f"No DaskStorage named {name!r} on this scheduler; create it with "
        f"DaskStorage(name={name!r}) (register=True), or check the name."
    )
    return {"error": wire.encode_error(error), "missing_storage": True}


def dask_setup(scheduler: Scheduler) -> None:
    """Preload hook: ``dask scheduler --preload dasktune`` installs the plugin at start."""
    if isinstance(scheduler, Scheduler):
        scheduler.add_plugin(StoragePlugin(), name=wire.PLUGIN_NAME, idempotent=True)
