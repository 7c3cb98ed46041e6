"""The Tuning routes besides the pages of :mod:`.app`, and the gauges on ``/metrics``.

``/tuning/api/studies``                  the study list as JSON
``/tuning/api/study/<storage>/<study>``  a study as JSON; ``?since=<cursor>``: only the trials
                                         changed since that cursor
``/tuning/optuna/<storage>/...``         optuna-dashboard (:mod:`.optuna_view`)

Names in paths are percent-encoded once, and decoded once (by Tornado). The gauges' collector
is in prometheus_client's registry, which is per process: one serves every scheduler in it.
"""

from __future__ import annotations

from collections.abc import Iterator
import math
from pathlib import Path
from typing import Any
import weakref

from optuna.trial import FrozenTrial
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from tornado import web

from dasktune.dashboard import optuna_view
from dasktune.dashboard.state import TuningState
from dasktune.dashboard.state import epoch_ms
from dasktune.storage import wire

STATIC = Path(__file__).parent / "static"
_TRACKED: weakref.WeakSet[TuningState] = weakref.WeakSet()
_registered = False


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float as the string ``Number()`` reads back: JSON has
    no literal for them (Python's writes them bare), and an objective may return inf."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def trial_row(trial: FrozenTrial, worker: str | None) -> dict[str, Any]:
    """A trial as the JSON shows it."""

    def plain(value: Any) -> bool:
        return isinstance(value, (int, float, str, bool)) or value is None

    return {
        "number": trial.number,
        "state": trial.state.name,
        "values": trial.values,
        "params": {k: v if plain(v) else str(v) for k, v in trial.params.items()},
        "intermediate": [[step, value] for step, value in sorted(trial.intermediate_values.items())],
        "start": epoch_ms(trial.datetime_start),
        "complete": epoch_ms(trial.datetime_complete),
        "worker": worker,
        "fail_reason": trial.system_attrs.get(wire.FAIL_REASON),
        "user_attrs": {k: v for k, v in trial.user_attrs.items() if plain(v)},
    }


class StudiesJSON(web.RequestHandler):
    def initialize(self, state: TuningState) -> None:
        self.state = state

    def get(self) -> None:
        self.write(json_safe({"studies": [shown.summary() for shown in self.state.studies()]}))


class StudyJSON(StudiesJSON):
    def get(self, storage: str, study: str) -> None:  # type: ignore[override]
        try:
            since = int(self.get_argument("since", "0"))
        except ValueError:
            raise web.HTTPError(400, reason="since must be an integer cursor") from None
        try:
            shown = self.state.study(storage, study)
            # What the host's change log says changed since the cursor: O(changes).
            study_id = shown.study.study_id
            deltas, _ = shown.backend.host().deltas({study_id: since}, [study_id])
        except KeyError as e:
            raise web.HTTPError(404, reason=str(e.args[0])) from None
        data = [wire.unpack_trial(packed) for delta in deltas for packed in delta["trials"]]
        trials = [trial_row(wire.decode_trial(d), d["worker"]) for d in data]
        cursor = deltas[0]["cursor"] if deltas else since
        self.write(json_safe({**shown.summary(), "cursor": cursor, "trials": trials}))


def routes(state: TuningState, mount: optuna_view.OptunaDashboards) -> list[tuple[str, Any, dict[str, Any]]]:
    """The routes, for ``scheduler.http_application.add_handlers``."""
    name = r"([^/]+)"
    return [
        *optuna_view.routes(mount),
        (r"/tuning/api/studies", StudiesJSON, {"state": state}),
        (rf"/tuning/api/study/{name}/{name}", StudyJSON, {"state": state}),
        (r"/tuning/static/(.*)", web.StaticFileHandler, {"path": str(STATIC)}),
    ]


def track(state: TuningState) -> None:
    """Export ``state``'s studies on ``/metrics``, for as long as it lives."""
    global _registered
    if not _registered:
        REGISTRY.register(TuningCollector())
        _registered = True
    _TRACKED.add(state)


class TuningCollector(Collector):
    """The gauges of every tracked state's studies."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        names = ["storage", "study"]
        trials = GaugeMetricFamily("dasktune_trials", "Trials of each study by state.",
                                   labels=[*names, "state"])
        best = GaugeMetricFamily("dasktune_best_value", "Best value of each single-objective study.",
                                 labels=names)
        rate = GaugeMetricFamily("dasktune_trials_per_minute", "Trials completed in the last minute.",
                                 labels=names)
        for shown in [s for state in list(_TRACKED) for s in state.studies()]:
            summary, labels = shown.summary(), [shown.storage, shown.study.name]
            for state, count in summary["trials"].items():
                trials.add_metric([*labels, state], count)
            if summary["best"] is not None:
                best.add_metric(labels, summary["best"]["value"])
            rate.add_metric(labels, summary["trials_per_minute"])
        yield from (trials, best, rate)
