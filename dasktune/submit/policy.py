"""What a run does next, decided from plain data: pure functions, testable without a cluster.

The driver and the runners talk to Dask and to the scheduler; these functions only look at
a run's status (as the scheduler reports it), the runners alive, the slots of the cluster
and a runner's pace, so every decision can be tested without one. The budget itself is
the scheduler's (``status["can_claim"]``): nothing here restates it.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import math
from typing import Any

#: How much work a runner claims ahead of need: trials of a cheap objective are claimed in
#: batches worth this many seconds, so a round trip to the scheduler is not paid per trial.
#: It bounds how stale other workers' results may be when a trial of the batch samples,
#: and how long a claimed trial waits before it starts. 50 ms: a ~15 ms trial (a 10 ms
#: objective and TPE's sampling) is claimed three at a time, a third of the requests the
#: scheduler answers per trial at 20 ms, while the results a sampler misses are no older than
#: the writes the flusher holds back anyway (:data:`~dasktune.storage.writes.FLUSH_AFTER`).
CLAIM_AHEAD_SECONDS = 0.05
#: Most trials claimed at once.
MAX_BATCH = 64
#: A runner asks for its next trials before it needs them (saving the round trip's wait)
#: only when trials take less than this: for longer trials the wait is negligible, and the
#: sampler is better served by results that are as fresh as possible.
PREFETCH_BELOW_SECONDS = 0.05


#: How long the parameters of a slow trial may wait to be sent: about the time between two
#: ``suggest`` calls of one objective, so that all its parameters leave together, at once.
PROMPT_WRITE_SECONDS = 0.002


#: A runner's trials that take at least this long (or whose length is not known yet) send
#: each parameter to the scheduler before ``suggest`` returns: a round trip (about a
#: millisecond) per parameter is then at most a fraction of a percent of the trial, and a
#: worker that dies right after suggesting (a memory kill, while the objective holds the GIL
#: and no other thread of the process can send) cannot take the parameters with it, so the
#: trial's retry runs them.
PARAMS_AT_ONCE_SECONDS = 0.5


def write_delay(seconds_per_trial: float | None) -> float | None:
    """How long a runner's writes may wait for its next request (``None``: as long as the
    storage's default). A slow trial's writes go at once — other workers' samplers
    then know what runs (Optuna's constant liar counts running trials) — while a cheap
    trial's wait for the next claim, which is never far."""
    if seconds_per_trial is not None and seconds_per_trial < PREFETCH_BELOW_SECONDS:
        return None
    return PROMPT_WRITE_SECONDS


def params_at_once(seconds_per_trial: float | None) -> bool:
    """Whether a runner's parameters leave before ``suggest`` returns (see
    :data:`PARAMS_AT_ONCE_SECONDS`)."""
    return seconds_per_trial is None or seconds_per_trial >= PARAMS_AT_ONCE_SECONDS


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


def claim_size(seconds_per_trial: float | None) -> int:
    """How many trials a runner claims at once, from its pace (``None``: not known yet)."""
    if seconds_per_trial is None or seconds_per_trial >= CLAIM_AHEAD_SECONDS:
        return 1
    return max(1, min(MAX_BATCH, int(CLAIM_AHEAD_SECONDS / max(seconds_per_trial, 1e-6))))


def ask_ahead(queued: int, seconds_per_trial: float | None) -> bool:
    """Whether a runner with ``queued`` claimed trials left asks for its next ones now:
    for short trials, once what it holds is worth less than half a batch of work, so the
    answer arrives before the last one is done."""
    if seconds_per_trial is None or seconds_per_trial >= PREFETCH_BELOW_SECONDS:
        return False
    return queued * seconds_per_trial < CLAIM_AHEAD_SECONDS / 2


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
