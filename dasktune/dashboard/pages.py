"""The Tuning pages' Bokeh documents, each kept live by a periodic callback. ``/tuning`` (and
``/individual-tuning``) lists every study; each links to its page and to optuna-dashboard's
views of it. ``/tuning/study/<storage>/<study>`` shows what only dasktune knows of a study:
**trials per worker**, each trial a bar in a lane of its worker's (its concurrent trials each
in a lane of their own, as optuna-dashboard's timeline gives each trial a row), and the
**runs** of ``dasktune.optimize`` (budget, trials claimed, finished, running, lost, time left,
how and why each ended). Each second the timeline's source gets the trials that started since
(``stream``) and the rows of those that were running (``patch``): a finished trial never
changes. A study that is not there says so, in the frame.
"""

from __future__ import annotations

from datetime import datetime
import html
import math
import re
from typing import Any
from typing import cast
from urllib.parse import quote
from urllib.parse import unquote

from bokeh.document import Document
from bokeh.layouts import column
from bokeh.models import CategoricalAxis
from bokeh.models import ColumnDataSource
from bokeh.models import FactorRange
from bokeh.models.widgets import DataTable
from bokeh.models.widgets import Div
from bokeh.models.widgets import HTMLTemplateFormatter
from bokeh.models.widgets import NumberFormatter
from bokeh.models.widgets import TableColumn
from bokeh.plotting import figure
from bokeh.transform import factor_cmap
from distributed import Scheduler
import numpy as np
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune import compat
from dasktune.dashboard.app import POLL_MS
from dasktune.dashboard.app import div
from dasktune.dashboard.app import frame
from dasktune.dashboard.app import request_path
from dasktune.dashboard.app import tuning_state
from dasktune.dashboard.host_storage import HostStorage
from dasktune.dashboard.state import ShownStudy
from dasktune.dashboard.state import TuningState
from dasktune.storage import wire

#: optuna-dashboard's views of a study (by the path after its URL): their names, what they show.
OPTUNA_VIEWS = {
    "": ("history", "history with the best so far, intermediate values, Pareto front, importances"),
    "/analytics": ("analytics", "slice, contour, rank, EDF"),
    "/smartSelection": ("table", "parallel coordinate, the trials' table"),
}
#: Trial states in the order legends and counts list them, and their colours.
STATES = ["COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"]
COLORS = ["#1f77b4", "#ff7f0e", "#d62728", "#7f7f7f", "#bcbd22"]
#: The list of studies: (field, title, least width in px; the table takes the page's width).
COLUMNS = [
    ("study", "Study", 160), ("storage", "Storage", 190), ("direction", "Direction", 115),
    *((state, state.capitalize(), 66) for state in ["RUNNING", "COMPLETE", "PRUNED", "FAIL"]),
    ("best", "Best value", 90), ("rate", "Trials/min", 72), ("updated", "Last update", 85),
    ("optuna", "optuna-dashboard", 175),
]
#: The runs table: (field of a run's status, title).
RUN_COLUMNS = [
    ("run_id", "run"), ("n_trials", "n_trials"), ("timeout", "timeout (s)"), ("claimed", "claimed"),
    ("finished", "finished"), ("running", "running"), ("lost", "lost"), ("time_left", "left (s)"),
    ("outcome", "outcome"), ("end_reason", "why it ended"),
]
_EPOCH = datetime(1970, 1, 1)


def optuna_url(storage: str, study_id: int) -> str:
    """A study's page in optuna-dashboard (its history), relative to the dashboard's root."""
    return f"tuning/optuna/{quote(storage, safe='')}/dashboard/studies/{study_id}"


