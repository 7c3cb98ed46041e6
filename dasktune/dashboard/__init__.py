"""The Tuning pages on the Dask dashboard, installed by the scheduler plugin in ``plugin``.

- ``state``: what the pages show, read from the storages at O(changes);
- ``index_doc``, ``study_doc``: the study list and a study's Bokeh figures, and their updates;
- ``page``, ``templates/``, ``static/tuning.js``: the pages in the dashboard's frame;
- ``handlers``: the HTTP routes; ``app``: the Bokeh app a preloaded plugin adds;
- ``optuna_view``, ``host_storage``, ``static/optuna-mount.js``: optuna-dashboard, mounted
  for every storage over an Optuna storage that reads and writes through the storage host;
- ``metrics``: the Prometheus gauges.
"""

from __future__ import annotations

from dasktune.dashboard.state import TuningState

__all__ = ["TuningState"]
