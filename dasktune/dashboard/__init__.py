"""The Tuning page on the Dask dashboard: state (``state``), HTTP routes and pages
(``handlers``, ``page``, ``static/tuning.js``), Prometheus metrics (``metrics``) and the
Bokeh app a preloaded plugin adds (``app``)."""

from __future__ import annotations

from dasktune.dashboard.state import TuningState

__all__ = ["TuningState"]
