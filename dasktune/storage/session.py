"""The worker half of a run: one runner thread's session with the scheduler.

A trial runner (:func:`dasktune.submit.runner.run_trials`) serves its run inside a
:class:`RunnerSession`, entered with ``storage.runner(run_id, key)``. The session holds all
that "this thread runs trials of run R" means on the worker:

- its **claims**: it iterates over the trials the scheduler granted it (the scheduler's half
  is :mod:`dasktune.storage.runs`), asked for ahead of need when trials are cheap;
- the trial it **runs**: adopted, its writes are checked locally and held back, its reads
  of the study come from the snapshot its claim brought (until it reports a value or
  ends), and its tell travels with the next claim;
- the errors the scheduler met for writes it had held back (:meth:`take_refused`);
- its **end**: trials it claimed and never started go back to WAITING, one it was running
  when torn down by an error of its own FAILs, and what it holds back is sent.

How much to claim, and how long writes may wait, follow the runner's pace (seconds per
trial), by the pure functions below:

- a trial that takes long is claimed alone, when it is needed: its sampler sees the other
  workers' results as fresh as possible, and the round trip is negligible beside it;
- cheap trials are claimed in batches worth :data:`CLAIM_AHEAD_SECONDS` of work, and the next
  batch is asked for once half of the current one is left, so the runner does not wait on
  the scheduler. Trials of a batch are RUNNING (and their start time set) from the claim. A
  runner runs every trial it claimed unless the scheduler failed it meanwhile (an aborted
  run) — so the budget stays exact — or the run has ended (``study.stop()``, an error, a
  cancel), which the scheduler announces to every process that runs its trials: the trials
  not started then go back to WAITING, for a later run to take.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
import concurrent.futures
import time
from typing import Any
from typing import TYPE_CHECKING

from dasktune.storage.writes import FLUSH_AFTER
from dasktune.storage.writes import PendingWrites

if TYPE_CHECKING:
    from dasktune.storage.proxy import DaskStorage

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
#: How long the writes of a slow trial may wait to be sent: about the time between two
#: ``suggest`` calls of one objective, so that they leave together, at once.
PROMPT_WRITE_SECONDS = 0.002
#: A runner's trials that take at least this long (or whose length is not known yet) send
#: each parameter to the scheduler before ``suggest`` returns: a round trip (about a
#: millisecond) per parameter is then at most a fraction of a percent of the trial, and a
#: worker that dies right after suggesting (a memory kill, while the objective holds the GIL
#: and no other thread of the process can send) cannot take the parameters with it, so the
#: trial's retry runs them.
PARAMS_AT_ONCE_SECONDS = 0.5
#: Weight of the latest trial in a runner's running mean of seconds per trial.
_PACE_WEIGHT = 0.3
#: Trials a runner measures before it has a pace. Until then, and whenever its trials slow
#: down, it treats them as slow ones: claimed one at a time, their parameters sent at once.
#: A runner that batched cheap-looking trials would start the next trial before the last
#: one's result left, so one heavy trial among them could take that result down with its
#: worker.
_PACE_AFTER = 3


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


def write_delay(seconds_per_trial: float | None) -> float | None:
    """How long a runner's writes may wait for its next request (``None``: as long as the
    storage's default). A slow trial's writes go at once — other workers' samplers then
    know what runs (Optuna's constant liar counts running trials) — while a cheap trial's
    wait for the next claim, which is never far."""
    if seconds_per_trial is not None and seconds_per_trial < PREFETCH_BELOW_SECONDS:
        return None
    return PROMPT_WRITE_SECONDS


def params_at_once(seconds_per_trial: float | None) -> bool:
    """Whether a runner's parameters leave before ``suggest`` returns (see
    :data:`PARAMS_AT_ONCE_SECONDS`)."""
    return seconds_per_trial is None or seconds_per_trial >= PARAMS_AT_ONCE_SECONDS


class RunnerSession:
    """One runner thread's trials of the run ``run_id``: iterate over it to run them.

    Args:
        storage: The study's storage, through which the session talks to the scheduler.
        writes: The writes its thread holds back.
        run_id: The run it serves.
        key: The runner's Dask task key (Dask releasing it refuses the runner's claims).
        ahead: Whether it may claim trials before it needs them (not in a run whose
            callbacks must see each trial first).
    """

    def __init__(
        self,
        storage: DaskStorage,
        writes: PendingWrites,
        run_id: str,
        key: str | None,
        ahead: bool,
    ) -> None:
        self.storage, self.writes = storage, writes
        self.run_id, self.key, self.ahead = run_id, key, ahead
        self.queue: deque[int] = deque()  # claimed, not started
        self.current: int | None = None  # the trial it runs
        self.pace: float | None = None  # seconds per trial (see _measure)
        self._measured = 0
        self._mean = 0.0
        self._asked: concurrent.futures.Future[list[Any]] | None = None
        self._refused = False  # a claim was refused: it asks no more
        self._run_ended: bool | None = None  # known once a claim was refused

    def __iter__(self) -> Iterator[int]:
        """The ids of the trials to run, in order, until the run grants no more."""
        while True:
            if not self.queue and not self._refill():
                return
            if self._ended():
                return  # the trials it holds are given back by close()
            trial_id = self.queue.popleft()
            if self.ahead and ask_ahead(len(self.queue), self.pace):
                self._ask()
            delay = write_delay(self.pace)
            self.writes.delay = FLUSH_AFTER if delay is None else delay
            self.writes.params_at_once = params_at_once(self.pace)
            self.current = trial_id
            began = time.monotonic()
            yield trial_id
            self._measure(time.monotonic() - began)
            self.current = None

    def adopt(self, trial_id: int) -> bool:
        """This thread now runs ``trial_id``: its writes are checked here and held back, its
        tell defers to the next claim, its study is read as the claim brought it.

        Returns ``False`` (and takes nothing on) if the trial already finished, as far as
        this process knows: the scheduler failed it since the claim (its run was aborted).
        """
        return self.storage.adopt_trial(trial_id)

    def take_refused(self) -> dict[int, Exception]:
        """This thread's trials that the scheduler failed since the last call because it
        refused a write of theirs sent after the trial's objective had moved on (a cheap
        trial's parameter, or its tell): trial id -> the error, which is also the trial's
        ``fail_reason``. The runner reports each as an error of that trial."""
        with self.writes.lock:
            refused, self.writes.refused = self.writes.refused, {}
        return refused

    def close(self) -> None:
        """Leave the run: give back the trials claimed and not started (WAITING again),
        FAIL the one it was running if an error of its own tears it down, send what it
        holds back. Refused writes it meets stay for :meth:`take_refused`."""
        self._refused = True
        if self._asked is not None:
            try:
                self.queue.extend(self._asked.result()[0])
            except Exception:  # the claim failed: it holds no trial
                pass
            self._asked = None
        if self.queue:
            self.storage.release_trials(self.run_id, list(self.queue))
            self.queue.clear()
        if self.current is not None:
            self.storage.abandon_trials(self.run_id, [self.current], "its runner stopped while it ran")
            self.current = None

    # -- claims ----------------------------------------------------------------------------

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
            self._run_ended = self.storage.run_status(self.run_id)["end_reason"] is not None
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
                self.run_id, self.key, claim_size(self.pace), self.pace or 0.0
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