def studies_columns(studies: list[ShownStudy]) -> dict[str, list[Any]]:
    """The list's columns for ``studies``."""
    rows = []
    for shown in studies:
        counts, study, updated = shown.update(), shown.study, shown.updated
        rows.append({
            "study": study.name, "storage": shown.label,
            "study_url": f"tuning/study/{quote(shown.label, safe='')}/{quote(study.name, safe='')}",
            "direction": ", ".join(d.name.lower() for d in study.directions),
            **{state: counts[TrialState[state]] for state in STATES},
            "best": None if study.best is None else study.best.values[0], "rate": len(shown.completions),
            "updated": "" if updated is None else updated.strftime(  # its time today, else its day
                "%H:%M:%S" if updated.date() == datetime.now().date() else "%Y-%m-%d"),
            "optuna": "", "optuna_url": optuna_url(shown.label, study.study_id),
        })
    return {f: [row[f] for row in rows] for f in [*(c[0] for c in COLUMNS), "study_url", "optuna_url"]}


def index_doc(scheduler: Scheduler, extra: dict[str, Any], doc: Document) -> None:
    """The document of ``/tuning`` (the signature distributed's apps have)."""
    state = tuning_state(scheduler)
    source = ColumnDataSource(studies_columns(state.studies()), name="studies")
    links = " · ".join(f'<a href="<%= optuna_url %>{path}">{name}</a>'
                       for path, (name, _) in OPTUNA_VIEWS.items())
    formats = {"study": HTMLTemplateFormatter(template='<a href="<%= study_url %>"><%- value %></a>'),
               "optuna": HTMLTemplateFormatter(template=links), "best": NumberFormatter(format="0.[000000]"),
               "rate": NumberFormatter(format="0.[0]")}
    columns = [TableColumn(field=f, title=t, width=w) for f, t, w in COLUMNS]
    for col in columns:
        col.formatter = formats.get(col.field, col.formatter)
    table = DataTable(source=source, columns=columns, name="studies_table", index_position=None, height=400,
                      autosize_mode="force_fit", reorderable=False, sizing_mode="stretch_width")

    def update() -> None:
        data = studies_columns(state.studies())
        if data != source.data:
            source.data = data

    doc.add_periodic_callback(update, POLL_MS)
    header = div("<h2>Tuning</h2><p>Every study of every DaskStorage on this scheduler. A study's name "
                 "opens its page (trials per worker, the runs of <code>dasktune.optimize</code>); the "
                 "last column, its views in optuna-dashboard.</p>")
    frame(doc, extra, "Dask: Tuning", column(header, table, sizing_mode="stretch_width"))


def wall_ms(moment: datetime) -> float:
    """A moment as the timeline's axis shows it: Optuna's (naive) local time, as it is."""
    return (moment - _EPOCH).total_seconds() * 1000.0


