"""The progress bar of ``dasktune.optimize``: draws what the driver tracks.

A tqdm bar (the notebook widget under Jupyter, via ``tqdm.auto``) counting finished trials
out of ``n_trials``, or, with only a ``timeout``, seconds out of the timeout, as Optuna's
own bar does; the best value so far in the postfix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optuna.trial import FrozenTrial
from optuna.trial import TrialState
from tqdm.auto import tqdm

from dasktune.storage.replica import better


class ProgressBar:
    """Progress of one run; a no-op when not ``enabled``."""

    def __init__(self, enabled: bool, n_trials: int | None, timeout: float | None) -> None:
        self._bar: tqdm | None = None
        self._by_time = n_trials is None and timeout is not None
        self._best: tuple[float, int] | None = None  # value, number
        if enabled:
            if self._by_time:
                self._bar = tqdm(
                    total=timeout,
                    unit="s",
                    bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt}s [{elapsed}<{remaining}{postfix}]",
                )
            else:
                self._bar = tqdm(total=n_trials, unit="trial")

    def update(self, trial: FrozenTrial, maximize: bool | None) -> None:
        """Count ``trial`` as finished; ``maximize`` is None for multi-objective studies."""
        if self._bar is None:
            return
        if trial.state == TrialState.COMPLETE and maximize is not None:
            value = trial.values[0]
            if self._best is None or better(value, trial.number, *self._best, maximize):
                self._best = (value, trial.number)
                self._bar.set_postfix_str(f"best value: {value:.6g}", refresh=False)
        if not self._by_time:
            self._bar.update(1)

    def tick(self, status: Mapping[str, Any]) -> None:
        """Move a bar that counts seconds to the run's elapsed time."""
        if self._bar is not None and self._by_time:
            self._bar.update(status["timeout"] - status["time_left"] - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
