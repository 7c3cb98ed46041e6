"""What the submission layer does next, decided from plain data. Free of Dask.

The driver (``driver.py``) owns the futures and talks to the cluster; these functions only
look at a run's status (as the scheduler reports it), the runners alive and the slots of
the cluster, so every decision can be tested without one.
"""

from __future__ import annotations

from collections.abc import Mapping
import math
from typing import Any


def can_start_trials(status: Mapping[str, Any]) -> bool:
    """Whether the run may still start a trial: budget and time left, not stopped."""
    if status["stopped"] is not None:
        return False
    if status["n_trials"] is not None and status["claimed"] >= status["n_trials"]:
        return False
    return status["time_left"] is None or status["time_left"] > 0


def runners_to_start(
    status: Mapping[str, Any], alive: int, slots: int, concurrency: int | None
) -> int:
    """How many more trial runners to submit.

    One runner per worker thread (``slots``), capped by ``concurrency``, and never more than
    trials that may still run. With no worker at all, one runner is still submitted: it
    waits on the scheduler, which is what lets ``cluster.adapt()`` scale up.
    """
    if not can_start_trials(status):
        return 0
    target = max(slots, 1) if concurrency is None else concurrency
    if status["n_trials"] is not None:
        target = min(target, status["n_trials"] - status["claimed"] + status["running"])
    return max(0, target - alive)


def is_finished(status: Mapping[str, Any], alive: int) -> bool:
    """The run has ended and every runner has exited."""
    return bool(status["done"]) and alive == 0


def infeasible_values(values: Any, n_objectives: int) -> str | None:
    """Why ``values`` returned by an objective cannot complete a trial (Optuna's own
    messages), or ``None`` if they can."""
    if values is None:
        return "The value None could not be cast to float."
    if isinstance(values, str) or not hasattr(values, "__len__"):
        values = [values]
    errors = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            errors.append(f"The value {value!r} could not be cast to float")
            continue
        if math.isnan(number):
            errors.append(f"The value {value} is not acceptable")
    if errors:
        return "; ".join(errors)
    if len(values) != n_objectives:
        return (
            f"The number of the values {len(values)} did not match the number of the "
            f"objectives {n_objectives}"
        )
    return None
