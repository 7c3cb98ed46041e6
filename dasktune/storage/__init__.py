"""DaskStorage: an Optuna storage held by the Dask scheduler.

``plugin`` is the scheduler half, ``proxy`` the client/worker half (with its mixins:
``protocol`` its requests, ``running`` the trials its process runs, ``runs_client`` the
runs' requests), ``wire`` what travels between them; on the scheduler, ``host`` serves one
named storage, composing ``store`` (the Optuna storage and its mirror) and ``runs``
(``dasktune.optimize``'s runs); in every other process ``replica`` is the local copy;
``backends`` names what the scheduler keeps studies in.
"""

from __future__ import annotations

import importlib
from typing import Any
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dasktune.storage.plugin import StoragePlugin as StoragePlugin
    from dasktune.storage.proxy import DaskStorage as DaskStorage

__all__ = ["DaskStorage", "StoragePlugin"]

#: Imported on first use: a client (the command line above all) never needs the scheduler
#: half, and a scheduler never needs the proxy.
_LAZY = {"DaskStorage": "dasktune.storage.proxy", "StoragePlugin": "dasktune.storage.plugin"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