class Timeline:
    """"Trials per worker" of a study, kept up to date by :meth:`update`."""

    FIELDS = ["number", "lane", "worker", "start", "end", "seconds", "state", "note"]
    NUMBERS = ["number", "start", "end", "seconds"]  # sent as arrays: binary buffers on the wire

    def __init__(self, backend: HostStorage) -> None:
        self.backend = backend
        self.source = ColumnDataSource({f: [] for f in self.FIELDS}, name="timeline")
        #: Holds the figure once a trial started (before, it would have no ranges to set).
        self.root = column(div("<p>No trial has started yet.</p>"), sizing_mode="stretch_width")
        self.figure: Any = None
        self.seen = 0  # trials looked at: numbers below this
        self.rows: dict[int, int] = {}  # trial number -> its row in the source
        self.running: set[int] = set()  # numbers of the rows of unfinished trials
        self.unstarted: set[int] = set()  # numbers of trials not started yet (WAITING)
        self.lanes: dict[str, list[float]] = {}  # worker -> when each of its lanes is free
        self.lane: dict[int, tuple[str, int]] = {}  # trial number -> its worker and lane

    def update(self, trials: list[FrozenTrial]) -> None:
        now = wall_ms(datetime.now())
        fresh = [trials[n] for n in sorted(self.unstarted)] + trials[self.seen :]
        self.seen = len(trials)
        self.unstarted = {t.number for t in fresh if t.datetime_start is None and not t.state.is_finished()}
        patches: dict[str, list[tuple[int, Any]]] = {f: [] for f in ("end", "seconds", "state", "note")}
        for number in sorted(self.running):
            row = self._row(trials[number], now)
            for field, patch in patches.items():
                patch.append((self.rows[number], row[field]))
        if patches["end"]:
            self.source.patch(patches)
        # The trials that started, in that order, so that lanes fill in turn.
        started = sorted((t for t in fresh if t.datetime_start),
                         key=lambda t: wall_ms(cast(datetime, t.datetime_start)))
        if started:
            workers = self.backend.workers([compat.trial_id(t) for t in started])
            # A worker by its address without the protocol (tcp://10.0.0.5:40331 -> 10.0.0.5:40331).
            new = [self._place(t, "(not a worker)" if w is None else w.split("://", 1)[-1], now)
                   for t, w in zip(started, workers)]
            columns = {f: [row[f] for row in new] for f in self.FIELDS}
            self.source.stream({**columns, **{f: np.array(columns[f]) for f in self.NUMBERS}})
            self._show()

    def _row(self, trial: FrozenTrial, now: float) -> dict[str, Any]:
        """The fields of a trial's row that change while it runs."""
        end = now if trial.datetime_complete is None else wall_ms(trial.datetime_complete)
        if trial.state.is_finished():  # its lane is free from its end on
            self.running.discard(trial.number)
            worker, lane = self.lane[trial.number]
            self.lanes[worker][lane] = end
        seconds = (end - wall_ms(cast(datetime, trial.datetime_start))) / 1000
        return {"end": end, "seconds": seconds, "state": trial.state.name,
                "note": trial.system_attrs.get(wire.FAIL_REASON, "")}

    def _place(self, trial: FrozenTrial, worker: str, now: float) -> dict[str, Any]:
        """The row of a trial that started, in the first lane of its worker free by then."""
        start, lanes = wall_ms(cast(datetime, trial.datetime_start)), self.lanes.setdefault(worker, [])
        lane = next((i for i, free in enumerate(lanes) if free <= start), len(lanes))
        lanes[lane : lane + 1] = [math.inf]  # (a new lane if none is free)
        self.lane[trial.number], self.rows[trial.number] = (worker, lane), len(self.rows)
        self.running.add(trial.number)
        return {**self._row(trial, now), "number": trial.number, "lane": (worker, str(lane + 1)),
                "worker": worker, "start": start}

    def _show(self) -> None:
        """Draw the figure, or give it the lanes now in use, top to bottom, 22 pixels each."""
        factors = [(w, str(i)) for w in sorted(self.lanes, reverse=True)
                   for i in range(len(self.lanes[w]), 0, -1)]
        height = min(1200, 90 + 22 * len(factors))
        if self.figure is not None:
            if list(self.figure.y_range.factors) != factors:
                self.figure.y_range.factors, self.figure.height = factors, height
            return
        self.figure = figure(
            title="Trials per worker (a lane for each trial a worker runs at once)", name="timeline_plot",
            height=height, sizing_mode="stretch_width", x_axis_type="datetime",
            y_range=FactorRange(factors=factors), tools="xpan,xwheel_zoom,box_zoom,reset,save",
            tooltips=[("trial", "@number"), ("state", "@state"), ("worker", "@worker"),
                      ("seconds", "@seconds{0.00}"), ("why", "@note")],
        )
        self.figure.hbar(y="lane", left="start", right="end", height=0.8, source=self.source, line_width=0.5,
                         color=factor_cmap("state", COLORS, STATES), line_color="white", legend_field="state")
        self.figure.add_layout(self.figure.legend[0], "above")  # not over the bars
        self.figure.legend.orientation = "horizontal"
        axis = cast(CategoricalAxis, self.figure.yaxis[0])
        axis.group_label_orientation = "horizontal"  # a worker's address in one line
        axis.major_label_text_font_size = "0px"  # lanes need no number
        self.figure.ygrid.grid_line_color = None
        self.root.children = [self.figure]


