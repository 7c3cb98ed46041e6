"""HTTP routes the storage plugin adds to the scheduler's dashboard server.

``/tuning``                               the index of studies (HTML)
``/tuning/study/<storage>/<study>``       one study's page (HTML), a stable URL per study
``/tuning/api/studies``                   the index as JSON
``/tuning/api/study/<storage>/<study>``   a study as JSON; ``?since=<cursor>`` returns only
                                          the trials changed since that cursor
``/tuning/static/tuning.js``              the pages' script

They are Tornado handlers, so a plugin installed from a client at run time can add them
(``scheduler.http_application.add_handlers``); Bokeh apps can only be added before the
dashboard starts (see :mod:`dasktune.dashboard.app`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import quote
from urllib.parse import unquote

from distributed import Scheduler
from distributed.http.utils import RequestHandler
from tornado import web

from dasktune.dashboard.page import index_page
from dasktune.dashboard.page import study_page
from dasktune.dashboard.state import TuningState

STATIC = Path(__file__).parent / "static"


def _root(path: str) -> str:
    """The relative way back to the dashboard's root from ``path`` (works behind proxies
    that mount the dashboard under a prefix, as Jupyter's does)."""
    depth = path.count("/") - 1
    return "../" * depth if depth > 0 else "./"


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
    def initialize(self, dask_server: Scheduler | None = None, extra: Any = None,  # type: ignore[override]
                   state: TuningState | None = None) -> None:
        super().initialize(dask_server=dask_server, extra=extra)
        assert state is not None
        self.state = state


class IndexPage(_Handler):
    def get(self) -> None:
        self.write(index_page(_root(self.request.path)))


class StudyPage(_Handler):
    def get(self, storage: str, study: str) -> None:
        storage, study = unquote(storage), unquote(study)
        try:
            view = self.state.study(storage, study)
        except KeyError as e:
            raise web.HTTPError(404, reason=str(e).strip("'\"")) from None
        root = _root(self.request.path)
        api = f"{root}tuning/api/study/{quote(storage, safe='')}/{quote(study, safe='')}"
        self.write(study_page(root, storage, study, view.directions, api))


class StudiesJSON(_Handler):
    def get(self) -> None:
        views = self.state.refresh()
        self.write(json_safe({"studies": [view.summary() for view in views]}))


class StudyJSON(_Handler):
    def get(self, storage: str, study: str) -> None:
        try:
            view = self.state.study(unquote(storage), unquote(study))
        except KeyError as e:
            raise web.HTTPError(404, reason=str(e).strip("'\"")) from None
        try:
            since = int(self.get_argument("since", "0"))
        except ValueError:
            raise web.HTTPError(400, reason="since must be an integer cursor") from None
        trials, cursor = view.since(since)
        self.write(json_safe({**view.summary(), "cursor": cursor, "trials": trials}))


def routes(scheduler: Scheduler, state: TuningState) -> list[tuple[str, Any, dict[str, Any]]]:
    """The routes, for ``scheduler.http_application.add_handlers``."""
    options = {"dask_server": scheduler, "state": state}
    name = r"([^/]+)"
    return [
        (r"/tuning", IndexPage, options),
        (rf"/tuning/study/{name}/{name}", StudyPage, options),
        (r"/tuning/api/studies", StudiesJSON, options),
        (rf"/tuning/api/study/{name}/{name}", StudyJSON, options),
        (r"/tuning/static/(.*)", web.StaticFileHandler, {"path": str(STATIC)}),
    ]
