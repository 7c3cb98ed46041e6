"""Who holds each storage on the scheduler, and so when the plugin may drop it: the cleanup
model of :class:`~dasktune.storage.plugin.StoragePlugin`.

What the scheduler keeps, and until when (each line has a test in
``tests/test_scheduler_bounds.py``):

- **A storage's host** (:class:`~dasktune.storage.host.StorageHost`: its backend, its
  backend thread and database connection, its mirror) while a Dask client that opened it
  holds it, i.e. until that client closes the storage (``DaskStorage.close()``) or leaves
  the cluster (Dask's ``remove_client``), and while a run of it is live. Then it is dropped:
  - an unnamed storage (``DaskStorage()``, whose made-up name nobody can know) is forgotten;
  - a named in-memory storage is kept: its studies are nowhere else (delete them, or the
    storage, to free them);
  - a named durable storage goes to sleep (*dormant*): only its name and URL are kept, and
    its next request wakes it from the backend, which gives everything back. A storage
    woken by a request rather than an open (the CLI, a dashboard page) sleeps again after
    :data:`WOKEN_IDLE_SECONDS` without a request.
- **A study's mirror and change log** until the study is deleted; the change log is
  compacted (:mod:`dasktune.storage.changelog`), so it holds one entry per changed trial.
- **Runs** while live and for a bounded time after they end (:mod:`dasktune.storage.runs`);
  heartbeats while their trial runs; request ids of applied writes while their client
  retries (:mod:`dasktune.storage.requests`).
- **Dask's record of a run's tasks**: every dasktune task is computed in one Dask span,
  ``dasktune``, which forgets a run's task groups within a sweep (a second) of Dask
  forgetting its tasks (``compat.dasktune_span``); the span itself lives as long as the
  scheduler, as Dask's own spans do. Test: ``tests/test_run_lifecycle.py``
  (``test_many_short_runs_on_one_scheduler_leave_no_record``: at most 2 KiB of RSS per run).
"""

from __future__ import annotations

#: A storage woken by a request (not an open) sleeps again after this long without one.
WOKEN_IDLE_SECONDS = 60.0


class Holders:
    """The clients holding each storage, the named in-memory storages kept whoever holds
    them, and the dormant named durable storages (name -> URL)."""

    def __init__(self) -> None:
        self._clients: dict[str, set[str]] = {}
        self._lasting: set[str] = set()
        self.dormant: dict[str, str] = {}

    def opened(self, name: str, client: str | None, named: bool, in_memory: bool) -> None:
        """``client`` opened the storage ``name`` (``None``: no client, e.g. a worker)."""
        if client is not None:
            self._clients.setdefault(name, set()).add(client)
        if named and in_memory:
            self._lasting.add(name)

    def released(self, name: str, client: str) -> bool:
        """``client`` closed the storage or left: whether it had held it."""
        clients = self._clients.get(name, set())
        held = client in clients
        clients.discard(client)
        return held

    def may_drop(self, name: str, idle_seconds: float) -> bool:
        """Whether nothing but a live run could still need the storage ``name``."""
        if self._clients.get(name) or name in self._lasting:
            return False
        # Held once and released: drop now; never held (woken by a request): once idle.
        return name in self._clients or idle_seconds >= WOKEN_IDLE_SECONDS

    def dropped(self, name: str, url: str | None, named: bool) -> None:
        """The storage ``name`` was dropped: a named durable one sleeps."""
        self._clients.pop(name, None)
        if url is not None and named:
            self.dormant[name] = url

    def wake(self, name: str, url: str | None) -> str | None:
        """The URL to re-open the dormant storage ``name`` with (``None``: not dormant, or
        asked for with another URL, which the open then refuses as for a live one)."""
        if name in self.dormant and url in (None, self.dormant[name]):
            return self.dormant.pop(name)
        return None
