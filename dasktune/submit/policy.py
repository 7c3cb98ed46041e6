"""What a run does next, decided from plain data: pure functions, testable without a cluster.

The driver and the runners talk to Dask and to the scheduler; these functions only look at
a run's status (as the scheduler reports it), the runners alive, the slots of the cluster
and an objective's values, so every decision can be tested without one. (How a runner
paces its claims is its session's: :mod:`dasktune.storage.session`.) The budget itself is
the scheduler's (``status["can_claim"]``): nothing here restates it.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import math
from typing import Any


def runners_to_start(
    status: Mapping[str, Any], alive: int, slots: int, concurrency: int | None
) -> int:
    """How many more trial runners to submit.

    One runner per worker thread (``slots``), capped by ``concurrency``, and never more than
    trials that may still run. With no worker at all, one runner is still submitted: it
    waits on the scheduler, which is what lets ``cluster.adapt()`` scale up.
    """
    if not status["can_claim"]:
        return 0
    target = max(slots, 1) if concurrency is None else concurrency
    if status["n_trials"] is not None:
        target = min(target, status["n_trials"] - status["claimed"] + status["running"])
    return max(0, target - alive)


def is_finished(status: Mapping[str, Any], alive: int, seen: int) -> bool:
    """The run has ended, every runner has exited, and the driver has seen all ``seen`` of
    its finished trials (a status from ending the run may count some it has not)."""
    return bool(status["done"]) and alive == 0 and seen >= status["finished"]


def invalid_values(values: Any, n_objectives: int) -> str | None:
    """Why ``values`` returned by an objective cannot complete a trial, with Optuna's own
    messages and rules (a sequence is taken element by element, as ``Study.optimize``
    does), or ``None`` if they can.

    A ``str`` is refused whole: Optuna takes it as a sequence of characters and, for one
    like ``"1.5"``, raises from inside its own tell, leaving the trial RUNNING.
    """
    if values is None:
        return "The value None could not be cast to float."
    if isinstance(values, (str, bytes)):
        return (
            f"The value {values!r} is a {type(values).__name__}, not a number: an objective "
            "returns a float, or a sequence of floats for several objectives"
        )
    values = values if isinstance(values, Sequence) else [values]
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
