"""Pruning across workers: when, and with what data, a run asks the study's pruner.

``trial.should_prune()`` runs where the trial runs, on a worker, and asks the study's pruner,
which reads the other trials' reports. dasktune never changes a pruner's rule, nor the
study's pruner object. It decides when and with what data the pruner is asked, in three
ways:

- **The first wave.** Optuna's ``SuccessiveHalvingPruner(min_resource="auto")`` and
  ``HyperbandPruner(max_resource="auto")`` infer their resources from the first COMPLETE
  trial. Before one exists, they prune nothing. With P trials started together, the whole
  first wave runs to its last step (optuna#3088). Given ``optimize(max_resource=R)``, each
  runner's copy of the pruner gets, before its first decision, what it would infer from a
  trial that completed at step ``R - 1`` (:func:`dasktune.compat.resolve_pruner_resources`).
  Without it, ``optimize`` warns when more than one trial may run at once
  (:func:`first_wave_warning`).
- **One fresh view per decision.** A runner's trials are this module's :class:`Trial`,
  whose ``should_prune`` does the rest. The pruner's first read takes the trial's new
  report to the scheduler and brings back every report the scheduler holds; its later
  reads during the decision see that same state (:meth:`DaskStorage.one_view`). However
  often a pruner reads, a decision costs at most one round trip, and none if it reads
  nothing (successive halving between two rungs).
- **Its records leave at once.** What a pruner writes about the trial (successive halving's
  ``completed_rung_k``, the value other trials at that rung are compared with) is sent as
  the decision ends. It does not wait for the trial's next report, which may be a whole step
  later, while other trials reach the rung without it.

With the Dask config ``distributed.dasktune.record-pruning: true`` (read where ``optimize``
is called), every decision is also logged as a Dask event on topic :data:`TOPIC`, with the
view it was made on. ``client.get_events(TOPIC)`` returns them, and :func:`replay` checks
them against the pruner's rule and measures how stale that view was.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
import math
import time
from typing import Any
import warnings

from distributed import get_worker
import optuna
from optuna.pruners import BasePruner
from optuna.pruners import NopPruner
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune import compat
from dasktune.storage import DaskStorage

#: Dask config key: log every pruning decision as a Dask event (off: the events of a busy
#: run, one per report, would take the scheduler's memory for nothing).
RECORD_CONFIG = "distributed.dasktune.record-pruning"
#: The Dask event topic of pruning decisions.
TOPIC = "dasktune-pruning"
#: System attributes of a trial that pruners write and read back (successive halving's
#: value at each rung); a record's view keeps them, as the pruner saw them.
_RUNG_PREFIX = "completed_rung_"

#: One trial as a decision saw it: number, state name, last step reported (or None) and
#: its rung records.
ViewRow = tuple[int, str, int | None, dict[str, float]]


class Trial(optuna.Trial):
    """``optuna.Trial`` as a runner makes it: the same in every way but one, that
    :meth:`should_prune` asks the study's pruner on one fresh view of the study (see the
    module docstring). The study and its pruner stay the user's own objects."""

    #: Log each decision as a Dask event on :data:`TOPIC` (:class:`RecordingTrial`).
    record = False

    def should_prune(self) -> bool:
        storage = self.storage
        if not isinstance(storage, DaskStorage) or isinstance(self.study.pruner, NopPruner):
            return super().should_prune()  # nothing to read: no round trip
        before = storage.get_trial(compat.trial_id(self))  # its own: read locally
        at = time.time()
        with storage.one_view(compat.study_id(self.study)):
            pruned = super().should_prune()
            view = self.study.get_trials(deepcopy=False) if self.record else ()
        if self.record:
            get_worker().log_event(TOPIC, _record(self.study, before, pruned, at, view))
        return pruned


class RecordingTrial(Trial):
    """A :class:`Trial` of a run that records its pruning decisions."""

    record = True


def _record(
    study: optuna.Study, trial: FrozenTrial, pruned: bool, at: float, view: Sequence[FrozenTrial]
) -> dict[str, Any]:
    """A decision as plain data (Dask events travel as msgpack): what :func:`replay` reads.
    The view holds each trial's last step, not its values, which never change once reported
    and are read back from the study; the deciding trial is as it was before the decision
    (without the rung record the pruner may have just made)."""
    rows: list[ViewRow] = [
        (t.number, t.state.name, t.last_step, _rungs(trial if t.number == trial.number else t)) for t in view
    ]
    return {
        "study": study.study_name,
        "trial": trial.number,
        "step": trial.last_step,
        "pruned": bool(pruned),  # numpy's bool from the percentile pruners
        "at": at,
        "view": rows,
    }


def first_wave_warning(study: optuna.Study, max_resource: int | None, concurrency: int | None) -> None:
    """Warn once per call site if the study's pruner will prune nothing of the run's first
    trials: it waits for a COMPLETE trial to learn its resources, none has completed, no
    ``max_resource`` was given, and more than one trial may run at once."""
    if max_resource is not None or concurrency == 1:
        return
    if not compat.pruner_waits_for_a_complete_trial(study.pruner):
        return
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if any(t.last_step is not None for t in done):
        return  # the pruner learns its resources from these at its first decision
    name = type(study.pruner).__name__
    warnings.warn(
        f"{name} with 'auto' resources prunes nothing until a trial completes: with "
        "several trials at once, every trial started before the first one ends runs to its "
        "last step. Pass optimize(..., max_resource=<the step of a trial's last report>, "
        f"e.g. its number of epochs), or give the {name} its resources yourself.",
        UserWarning,
        stacklevel=3,
    )


