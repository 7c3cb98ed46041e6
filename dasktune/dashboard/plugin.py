"""The Tuning pages' scheduler plugin, which the storage plugin adds through the
``dasktune.scheduler`` entry point group (the storage never imports the dashboard).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
import contextlib
import functools
import importlib
from typing import Any

from distributed import Scheduler
from distributed.diagnostics.plugin import SchedulerPlugin

from dasktune import compat
from dasktune.dashboard import app
from dasktune.dashboard import handlers
from dasktune.dashboard import optuna_view
from dasktune.dashboard.state import TuningState
from dasktune.storage import wire
from dasktune.storage.host import StorageHost


class TuningPlugin(SchedulerPlugin):
    """Serves the studies of every storage of the storage plugin on the scheduler's dashboard:
    the Tuning pages ("Tuning" in its navigation bar), optuna-dashboard, JSON and gauges."""

    name = "dasktune-tuning"

    def __init__(self) -> None:
        self.state = TuningState(dict, {}, None)
        self.optuna: optuna_view.OptunaDashboards | None = None

    async def start(self, scheduler: Scheduler) -> None:
        def hosts() -> Mapping[str, StorageHost]:
            return getattr(scheduler.plugins.get(wire.PLUGIN_NAME), "hosts", {})

        self.state = TuningState(hosts, scheduler.handlers, asyncio.get_running_loop())
        if getattr(scheduler, "http_application", None) is not None:  # None: no dashboard
            # Bokeh's ColumnDataSource.stream tells pandas data by sys.modules["pandas"], half
            # made while a thread imports it (optuna-dashboard's first request does): import
            # it first (if installed), off the loop, so that no page streams meanwhile.
            with contextlib.suppress(ImportError):
                await asyncio.to_thread(importlib.import_module, "pandas")
            self.optuna = optuna_view.OptunaDashboards(self.state, functools.partial(_artifact_store, scheduler))
            compat.add_dashboard_page(scheduler, "tuning", replaces_plot=app.PATH.strip("/"))
            scheduler.http_application.add_handlers(r".*", handlers.routes(self.state, self.optuna))
            app.serve(scheduler)
        handlers.track(self.state)

    async def close(self) -> None:
        if self.optuna is not None:
            self.optuna.close()


def _artifact_store(scheduler: Scheduler) -> Any:
    """The scheduler's artifact files, as optuna-dashboard reads them, from this process
    (see :mod:`dasktune.artifacts.plugin`); None if it has no artifact plugin."""
    from dasktune.artifacts.plugin import ArtifactPlugin
    from dasktune.artifacts.plugin import NAME

    plugin = scheduler.plugins.get(NAME)
    return plugin.local_store() if isinstance(plugin, ArtifactPlugin) else None
