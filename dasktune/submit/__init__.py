"""The submission layer: ``optimize`` fans a study's trials across the cluster.

``driver`` is the client side (``optimize``, ``attach``, ``Run``), ``runner`` the task that
runs trials on a worker, ``policy`` the pure decisions, ``progress`` the bar.
"""

from dasktune.submit.driver import attach
from dasktune.submit.driver import optimize
from dasktune.submit.driver import Run

__all__ = ["Run", "attach", "optimize"]
