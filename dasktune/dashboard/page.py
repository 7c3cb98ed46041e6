"""The Tuning pages' HTML: distributed's dashboard frame (``base.html``: navigation bar,
styles) around a Bokeh layout, which ``static/tuning.js`` embeds and keeps live.

BokehJS is the copy the Dask dashboard already serves under ``static/js/``, so the pages need
nothing from the internet. Every URL in a page is relative to the dashboard's root (a
``<base>`` element says where that is), so the pages work behind a proxy that mounts the
dashboard under a prefix, as JupyterHub's does.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import bokeh
from bokeh.embed import json_item
from bokeh.models import LayoutDOM
import jinja2
from markupsafe import Markup

from dasktune import compat

#: How often the pages ask for news (ms).
POLL_MS = 1000
_BOKEH_JS = ["bokeh", "bokeh-widgets", "bokeh-tables"]


def relative_root(path: str) -> str:
    """The relative way from the page at ``path`` back to the dashboard's root."""
    depth = path.count("/") - 1
    return "../" * depth if depth > 0 else "./"


_templates = jinja2.Environment(
    loader=jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
            jinja2.FileSystemLoader(compat.dashboard_templates()),
        ]
    ),
    autoescape=True,
)


def render(root: str, variables: dict[str, Any], title: str, body: str, init: str) -> str:
    """A page in the dashboard's frame; ``body`` is HTML, ``init`` a script run after it."""
    scripts = "\n".join(
        f'<script src="static/js/{name}.min.js?v={bokeh.__version__}"></script>' for name in _BOKEH_JS
    )
    page = _templates.get_template("tuning.html").render(
        **variables,
        bokeh_js=Markup(scripts),
        body=Markup(body),
        init=Markup(init.replace("</", "<\\/")),  # a study's name must not end the script
    )
    page = page.replace("<title>Dask Diagnostic UI</title>", f"<title>{html.escape(title)}</title>", 1)
    # First in <head>, so that every relative URL after it (the frame's too) starts at the root.
    return page.replace("<head>", f'<head>\n    <base href="{html.escape(root)}" />', 1)


def live(url: str, layout: LayoutDOM, extra: Any = None) -> str:
    """The script that embeds ``layout`` and applies the updates ``url`` answers."""
    return (
        f"DaskTune.live({json.dumps(url)}, {json.dumps(json_item(layout))}, {POLL_MS}, "
        f"{json.dumps(extra)});"
    )
