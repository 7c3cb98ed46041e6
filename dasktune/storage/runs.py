"""The runs of ``dasktune.optimize``, kept by the scheduler. Free of Dask and of the backend.

A *run* is one ``optimize`` call on one study. It has one lifecycle, owned here::

    open ──► running ──► ended (finished | stopped | failed | cancelled | aborted | orphaned)

- **Budget.** ``n_trials`` and ``timeout`` are enforced here, where trials start: a runner
  must *claim* each trial, granted only while the budget allows, so concurrent runners never
  start more than ``n_trials``, nor any after the deadline. A trial lost with its worker
  gives its claim back when it is retried: ``retries`` times by the scheduler, or as the
  caller's stale-trial callback decides when ``retries`` is ``None`` (the run waits for it).
- **Ending.** A run ends when no trial of it runs and none may start, through
  :meth:`RunBook.end`: *finished* (budget or deadline reached), *stopped*
  (``study.stop()``), *failed* (an objective's error) let running trials finish;
  *cancelled* (``Run.cancel``), *aborted* (an interrupt, a ``BaseException`` in a trial),
  *orphaned* (the client of an attached run left) fail them at once, with the reason;
  *deleted*: its study was deleted, trials and all. Runners learn it from the scheduler's
  announcement (see the plugin) or their next claim, which is refused.
- **Runners.** Each runner task registers with its Dask key; when Dask releases that task
  (cancelled, its client gone) its next claim is refused, so it leaves its worker thread.
- **Callbacks.** A run whose caller has callbacks is *gated*: a claim is granted one trial
  at a time, and only once the driver has seen (run the callbacks of) every trial that had
  finished when the claim arrived — as ``Study.optimize`` runs a trial's callbacks before
  that thread's next trial. So a callback's ``study.stop()`` ends the run with at most one
  trial per runner beyond those its callbacks had seen.

Thread-safety: every public method takes the book's own lock (the backend's thread and the
event loop both ask); none holds it across a call to the backend.

Cleanup model: a live run is kept until it ends, an ended one for :data:`ENDED_RUN_SECONDS`
(at most :data:`MAX_ENDED_RUNS` of them), so that ``attach``, ``status`` and a slow driver
can read how it ended; a deleted study's ended runs go with it (its live ones end, and are
kept as ended runs, so that their drivers learn why). Per run the book keeps its counters,
its RUNNING trial ids and the ids of its finished trials (8 bytes each).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
import functools
import math
import threading
import time
from typing import Any
from typing import get_args
from typing import Literal
from typing import TypeVar

from dasktune.storage import wire

F = TypeVar("F", bound=Callable[..., Any])

#: How long an ended run stays readable (``attach``, ``status``).
ENDED_RUN_SECONDS = 600.0
#: Most ended runs kept per storage, however recent.
MAX_ENDED_RUNS = 100

#: How a run ends (see the module docstring).
Outcome = Literal["finished", "stopped", "failed", "cancelled", "aborted", "deleted", "orphaned"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
#: Ways a run ends that let its running trials finish; the others fail them at once.
GRACEFUL: tuple[Outcome, ...] = ("finished", "stopped", "failed")


def _locked(method: F) -> F:
    """Run a :class:`RunBook` method under the book's lock."""

    @functools.wraps(method)
    def locked(self: RunBook, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


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
    #: Why the run ended, or ends once its running trials finish, when something ended it
    #: (``study.stop()``, an error, a cancel); ``None`` while only its budget may end it.
    end_reason: str | None = None
    outcome: Outcome | None = None  # how it ends or ended
    ended_at: float | None = None
    #: RUNNING trials of this run: trial id -> address of the worker running it.
    running: dict[int, str | None] = field(default_factory=dict)
    #: Ids of this run's trials in the order they finished.
    finished_ids: array[int] = field(default_factory=lambda: array("q"))
    #: Runner task key -> its index (0 for the first runner, which keeps the sampler's seed).
    runners: dict[str, int] = field(default_factory=dict)
    registrations: int = 0
    released: set[str] = field(default_factory=set)  # runner keys Dask released
    gated: bool = False  # see the module docstring (Callbacks)
    #: Trials lost with their worker whose retry the caller's callback has yet to decide.
    undecided: list[int] = field(default_factory=list)
    seen: int = 0  # finished trials whose callbacks the driver has run

    def can_claim(self, now: float | None = None) -> bool:
        """Whether a new trial may start: not ended, budget left, deadline ahead."""
        if self.end_reason is not None:
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
            "end_reason": self.end_reason,
            "outcome": (self.outcome or "finished") if done else self.outcome,
            "time_left": None if self.deadline is None else max(0.0, self.deadline - now),
            "can_claim": self.can_claim(now),
            "done": done,
        }


