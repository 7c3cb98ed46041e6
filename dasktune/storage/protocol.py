"""How a DaskStorage talks to its scheduler: requests, retries, registration, and the
writes it holds back (see :mod:`dasktune.storage.writes`).

A mixin of :class:`~dasktune.storage.proxy.DaskStorage`, kept apart so that the storage
methods there read as Optuna's ``BaseStorage`` does, and the wire protocol reads here.
Every request is ``dasktune_storage_call``: the thread's pending writes, then the new
operations, and the cursors of the studies this process replicates; the reply carries the
results and the deltas that bring the replica up to date.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from collections.abc import Sequence
import itertools
import sys
import threading
from typing import Any
from typing import TYPE_CHECKING

import dask
from dask.utils import parse_timedelta
from distributed import get_worker
from distributed.protocol.pickle import dumps
from distributed.utils import sync
import optuna

from dasktune.storage import wire
from dasktune.storage.plugin import METADATA_KEY
from dasktune.storage.plugin import PLUGIN_NAME
from dasktune.storage.plugin import StoragePlugin
from dasktune.storage.replica import Replica
from dasktune.storage.writes import Flusher
from dasktune.storage.writes import PendingWrites

if TYPE_CHECKING:
    from distributed import Client

_logger = optuna.logging.get_logger("optuna.dasktune")
#: A request is tried twice: a dropped connection is retried once.
_ATTEMPTS = 2
#: A retry must not wait out the connect timeout on a scheduler that is gone.
_RETRY_SECONDS = 5.0
Op = list[Any]


class SchedulerProtocol:
    """Requests to the scheduler-side host of the storage ``name``."""

    name: str
    _replica: Replica
    _lock: threading.RLock
    _thread: threading.local
    _flusher: Flusher
    _request_prefix: str
    _request_numbers: itertools.count[int]
    _opened_with: tuple[str | None, None] | None

    if TYPE_CHECKING:  # provided by DaskStorage

        @property
        def client(self) -> Client: ...

    def _write(self, name: str, *args: Any) -> Op:
        """A write operation with a request id, so that a retried request applies it once."""
        return [name, list(args), f"{self._request_prefix}-{next(self._request_numbers)}"]

    def _call(
        self,
        ops: list[Op],
        want: Sequence[int] = (),
        handler: str = "dasktune_storage_call",
        writes: PendingWrites | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """Send this thread's pending writes (or ``writes``) and ``ops`` in one request;
        return the results of ``ops``. The reply refreshes the replica of every study they
        touched and of ``want``; a study in ``want`` that does not exist raises
        ``KeyError``."""
        if handler != "dasktune_storage_call":
            return self._request(handler, [], kwargs, want)
        writes = writes or self._pending()
        with writes.lock:  # this thread's earlier writes go first, whoever sends them
            if writes.error is not None:
                error, writes.error = writes.error, None
                raise error
            pending = writes.take()
            kwargs.update(ops=pending + ops, want=list(want), worker=_worker_address())
            return self._request(handler, pending, kwargs, want)

    def _request(
        self, handler: str, pending: list[Op], kwargs: dict[str, Any], want: Sequence[int]
    ) -> list[Any]:
        with self._lock:
            cursors, epoch = self._replica.cursors(), self._replica.epoch
        reply = self._run(
            self._ask_scheduler, handler, name=self.name, cursors=cursors, epoch=epoch, **kwargs
        )
        with self._lock:
            if reply["epoch"] != self._replica.epoch:
                self._replica.reset(reply["epoch"])
            for delta in reply["deltas"]:
                self._replica.apply(delta)
            for study_id in reply["missing"]:
                self._replica.drop(study_id)
        if reply["error"] is not None:
            index, *error = reply["error"]
            exc = wire.decode_error(error)
            if index < len(pending) and sys.version_info >= (3, 11):  # notes are 3.11+
                exc.add_note(
                    f"Raised by the scheduler for an earlier write of this thread "
                    f"({pending[index][0]} on trial {pending[index][1][0]}), sent with this "
                    "call; that write and the ones after it were not applied."
                )
            raise exc
        for study_id in want:
            if study_id in reply["missing"]:
                raise KeyError(f"No study with study_id {study_id} exists.")
        return reply["results"][len(pending) :]

    async def _ask_scheduler(self, handler: str, **kwargs: Any) -> dict[str, Any]:
        """One request to the scheduler, retried once if its connection drops (writes
        carry request ids, so a retry cannot apply one twice). A scheduler that restarted
        without this storage gets it re-opened, when this object created it."""
        for attempt in range(_ATTEMPTS):
            client = self.client
            # As long as Dask itself gives a connection: a fresh worker on a busy machine
            # can take seconds to make its first one.
            deadline = asyncio.get_running_loop().time() + parse_timedelta(
                dask.config.get("distributed.comm.timeouts.connect"), default="seconds"
            )
            while client.status in ("newly-created", "connecting") and not client._scheduler_identity:
                # A worker's client made while a task was unpickled on the worker's event
                # loop is asynchronous and may still be making its first connection: wait
                # for it. (A reconnection keeps the scheduler's identity: that is an error.)
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.01)
            if client.status != "running":
                raise ConnectionError(
                    f"The Dask scheduler is unreachable (client {client.status}); DaskStorage "
                    f"{self.name!r} works again once the client reconnects."
                )
            try:
                request = getattr(client.scheduler, handler)(**kwargs)
                # A retry after a dropped connection must not wait out the connect timeout
                # (30 s) on a scheduler that is gone: that would be a hang, not an error.
                reply = await (request if attempt == 0 else asyncio.wait_for(request, _RETRY_SECONDS))
            except (OSError, asyncio.TimeoutError) as e:  # CommClosedError included
                if attempt + 1 == _ATTEMPTS:
                    raise ConnectionError(
                        f"Lost the Dask scheduler at {client.scheduler.address} during a "
                        f"DaskStorage request ({e}); it works again once the client "
                        "reconnects."
                    ) from e
                continue
            missing = reply is None or reply.get("missing_storage")
            if missing and self._opened_with is not None and attempt == 0:
                await self._register(*self._opened_with)  # plugin included, if need be
                continue
            if reply is None:
                raise RuntimeError(
                    f"The scheduler at {client.scheduler.address} has no DaskStorage plugin. "
                    "Create the storage with DaskStorage(register=True), or start the "
                    "scheduler with `dask scheduler --preload dasktune`."
                )
            if "error" in reply and "results" not in reply:
                raise wire.decode_error(reply["error"])
            return reply
        raise AssertionError("unreachable")

    async def _register(self, url: str | None, contents: list[Any] | None) -> SchedulerProtocol:
        scheduler = self.client.scheduler
        if not await scheduler.get_metadata(keys=[METADATA_KEY], default=False):
            # What Client.register_plugin sends, awaited here so that one coroutine serves
            # synchronous and asynchronous clients alike.
            await scheduler.register_scheduler_plugin(
                plugin=dumps(StoragePlugin()), name=PLUGIN_NAME, idempotent=True
            )
        reply = await self._ask_scheduler(
            "dasktune_storage_open", name=self.name, url=url, contents=contents
        )
        # A restarted scheduler gets the storage again from its URL (not the contents of
        # an in-memory copy: those went with the old scheduler).
        self._opened_with = (url, None)
        if reply["created"] and reply["url"] is None:
            _logger.info(
                f"DaskStorage {self.name!r} keeps its studies in the scheduler's memory: they "
                "are lost if the scheduler stops. Pass a URL (e.g. 'sqlite:///optuna.db', "
                "'postgresql://...', 'journal:///path/optuna.log') to make them durable."
            )
        with self._lock:
            if reply["epoch"] != self._replica.epoch:
                self._replica.reset(reply["epoch"])
        return self

    def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run the coroutine function ``fn`` on the client's event loop, from this thread."""
        loop = self.client.loop
        assert loop is not None, "a running client has a loop"
        return sync(loop, fn, *args, **kwargs)

    def _watch_run(self, run_id: str, since: int, timeout: float) -> list[Any]:
        """Wait up to ``timeout`` s for a trial of ``run_id`` to finish or the run to end;
        ``[status, ids of trials finished after the first since]``, replica refreshed."""
        (status,) = self._call(
            [], handler="dasktune_storage_watch", run_id=run_id, since=since, timeout=timeout
        )
        return status

    def _flush(self) -> None:
        """Send this thread's pending writes now."""
        if self._pending().ops:
            self._call([])

    def _pending(self) -> PendingWrites:
        """This thread's unsent writes."""
        writes = getattr(self._thread, "writes", None)
        if writes is None:
            writes = self._thread.writes = PendingWrites()
            self._flusher.track(writes)
        return writes

    def _send_pending(self, writes: PendingWrites) -> None:
        """Send another thread's unsent writes (the flusher's job)."""
        self._call([], writes=writes)


def _worker_address() -> str | None:
    """The address of the worker whose task calls, so the scheduler knows who runs a trial
    (and can fail it if that worker dies)."""
    try:
        return get_worker().address
    except ValueError:
        return None
