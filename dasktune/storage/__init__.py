"""DaskStorage: an Optuna storage held by the Dask scheduler.

``plugin`` is the scheduler half, ``proxy`` the client/worker half, ``wire`` what travels
between them, ``host`` and ``replica`` the two sides' state, ``backends`` what the
scheduler keeps studies in.
"""

from dasktune.storage.plugin import StoragePlugin
from dasktune.storage.proxy import DaskStorage

__all__ = ["DaskStorage", "StoragePlugin"]
