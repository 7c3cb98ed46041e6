"""The trials a runner has claimed and not yet run, asked for ahead of need.

A runner iterates over :class:`Claims` to get its trials. Each claim is one request to the
scheduler, which grants trials only as the run's budget allows and carries the runner's
unsent writes (the previous trial's tell). How much to ask for and when is the pure
decision of :func:`~dasktune.submit.policy.claim_size` and
:func:`~dasktune.submit.policy.prefetch`, from the runner's own pace:

- a trial that takes long is claimed alone, when it is needed: its sampler sees the other
  workers' results as fresh as possible, and the round trip is negligible beside it;
- cheap trials are claimed in batches worth :data:`~dasktune.submit.policy.CLAIM_AHEAD_SECONDS`
  of work, and the next batch is asked for once half of the current one is left, so the
  runner does not wait on the scheduler. Trials of a batch are RUNNING (and their
  start time set) from the claim; a runner runs every trial it claimed unless the
  scheduler failed it meanwhile (an aborted run), so the budget stays exact.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
import concurrent.futures
import time
from typing import Any

from dasktune.storage import DaskStorage
from dasktune.submit import policy

#: Weight of the latest trial in a runner's running mean of seconds per trial.
_PACE_WEIGHT = 0.3


class Claims:
    """The claimed trials of one runner, in the order it runs them."""

    def __init__(self, storage: DaskStorage, run_id: str, key: str | None) -> None:
        self.storage, self.run_id, self.key = storage, run_id, key
        self.queue: deque[int] = deque()
        self.pace: float | None = None  # seconds per trial, a running mean
        self._asked: concurrent.futures.Future[list[Any]] | None = None
        self._refused = False

    def __iter__(self) -> Iterator[int]:
        while True:
            if not self.queue and not self._refill():
                return
            trial_id = self.queue.popleft()
            if policy.ask_ahead(len(self.queue), self.pace):
                self._ask()
            began = time.monotonic()
            yield trial_id
            self._measure(time.monotonic() - began)

    def close(self) -> list[int]:
        """Stop asking; the trials claimed and not run, an answer on its way included."""
        self._refused = True
        if self._asked is not None:
            try:
                self.queue.extend(self._asked.result()[0])
            except Exception:  # the claim failed: it holds no trial
                pass
            self._asked = None
        leftover = list(self.queue)
        self.queue.clear()
        return leftover

    def _refill(self) -> bool:
        if self._asked is None and not self._refused:
            self._ask()
        if self._asked is None:
            return False
        asked, self._asked = self._asked, None
        (claimed,) = asked.result()
        self.queue.extend(claimed)
        self._refused = not claimed
        return bool(claimed)

    def _ask(self) -> None:
        if self._asked is None and not self._refused:
            self._asked = self.storage.claim_trials_soon(
                self.run_id, self.key, policy.claim_size(self.pace), self.pace or 0.0
            )

    def _measure(self, seconds: float) -> None:
        """Fold the time a trial took (its work, not the wait for a claim) into the pace."""
        self.pace = seconds if self.pace is None else (
            _PACE_WEIGHT * seconds + (1 - _PACE_WEIGHT) * self.pace
        )
