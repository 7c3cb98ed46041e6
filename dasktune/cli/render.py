"""How the command line shows studies, trials and runs to a person.

Tables are drawn as Optuna's own CLI draws them (``optuna best-trials --flatten``): a
bordered grid, numbers right-aligned in full precision (``str``, as Optuna prints them),
one column per objective and one per parameter, empty cells for what a trial lacks. The
lines that count a study's trials and a run's progress are written here once, for every
command that prints them, so that ``show``, ``cancel`` and ``export`` say the same numbers
in the same words.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any
from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial
from optuna.trial import TrialState

if TYPE_CHECKING:
    from dasktune.storage.wire import RunStatus

#: Trial states in the order every count lists them (Optuna's own order).
STATES = [s.name for s in TrialState]


def table(rows: Sequence[dict[str, Any]]) -> str:
    """``rows`` (dicts, the first one's keys and any new ones after them as columns) as a
    bordered table; a column is right-aligned when all its cells are numbers."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [["" if row.get(c) is None else str(row[c]) for c in columns] for row in rows]
    numeric = [
        all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows) for c in columns
    ]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "|" + "|".join(
            f" {v:>{w}} " if right else f" {v:<{w}} " for v, w, right in zip(values, widths, numeric)
        ) + "|"

    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    return "\n".join([rule, line(columns), rule, *(line(r) for r in cells), rule])


def value_columns(directions: int, metric_names: list[str] | None) -> list[str]:
    """The columns of a trial's values: ``value``, or one per objective, named by the
    study's metric names if it has them (``values_0``, ``values_1``... otherwise, as Optuna's
    CLI names them)."""
    if metric_names:
        return list(metric_names)
    return ["value"] if directions == 1 else [f"values_{i}" for i in range(directions)]


def trial_row(
    trial: FrozenTrial, values: list[str], state: bool = True, duration: bool = True
) -> dict[str, Any]:
    """One trial as a table row: its number, state, a column per objective in ``values``,
    one per parameter (``params_NAME``) and its duration in seconds."""
    row: dict[str, Any] = {"number": trial.number}
    if state:
        row["state"] = trial.state.name
    for i, column in enumerate(values):
        row[column] = trial.values[i] if trial.values is not None and i < len(trial.values) else None
    row.update({f"params_{name}": value for name, value in trial.params.items()})
    if duration:
        seconds = trial.duration.total_seconds() if trial.duration is not None else None
        row["duration_s"] = None if seconds is None else round(seconds, 3)
    return row


def counts(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    """How many of ``trials`` are in each state, every state listed."""
    by_state = Counter(t.state.name for t in trials)
    return {state: by_state.get(state, 0) for state in STATES}


def counts_line(by_state: dict[str, int]) -> str:
    """``Trials: 80 COMPLETE, 8 FAIL`` — the states a study's trials are in."""
    listed = ", ".join(f"{n} {state}" for state, n in by_state.items() if n)
    return f"Trials: {listed or 'none'}"


def run_line(run: RunStatus) -> str:
    """One run: its state and progress, as ``show`` and ``cancel`` both print it.

    ``finished`` counts every trial of the run that ended, whatever its state (a FAILed
    one too): the study's own counts say which state."""
    state = run["outcome"] if run["done"] else "live"
    line = (
        f"Run {run['run_id']}: {state}, {run['finished']}/{run['n_trials'] or '∞'} trials "
        f"finished, {run['running']} running"
    )
    return line + (f"; ended: {run['end_reason']}" if run["end_reason"] else "")


def best_line(trial: FrozenTrial) -> str:
    """The best trial of a single-objective study, in the words of Optuna's log."""
    return f"Best is trial {trial.number} with value: {trial.value} and parameters: {trial.params}."
