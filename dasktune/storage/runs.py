"""The runs of ``dasktune.optimize``, kept by the scheduler. Free of Dask and of the backend.

A *run* is one ``optimize`` call on one study. It has one lifecycle, owned here::

    open ──► running ──► ended (finished | stopped | failed | cancelled | aborted | orphaned)

- **Budget.** ``n_trials`` and ``timeout`` are enforced here, where trials start: a runner
  must *claim* each trial, and a claim is granted only while the budget allows, so
  concurrent runners can never start more trials than ``n_trials``, nor any after the
  deadline. Trials lost to a dead worker give their claim back when they are retried:
  ``retries`` times by the scheduler, or, when the run's ``retries`` is ``None``, as the
  caller's stale-trial callback decides (the run waits for its decision).
- **Ending.** A run ends when no trial of it runs and none may start. Every way to end goes
  through :meth:`RunBook.end`: *finished* (budget or deadline reached), *stopped*
  (``study.stop()``), *failed* (an objective's error), — these let running trials finish —
  and *cancelled* (``Run.cancel``, ``dasktune cancel``), *aborted* (an interrupt, a
  ``BaseException`` in a trial), *orphaned* (the client of an attached run left) — these
  fail the running trials at once, with the reason — and *deleted* (its study was deleted,
  trials and all). Runners learn it at their next claim, which is refused.
- **Runners.** Each runner task registers with its Dask key; when Dask releases that task
  (cancelled, its client gone) the runner's next claim is refused, so it leaves its worker
  thread.
- **Callbacks.** A run whose caller has callbacks is *gated*: a claim is granted one trial
  at a time, and only once the driver has seen (run the callbacks of) every trial that had
  finished when the claim arrived — as ``Study.optimize`` runs a trial's callbacks before
  that thread's next trial. So a callback's ``study.stop()`` ends the run with at most one
  trial per runner beyond those its callbacks had seen.

Cleanup model: a live run is kept until it ends; an ended run is kept for
:data:`ENDED_RUN_SECONDS` (or until more than :data:`MAX_ENDED_RUNS` ended runs are kept),
so that ``attach``, ``status`` and a driver that was slow to look can still read how it
ended; the ended runs of a deleted study are dropped with it (its live ones are kept, ended,
as the other ended runs, so that their drivers learn why). Per run the book keeps its
counters, its RUNNING trial ids and the ids of its finished trials (8 bytes each).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
import math
import time

from dasktune.storage import wire

#: How long an ended run stays readable (``attach``, ``status``).
ENDED_RUN_SECONDS = 600.0
#: Most ended runs kept per storage, however recent.
MAX_ENDED_RUNS = 100

#: Ways a run ends that let its running trials finish; the others fail them at once.
GRACEFUL = ("finished", "stopped", "failed")
OUTCOMES = (*GRACEFUL, "cancelled", "aborted", "deleted", "orphaned")


@dataclass
class RunRecord:
    """The scheduler's record of one ``optimize`` call: budget, progress, how it ended."""

    run_id: str
    study_id: int
    n_trials: int | None
    timeout: float | None
    retries: int | None  # None: the caller's stale-trial callback decides (see decide_lost)
    #: Dask client id of the process that drives it (``None``: detached, driven by a task).
    client: str | None
    deadline: float | None = None  # time.monotonic() on the scheduler
    claimed: int = 0
    finished: int = 0
    lost: int = 0  # trials failed because their worker died
    stopped: str | None = None  # why no trial may start any more, if something said so
    outcome: str | None = None  # how it ends or ended (one of OUTCOMES)
    ended_at: float | None = None
    #: RUNNING trials of this run: trial id -> address of the worker running it.
    running: dict[int, str | None] = field(default_factory=dict)
    #: Ids of this run's trials in the order they finished.
    finished_ids: array = field(default_factory=lambda: array("q"))
    #: Runner task key -> its index (0 for the first runner, which keeps the sampler's seed).
    runners: dict[str, int] = field(default_factory=dict)
    registrations: int = 0
    released: set[str] = field(default_factory=set)  # runner keys Dask released
    gated: bool = False  # see the module docstring (Callbacks)
    #: Trials lost with their worker whose retry the caller's callback has yet to decide.
    undecided: list[int] = field(default_factory=list)
    seen: int = 0  # finished trials whose callbacks the driver has run

    def can_claim(self, now: float | None = None) -> bool:
        """Whether a new trial may start: not stopped, budget left, deadline ahead."""
        if self.stopped is not None:
            return False
        if self.n_trials is not None and self.claimed >= self.n_trials:
            return False
        return self.deadline is None or (time.monotonic() if now is None else now) < self.deadline

    @property
    def done(self) -> bool:
        """No trial running (or lost and undecided) and none may start: the run has ended."""
        return not self.running and not self.undecided and not self.can_claim()

    def status(self, now: float | None = None) -> wire.RunStatus:
        """Plain-data progress, as clients see it."""
        now = time.monotonic() if now is None else now
        done = self.done
        return {
            "run_id": self.run_id,
            "study_id": self.study_id,
            "n_trials": self.n_trials,
            "timeout": self.timeout,
            "claimed": self.claimed,
            "finished": self.finished,
            "running": len(self.running),
            "lost": self.lost,
            "undecided": list(self.undecided),
            "stopped": self.stopped,
            "outcome": (self.outcome or "finished") if done else self.outcome,
            "time_left": None if self.deadline is None else max(0.0, self.deadline - now),
            "can_claim": self.can_claim(now),
            "done": done,
        }


