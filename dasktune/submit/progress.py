"""The progress bar of ``dasktune.optimize``: draws what the driver tracks.

A tqdm bar (the notebook widget under Jupyter, via ``tqdm.auto``) counting finished trials
out of ``n_trials``, or, with only a ``timeout``, seconds out of the timeout, as Optuna's
own bar does; the best value so far in the postfix. While it is shown, Optuna's log lines
(the driver's "Trial N finished ...") are written above it, as Optuna's own bar has them: the
bar stays at the bottom of the terminal instead of being drawn again and again up the screen.
"""

from __future__ import annotations

from collections.abc import Mapping
import logging
import sys
from typing import Any

import optuna
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
        self._logs = _LogsAboveTheBar() if self._bar is not None else None

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
        if self._logs is not None:
            self._logs.restore()


class _LogsAboveTheBar:
    """While it lives, the console handlers of Optuna's loggers (its default handler, on
    stderr, or the user's own) write through tqdm, which clears the bar, writes the line
    and draws the bar again below it — what Optuna's bar does (``_TqdmLoggingHandler`` in
    ``optuna/progress_bar.py``), keeping each handler's level and format, and putting the
    handlers back as they were once the bar closes."""

    def __init__(self) -> None:
        self._logger = optuna.logging.get_logger("optuna")  # every optuna.* logger's handlers
        self._swapped: list[tuple[logging.Handler, logging.Handler]] = []
        for handler in list(self._logger.handlers):
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.stderr):
                above = _WriteAboveTheBar(handler)
                self._logger.removeHandler(handler)
                self._logger.addHandler(above)
                self._swapped.append((handler, above))

    def restore(self) -> None:
        for handler, above in self._swapped:
            self._logger.removeHandler(above)
            self._logger.addHandler(handler)
        self._swapped.clear()


class _WriteAboveTheBar(logging.Handler):
    """Writes what ``handler`` would, to its stream, through ``tqdm.write``."""

    def __init__(self, handler: logging.StreamHandler[Any]) -> None:
        super().__init__(handler.level)
        self.setFormatter(handler.formatter)
        self.filters = list(handler.filters)
        self._stream = handler.stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self._stream)
        except Exception:
            self.handleError(record)
