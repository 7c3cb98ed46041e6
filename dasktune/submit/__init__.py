"""The submission layer: ``optimize`` fans a study's trials across the cluster.

``driver`` is the client side (``optimize``, ``attach``, ``Run``), ``runner`` the task that
runs trials on a worker (``claims`` its trials ahead of need), ``tasks`` the Dask futures a
run keeps, ``policy`` the pure decisions, ``progress`` the bar. Names are imported on first
use, so that a worker that only runs trials does not import the driver's.
"""

from __future__ import annotations

import importlib
from typing import Any
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dasktune.submit.driver import attach
    from dasktune.submit.driver import optimize
    from dasktune.submit.driver import Run

__all__ = ["Run", "attach", "optimize"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("dasktune.submit.driver"), name)
    raise AttributeError(f"module 'dasktune.submit' has no attribute {name!r}")
