"""The Bokeh app ``/individual-tuning``, which only a preloaded plugin can add.

Bokeh apps must be in ``distributed.dashboard.scheduler.applications`` before the dashboard
starts, which a ``--preload`` module is when imported; paths starting ``/individual-`` are
then listed in ``/individual-plots.json`` (so the Dask JupyterLab extension offers them). The
app is the ``/tuning`` page's table of studies, in the same frame (the dashboard's navigation
bar); the "More..." menu opens ``/tuning`` itself (see :class:`~.plugin.TuningPlugin`).
"""

from __future__ import annotations

from typing import Any

from bokeh.document import Document
from bokeh.layouts import column
from bokeh.models.widgets import Div
from distributed import Scheduler
import jinja2

from dasktune import compat
from dasktune.dashboard.index_doc import studies_columns
from dasktune.dashboard.index_doc import studies_table
from dasktune.dashboard.page import POLL_MS

PATH = "/individual-tuning"


def register() -> None:
    """Add the app to the dashboards that schedulers of this process start from now on."""
    from distributed.dashboard.scheduler import applications

    applications.setdefault(PATH, tuning_doc)


def tuning_doc(scheduler: Scheduler, extra: dict[str, Any], doc: Document) -> None:
    """The ``/individual-tuning`` document (the signature distributed's apps have)."""
    from dasktune.dashboard.plugin import TuningPlugin

    table = studies_table()
    source = table.source  # type: ignore[attr-defined]

    def update() -> None:
        plugin = scheduler.plugins.get(TuningPlugin.name)
        views = plugin.state.refresh() if isinstance(plugin, TuningPlugin) else []
        source.data = studies_columns(views)

    update()
    doc.add_periodic_callback(update, POLL_MS)
    doc.title = "Dask: Tuning"
    doc.add_root(column(Div(text="<h1>Tuning</h1>"), table, sizing_mode="stretch_width"))
    # The frame distributed's own Bokeh pages have (the same environment: no autoescape,
    # Bokeh's parts are HTML).
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(compat.dashboard_templates()))
    doc.template = templates.get_template("simple.html")
    doc.template_variables.update(extra)
