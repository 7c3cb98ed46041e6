"""One study's Tuning page as Bokeh figures, and the updates that keep them live.

What only dasktune can show, next to optuna-dashboard's views of the study: trials per worker
over time, the runs of ``dasktune.optimize`` and their budgets, the history and intermediate
values as they arrive, each parameter against the objective.

:meth:`StudyDoc.layout` builds the figures with empty named sources; :meth:`StudyDoc.update`
says what to put in them since a cursor of the study's view: per source, either the rows of
the trials that changed (``upsert``, keyed by trial number: O(changes)) or the whole new
contents of the small derived ones (``replace``: best-so-far steps, tables, runs).
``static/tuning.js`` applies updates as they come; every decision is made here.
"""

from __future__ import annotations

from collections.abc import Callable
import heapq
import math
import time
from typing import Any

from bokeh.layouts import column
from bokeh.layouts import gridplot
from bokeh.layouts import row as layout_row
from bokeh.models import ColumnDataSource
from bokeh.models.widgets import DataTable
from bokeh.models.widgets import Div
from bokeh.models import FactorRange
from bokeh.models import LayoutDOM
from bokeh.models.widgets import NumberFormatter
from bokeh.models.widgets import TableColumn
from bokeh.plotting import figure
from bokeh.transform import factor_cmap
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution

from dasktune.dashboard.state import StudyView
from dasktune.storage.replica import better

#: Trial states in the order legends list them, and their colours.
STATES = ["COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"]
COLORS = ["#1f77b4", "#ff7f0e", "#d62728", "#7f7f7f", "#bcbd22"]
#: Rows of the "latest" and "best" tables.
TABLE_ROWS = 20
_TOOLS = "pan,wheel_zoom,box_zoom,reset,save"

Columns = dict[str, list[Any]]
Label = Callable[[str | None], str]


def short_address(address: str | None) -> str:
    """A worker's address without its protocol (``tcp://10.0.0.5:40331`` → ``10.0.0.5:40331``)."""
    if address is None:
        return "(not a worker)"
    return address.split("://", 1)[-1]


def factor(value: Any) -> str:
    """A categorical choice as an axis category."""
    return value if isinstance(value, str) else repr(value)


def is_log(distribution: BaseDistribution) -> bool:
    return isinstance(distribution, (FloatDistribution, IntDistribution)) and distribution.log


