"""Optuna's heartbeat interface for ``DaskStorage``: a running trial beats, and a trial whose
beats stopped for its grace period is *stale* — Optuna's ``fail_stale_trials`` fails it and
runs the storage's stale-trial callback (a ``RetryHeartbeatStaleTrialCallback``, say).

The beats are kept by the scheduler (:meth:`dasktune.storage.store.Store.record_heartbeat`),
which also fails, on its own, trials stale for a minute past their grace period. A mixin of
:class:`~dasktune.storage.proxy.DaskStorage`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
import warnings

from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune import compat
from dasktune.storage import wire
from dasktune.storage.protocol import SchedulerProtocol

if TYPE_CHECKING:
    import optuna

StaleTrialCallback = Callable[["optuna.Study", FrozenTrial], None]


class Heartbeats(SchedulerProtocol, compat.BaseHeartbeat):
    """Heartbeats of a storage's running trials, and the stale-trial check."""

    heartbeat_interval: int | None
    grace_period: int | None
    heartbeat_stale_trial_callback: StaleTrialCallback | None
    #: The stale trials last reported, which Optuna's ``fail_stale_trials`` fails next.
    _stale: set[int]

    def _set_heartbeats(
        self,
        interval: int | None,
        grace_period: int | None,
        callback: StaleTrialCallback | None,
        deprecated_callback: StaleTrialCallback | None,
        warn: bool,
    ) -> None:
        """Check and keep the heartbeat settings, with Optuna's messages and warnings."""
        if interval is not None and interval <= 0:
            raise ValueError("The value of `heartbeat_interval` should be a positive integer.")
        if grace_period is not None and grace_period <= 0:
            raise ValueError("The value of `grace_period` should be a positive integer.")
        if callback is not None and deprecated_callback is not None:
            raise ValueError(
                "Specify only one of `heartbeat_stale_trial_callback` and "
                "`failed_trial_callback`."
            )
        if interval is not None and warn:
            # As Optuna's RDBStorage says of the same argument.
            warnings.warn(
                "Argument ``heartbeat_interval`` is an experimental feature. The interface "
                "can change in the future.",
                ExperimentalWarning,
                stacklevel=3,
            )
        if deprecated_callback is not None:
            warnings.warn(
                "`failed_trial_callback` has been deprecated in Optuna 4.9.0 and will be "
                "removed in 6.0.0. Use `heartbeat_stale_trial_callback` instead.",
                FutureWarning,
                stacklevel=3,
            )
        self.heartbeat_interval = interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = callback or deprecated_callback
        self._stale = set()

    def record_heartbeat(self, trial_id: int) -> None:
        self._call([["record_heartbeat", [trial_id, self._grace()], None]])

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        (stale,) = self._call([["get_stale_trial_ids", [study_id, self._grace()], None]])
        self._stale = set(stale)  # Optuna fails them next
        return list(stale)

    def fail_stale_trials(self, study_id: int) -> list[int]:
        """Fail the stale trials of ``study_id`` on the scheduler, those of ``optimize`` runs
        as lost with their worker (retried as their run says): what the driver of a run
        does where ``Study.optimize`` calls Optuna's ``fail_stale_trials``. The ids of the
        other trials it failed, whose stale-trial callback the caller runs."""
        (others,) = self._call([self._write("fail_stale_trials", study_id, self._grace())])
        return list(others)

    def _stale_reason(self, trial_id: int, state: TrialState) -> list[wire.Op]:
        """The write that records why a stale trial fails, when Optuna's
        ``fail_stale_trials`` fails it (Optuna records no reason)."""
        if state != TrialState.FAIL or trial_id not in self._stale:
            return []
        reason = wire.stale_reason(self._grace())
        return [self._write("set_trial_system_attr", trial_id, wire.FAIL_REASON, wire.encode_attr(reason))]

    def _grace(self) -> float:
        assert self.heartbeat_interval is not None
        return self.grace_period or 2 * self.heartbeat_interval

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> StaleTrialCallback | None:
        return self.heartbeat_stale_trial_callback

    def get_failed_trial_callback(self) -> StaleTrialCallback | None:
        # The name Optuna 4 asks for (and Optuna 5 keeps as an alias).
        return self.heartbeat_stale_trial_callback
