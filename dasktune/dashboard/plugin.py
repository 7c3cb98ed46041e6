"""The Tuning page's scheduler plugin: it installs the page and reads the storages.

Added by the storage plugin through the ``dasktune.scheduler`` entry point group (the
storage never imports the dashboard), it finds the storages in the storage plugin and
keeps the :class:`~dasktune.dashboard.state.TuningState` that the HTTP routes, the Bokeh app
and ``/metrics`` show. It only reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from collections.abc import Mapping

from distributed import Scheduler
from distributed.diagnostics.plugin import SchedulerPlugin

from dasktune import compat
from dasktune.dashboard import app
from dasktune.dashboard import handlers
from dasktune.dashboard import optuna_view
from dasktune.dashboard import metrics
from dasktune.dashboard.state import TuningState
from dasktune.storage import wire
from dasktune.storage.host import StorageHost


class StorageHosts(Mapping[str, StorageHost]):
    """The storage plugin's hosts, looked up on each use: the storage plugin may start
    after this one (it adds this one from its own ``start``), and may be replaced."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def _hosts(self) -> Mapping[str, StorageHost]:
        return getattr(self.scheduler.plugins.get(wire.PLUGIN_NAME), "hosts", {})

    def __getitem__(self, name: str) -> StorageHost:
        return self._hosts()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._hosts()))

    def __len__(self) -> int:
        return len(self._hosts())


class TuningPlugin(SchedulerPlugin):
    """Serves the studies of every storage on the scheduler's dashboard: the Tuning pages,
    optuna-dashboard for each storage, "Tuning" in the dashboard's navigation bar, and the
    Prometheus metrics."""

    name = "dasktune-tuning"

    def __init__(self) -> None:
        self.state = TuningState({})
        self.optuna: optuna_view.OptunaDashboards | None = None

    async def start(self, scheduler: Scheduler) -> None:
        hosts = StorageHosts(scheduler)
        self.state = TuningState(hosts)
        if getattr(scheduler, "http_application", None) is not None:  # None: no dashboard
            if optuna_view.available():
                loop = asyncio.get_running_loop()
                self.optuna = optuna_view.OptunaDashboards(hosts, scheduler.handlers, loop)
            compat.add_dashboard_page(scheduler, "tuning", replaces_plot=app.PATH.strip("/"))
            variables = compat.dashboard_variables(scheduler)
            routes = handlers.routes(scheduler, self.state, variables, self.optuna)
            scheduler.http_application.add_handlers(r".*", routes)
        metrics.track(self.state)

    async def close(self) -> None:
        if self.optuna is not None:
            self.optuna.close()
