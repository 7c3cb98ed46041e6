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
  scheduler failed it meanwhile (an aborted run), so the budget stays exact — or the run
  has ended (``study.stop()``, an error, a cancel), which a refused claim tells it: the
  trials it has not started then go back to WAITING, for a later run to take.
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
#: Trials a runner measures before it has a pace. Until then, and whenever its trials slow
#: down, it treats them as slow ones: claimed one at a time, their parameters sent at once.
#: A runner that batched cheap-looking trials would start the next trial before the last
#: one's result left, so one heavy trial among them could take that result down with its
#: worker.
_PACE_AFTER = 3


class Claims:
    """The claimed trials of one runner, in the order it runs them."""

    def __init__(
        self, storage: DaskStorage, run_id: str, key: str | None, ahead: bool = True
    ) -> None:
        self.storage, self.run_id, self.key = storage, run_id, key
        self.ahead = ahead  # whether it may claim trials before it needs them
        self.queue: deque[int] = deque()
        self.pace: float | None = None  # seconds per trial (see _measure)
        self._measured = 0
        self._mean = 0.0
        self._asked: concurrent.futures.Future[list[Any]] | None = None
        self._refused = False
        self._run_ended: bool | None = None  # known once a claim was refused

    def __iter__(self) -> Iterator[int]:
        while True:
            if not self.queue and not self._refill():
                return
            if self._ended():
                return  # the trials it holds are given back by close()
            trial_id = self.queue.popleft()
            if self.ahead and policy.ask_ahead(len(self.queue), self.pace):
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
        self._take_answer()
        return bool(self.queue)

    def _ended(self) -> bool:
        """Whether the run has ended (``study.stop()``, a failure, a cancel) with trials
        still queued here, which then must not start: announced by the scheduler, or learnt
        from a refused claim. A claim refused because the budget is spent leaves the queued
        trials to run."""
        if self.storage.run_ended(self.run_id):
            return True
        if self._asked is not None and self._asked.done():
            self._take_answer()
        if self._refused and self.queue and self._run_ended is None:
            self._run_ended = self.storage.run_status(self.run_id)["stopped"] is not None
        return bool(self._run_ended)

    def _take_answer(self) -> None:
        assert self._asked is not None
        asked, self._asked = self._asked, None
        (claimed,) = asked.result()
        self.queue.extend(claimed)
        self._refused = not claimed

    def _ask(self) -> None:
        if self._asked is None and not self._refused:
            self._asked = self.storage.claim_trials_soon(
                self.run_id, self.key, policy.claim_size(self.pace), self.pace or 0.0
            )

    def _measure(self, seconds: float) -> None:
        """Fold the time a trial took (its work, not the wait for a claim) into the pace: a
        running mean that rises at once to a slower trial and falls gradually, known after
        :data:`_PACE_AFTER` trials."""
        self._measured += 1
        self._mean = seconds if self._measured == 1 else max(
            seconds, _PACE_WEIGHT * seconds + (1 - _PACE_WEIGHT) * self._mean
        )
        if self._measured >= _PACE_AFTER:
            self.pace = self._mean
