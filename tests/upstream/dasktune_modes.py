"""A pytest plugin that runs Optuna's own storage-parametrised tests against DaskStorage.

Optuna's tests take their storages from ``optuna.testing.storages``: ``STORAGE_MODES`` (which
they read when they are imported) and ``StorageSupplier`` (which makes one storage per test).
This plugin, loaded with ``-p dasktune_modes`` before any test module is imported, replaces
the modes with DaskStorage's two — the scheduler's memory and a SQLite file behind the
scheduler — and teaches ``StorageSupplier`` to make them.

Where the storages talk to the scheduler from:

- from the process running pytest (the default): the plugin starts a LocalCluster of one
  worker process and a client for the session;
- from inside a Dask worker task (``DASKTUNE_UPSTREAM_IN_WORKER=1``, when pytest itself runs
  in a task, the ``client.submit(study.optimize, ...)`` situation): storages use the
  worker's client, as ``DaskStorage`` does in any task.
"""

from __future__ import annotations

import os
from typing import Any

import optuna.testing.storages as storages
from optuna.testing.tempfile_pool import NamedTemporaryFilePool

MODES = ["dasktune_inmemory", "dasktune_sqlite"]
IN_WORKER = os.environ.get("DASKTUNE_UPSTREAM_IN_WORKER") == "1"

storages.STORAGE_MODES[:] = MODES
storages.STORAGE_MODES_HEARTBEAT[:] = MODES

_enter = storages.StorageSupplier.__enter__
_exit = storages.StorageSupplier.__exit__


def _dask_enter(self: storages.StorageSupplier) -> Any:
    if not self.storage_specifier.startswith("dasktune_"):
        return _enter(self)
    from dasktune import DaskStorage

    url = None
    if self.storage_specifier == "dasktune_sqlite":
        self.tempfile = NamedTemporaryFilePool().tempfile()
        url = f"sqlite:///{self.tempfile.name}"
    self.storage = DaskStorage(url, **self.extra_args)
    return self.storage


def _dask_exit(self: storages.StorageSupplier, *args: Any) -> None:
    if not self.storage_specifier.startswith("dasktune_"):
        return _exit(self, *args)
    if self.tempfile is not None:
        self.tempfile.close()


storages.StorageSupplier.__enter__ = _dask_enter  # type: ignore[method-assign]
storages.StorageSupplier.__exit__ = _dask_exit  # type: ignore[method-assign]

_cluster: Any = None
_client: Any = None


def pytest_configure(config: Any) -> None:
    global _cluster, _client
    if IN_WORKER:
        return
    from distributed import Client
    from distributed import LocalCluster

    _cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None)
    _client = Client(_cluster, set_as_default=True)


def pytest_unconfigure(config: Any) -> None:
    if _client is not None:
        _client.close()
        _cluster.close()
