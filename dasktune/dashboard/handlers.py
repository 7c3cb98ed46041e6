"""HTTP routes the Tuning plugin adds to the scheduler's dashboard server.

``/tuning``                                  every study on the cluster (HTML, Bokeh)
``/tuning/study/<storage>/<study>``          one study's page (HTML, Bokeh), a stable URL
``/tuning/optuna/<storage>/...``             optuna-dashboard (see :mod:`.optuna_view`)
``/tuning/api/studies``                      the study list as JSON
``/tuning/api/study/<storage>/<study>``      a study as JSON; ``?since=<cursor>`` returns only
                                             the trials changed since that cursor
``/tuning/page/...``                         the updates the pages' figures poll for
``/tuning/static/...``                       the pages' scripts

Names in paths are percent-encoded once (``encodeURIComponent``, ``urllib.parse.quote``);
Tornado decodes path arguments once, and nothing here decodes them again. They are Tornado
handlers, so a plugin installed from a client at run time can add them
(``scheduler.http_application.add_handlers``).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

from distributed import Scheduler
from distributed.http.utils import RequestHandler
from tornado import web

from dasktune.dashboard import optuna_view
from dasktune.dashboard.index_doc import studies_columns
from dasktune.dashboard.index_doc import studies_table
from dasktune.dashboard.page import live
from dasktune.dashboard.page import relative_root
from dasktune.dashboard.page import render
from dasktune.dashboard.state import StudyView
from dasktune.dashboard.state import TuningState
from dasktune.dashboard.study_doc import StudyDoc

STATIC = Path(__file__).parent / "static"


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float as the string JavaScript's ``Number()`` reads
    back (``"Infinity"``, ``"-Infinity"``, ``"NaN"``): Python's JSON writes them as bare
    ``Infinity``/``NaN``, which browsers refuse to parse, and an objective may return inf."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class _Handler(RequestHandler):
    def initialize(  # type: ignore[override]
        self,
        dask_server: Scheduler | None = None,
        extra: Any = None,
        state: TuningState | None = None,
        variables: dict[str, Any] | None = None,
        optuna: bool = False,
    ) -> None:
        super().initialize(dask_server=dask_server, extra=extra)
        assert state is not None
        self.state, self.variables, self.optuna = state, variables or {}, optuna

    def view(self, storage: str, study: str) -> StudyView:
        try:
            return self.state.study(storage, study)
        except KeyError as e:
            raise web.HTTPError(404, reason=str(e.args[0])) from None

    def since(self) -> int:
        try:
            return int(self.get_argument("since", "0"))
        except ValueError:
            raise web.HTTPError(400, reason="since must be an integer cursor") from None

    def page(self, title: str, body: str, init: str) -> None:
        self.write(render(relative_root(self.request.path), self.variables, title, body, init))


class IndexPage(_Handler):
    def get(self) -> None:
        body = (
            "<h1>Tuning</h1><p class='note'>Every study of every DaskStorage on this scheduler. "
            "A study's name opens its page here (trials per worker, runs, parameters); "
            "<i>open</i> opens it in optuna-dashboard.</p>"
        )
        self.page("Dask: Tuning", body, live("tuning/page/studies", studies_table()))


class StudiesUpdate(_Handler):
    def get(self) -> None:
        columns = studies_columns(self.state.refresh())
        self.write(json_safe({"sources": {"studies": {"mode": "replace", "data": columns}}}))


class StudyPage(_Handler):
    def get(self, storage: str, study: str) -> None:
        view = self.view(storage, study)
        doc = StudyDoc(view)
        counts = "".join(
            f"<span>{state}: <b id='count-{state}'>0</b></span>"
            for state in ("RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING")
        )
        if self.optuna:
            optuna = (
                f"<a id='optuna-link' href='{html.escape(optuna_view.study_url(storage, view.study_id))}'>"
                "Open in optuna-dashboard</a> (parallel coordinate, contour, importances, EDF, rank, "
                "the trial table, notes)"
            )
        else:
            optuna = "<span>pip install 'dasktune[dashboard]' on the scheduler adds optuna-dashboard's views</span>"
        body = (
            f"<h1>Study <span id='study-name'>{html.escape(study)}</span></h1>"
            f"<p class='summary'><span>storage <b>{html.escape(storage)}</b></span>"
            f"<span>{html.escape(', '.join(view.directions))}</span>"
            f"<span>best: <b id='best'>–</b></span>{counts}</p>"
            f"<p class='summary'><a href='tuning'>All studies</a>{optuna}</p>"
        )
        url = f"tuning/page/study/{quote(storage, safe='')}/{quote(study, safe='')}"
        self.page(f"Dask: Tuning: {study}", body, live(url, doc.layout(), doc.params))


class StudyUpdate(_Handler):
    def get(self, storage: str, study: str) -> None:
        self.write(json_safe(StudyDoc(self.view(storage, study)).update(self.since())))


class StudiesJSON(_Handler):
    def get(self) -> None:
        views = self.state.refresh()
        self.write(json_safe({"studies": [view.summary() for view in views]}))


class StudyJSON(_Handler):
    def get(self, storage: str, study: str) -> None:
        view = self.view(storage, study)
        trials, cursor = view.since(self.since())
        self.write(json_safe({**view.summary(), "cursor": cursor, "trials": trials}))


def routes(
    scheduler: Scheduler,
    state: TuningState,
    variables: dict[str, Any],
    mount: optuna_view.OptunaDashboards | None,
) -> list[tuple[str, Any, dict[str, Any]]]:
    """The routes, for ``scheduler.http_application.add_handlers``; ``mount``: the
    optuna-dashboard apps (``None``: it is not installed)."""
    options = {"dask_server": scheduler, "state": state, "variables": variables, "optuna": mount is not None}
    name = r"([^/]+)"
    return [
        *optuna_view.routes(mount),
        (r"/tuning", IndexPage, options),
        (rf"/tuning/study/{name}/{name}", StudyPage, options),
        (r"/tuning/page/studies", StudiesUpdate, options),
        (rf"/tuning/page/study/{name}/{name}", StudyUpdate, options),
        (r"/tuning/api/studies", StudiesJSON, options),
        (rf"/tuning/api/study/{name}/{name}", StudyJSON, options),
        (r"/tuning/static/(.*)", web.StaticFileHandler, {"path": str(STATIC)}),
    ]
