"""The Bokeh app ``/individual-tuning``, which only a preloaded plugin can add.

Bokeh apps must be in ``distributed.dashboard.scheduler.applications`` before the dashboard
starts, which a ``--preload`` module is when imported; paths starting ``/individual-`` are then listed in
``/individual-plots.json`` (so the Dask JupyterLab extension offers them) and in the
dashboard's "More..." menu. The app is a live table of the studies, linking to the Tornado
pages (``/tuning/...``), which both install paths have.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from bokeh.document import Document
from bokeh.models.sources import ColumnDataSource
from bokeh.models.widgets import DataTable
from bokeh.models.widgets import Div
from bokeh.models.widgets import HTMLTemplateFormatter
from bokeh.models.widgets import TableColumn
from bokeh.layouts import column
from distributed import Scheduler

from dasktune.dashboard.page import POLL_MS

PATH = "/individual-tuning"
_COLUMNS = ["study", "storage", "direction", "RUNNING", "COMPLETE", "PRUNED", "FAIL", "best", "link"]


def register() -> None:
    """Add the app to the dashboards that schedulers of this process start from now on."""
    from distributed.dashboard.scheduler import applications

    applications.setdefault(PATH, tuning_doc)


def tuning_doc(scheduler: Scheduler, extra: dict[str, Any], doc: Document) -> None:
    """The ``/individual-tuning`` document (the signature distributed's apps have)."""
    from dasktune.storage.plugin import PLUGIN_NAME  # the plugin imports this module
    from dasktune.storage.plugin import StoragePlugin

    source = ColumnDataSource({c: [] for c in _COLUMNS})
    link = HTMLTemplateFormatter(template='<a href="<%= value %>" target="_blank">open</a>')
    table = DataTable(
        source=source,
        columns=[TableColumn(field=c, title=c, formatter=link) if c == "link"
                 else TableColumn(field=c, title=c) for c in _COLUMNS],
        sizing_mode="stretch_both",
        index_position=None,
    )

    def update() -> None:
        plugin = scheduler.plugins.get(PLUGIN_NAME)
        views = plugin.dashboard.refresh() if isinstance(plugin, StoragePlugin) else []
        rows: dict[str, list[Any]] = {c: [] for c in _COLUMNS}
        for view in views:
            summary = view.summary()
            rows["study"].append(view.name)
            rows["storage"].append(view.storage)
            rows["direction"].append(", ".join(view.directions))
            for state in ("RUNNING", "COMPLETE", "PRUNED", "FAIL"):
                rows[state].append(summary["trials"][state])
            rows["best"].append("" if summary["best"] is None else f"{summary['best']['value']:.6g}")
            rows["link"].append(f"tuning/study/{quote(view.storage, safe='')}/{quote(view.name, safe='')}")
        source.data = rows

    update()
    doc.add_periodic_callback(update, POLL_MS)
    doc.title = "Dask: Tuning"
    doc.add_root(column(Div(text='<a href="tuning">Tuning pages</a>'), table, sizing_mode="stretch_both"))
