"""``ExperimentAnalysis``: what ``tune.run`` returns, read from the study."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
import math
import operator
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune.tune.reporting import RESULT

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt,
    "==": operator.eq, "!=": operator.ne,
}
Constraint = tuple[Any, str, float]


@dataclass
class Trial:
    """One trial of the experiment, as FLAML shows it."""

    trial_id: int  # the Optuna trial number
    config: dict[str, Any] | Any  # None for a trial that failed before its config was made
    last_result: dict[str, Any]
    status: str  # the Optuna state: COMPLETE, PRUNED, FAIL, RUNNING or WAITING
    frozen_trial: FrozenTrial


class ExperimentAnalysis:
    """The trials of a ``tune.run`` and the best of them.

    Attributes:
        study: The Optuna study (use Optuna's visualization on it).
        trials: Every trial, each with its ``config`` and ``last_result``.
    """

    def __init__(
        self,
        study: optuna.Study,
        metric: str,
        mode: str,
        config_of: Callable[[FrozenTrial], Any],
        metric_constraints: Sequence[Constraint] = (),
    ) -> None:
        self.study, self.metric, self.mode = study, metric, mode
        self.metric_constraints = list(metric_constraints)
        self.trials = [
            Trial(t.number, config_of(t), _result(t, metric), t.state.name, t)
            for t in study.get_trials(deepcopy=False)
        ]

    def get_best_trial(self, metric: str | None = None, mode: str | None = None) -> Trial | None:
        """The finished trial with the best ``metric`` (default: the run's) among those
        that meet the metric constraints; ``None`` if there is none."""
        metric, mode = metric or self.metric, mode or self.mode
        best: Trial | None = None
        for trial in self.trials:
            value = trial.last_result.get(metric)
            if trial.status != TrialState.COMPLETE.name or not isinstance(value, (int, float)):
                continue
            if math.isnan(value) or not self.feasible(trial):
                continue
            if best is None or (value < best.last_result[metric] if mode == "min" else value > best.last_result[metric]):
                best = trial
        return best

    def feasible(self, trial: Trial) -> bool:
        """Whether ``trial``'s result meets every metric constraint."""
        for name, op, bound in self.metric_constraints:
            value = trial.last_result.get(name)
            if value is None or not OPERATORS[op](value, bound):
                return False
        return True

    @property
    def best_trial(self) -> Trial | None:
        return self.get_best_trial()

    @property
    def best_config(self) -> Any:
        best = self.best_trial
        return None if best is None else best.config

    @property
    def best_result(self) -> dict[str, Any] | None:
        best = self.best_trial
        return None if best is None else best.last_result

    @property
    def results(self) -> Any:
        """A pandas DataFrame, a row per trial: state, ``config/...`` and the last result."""
        import pandas  # optional: only this property needs it

        rows = []
        for trial in self.trials:
            row: dict[str, Any] = {"trial_id": trial.trial_id, "status": trial.status}
            config = trial.config if isinstance(trial.config, dict) else getattr(trial.config, "__dict__", {})
            row.update({f"config/{k}": v for k, v in _flatten(config or {}).items()})
            row.update(trial.last_result)
            rows.append(row)
        return pandas.DataFrame(rows).set_index("trial_id") if rows else pandas.DataFrame()


def _result(trial: FrozenTrial, metric: str) -> dict[str, Any]:
    result = dict(trial.user_attrs.get(RESULT) or {})
    if metric not in result and trial.values is not None and len(trial.values) == 1:
        result[metric] = trial.values[0]  # e.g. a pruned trial: its last intermediate value
    return result


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[prefix + key] = value
    return out
