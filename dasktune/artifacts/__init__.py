"""Optuna artifacts and trial checkpoints kept by the Dask scheduler.

:class:`DaskArtifactStore` is an Optuna artifact store (``optuna.artifacts.upload_artifact``,
``download_artifact``) whose files live on the scheduler's disk, so that it works on any
cluster with no configuration: a LocalCluster, or a remote scheduler whose workers share no
file system. :mod:`dasktune.checkpoints` builds trial checkpoints on it (or on any Optuna
artifact store).
"""

from __future__ import annotations

from typing import Any
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dasktune.artifacts.store import DaskArtifactStore as DaskArtifactStore

__all__ = ["DaskArtifactStore"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the scheduler imports this package to start its plugin, and
    # must not import Optuna on its event loop for it.
    if name == "DaskArtifactStore":
        from dasktune.artifacts.store import DaskArtifactStore

        return DaskArtifactStore
    raise AttributeError(f"module 'dasktune.artifacts' has no attribute {name!r}")