class RunBook:
    """Every run of one storage, by id; the only place that decides what a run may do."""

    def __init__(self) -> None:
        self.runs: dict[str, RunRecord] = {}
        self._run_of: dict[int, RunRecord] = {}  # RUNNING trial id -> the run that claimed it
        self._runner_runs: dict[str, RunRecord] = {}  # runner task key -> its run
        self._ended: list[str] = []  # runs stopped since take_ended() was last asked

    # -- lifecycle -----------------------------------------------------------------------

    def open(
        self,
        run_id: str,
        study_id: int,
        n_trials: int | None,
        timeout: float | None,
        retries: int | None,
        client: str | None,
        gated: bool = False,
    ) -> wire.RunStatus:
        """Start accounting for one ``optimize`` call (again: the existing run's status)."""
        if run_id not in self.runs:
            run = RunRecord(run_id, study_id, n_trials, timeout, retries, client, gated=gated)
            if timeout is not None:
                run.deadline = time.monotonic() + timeout
            self.runs[run_id] = run
        return self.runs[run_id].status()

    def end(self, run_id: str, outcome: str, reason: str) -> list[int]:
        """End ``run_id`` for ``reason``: no trial starts any more. Returns the RUNNING
        trials to fail now (none for a graceful end; then they finish as they will). The
        first reason given is the one kept."""
        if outcome not in OUTCOMES:
            raise ValueError(f"A run ends as one of {OUTCOMES}, not {outcome!r}.")
        run = self.get(run_id)
        if run.stopped is None:
            run.stopped, run.outcome = reason, outcome
            self._ended.append(run_id)
        if outcome in GRACEFUL:
            self._check_done(run)
            return []
        return list(run.running)

    def client_removed(self, client: str) -> list[str]:
        """The runs the departed ``client`` drove (attached runs), to end as orphaned."""
        return [r.run_id for r in self.runs.values() if r.client == client and r.ended_at is None]

    def study_deleted(self, study_id: int, reason: str) -> None:
        """The study was deleted with its trials: its live runs end as *deleted*, its ended
        runs are dropped."""
        for run in [r for r in self.runs.values() if r.study_id == study_id]:
            if run.ended_at is not None:
                self._drop(run)
                continue
            run.stopped, run.outcome = reason, "deleted"
            self._ended.append(run.run_id)
            for trial_id in run.running:
                self._run_of.pop(trial_id, None)
            run.running.clear()
            run.finished_ids = array("q")
            self._check_done(run)

    def expire(self, now: float | None = None) -> list[str]:
        """Drop ended runs past their retention; their ids."""
        now = time.monotonic() if now is None else now
        ended = sorted(
            (r for r in self.runs.values() if r.ended_at is not None), key=lambda r: r.ended_at or 0
        )
        expired = [
            run
            for i, run in enumerate(ended)
            if now - (run.ended_at or now) > ENDED_RUN_SECONDS or len(ended) - i > MAX_ENDED_RUNS
        ]
        for run in expired:
            self._drop(run)
        return [run.run_id for run in expired]

    # -- runners and claims --------------------------------------------------------------

    def register_runner(self, run_id: str, key: str) -> int:
        """The index of a runner task of ``run_id`` (0 for the first). A task Dask runs
        again (its worker died) registers anew and gets a new index, hence a new seed."""
        run = self.get(run_id)
        run.runners[key] = run.registrations
        run.registrations += 1
        run.released.discard(key)
        self._runner_runs[key] = run
        return run.runners[key]

    def runner_released(self, key: str) -> bool:
        """Dask released the runner task ``key`` (cancelled, or its client left): its next
        claim is refused. Whether ``key`` is a runner's."""
        run = self._runner_runs.get(key)
        if run is None:
            return False
        run.released.add(key)
        return True

    def grant(self, run_id: str, key: str | None, wanted: int, seconds_per_trial: float) -> int:
        """How many of ``wanted`` trials the runner ``key`` may start now.

        Never past ``n_trials``; the last trials of a budget are spread over the runners
        rather than all given to the first that asks; and no more than fit before the
        deadline at the runner's pace.
        """
        run = self.get(run_id)
        now = time.monotonic()
        if (key is not None and key in run.released) or not run.can_claim(now):
            return 0
        n = 1 if run.gated else max(1, wanted)
        if run.n_trials is not None:
            remaining = run.n_trials - run.claimed
            runners = max(1, len(run.runners) - len(run.released))
            n = min(n, remaining, max(1, math.ceil(remaining / runners)))
        if run.deadline is not None and seconds_per_trial > 0:
            n = min(n, max(1, int((run.deadline - now) / seconds_per_trial)))
        return n

    def started(self, run_id: str, trial_ids: Iterable[int], worker: str | None) -> None:
        """Trials granted to ``run_id`` started (RUNNING) on ``worker``."""
        run = self.get(run_id)
        for trial_id in trial_ids:
            run.claimed += 1
            run.running[trial_id] = worker
            self._run_of[trial_id] = run

    def run_of(self, trial_id: int) -> RunRecord | None:
        return self._run_of.get(trial_id)

    def gate(self, run_id: str) -> int | None:
        """For a claim of a gated run that may start a trial: how many finished trials its
        driver must have seen before it is granted (those finished now). ``None``: no wait."""
        run = self.runs.get(run_id)
        if run is None or not run.gated or not run.can_claim():
            return None
        return run.finished

    def gate_open(self, run_id: str, threshold: int) -> bool:
        """Whether a claim held at :meth:`gate`'s ``threshold`` may go on: the driver has
        seen as many trials, or the run can start none any more (the claim is refused)."""
        run = self.runs.get(run_id)
        return run is None or run.seen >= threshold or not run.can_claim()

    def seen(self, run_id: str, count: int) -> bool:
        """The driver of ``run_id`` has run the callbacks of its first ``count`` finished
        trials; whether that opens gates."""
        run = self.runs.get(run_id)
        if run is None or count <= run.seen:
            return False
        run.seen = count
        return run.gated

    # -- trial events ------------------------------------------------------------------

    def finished(self, trial_ids: Iterable[int]) -> bool:
        """Trials finished (COMPLETE, PRUNED or FAIL); whether any was a run's."""
        changed = False
        for trial_id in trial_ids:
            run = self._run_of.pop(trial_id, None)
            if run is None:
                continue
            changed = True
            run.running.pop(trial_id, None)
            run.finished += 1
            run.finished_ids.append(trial_id)
            self._check_done(run)
        return changed

    def released(self, trial_ids: Iterable[int]) -> None:
        """Claimed trials that never started went back to WAITING: out of the budget."""
        for trial_id in trial_ids:
            run = self._run_of.pop(trial_id, None)
            if run is None:
                continue
            run.running.pop(trial_id, None)
            run.claimed -= 1
            self._check_done(run)

    def lost(self, trial_id: int, retried: bool) -> None:
        """A trial failed because its worker died; ``retried``: a WAITING copy takes its
        place in the budget, else it counts as finished."""
        run = self._run_of.pop(trial_id, None)
        if run is None:
            return
        run.running.pop(trial_id, None)
        run.lost += 1
        if run.retries is None:
            run.undecided.append(trial_id)
        else:
            self._settle(run, trial_id, retried)

    def decide_lost(self, run_id: str, trial_id: int, retried: bool) -> None:
        """The caller's stale-trial callback ran for ``trial_id``, lost with its worker;
        ``retried``: it enqueued a retry, which takes the lost trial's place in the budget."""
        run = self.get(run_id)
        if trial_id in run.undecided:
            run.undecided.remove(trial_id)
            self._settle(run, trial_id, retried)

    def _settle(self, run: RunRecord, trial_id: int, retried: bool) -> None:
        """A lost trial's place: given back for its retry, or counted as finished."""
        if retried:
            run.claimed -= 1
        else:
            run.finished += 1
            run.finished_ids.append(trial_id)
        self._check_done(run)

    def take_ended(self) -> list[str]:
        """The runs stopped (by any end but their budget) since the last call: their runners
        must start none of the trials they claimed ahead."""
        ended, self._ended = self._ended, []
        return ended

    # -- reading -----------------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord:
        run = self.runs.get(run_id)
        if run is None:
            raise KeyError(
                f"No optimize run {run_id!r} on this storage: it ended more than "
                f"{ENDED_RUN_SECONDS:.0f} s ago, its study was deleted, or the scheduler "
                "restarted since it started."
            )
        return run

    def status(self, run_id: str, since: int = 0) -> tuple[wire.RunStatus, list[int]]:
        """The run's status and the ids of the trials that finished after the first
        ``since``."""
        run = self.get(run_id)
        self._check_done(run)  # a deadline may have passed since the last event
        return run.status(), run.finished_ids[since:].tolist()

    def find(self, study_id: int) -> list[wire.RunStatus]:
        """Status of every run of ``study_id``, oldest first."""
        return [run.status() for run in self.runs.values() if run.study_id == study_id]

    # -- internals -----------------------------------------------------------------------

    def _check_done(self, run: RunRecord) -> None:
        if run.ended_at is None and run.done:
            run.ended_at = time.monotonic()
            run.outcome = run.outcome or "finished"

    def _drop(self, run: RunRecord) -> None:
        del self.runs[run.run_id]
        for trial_id in run.running:
            self._run_of.pop(trial_id, None)
        for key in run.runners:
            if self._runner_runs.get(key) is run:
                del self._runner_runs[key]
