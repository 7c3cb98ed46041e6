"""Budgets of ``dasktune.optimize`` calls, kept by the scheduler-side host. Free of Dask.

A *run* is one ``optimize`` call on one study: ``n_trials`` and ``timeout`` are enforced
here, where trials are created, so concurrent runners can never start more trials than the
budget allows: a runner must *claim* each trial, and the claim and the trial's creation are
one step on the scheduler.

Trials a run lost to a dead worker give their claim back (the budget counts trials that
ended by themselves), and are retried up to ``retries`` times with the same parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
import time
from typing import Any

#: System attribute holding why a trial failed (the objective's error, an invalid value,
#: a dead worker, an interrupt).
FAIL_REASON = "dasktune:fail_reason"
#: System attribute holding the address of the worker that ran the trial.
WORKER = "dasktune:worker"


@dataclass
class Run:
    """The budget and progress of one ``optimize`` call."""

    run_id: str
    study_id: int
    n_trials: int | None
    deadline: float | None  # time.monotonic() on the scheduler
    retries: int
    timeout: float | None = None
    claimed: int = 0
    finished: int = 0
    stopped: str | None = None  # why the run was stopped early, if it was
    runners: int = 0
    #: RUNNING trials of this run: trial id -> address of the worker running it.
    running: dict[int, str] = field(default_factory=dict)
    lost: int = 0  # trials failed because their worker died
    #: Ids of this run's trials in the order they finished.
    finished_ids: list[int] = field(default_factory=list)

    def can_claim(self, now: float | None = None) -> bool:
        """Whether a new trial may start: budget left, deadline ahead, not stopped."""
        if self.stopped is not None:
            return False
        if self.n_trials is not None and self.claimed >= self.n_trials:
            return False
        return self.deadline is None or (now if now is not None else time.monotonic()) < self.deadline

    @property
    def done(self) -> bool:
        """No trial running and none may start: the run has ended."""
        return not self.running and not self.can_claim()

    def status(self) -> dict[str, Any]:
        """Plain-data progress, as clients see it."""
        remaining = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        return {
            "run_id": self.run_id,
            "study_id": self.study_id,
            "n_trials": self.n_trials,
            "timeout": self.timeout,
            "claimed": self.claimed,
            "finished": self.finished,
            "running": len(self.running),
            "lost": self.lost,
            "stopped": self.stopped,
            "time_left": remaining,
            "done": self.done,
        }
