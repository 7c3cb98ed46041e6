"""``tune.report``: a training function's results, intermediate or final, on a worker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
import math
import threading
from typing import Any

import optuna

#: The trial's last reported result (a dict of plain values), in its user attrs.
RESULT = "dasktune:result"
_local = threading.local()


@dataclass
class Session:
    """What ``report`` needs to know about the trial it reports for."""

    trial: optuna.Trial
    metric: str
    prune_attr: str | None
    early_stopping: bool
    last_result: dict[str, Any] = field(default_factory=dict)
    reports: int = 0


def current() -> Session | None:
    return getattr(_local, "session", None)


def activate(session: Session | None) -> None:
    _local.session = session


def report(_metric: Any = None, **metrics: Any) -> None:
    """Report the running trial's metrics, as FLAML's ``tune.report``.

    Call it from a training function that ``tune.run`` runs, once at the end or after every
    epoch; the last report is the trial's result (a function may also return it). With
    early stopping on (``report_intermediate_result``, ``prune_attr``, ``min_resource``...),
    each report of ``metric`` is an intermediate value at step ``metrics[prune_attr]`` (or
    the report's count), and an unpromising trial is stopped here by raising
    ``optuna.TrialPruned``: let it propagate.

    Raises:
        RuntimeError: Not called from a training function run by ``tune.run``.
        optuna.TrialPruned: The trial should stop early.
    """
    session = current()
    if session is None:
        raise RuntimeError(
            "tune.report() was called outside a trial: call it from the training function "
            "that dasktune.tune.run runs."
        )
    if _metric is not None:
        metrics["_metric"] = _metric
    session.last_result = {k: plain(v) for k, v in metrics.items()}
    if session.early_stopping and session.metric in metrics:
        step = metrics.get(session.prune_attr, session.reports) if session.prune_attr else session.reports
        session.reports += 1
        value = float(metrics[session.metric])
        if math.isfinite(value):
            session.trial.report(value, int(step))
            if session.trial.should_prune():
                raise optuna.TrialPruned(f"stopped early at step {step}")


def plain(value: Any) -> Any:
    """A JSON-friendly form of a reported value: lists and dicts are kept, numpy scalars and
    arrays become Python numbers and lists, anything else its ``str``."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy: .item() would fail on an array
        return plain(value.tolist())
    return str(value)
