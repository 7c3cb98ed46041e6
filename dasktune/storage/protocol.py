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
import collections
from collections.abc import Coroutine
from collections.abc import Sequence
import concurrent.futures
import itertools
import sys
import threading
from typing import Any
from typing import cast
from typing import Literal
from typing import TYPE_CHECKING
from typing import TypeVar

import dask
from dask.utils import parse_timedelta
from distributed import get_worker
from distributed.protocol.pickle import dumps
from distributed.utils import sync
import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from dasktune.storage import wire
from dasktune.storage.replica import Replica
from dasktune.storage.writes import Flusher
from dasktune.storage.writes import PendingWrites

if TYPE_CHECKING:
    from distributed import Client

T = TypeVar("T")
_logger = optuna.logging.get_logger("optuna.dasktune")
#: A request is tried twice: a dropped connection is retried once.
_ATTEMPTS = 2
#: A retry must not wait out the connect timeout on a scheduler that is gone.
_RETRY_SECONDS = 5.0
Op = wire.Op
#: What a runner's deferred writes may meet when its trial was failed (an aborted run, a
#: worker presumed dead) or deleted with its study meanwhile: nothing left to write to.
GONE = (UpdateFinishedTrialError, KeyError)


class SchedulerProtocol:
    """Requests to the scheduler-side host of the storage ``name``."""

    name: str
    _replica: Replica
    _lock: threading.RLock
    _thread: threading.local
    _flusher: Flusher
    _owned: set[int]
    #: Trial id -> how many of its writes this process made and the scheduler has not yet
    #: acknowledged: the replica keeps such a trial's local form (see Replica.apply).
    _unacked: collections.Counter[int]
    _request_prefix: str
    _request_numbers: itertools.count[int]
    #: The URL this object created the storage with (to re-open it on a new scheduler);
    #: False: it did not create it.
    _opened_with: str | None | Literal[False]
    #: Whether its user named it: a named in-memory storage outlives the clients that open
    #: it, an unnamed one goes with the last (see the plugin's cleanup model).
    _named: bool

    if TYPE_CHECKING:  # provided by DaskStorage

        @property
        def client(self) -> Client: ...

    def _write(self, name: wire.OpName, *args: Any) -> Op:
        """A write operation with a request id, so that a retried request applies it once.
        The thread then reads fresh again if it was reading a listing of every study."""
        self._thread.listed = 0.0
        return [name, list(args), f"{self._request_prefix}-{next(self._request_numbers)}"]

    def _call(
        self,
        ops: list[Op],
        want: Sequence[int] = (),
        *,
        writes: PendingWrites | None = None,
        tolerate: tuple[type[Exception], ...] = (),
    ) -> list[Any]:
        """Send this thread's pending writes (or ``writes``) and ``ops`` in one request;
        return the results of ``ops``. The reply refreshes the replica of every study they
        touched and of ``want``; a study in ``want`` that does not exist raises ``KeyError``.

        ``tolerate``: error types a pending write may meet because its trial was finished
        or deleted elsewhere meanwhile (a runner's trial failed by an aborted run); such a
        write and the later ones of its trial are dropped, the rest is sent again. A
        runner's thread tolerates :data:`GONE` always. A pending write the scheduler
        refuses otherwise fails its trial (see :meth:`_exchange`).
        """
        own = writes is None  # the thread sends its own writes (not the flusher another's)
        writes = writes or self._pending()
        if not tolerate and writes.session is not None:
            tolerate = GONE
        with writes.lock:  # this thread's earlier writes go first, whoever sends them
            pending = self._take(writes, tolerate, raise_refused=own)
            stop = own and writes.session is None
            return self._sync(self._exchange(writes, pending, ops, want, tolerate, stop))

    def _call_soon(
        self, ops: list[Op], tolerate: tuple[type[Exception], ...] = ()
    ) -> concurrent.futures.Future[list[Any]]:
        """As :meth:`_call`, without waiting for the reply: a runner asks for its next
        trials while its objective runs. This thread's writes made until now go with it."""
        writes = self._pending()
        with writes.lock:
            pending = self._take(writes, tolerate, raise_refused=False)
        loop = self.client.loop
        assert loop is not None, "a running client has a loop"
        return asyncio.run_coroutine_threadsafe(
            self._exchange(writes, pending, ops, (), tolerate, False),
            loop.asyncio_loop,  # type: ignore[attr-defined]
        )

    def _watch(
        self, run_id: str, since: int, timeout: float, linger: float, seen: bool
    ) -> list[Any]:
        """Wait up to ``timeout`` s for a trial of ``run_id`` to finish or the run to end
        (and, once one has, until ``linger`` s after the call, for more);
        ``[status, ids of trials finished after the first since]``, replica refreshed."""

        async def watch() -> list[Any]:
            reply = await self._ask(
                "dasktune_storage_watch",
                run_id=run_id,
                since=since,
                timeout=timeout,
                linger=linger,
                seen=seen,
            )
            return list(self._apply(reply, [], ())[0])

        return self._sync(watch())

    @staticmethod
    def _take(
        writes: PendingWrites, tolerate: tuple[type[Exception], ...], raise_refused: bool
    ) -> list[Op]:
        """``writes``' ops, now the caller's to send, after raising what the flusher met
        sending earlier ones, and (``raise_refused``, unless ``writes`` are a runner's) a
        write it had refused (lock held by the caller)."""
        if writes.error is not None:
            error, writes.error = writes.error, None
            if not isinstance(error, tolerate):
                raise error
        if raise_refused and writes.refused and writes.session is None:
            _, error = writes.refused.popitem()
            raise error
        return writes.take()

    async def _exchange(
        self,
        writes: PendingWrites,
        pending: list[Op],
        ops: list[Op],
        want: Sequence[int],
        tolerate: tuple[type[Exception], ...],
        stop_on_refusal: bool,
    ) -> list[Any]:
        """Send ``pending`` (taken from ``writes``) and ``ops``; the results of ``ops``.

        A pending write the scheduler refuses with an error of Optuna's own checks (a
        parameter whose distribution another process set differently meanwhile, say) is
        an error of its trial, as if ``suggest`` had raised it: the trial is failed with it
        as its reason, its later writes (its tell) are dropped, the rest is sent again, and
        the error is recorded in ``writes.refused`` — so no trial ends COMPLETE without
        what it suggested. A runner reports it with the trial's outcome (its ``catch``
        applies); for any other thread (``stop_on_refusal``) ``ops`` are not sent and the
        error is raised here.
        """
        refused: Exception | None = None
        while True:
            try:
                reply = await self._ask(
                    wire.CALL_ROUTE,
                    ops=pending + ops,
                    want=list(want),
                    worker=_worker_address(),
                )
            finally:
                self._acknowledge(pending)  # applied, refused, or lost: none is ahead any more
            error = reply["error"]
            failed = error["op"] if error is not None else None
            if failed is None or failed >= len(pending):
                results = self._apply(reply, pending, want)[len(pending) :]
                if refused is not None:
                    raise refused
                return results
            exc = wire.decode_error(error)
            self._merge(reply)  # the deltas show the trial as it now is
            trial_id = pending[failed][1][0]
            rest = [op for op in pending[failed + 1 :] if op[1][0] != trial_id]
            if isinstance(exc, tolerate) or trial_id in writes.refused:
                pending = rest  # finished elsewhere meanwhile: nothing left to write to
                _logger.debug(f"Dropped writes to trial {trial_id}, finished elsewhere: {exc}")
                continue
            if sys.version_info >= (3, 11):
                exc.add_note(
                    f"Raised by the scheduler for a write to trial {trial_id} "
                    f"({pending[failed][0]}) that this thread sent after making it; the "
                    "trial was failed with this error."
                )
            writes.refused[trial_id] = exc
            pending = self._failing(trial_id, exc) + rest
            if stop_on_refusal:
                refused = writes.refused.pop(trial_id)
                ops, want = [], ()

    def _failing(self, trial_id: int, error: Exception) -> list[Op]:
        """The writes that fail ``trial_id`` with ``error`` as its reason."""
        reason = wire.encode_attr(f"{type(error).__name__}: {error}")
        with self._lock:
            self._unacked[trial_id] += 2
        return [
            self._write("set_trial_system_attr", trial_id, wire.FAIL_REASON, reason),
            self._write("set_trial_state_values", trial_id, TrialState.FAIL.value, None),
        ]

    def _apply(self, reply: dict[str, Any], pending: list[Op], want: Sequence[int]) -> list[Any]:
        """Bring the replica up to date from ``reply``; its results, or its error raised."""
        self._merge(reply)
        error = reply["error"]
        if error is not None:
            exc = wire.decode_error(error)
            index = error["op"]
            if index is not None and index < len(pending) and sys.version_info >= (3, 11):
                exc.add_note(
                    f"Raised by the scheduler for an earlier write of this thread "
                    f"({pending[index][0]} on trial {pending[index][1][0]}), sent with this "
                    "call; that write and the ones after it were not applied."
                )
            raise exc
        for study_id in want:
            if study_id in reply["missing"]:
                raise KeyError(f"No study with study_id {study_id} exists.")
        return list(reply["results"])

    def _merge(self, reply: dict[str, Any]) -> None:
        """Bring the replica up to date from ``reply``'s deltas."""
        with self._lock:
            self._replica.merge(reply, keep=self._unacked)  # type: ignore[arg-type]

    def _acknowledge(self, sent: list[Op]) -> None:
        """The scheduler answered a request that carried ``sent`` (trial writes)."""
        if sent:
            with self._lock:
                for _, args, _ in sent:
                    self._unacked[args[0]] -= 1
                    if self._unacked[args[0]] <= 0:
                        del self._unacked[args[0]]

    async def _ask(self, handler: str, **kwargs: Any) -> dict[str, Any]:
        """One request with this process's cursors, as :meth:`_ask_scheduler` sends it."""
        with self._lock:
            cursors, epoch = self._replica.cursors(), self._replica.epoch
        return await self._ask_scheduler(
            handler, name=self.name, cursors=cursors, epoch=epoch, **kwargs
        )

    async def _ask_scheduler(self, handler: str, **kwargs: Any) -> dict[str, Any]:
        """One request to the scheduler, retried once if its connection drops (writes
        carry request ids, so a retry cannot apply one twice). A scheduler that restarted
        without this storage gets it re-opened, when this object created it."""
        client = self.client
        await _connected(client)
        for attempt in range(_ATTEMPTS):
            if client.status != "running":
                raise ConnectionError(
                    f"The Dask scheduler is unreachable (client {client.status}); DaskStorage "
                    f"{self.name!r} works again once the client reconnects."
                )
            try:
                request = getattr(scheduler_rpc(client), handler)(**kwargs)
                # A retry after a dropped connection must not wait out the connect timeout
                # (30 s) on a scheduler that is gone: that would be a hang, not an error.
                reply = await (request if attempt == 0 else asyncio.wait_for(request, _RETRY_SECONDS))
            except (OSError, asyncio.TimeoutError) as e:  # CommClosedError included
                if attempt + 1 == _ATTEMPTS:
                    what = (
                        f"no reply within {_RETRY_SECONDS:g} s of retrying"
                        if isinstance(e, asyncio.TimeoutError)
                        else f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                    )
                    raise ConnectionError(
                        f"Lost the Dask scheduler at {scheduler_rpc(client).address} during a "
                        f"DaskStorage request: the connection dropped, and the retry got "
                        f"{what}. DaskStorage {self.name!r} works again once the client "
                        "reconnects to a scheduler."
                    ) from e
                continue
            missing = reply is None or reply.get("missing_storage")
            if missing and self._opened_with is not False and attempt == 0:
                await self._register(self._opened_with, None)  # plugin included, if need be
                continue
            if reply is None:
                raise RuntimeError(
                    f"The scheduler at {scheduler_rpc(client).address} has no DaskStorage plugin. "
                    "Create the storage with DaskStorage(register=True), or start the "
                    "scheduler with `dask scheduler --preload dasktune`."
                )
            error = reply.get("error")
            if error is not None and error.get("op") is None:
                raise wire.decode_error(error)
            return cast(dict[str, Any], reply)
        raise AssertionError("unreachable")

    async def _register(self, url: str | None, contents: list[Any] | None) -> SchedulerProtocol:
        scheduler = scheduler_rpc(self.client)
        if not await scheduler.get_metadata(keys=[wire.METADATA_KEY], default=False):
            from dasktune.storage.plugin import StoragePlugin

            # What Client.register_plugin sends, awaited here so that one coroutine serves
            # synchronous and asynchronous clients alike.
            await scheduler.register_scheduler_plugin(
                plugin=dumps(StoragePlugin()), name=wire.PLUGIN_NAME, idempotent=True
            )
        client = self.client
        reply = await self._ask_scheduler(
            "dasktune_storage_open",
            name=self.name,
            url=url,
            contents=contents,
            client=client.id,
            named=self._named,
        )
        # A restarted scheduler gets the storage again from its URL (not the contents of
        # an in-memory copy: those went with the old scheduler).
        self._opened_with = url
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

    def _sync(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the client's event loop and wait for it, from this thread."""
        loop = self.client.loop
        assert loop is not None, "a running client has a loop"

        async def run() -> T:
            return await coroutine

        return sync(loop, run)

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


async def _connected(client: Client) -> None:
    """Wait, as long as Dask's connect timeout, for a client that is making its first
    connection (an asynchronous worker client just made, or one another thread is making):
    on a busy machine that takes seconds. A client that is *re*connecting is not waited for:
    a call then raises at once rather than hang while the scheduler is down."""
    if client.status != "newly-created" and not (
        client.asynchronous and client.status == "connecting"
    ):
        return
    timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "seconds")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    if client.asynchronous:  # awaiting it waits for its start (public: `await client`)
        await asyncio.wait_for(asyncio.ensure_future(_await(client)), timeout)
        return
    while client.status == "newly-created" and loop.time() < deadline:
        await asyncio.sleep(0.01)


async def _await(client: Client) -> Client:
    return cast("Client", await client)


def scheduler_rpc(client: Client) -> Any:
    """The client's connection to its scheduler (``client.scheduler``), which a client that
    was never started has none of."""
    rpc = client.scheduler
    if rpc is None:
        raise ConnectionError(f"The Dask client {client} has no scheduler: start it first.")
    return rpc


def _worker_address() -> str | None:
    """The address of the worker whose task calls, so the scheduler knows who runs a trial
    (and can fail it if that worker dies)."""
    try:
        return get_worker().address
    except ValueError:
        return None
