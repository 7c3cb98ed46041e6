"""The Tuning pages' Bokeh server, and their frame: the dashboard's. The pages
(:mod:`.pages`) are the apps of a Bokeh server that :func:`serve` adds to the running
dashboard, so a plugin installed from a client at run time has them too. Only a preloaded
plugin adds ``/individual-tuning`` (:func:`register`): ``/individual-plots.json``, which the
Dask JupyterLab extension offers, lists the apps distributed's dashboard starts with.
"""

from __future__ import annotations

from collections.abc import Callable
import functools
from pathlib import Path
from typing import Any

from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.document import Document
from bokeh.models import LayoutDOM
from bokeh.models.widgets import Div
from bokeh.resources import Resources
from bokeh.server.tornado import BokehTornado
from bokeh.server.util import create_hosts_allowlist
from bokeh.themes import Theme
import dask.config
from distributed import Scheduler
import distributed.dashboard
import jinja2
from tornado.ioloop import IOLoop

from dasktune import compat
from dasktune.dashboard.state import TuningState

PATH = "/individual-tuning"
#: How often the pages bring themselves up to date (ms).
POLL_MS = 1000
#: distributed's dashboard theme (package data of distributed's).
THEME = Theme(filename=str(Path(distributed.dashboard.__file__).with_name("theme.yaml")))
Doc = Callable[[Scheduler, dict[str, Any], Document], None]  # (distributed's apps' signature)
#: The pages' own HTML, in the frame's fonts (each Bokeh model is in a shadow root of its own).
STYLE = """:host { font-family: Helvetica, Arial, sans-serif; font-size: 14px; line-height: 1.5; }
h2 { font-size: 20px; margin: 8px 0 4px; } h3 { font-size: 16px; margin: 16px 0 4px; } p { margin: 4px 0; }
a { color: #1f5fa5; } table { border-collapse: collapse; }
td, th { padding: 4px 12px 4px 0; text-align: left; }
th { border-bottom: 1px solid #999; font-weight: normal; } td { border-bottom: 1px solid #e4e4e4; }"""


def register() -> None:
    """Add ``/individual-tuning`` to the dashboards this process's schedulers start from now on."""
    from distributed.dashboard.scheduler import applications

    from dasktune.dashboard.pages import index_doc

    applications.setdefault(PATH, index_doc)


class TuningServer(BokehTornado):
    """Bokeh's server for the Tuning pages, which load BokehJS from the dashboard's root by
    relative URLs (as distributed's pages do), and only the parts they use."""

    def resources(self, absolute_url: str | bool | None = True) -> Resources:
        resources = super().resources(absolute_url)
        unused = ("bokeh-gl", "bokeh-mathjax")
        return resources.clone(components=[c for c in resources.components if c not in unused])


def serve(scheduler: Scheduler) -> None:
    """Serve the Tuning pages on ``scheduler``'s running dashboard, with distributed's Bokeh
    options. A server joins it by ``http_application.add_application``, as distributed's
    Jupyter server does; the dashboard stops it when it closes."""
    from dasktune.dashboard.pages import index_doc
    from dasktune.dashboard.pages import study_doc

    apps: dict[str, Doc] = {"/tuning": index_doc, "/tuning/study/[^/]+/[^/]+": study_doc}  # (a pattern)
    options = dict(dask.config.get("distributed.scheduler.dashboard.bokeh-application"))
    port = scheduler.http_server.port  # type: ignore[attr-defined]  # (distributed sets it)
    origins = create_hosts_allowlist(options.pop("allow_websocket_origin"), port)
    extra = {"prefix": "/", **compat.dashboard_variables(scheduler)}
    docs = {path: Application(FunctionHandler(functools.partial(doc, scheduler, extra)))
            for path, doc in apps.items()}
    server = TuningServer(docs, prefix="/", use_index=False, extra_websocket_origins=origins, absolute_url="",
                          **options)
    scheduler.http_application.add_application(server)
    server.initialize(IOLoop.current())
    server.start()


def tuning_state(scheduler: Scheduler) -> TuningState:
    """The Tuning plugin's state on ``scheduler`` (empty if it does not run there)."""
    from dasktune.dashboard.plugin import TuningPlugin

    plugin = scheduler.plugins.get(TuningPlugin.name)
    return plugin.state if isinstance(plugin, TuningPlugin) else TuningState(dict, {}, None)


def request_path(doc: Document) -> str:
    return str(getattr(getattr(doc.session_context, "request", None), "path", "/"))


def relative_root(path: str) -> str:
    """The relative way from the page at ``path`` back to the dashboard's root."""
    depth = path.count("/") - 1
    return "../" * depth if depth > 0 else "./"


def div(text: str = "") -> Div:
    """HTML of the page's own (no TeX: a study's name may hold ``$``)."""
    return Div(text=text, disable_math=True, stylesheets=[STYLE], sizing_mode="stretch_width")


def frame(doc: Document, extra: dict[str, Any], title: str, root: LayoutDOM) -> None:
    """Show ``root`` in the dashboard's frame: its navigation bar, styles and fonts."""
    doc.title, doc.theme = title, THEME
    doc.add_root(root)
    doc.template = _templates.get_template("tuning.html")
    doc.template_variables.update(extra, root=relative_root(request_path(doc)))


def _framed_base(name: str) -> str | None:
    """distributed's ``base.html``, with the page's title and, first in its head, a ``<base>``
    element: its relative URLs, and the pages', then start at the dashboard's root at any
    depth, behind a proxy that mounts the dashboard under a prefix (JupyterHub's) too."""
    if name != "framed-base.html":
        return None
    base = Path(compat.dashboard_templates(), "base.html").read_text(encoding="utf-8")
    base = base.replace("<title>Dask Diagnostic UI</title>", "<title>{{ title | e }}</title>", 1)
    return base.replace("<head>", '<head>\n    <base href="{{ root }}" />', 1)


# No autoescape, as for distributed's own Bokeh pages: Bokeh's parts are HTML.
_templates = jinja2.Environment(loader=jinja2.ChoiceLoader([
    jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")), jinja2.FunctionLoader(_framed_base),
]))
