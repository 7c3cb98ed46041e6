"""dasktune: distributed hyperparameter tuning on a Dask cluster, built on Optuna."""

from dasktune.storage import DaskStorage
from dasktune.storage import StoragePlugin
from dasktune.storage.plugin import dask_setup

__version__ = "0.1.0"

__all__ = ["DaskStorage", "StoragePlugin", "dask_setup", "__version__"]