class StudyDoc:
    """The figures of one study's view. ``label`` names a worker for display (its address
    shortened, or its name)."""

    def __init__(self, view: StudyView, label: Label = short_address) -> None:
        self.view, self.label = view, label
        self.maximize = view.directions[0] == "maximize"
        self.pareto = len(view.directions) == 2
        #: The parameters the layout has figures and columns for, in order.
        self.params = sorted(view.distributions)

    # -- the layout ----------------------------------------------------------------------

    def layout(self) -> LayoutDOM:
        """Every figure and table, with empty sources named as :meth:`update` names them."""
        tables = layout_row(
            self._table("latest", "Latest trials"), self._table("top", "Best trials"),
            sizing_mode="stretch_width",
        )
        return column(
            layout_row(self._history(), self._timeline(), sizing_mode="stretch_width"),
            layout_row(self._curves(), self._runs(), sizing_mode="stretch_width"),
            self._param_grid(),
            tables,
            sizing_mode="stretch_width",
        )

    def _history(self) -> LayoutDOM:
        d = self.view.directions
        if self.pareto:
            fig = figure(title="Pareto front", name="history_plot", tools=_TOOLS, height=340,
                         sizing_mode="stretch_width",
                         tooltips=[("trial", "@number"), ("values", "(@x, @y)")])
            fig.xaxis.axis_label, fig.yaxis.axis_label = f"objective 0 ({d[0]})", f"objective 1 ({d[1]})"
            fig.scatter("x", "y", size=7, source=_source("pareto", ["number", "x", "y", "kind"]),
                        color=factor_cmap("kind", ["#d62728", "#1f77b4"], ["Pareto-optimal", "dominated"]),
                        legend_field="kind")
        else:
            title = "Optimization history" + (" (objective 0)" if len(d) > 1 else "")
            fig = figure(title=title, name="history_plot", tools=_TOOLS, height=340,
                         sizing_mode="stretch_width",
                         tooltips=[("trial", "@number"), ("value", "@value")])
            fig.xaxis.axis_label, fig.yaxis.axis_label = "trial", "objective value"
            fig.scatter("number", "value", size=6, color=COLORS[0], legend_label="COMPLETE trial",
                        source=_source("history", ["number", "value"]))
            fig.step("number", "best", color="#2ca02c", line_width=2, mode="after",
                     legend_label="best so far", source=_source("best", ["number", "best"]))
        fig.legend.location = "top_right"
        fig.legend.click_policy = "hide"
        return fig

    def _timeline(self) -> LayoutDOM:
        fig = figure(title="Trials per worker", name="timeline_plot", tools=_TOOLS, height=340,
                     sizing_mode="stretch_width", x_axis_type="datetime", y_range=FactorRange(),
                     tooltips=[("trial", "@number"), ("state", "@state"), ("worker", "@worker"),
                               ("note", "@note")])
        fig.hbar(y="worker", left="start", right="end", height=0.7, line_color="black",
                 line_alpha="edge", color=factor_cmap("state", COLORS, STATES), legend_field="state",
                 source=_source("timeline", ["number", "worker", "start", "end", "state", "note", "edge"]))
        legend = fig.legend[0]
        legend.orientation = "horizontal"
        fig.add_layout(legend, "above")  # not over the bars
        return fig

    def _curves(self) -> LayoutDOM:
        fig = figure(title="Intermediate values", name="curves_plot", tools=_TOOLS, height=340,
                     sizing_mode="stretch_width",
                     tooltips=[("trial", "@number"), ("state", "@state"), ("step", "@step"),
                               ("value", "@value")])
        fig.xaxis.axis_label, fig.yaxis.axis_label = "step", "intermediate value"
        fig.multi_line("xs", "ys", alpha=0.6, color=factor_cmap("state", COLORS, STATES),
                       source=_source("curves", ["number", "xs", "ys", "state"]))
        # A trial pruned at its first step has a one-point curve, which a line cannot show:
        # every curve also ends in a marker, and the markers carry the legend.
        ends = fig.scatter("step", "value", size=6, color=factor_cmap("state", COLORS, STATES),
                           legend_field="state",
                           source=_source("curve_ends", ["number", "step", "value", "state"]))
        fig.hover.renderers = [ends]
        fig.legend.location = "top_right"
        fig.legend.click_policy = "hide"
        return fig

    def _param_grid(self) -> LayoutDOM:
        if not self.params:
            return Div(text="<p>No parameters yet.</p>", name="params_grid")
        figures = [self._param(name) for name in self.params]
        return gridplot(figures, ncols=3, sizing_mode="stretch_width", height=260,  # type: ignore[arg-type]
                        toolbar_location="right")

    def _param(self, name: str) -> Any:
        """``name`` against the objective, on the axis its distribution asks for: a log axis
        for a log-scaled one, its choices, in their order, for a categorical one."""
        distribution = self.view.distributions[name]
        kwargs: dict[str, Any] = {}
        if isinstance(distribution, CategoricalDistribution):
            kwargs["x_range"] = FactorRange(factors=list(dict.fromkeys(map(factor, distribution.choices))))
        elif is_log(distribution):
            kwargs["x_axis_type"] = "log"
        fig = figure(title=name, name=f"param_plot:{name}", tools=_TOOLS, height=260,
                     sizing_mode="stretch_width", tooltips=[("trial", "@number"), (name, "@x"),
                                                            ("value", "@value")], **kwargs)
        fig.xaxis.axis_label, fig.yaxis.axis_label = name, "objective value"
        fig.scatter("x", "value", size=6, color=COLORS[0], alpha=0.7,
                    source=_source(f"param:{name}", ["number", "x", "value"]))
        return fig

    def _table(self, name: str, title: str) -> LayoutDOM:
        columns = [TableColumn(field="number", title="#", width=50),
                   TableColumn(field="state", title="state", width=100)]
        n_values = len(self.view.directions)
        for i in range(n_values):
            columns.append(TableColumn(field=f"value{i}", title="value" if n_values == 1 else f"value {i}",
                                       width=110, formatter=NumberFormatter(format="0.[000000]")))
        columns += [TableColumn(field=f"param:{p}", title=p, width=110) for p in self.params]
        columns += [TableColumn(field="worker", title="worker", width=150),
                    TableColumn(field="duration", title="duration (s)", width=90,
                                formatter=NumberFormatter(format="0.00")),
                    TableColumn(field="note", title="note", width=260)]
        table = DataTable(source=_source(name, [c.field for c in columns]), columns=columns,
                          name=f"{name}_table", height=280, index_position=None,
                          sizing_mode="stretch_width", autosize_mode="none")
        return column(Div(text=f"<h3>{title}</h3>"), table, sizing_mode="stretch_width")

    def _runs(self) -> LayoutDOM:
        fields = [("run", "run", 170), ("n_trials", "n_trials", 70), ("claimed", "claimed", 70),
                  ("finished", "finished", 70), ("running", "running", 70), ("lost", "lost", 50),
                  ("timeout", "timeout (s)", 80), ("time_left", "left (s)", 70),
                  ("outcome", "outcome", 90), ("end_reason", "why it ended", 240)]
        table = DataTable(source=_source("runs", [f for f, _, _ in fields]), name="runs_table",
                          columns=[TableColumn(field=f, title=t, width=w) for f, t, w in fields],
                          height=300, index_position=None, sizing_mode="stretch_width",
                          autosize_mode="none")
        return column(Div(text="<h3>Runs of dasktune.optimize</h3>"), table,
                      sizing_mode="stretch_width")

    # -- updates -------------------------------------------------------------------------

    def update(self, cursor: int) -> dict[str, Any]:
        """What changed since ``cursor`` (a position in the view's log), for the layout's
        sources; and the new cursor, the counters, the parameters the layout should have."""
        view = self.view
        changed, new_cursor = view.since(cursor)
        # RUNNING trials grow on the timeline even when nothing was written to them.
        numbers = {r["number"] for r in changed}
        running = [view.rows[n] for n in view.running if n not in numbers]
        now = time.time() * 1000.0
        sources: dict[str, dict[str, Any]] = {
            "timeline": _upsert(self._timeline_rows([*changed, *running], now)),
            "runs": {"mode": "replace", "data": self._runs_columns()},
        }
        factors: dict[str, list[str]] = {}
        if changed or cursor == 0:
            complete = [r for r in changed if r["state"] == "COMPLETE" and r["values"]]
            sources["curves"], sources["curve_ends"] = self._curve_rows(changed)
            if self.pareto:
                sources["pareto"] = {"mode": "replace", "data": self._pareto()}
            else:
                sources["history"] = _upsert({"number": [r["number"] for r in complete],
                                              "value": [r["values"][0] for r in complete]})
                sources["best"] = {"mode": "replace", "data": self._best_steps()}
            for name in self.params:
                with_param = [r for r in complete if name in r["params"]]
                sources[f"param:{name}"] = _upsert({
                    "number": [r["number"] for r in with_param],
                    "x": [self._x(name, r["params"][name]) for r in with_param],
                    "value": [r["values"][0] for r in with_param],
                })
            sources["latest"] = {"mode": "replace", "data": self._table_columns(self._latest())}
            sources["top"] = {"mode": "replace", "data": self._table_columns(self._top())}
            workers = {self.label(r["worker"]) for r in view.rows.values() if r["start"] is not None}
            factors["timeline_plot"] = sorted(workers)
        summary = view.summary()
        return {
            "cursor": new_cursor,
            "params": sorted(view.distributions),
            "sources": sources,
            "factors": factors,
            "counts": summary["trials"],
            "best": self._best_text(),
        }

    def _x(self, name: str, value: Any) -> Any:
        distribution = self.view.distributions[name]
        return factor(value) if isinstance(distribution, CategoricalDistribution) else value

    def _timeline_rows(self, rows: list[dict[str, Any]], now: float) -> Columns:
        data: Columns = {c: [] for c in ["number", "worker", "start", "end", "state", "note", "edge"]}
        for r in rows:
            if r["start"] is None:
                continue
            data["number"].append(r["number"])
            data["worker"].append(self.label(r["worker"]))
            data["start"].append(r["start"])
            data["end"].append(r["complete"] or now)
            data["state"].append(r["state"])
            data["note"].append(r["fail_reason"] or "")
            data["edge"].append(1 if r["fail_reason"] else 0)
        return data

    def _curve_rows(self, rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
        curves: Columns = {"number": [], "xs": [], "ys": [], "state": []}
        ends: Columns = {"number": [], "step": [], "value": [], "state": []}
        for r in rows:
            if not r["intermediate"]:
                continue
            steps = [step for step, _ in r["intermediate"]]
            values = [value for _, value in r["intermediate"]]
            for data in (curves, ends):
                data["number"].append(r["number"])
                data["state"].append(r["state"])
            curves["xs"].append(steps)
            curves["ys"].append(values)
            ends["step"].append(steps[-1])
            ends["value"].append(values[-1])
        return _upsert(curves), _upsert(ends)

    def _complete(self) -> list[dict[str, Any]]:
        return [r for r in self.view.rows.values() if r["state"] == "COMPLETE" and r["values"]]

    def _best_steps(self) -> Columns:
        """The best-so-far line by trial number: only the trials that improved it, and the
        last one (the line is drawn in steps)."""
        steps: Columns = {"number": [], "best": []}
        best: dict[str, Any] | None = None
        complete = sorted(self._complete(), key=lambda r: r["number"])
        for r in complete:
            if best is None or self._beats(r, best):
                best = r
                steps["number"].append(r["number"])
                steps["best"].append(r["values"][0])
        if best is not None and complete and steps["number"][-1] != complete[-1]["number"]:
            steps["number"].append(complete[-1]["number"])
            steps["best"].append(best["values"][0])
        return steps

    def _beats(self, r: dict[str, Any], best: dict[str, Any]) -> bool:
        return better(r["values"][0], r["number"], best["values"][0], best["number"], self.maximize)

    def _pareto(self) -> Columns:
        """Every COMPLETE trial, marked Pareto-optimal or dominated (two objectives)."""
        signs = [1.0 if d == "minimize" else -1.0 for d in self.view.directions]
        points = sorted(self._complete(), key=lambda r: (signs[0] * r["values"][0], signs[1] * r["values"][1]))
        data: Columns = {"number": [], "x": [], "y": [], "kind": []}
        lowest = math.inf  # of objective 1 among trials better in objective 0
        for r in points:
            y = signs[1] * r["values"][1]
            data["number"].append(r["number"])
            data["x"].append(r["values"][0])
            data["y"].append(r["values"][1])
            data["kind"].append("Pareto-optimal" if y < lowest else "dominated")
            lowest = min(lowest, y)
        return data

    def _latest(self) -> list[dict[str, Any]]:
        return [self.view.rows[n] for n in heapq.nlargest(TABLE_ROWS, self.view.rows)]

    def _top(self) -> list[dict[str, Any]]:
        sign = -1.0 if self.maximize else 1.0
        finite = [r for r in self._complete() if not math.isnan(r["values"][0])]
        return heapq.nsmallest(TABLE_ROWS, finite, key=lambda r: (sign * r["values"][0], r["number"]))

    def _table_columns(self, rows: list[dict[str, Any]]) -> Columns:
        data: Columns = {"number": [], "state": [], "worker": [], "duration": [], "note": []}
        for i in range(len(self.view.directions)):
            data[f"value{i}"] = []
        for p in self.params:
            data[f"param:{p}"] = []
        for r in rows:
            data["number"].append(r["number"])
            data["state"].append(r["state"])
            for i in range(len(self.view.directions)):
                data[f"value{i}"].append(r["values"][i] if r["values"] else None)
            for p in self.params:
                value = r["params"].get(p)
                data[f"param:{p}"].append("" if value is None else _format(value))
            data["worker"].append(self.label(r["worker"]) if r["worker"] else "")
            done = r["start"] is not None and r["complete"] is not None
            data["duration"].append((r["complete"] - r["start"]) / 1000.0 if done else None)
            data["note"].append(r["fail_reason"] or "")
        return data

    def _runs_columns(self) -> Columns:
        fields = ["run", "n_trials", "claimed", "finished", "running", "lost", "timeout",
                  "time_left", "outcome", "end_reason"]
        data: Columns = {f: [] for f in fields}
        for status in self.view.host.runs.find(self.view.study_id):
            data["run"].append(status["run_id"])
            for f in fields[1:]:
                value = status[f]  # type: ignore[literal-required]
                data[f].append("" if value is None else round(value, 1) if isinstance(value, float) else value)
            if not status["done"] and status["outcome"] is None:
                data["outcome"][-1] = "running"
        return data

    def _best_text(self) -> str:
        if self.pareto:
            front = sum(1 for k in self._pareto()["kind"] if k == "Pareto-optimal")
            return f"{front} Pareto-optimal trials"
        best = self.view.best
        return "–" if best is None else f"{best['values'][0]:.6g} (trial {best['number']})"


def _source(name: str, columns: list[str]) -> ColumnDataSource:
    return ColumnDataSource({c: [] for c in columns}, name=name)


def _upsert(data: Columns) -> dict[str, Any]:
    return {"mode": "upsert", "key": "number", "data": data}


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
