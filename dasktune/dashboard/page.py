"""The Tuning pages' HTML and Bokeh documents.

The figures are Bokeh models made here with empty, named data sources and embedded with
``bokeh.embed.json_item``; ``static/tuning.js`` then polls the JSON endpoint (only what
changed since its cursor) and fills the sources. BokehJS is the copy the Dask dashboard
already serves under ``static/js/``, so the pages need nothing from the internet.
"""

from __future__ import annotations

import html
import json
from typing import Any

import bokeh
from bokeh.embed import json_item
from bokeh.layouts import column
from bokeh.layouts import row
from bokeh.models.ranges import FactorRange
from bokeh.models.sources import ColumnDataSource
from bokeh.models.widgets import DataTable
from bokeh.models.widgets import Div
from bokeh.models.widgets import Select
from bokeh.models.widgets import TableColumn
from bokeh.plotting import figure

#: How often the pages ask for news (ms); the issue asks for at least every 2 s.
POLL_MS = 1000
COLORS = {
    "COMPLETE": "#1f77b4",
    "PRUNED": "#ff7f0e",
    "FAIL": "#d62728",
    "RUNNING": "#7f7f7f",
    "WAITING": "#bcbd22",
}
_BOKEH_JS = ["bokeh", "bokeh-widgets", "bokeh-tables"]


def _source(name: str, columns: list[str]) -> ColumnDataSource:
    return ColumnDataSource({c: [] for c in columns}, name=name)


def study_document(directions: list[str]) -> Any:
    """The per-study figures as a Bokeh JSON item."""
    tools = "pan,wheel_zoom,box_zoom,reset,hover,save"
    if len(directions) == 2:
        first = figure(title="Pareto front", name="first", tools=tools, height=320,
                       sizing_mode="stretch_width",
                       tooltips=[("trial", "@number"), ("values", "(@x, @y)")])
        first.xaxis.axis_label, first.yaxis.axis_label = f"objective 0 ({directions[0]})", f"objective 1 ({directions[1]})"
        first.scatter("x", "y", color="color", size=7, legend_field="kind",
                      source=_source("pareto", ["x", "y", "number", "color", "kind"]))
    else:
        first = figure(title="Optimization history", name="first", tools=tools, height=320,
                       sizing_mode="stretch_width",
                       tooltips=[("trial", "@number"), ("value", "@value")])
        first.xaxis.axis_label, first.yaxis.axis_label = "trial", "objective value"
        first.scatter("number", "value", color="color", size=6, legend_label="trial value",
                      source=_source("history", ["number", "value", "color"]))
        first.step("number", "best", color="#2ca02c", line_width=2, mode="after",
                   legend_label="best so far", source=_source("best", ["number", "best"]))
    first.legend.location = "top_right"

    timeline = figure(title="Trials per worker", name="timeline_plot", tools=tools, height=320,
                      sizing_mode="stretch_width", x_axis_type="datetime",
                      y_range=FactorRange(),
                      tooltips=[("trial", "@number"), ("state", "@state"), ("worker", "@worker"),
                                ("note", "@note")])
    timeline.hbar(y="worker", left="start", right="end", height=0.7, color="color",
                  line_color="black", line_alpha="edge",
                  source=_source("timeline", ["worker", "start", "end", "color", "number",
                                              "state", "note", "edge"]))

    curves = figure(title="Intermediate values", name="curves_plot", tools=tools, height=320,
                    sizing_mode="stretch_width",
                    tooltips=[("trial", "@number"), ("state", "@state")])
    curves.xaxis.axis_label, curves.yaxis.axis_label = "step", "intermediate value"
    curves.multi_line("xs", "ys", color="color", alpha=0.7,
                      source=_source("curves", ["xs", "ys", "color", "number", "state"]))

    params = figure(title="Parameter vs objective", name="params_plot", tools=tools, height=290,
                    sizing_mode="stretch_width",
                    tooltips=[("trial", "@number"), ("param", "@label"), ("value", "@value")])
    params.yaxis.axis_label = "objective value"
    params.scatter("x", "value", color="color", size=7,
                   source=_source("params", ["x", "value", "label", "color", "number"]))
    select = Select(title="Parameter", name="param_select", options=[], value="", width=250)

    table_columns = ["number", "state", "value", "params", "worker", "duration"]
    widths = {"number": 60, "state": 90, "value": 120, "params": 420, "worker": 200, "duration": 80}

    def table(name: str, title: str) -> Any:
        return column(
            [Div(text=f"<h3>{title}</h3>"),
             DataTable(source=_source(name, table_columns), name=f"{name}_table", height=260,
                      sizing_mode="stretch_width", index_position=None,
                      columns=[TableColumn(field=c, title=c, width=widths[c]) for c in table_columns])],
            sizing_mode="stretch_width",
        )

    layout = column(
        row(first, timeline, sizing_mode="stretch_width"),
        row(curves, column(select, params, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
        row(table("latest", "Latest trials"), table("top", "Best trials"), sizing_mode="stretch_width"),
        sizing_mode="stretch_width",
    )
    return json_item(layout)


def _scripts(root: str) -> str:
    version = bokeh.__version__
    tags = [f'<script src="{root}static/js/{name}.min.js?v={version}"></script>' for name in _BOKEH_JS]
    return "\n".join([*tags, f'<script src="{root}tuning/static/tuning.js"></script>'])


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
{scripts}
<style>
body {{ font-family: sans-serif; margin: 1em 2em; color: #222; }}
table.studies {{ border-collapse: collapse; }}
table.studies td, table.studies th {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }}
table.studies td:first-child, table.studies th:first-child {{ text-align: left; }}
.counts span {{ margin-right: 1.2em; }}
nav a {{ margin-right: 1em; }}
</style>
</head>
<body>
<nav><a href="{root}status">Dask dashboard</a><a href="{root}tuning">All studies</a></nav>
{body}
<script>{init}</script>
</body>
</html>
"""


def index_page(root: str) -> str:
    """The index of studies, filled and refreshed by ``tuning.js``."""
    body = """<h1>Tuning</h1>
<p id="empty">No studies on this scheduler yet.</p>
<table class="studies" id="studies"><thead><tr>
<th>study</th><th>storage</th><th>direction</th><th>RUNNING</th><th>COMPLETE</th><th>PRUNED</th>
<th>FAIL</th><th>WAITING</th><th>best</th><th>trials/min</th><th>started</th><th>last update</th>
</tr></thead><tbody></tbody></table>"""
    init = f"DaskTune.index({json.dumps(root)}, {POLL_MS});"
    return _PAGE.format(title="Tuning", scripts=_scripts(root), root=root, body=body, init=init)


def study_page(root: str, storage: str, study: str, directions: list[str], api_url: str) -> str:
    """One study's page: counters, plots and tables, updated live by ``tuning.js``."""
    item = study_document(directions)
    body = f"""<h1>Study <span id="study-name">{html.escape(study)}</span></h1>
<p>storage {html.escape(storage)} · {html.escape(", ".join(directions))} · best:
<b id="best">–</b></p>
<p class="counts" id="counts"></p>
<div id="tuning-root"></div>"""
    init = (
        f"DaskTune.study({json.dumps(api_url)}, {json.dumps(item)}, "
        f"{json.dumps(directions)}, {json.dumps(COLORS)}, {POLL_MS});"
    )
    return _PAGE.format(
        title=f"Tuning: {html.escape(study)}", scripts=_scripts(root), root=root, body=body,
        init=init.replace("</", "<\\/"),  # a study name must not end the script element
    )