@dataclass(frozen=True)
class Replayed:
    """One recorded decision, checked.

    Attributes:
        record: The decision as logged.
        rule: What the pruner's rule gives on the view the decision recorded.
        informed: What it gives on every report made anywhere before the decision.
        staleness: Seconds since the oldest report the view missed (0.0: it missed none).
    """

    record: dict[str, Any]
    rule: bool
    informed: bool
    staleness: float

    @property
    def contradicts(self) -> bool:
        """The pruner decided otherwise than its rule on the data it was given."""
        return self.rule != bool(self.record["pruned"])


def replay(
    records: Sequence[dict[str, Any]],
    study: optuna.Study,
    make_pruner: Callable[[], BasePruner],
    max_resource: int | None = None,
    every: int = 1,
) -> list[Replayed]:
    """Check recorded decisions (``[msg for _, msg in client.get_events(TOPIC)]``) of one
    study's run against the pruner's own rule, with a fresh pruner from ``make_pruner``
    given ``max_resource`` as the run gave it; every ``every``-th decision only (each
    replay rebuilds the study, so a long run is checked on a sample).

    Each decision is replayed twice, on a copy of the study rebuilt as it was: once as its
    view saw it, once with every report made anywhere before it. A report is timed by the
    decision that follows it (objectives that report and then ask ``should_prune``, as
    dasktune's tests and benchmarks do), a trial's end by its ``datetime_complete``.
    Intermediate values are read back from ``study``, finished. Clocks: decision times are
    the workers' ``time.time()``; across machines, their skew adds to the staleness.
    """
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    mine = sorted((r for r in records if r["study"] == study.study_name), key=lambda r: r["at"])
    history: dict[int, list[dict[str, Any]]] = {}
    for r in mine:
        history.setdefault(r["trial"], []).append(r)
    out = []
    for r in mine[::every]:
        rows: list[ViewRow] = [tuple(row) for row in r["view"]]
        informed, missed = [], []
        for row in rows:
            known, missed_at = _known_by(row, r, history.get(row[0], []), trials[row[0]])
            informed.append(known)
            missed += missed_at
        rule = _decide(study, trials, rows, r, make_pruner, max_resource)
        knowing = _decide(study, trials, informed, r, make_pruner, max_resource)
        out.append(Replayed(r, rule, knowing, r["at"] - min(missed) if missed else 0.0))
    return out


def _known_by(
    row: ViewRow, decision: dict[str, Any], own: list[dict[str, Any]], trial: FrozenTrial
) -> tuple[ViewRow, list[float]]:
    """A trial as it stood anywhere when ``decision`` was made (from its own decisions
    before then and its end), and the times of what ``row`` (the decision's view of it)
    missed."""
    number, state, last_step, rungs = row
    if number == decision["trial"]:
        return row, []
    ended = trial.datetime_complete.timestamp() if trial.datetime_complete else math.inf
    if state == "RUNNING" and ended < decision["at"]:
        return (number, trial.state.name, trial.last_step, _rungs(trial)), [ended]
    earlier = [h for h in own if h["at"] < decision["at"]]
    missed = [h for h in earlier if h["step"] is not None and (last_step is None or h["step"] > last_step)]
    if not missed:
        return row, []
    later = [h for h in own if h["at"] >= decision["at"]]
    after = _own_row(later[0])[3] if later else _rungs(trial)  # rungs its last decision made
    return (number, state, earlier[-1]["step"], after), [h["at"] for h in missed]


def _own_row(decision: dict[str, Any]) -> ViewRow:
    return next(tuple(row) for row in decision["view"] if row[0] == decision["trial"])


def _rungs(trial: FrozenTrial) -> dict[str, float]:
    return {k: v for k, v in trial.system_attrs.items() if k.startswith(_RUNG_PREFIX)}


def _decide(
    study: optuna.Study,
    trials: dict[int, FrozenTrial],
    rows: Sequence[ViewRow],
    decision: dict[str, Any],
    make_pruner: Callable[[], BasePruner],
    max_resource: int | None,
) -> bool:
    """The pruner's decision for ``decision``'s trial on a study rebuilt from ``rows`` (a
    prefix of the study's trials, so numbers, and Hyperband's brackets, stay as they were)."""
    copy = optuna.create_study(
        study_name=study.study_name,  # Hyperband picks a trial's bracket from it
        directions=study.directions,
        storage=optuna.storages.InMemoryStorage(),
    )
    for number, state, last_step, rungs in sorted(rows):
        real = trials[number]
        steps = {s: v for s, v in real.intermediate_values.items() if last_step is not None and s <= last_step}
        copy.add_trial(
            optuna.trial.create_trial(
                state=TrialState[state],
                params=real.params,
                distributions=real.distributions,
                values=real.values if state == "COMPLETE" else None,
                intermediate_values=steps,
                system_attrs=rungs,
            )
        )
    deciding = copy.get_trials(deepcopy=False)[decision["trial"]]
    pruner = make_pruner()
    if max_resource is not None:
        compat.resolve_pruner_resources(pruner, max_resource)
    return bool(pruner.prune(copy, deciding))  # numpy's bool from the percentile pruners


