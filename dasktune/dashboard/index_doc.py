"""The cluster-wide list of studies as a Bokeh table: one layout, shown by the ``/tuning``
page and by the Bokeh app ``/individual-tuning``, filled by :func:`studies_columns` in both."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from bokeh.models import ColumnDataSource
from bokeh.models.widgets import DataTable
from bokeh.models.widgets import HTMLTemplateFormatter
from bokeh.models import LayoutDOM
from bokeh.models.widgets import NumberFormatter
from bokeh.models.widgets import TableColumn

from dasktune.dashboard import optuna_view
from dasktune.dashboard.state import StudyView

SOURCE = "studies"
#: (field, title, width in px); the links are built by the formatters below.
COLUMNS = [
    ("study", "Study", 200),
    ("storage", "Storage", 160),
    ("direction", "Direction", 140),
    ("RUNNING", "RUNNING", 80),
    ("COMPLETE", "COMPLETE", 90),
    ("PRUNED", "PRUNED", 80),
    ("FAIL", "FAIL", 60),
    ("WAITING", "WAITING", 80),
    ("best", "Best value", 110),
    ("rate", "Trials/min", 90),
    ("started", "Started", 150),
    ("updated", "Last update", 150),
    ("optuna", "optuna-dashboard", 130),
]
_LINK = '<a href="<%= {field}_url %>"><%- value %></a>'


def study_page_url(storage: str, study: str) -> str:
    """A study's Tuning page, relative to the dashboard's root."""
    return f"tuning/study/{quote(storage, safe='')}/{quote(study, safe='')}"


def studies_table() -> LayoutDOM:
    """The table of studies, with an empty named source that :func:`studies_columns` fills."""
    source = ColumnDataSource(
        {c: [] for c in [*(field for field, _, _ in COLUMNS), "study_url", "optuna_url"]},
        name=SOURCE,
    )
    columns = []
    for field, title, width in COLUMNS:
        formatter: Any = None
        if field in ("study", "optuna"):
            formatter = HTMLTemplateFormatter(template=_LINK.format(field=field))
        elif field == "best":
            formatter = NumberFormatter(format="0.[000000]")
        elif field == "rate":
            formatter = NumberFormatter(format="0.[0]")
        kwargs = {"formatter": formatter} if formatter is not None else {}
        columns.append(TableColumn(field=field, title=title, width=width, **kwargs))
    return DataTable(
        source=source,
        columns=columns,
        name="studies_table",
        index_position=None,
        sizing_mode="stretch_width",
        height=400,
        autosize_mode="none",
    )


def studies_columns(views: list[StudyView], root: str = "") -> dict[str, list[Any]]:
    """The table's columns for ``views``; links are relative to ``root``."""
    data: dict[str, list[Any]] = {
        c: [] for c in [*(field for field, _, _ in COLUMNS), "study_url", "optuna_url"]
    }
    for view in sorted(views, key=lambda v: (v.storage, v.name)):
        summary = view.summary()
        data["study"].append(view.name)
        data["study_url"].append(root + study_page_url(view.storage, view.name))
        data["storage"].append(view.storage)
        data["direction"].append(", ".join(view.directions))
        for state in ("RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING"):
            data[state].append(summary["trials"][state])
        data["best"].append(None if summary["best"] is None else summary["best"]["value"])
        data["rate"].append(summary["trials_per_minute"])
        data["started"].append(_when(summary["started"]))
        data["updated"].append(_when(summary["updated"]))
        data["optuna"].append("open")
        data["optuna_url"].append(root + optuna_view.study_url(view.storage, view.study_id))
    return data


def _when(ms: float | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")

