"""Trial counters and best values on the scheduler's Prometheus endpoint (``/metrics``).

A collector only reads the dashboard's study views (brought up to date O(changes) at each
scrape); it is registered in prometheus_client's default registry, which the scheduler's
``/metrics`` handler exports. That registry is per process, so one collector serves every
scheduler of the process (tests and notebooks may run several).
"""

from __future__ import annotations

from collections.abc import Iterator
import weakref

from prometheus_client import REGISTRY

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dasktune.dashboard.state import STATES
from dasktune.dashboard.state import TuningState


_STATES: weakref.WeakSet[TuningState] = weakref.WeakSet()
_registered = False


def track(state: TuningState) -> None:
    """Export ``state``'s studies on ``/metrics`` (for as long as it lives)."""
    global _registered
    _STATES.add(state)
    if not _registered:
        REGISTRY.register(TuningCollector())
        _registered = True


class TuningCollector(Collector):
    """``dasktune_trials{storage,study,state}``, ``dasktune_best_value{storage,study}`` and
    ``dasktune_trials_per_minute{storage,study}``."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        trials = GaugeMetricFamily(
            "dasktune_trials", "Trials of each study by state.", labels=["storage", "study", "state"]
        )
        best = GaugeMetricFamily(
            "dasktune_best_value",
            "Best objective value of each single-objective study.",
            labels=["storage", "study"],
        )
        rate = GaugeMetricFamily(
            "dasktune_trials_per_minute",
            "Trials completed in the last minute.",
            labels=["storage", "study"],
        )
        for view in [v for state in list(_STATES) for v in state.refresh()]:
            summary = view.summary()
            for state in STATES:
                trials.add_metric([view.storage, view.name, state], summary["trials"][state])
            if summary["best"] is not None:
                best.add_metric([view.storage, view.name], summary["best"]["value"])
            rate.add_metric([view.storage, view.name], summary["trials_per_minute"])
        yield trials
        yield best
        yield rate