class StudyPage:
    """The live layout of one study's page."""

    def __init__(self, state: TuningState, shown: ShownStudy) -> None:
        self.state, self.shown = state, shown
        self.header, self.runs = div(), div()
        self.timeline = Timeline(shown.backend)
        self.root = column(self.header, self.timeline.root, self.runs, sizing_mode="stretch_width")

    def update(self) -> None:
        """Bring the page up to date; ``KeyError`` if the study is gone."""
        shown = self.state.study(self.shown.storage, self.shown.study.name)
        if shown.study is not self.shown.study:  # a new study of that name, or its host was rebuilt
            self.timeline = Timeline(shown.backend)
            self.root.children = [self.header, self.timeline.root, self.runs]
        self.shown = shown
        self.timeline.update(shown.study.trials)
        runs = shown.backend.host().find_runs(shown.study.study_id)
        for part, text in [(self.header, self._header()), (self.runs, runs_html(runs))]:
            if part.text != text:
                part.text = text

    def _header(self) -> str:
        study, counts, label = self.shown.study, self.shown.update(), self.shown.label
        summary = [f"storage <b>{html.escape(label)}</b>",
                   ", ".join(d.name.lower() for d in study.directions)]
        if study.best is not None:
            summary.append(f"best <b id='best'>{study.best.values[0]:.6g}</b> (trial {study.best.number})")
        summary += [f"{s} <b id='count-{s}'>{counts[TrialState[s]]}</b>" for s in STATES]
        url = optuna_url(label, study.study_id)
        links = " · ".join(f"<a class='optuna' href='{url}{path}'>{name}</a> ({shows})"
                           for path, (name, shows) in OPTUNA_VIEWS.items())
        return (f"<h2>Study <span id='study-name'>{html.escape(study.name)}</span></h2>"
                f"<p>{' · '.join(summary)}</p>"
                f"<p><a id='all-studies' href='tuning'>All studies</a> · In optuna-dashboard: {links}</p>")


def runs_html(runs: list[wire.RunStatus]) -> str:
    """The study's runs of ``dasktune.optimize``, as a table."""
    if not runs:
        return "<p>No recent run of <code>dasktune.optimize</code>.</p>"

    def cell(run: wire.RunStatus, field: str) -> str:
        value = run[field]  # type: ignore[literal-required]
        if field == "outcome" and not run["done"] and value is None:
            return "running"
        if value is None:
            return ""
        return f"{value:.1f}" if isinstance(value, float) else html.escape(str(value))

    head = "".join(f"<th>{title}</th>" for _, title in RUN_COLUMNS)
    rows = "".join("<tr>" + "".join(f"<td>{cell(run, f)}</td>" for f, _ in RUN_COLUMNS) + "</tr>"
                   for run in runs)
    return f"<h3>Runs of dasktune.optimize</h3><table class='runs'><tr>{head}</tr>{rows}</table>"


def gone(message: str) -> Div:
    return div(f"<h2>{html.escape(message)}</h2><p><a id='all-studies' href='tuning'>All studies</a></p>")


def study_doc(scheduler: Scheduler, extra: dict[str, Any], doc: Document) -> None:
    """The document of a study's page (the signature distributed's apps have)."""
    match = re.search(r"/tuning/study/([^/]+)/([^/]+)", request_path(doc))
    storage, name = (unquote(match[1]), unquote(match[2])) if match else ("", "")
    state = tuning_state(scheduler)
    try:
        page = StudyPage(state, state.study(storage, name))
        page.update()
    except KeyError as e:
        frame(doc, extra, "Dask: Tuning: no such study", gone(str(e.args[0])))
        return

    def update() -> None:
        try:
            page.update()
        except KeyError as e:  # deleted meanwhile
            doc.remove_periodic_callback(callback)
            page.root.children = [gone(str(e.args[0]))]

    callback = doc.add_periodic_callback(update, POLL_MS)
    frame(doc, extra, f"Dask: Tuning: {name}", page.root)