class RunBook:
    """Every run of one storage, by id; the only place that decides what a run may do."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.runs: dict[str, RunRecord] = {}
        self._run_of: dict[int, RunRecord] = {}  # RUNNING trial id -> the run that claimed it
        self._runner_runs: dict[str, RunRecord] = {}  # runner task key -> its run
        self._ended: list[str] = []  # runs stopped since take_ended() was last asked

    # -- lifecycle -----------------------------------------------------------------------

    @_locked
    def open(self, run_id: str, study_id: int, terms: wire.RunTerms) -> wire.RunStatus:
        """Start accounting for one ``optimize`` call (again: the existing run's status)."""
        if run_id not in self.runs:
            run = RunRecord(run_id, study_id, **terms)
            if run.timeout is not None:
                run.deadline = time.monotonic() + run.timeout
            self.runs[run_id] = run
        return self.runs[run_id].status()

    @_locked
    def end(self, run_id: str, outcome: Outcome, reason: str) -> list[int]:
        """End ``run_id`` for ``reason``: no trial starts any more. Returns the RUNNING
        trials to fail now (none for a graceful end; then they finish as they will). The
        first reason given is the one kept."""
        if outcome not in OUTCOMES:
            raise ValueError(f"A run ends as one of {OUTCOMES}, not {outcome!r}.")
        run = self.get(run_id)
        if run.end_reason is None:
            run.end_reason, run.outcome = reason, outcome
            self._ended.append(run_id)
        if outcome in GRACEFUL:
            self._check_done(run)
            return []
        return list(run.running)

    @_locked
    def client_removed(self, client: str) -> list[str]:
        """The runs the departed ``client`` drove (attached runs), to end as orphaned."""
        return [r.run_id for r in self.runs.values() if r.client == client and r.ended_at is None]

    @_locked
    def study_deleted(self, study_id: int, reason: str) -> None:
        """The study was deleted with its trials: its live runs end as *deleted*, its ended
        runs are dropped."""
        for run in [r for r in self.runs.values() if r.study_id == study_id]:
            if run.ended_at is not None:
                self._drop(run)
                continue
            run.end_reason, run.outcome = reason, "deleted"
            self._ended.append(run.run_id)
            for trial_id in run.running:
                self._run_of.pop(trial_id, None)
            run.running.clear()
            run.finished, run.finished_ids = 0, array("q")  # gone with the study
            self._check_done(run)

    @_locked
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

    @_locked
    def register_runner(self, run_id: str, key: str) -> int:
        """The index of a runner task of ``run_id`` (0 for the first). A task Dask runs
        again (its worker died) registers anew and gets a new index, hence a new seed."""
        run = self.get(run_id)
        run.runners[key] = run.registrations
        run.registrations += 1
        run.released.discard(key)
        self._runner_runs[key] = run
        return run.runners[key]

    @_locked
    def runner_released(self, key: str) -> bool:
        """Dask released the runner task ``key`` (cancelled, or its client left): its next
        claim is refused. Whether ``key`` is a runner's."""
        run = self._runner_runs.get(key)
        if run is None:
            return False
        run.released.add(key)
        return True

    def claim(
        self,
        run_id: str,
        key: str | None,
        wanted: int,
        seconds_per_trial: float,
        worker: str | None,
        start: Callable[[int, int], list[int]],
    ) -> list[int]:
        """Start up to ``wanted`` trials of ``run_id`` for the runner ``key`` on ``worker``,
        as the budget allows: ``start(study_id, n)`` makes them RUNNING (the store's oldest
        WAITING trials first, then new ones; outside the lock, as it writes to the backend).
        ``[]``: the runner must stop.

        Never past ``n_trials``; the last trials of a budget are spread over the runners
        rather than all given to the first that asks; no more than fit before the deadline
        at the runner's pace; one at a time in a gated run.
        """
        with self._lock:
            run = self.get(run_id)
            now = time.monotonic()
            if (key is not None and key in run.released) or not run.can_claim(now):
                return []
            n = 1 if run.gated else max(1, wanted)
            if run.n_trials is not None:
                remaining = run.n_trials - run.claimed
                runners = max(1, len(run.runners) - len(run.released))
                n = min(n, remaining, max(1, math.ceil(remaining / runners)))
            if run.deadline is not None and seconds_per_trial > 0:
                n = min(n, max(1, int((run.deadline - now) / seconds_per_trial)))
            run.claimed += n  # held while the trials start, so no other claim takes them
        try:
            trial_ids = start(run.study_id, n)
        except BaseException:
            with self._lock:
                run.claimed -= n
            raise
        with self._lock:
            for trial_id in trial_ids:
                run.running[trial_id] = worker
                self._run_of[trial_id] = run
        return trial_ids

    @_locked
    def run_of(self, trial_id: int) -> RunRecord | None:
        return self._run_of.get(trial_id)

    @_locked
    def held(self, run_id: str, trial_ids: Iterable[int]) -> list[int]:
        """Those of ``trial_ids`` that ``run_id`` runs."""
        return [t for t in trial_ids if (run := self._run_of.get(t)) and run.run_id == run_id]

    @_locked
    def gated_claim(self, ops: list[wire.Op]) -> tuple[int, str] | None:
        """The index and run of the claim among ``ops`` that must wait for its run's driver
        (see the module docstring, Callbacks), if one must."""
        for index, (name, args, _) in enumerate(ops):
            run = self.runs.get(args[0]) if name == "claim_trials" else None
            if run is not None and run.gated:
                return index, run.run_id
        return None

    @_locked
    def gate(self, run_id: str) -> Callable[[], bool] | None:
        """For a claim of a gated run that may start a trial now, whether it may go on: once
        the driver has seen every trial finished now, or the run can start none any more
        (the claim is then refused). ``None``: it need not wait."""
        run = self.runs.get(run_id)
        if run is None or not run.gated or not run.can_claim():
            return None
        threshold = run.finished

        def is_open() -> bool:
            with self._lock:
                return run.seen >= threshold or not run.can_claim()

        return is_open

    @_locked
    def seen(self, run_id: str, count: int) -> bool:
        """The driver of ``run_id`` has run the callbacks of its first ``count`` finished
        trials; whether that opens gates."""
        run = self.runs.get(run_id)
        if run is None or count <= run.seen:
            return False
        run.seen = count
        return run.gated

    # -- trial events ------------------------------------------------------------------

    @_locked
    def trials_finished(self, trial_ids: Iterable[int]) -> None:
        """Trials finished (COMPLETE, PRUNED or FAIL)."""
        for trial_id, run in self._stop_running(trial_ids):
            self._settle(run, trial_id, retried=False)

    @_locked
    def released(self, trial_ids: Iterable[int]) -> None:
        """Claimed trials that never started went back to WAITING: out of the budget."""
        for trial_id, run in self._stop_running(trial_ids):
            self._settle(run, trial_id, retried=True)

    @_locked
    def lost(self, trial_id: int, retried: bool) -> None:
        """A trial failed because its worker died; ``retried``: a WAITING copy takes its
        place in the budget, else it counts as finished."""
        for trial_id, run in self._stop_running([trial_id]):
            run.lost += 1
            if run.retries is None:
                run.undecided.append(trial_id)
                continue
            self._settle(run, trial_id, retried)

    @_locked
    def decide_lost(self, run_id: str, trial_id: int, retried: bool) -> None:
        """The caller's stale-trial callback ran for ``trial_id``, lost with its worker;
        ``retried``: it enqueued a retry, which takes the lost trial's place in the budget."""
        run = self.get(run_id)
        if trial_id in run.undecided:
            run.undecided.remove(trial_id)
            self._settle(run, trial_id, retried)

    def _stop_running(self, trial_ids: Iterable[int]) -> list[tuple[int, RunRecord]]:
        """Those of ``trial_ids`` that a run was running, with the run: no longer running."""
        stopped = [(t, run) for t in trial_ids if (run := self._run_of.pop(t, None)) is not None]
        for trial_id, run in stopped:
            del run.running[trial_id]
        return stopped

    def _settle(self, run: RunRecord, trial_id: int, retried: bool) -> None:
        """A trial's place once it no longer runs: given back (``retried``: a WAITING trial
        takes it), or counted as finished."""
        if retried:
            run.claimed -= 1
        else:
            run.finished += 1
            run.finished_ids.append(trial_id)
        self._check_done(run)

    @_locked
    def take_ended(self) -> list[str]:
        """The runs stopped (by any end but their budget) since the last call: their runners
        must start none of the trials they claimed ahead."""
        ended, self._ended = self._ended, []
        return ended

    # -- reading -----------------------------------------------------------------------

    @_locked
    def get(self, run_id: str) -> RunRecord:
        run = self.runs.get(run_id)
        if run is None:
            raise KeyError(
                f"No optimize run {run_id!r} on this storage: it ended more than "
                f"{ENDED_RUN_SECONDS:.0f} s ago, its study was deleted, or the scheduler "
                "restarted since it started."
            )
        return run

    @_locked
    def status(self, run_id: str, since: int = 0) -> tuple[wire.RunStatus, list[int]]:
        """The run's status and the ids of the trials that finished after the first
        ``since``."""
        run = self.get(run_id)
        self._check_done(run)  # a deadline may have passed since the last event
        return run.status(), run.finished_ids[since:].tolist()

    @_locked
    def live(self) -> bool:
        """Whether a run has not ended yet."""
        return any(run.ended_at is None for run in self.runs.values())

    @_locked
    def sizes(self) -> dict[str, int]:
        """How much the book keeps, by kind (its bookkeeping, for bounds and metrics)."""
        return {"runs": len(self.runs), "runs' trials": len(self._run_of), "runners": len(self._runner_runs)}

    @_locked
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
