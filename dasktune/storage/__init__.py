"""DaskStorage: an Optuna storage held by the Dask scheduler.

``plugin`` is the scheduler half, ``proxy`` the client/worker half, ``wire`` what travels
between them; on the scheduler, ``host`` serves one named storage, composing ``store``
(the Optuna storage and its mirror) and ``runs`` (``dasktune.optimize``'s runs); in every
other process ``replica`` is the local copy; ``backends`` names what the scheduler keeps
studies in.
"""

from dasktune.storage.plugin import StoragePlugin
from dasktune.storage.proxy import DaskStorage

__all__ = ["DaskStorage", "StoragePlugin"]
