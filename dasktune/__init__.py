"""dasktune: distributed hyperparameter tuning on a Dask cluster, built on Optuna."""

from dasktune.storage import DaskStorage
from dasktune.storage import StoragePlugin
from dasktune.storage.plugin import dask_setup
from dasktune.submit import attach
from dasktune.submit import optimize
from dasktune.submit import Run
from dasktune import tune

__version__ = "0.1.0"

__all__ = ["DaskStorage", "Run", "StoragePlugin", "attach", "dask_setup", "optimize", "tune", "__version__"]
