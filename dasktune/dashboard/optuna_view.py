"""optuna-dashboard, mounted on the Dask dashboard for every named storage.

``/tuning/optuna/<storage>/dashboard``                  optuna-dashboard's study list
``/tuning/optuna/<storage>/dashboard/studies/<id>``     one study, with all of its views
``/tuning/optuna/<storage>/api/...``, ``/csv/...``       its JSON API and CSV download

Each storage gets the WSGI app ``optuna_dashboard.wsgi`` builds over a
:class:`~dasktune.dashboard.host_storage.HostStorage` of it, so optuna-dashboard reads the
scheduler-resident storage directly (live, O(changes)), and its writes — notes, user
attributes, tells, deleting a study — go through the storage plugin like every other
client's. The apps run in a thread pool of their own, never on the scheduler's event loop
(Tornado's ``WSGIContainer`` with an executor); one Tornado route hands them every request
under the mount point.

optuna-dashboard's browser script expects the root of a server, so the page that loads it is
dasktune's own (same markup and Content-Security-Policy as optuna-dashboard's), with a small
script that places it under the mount point; see :mod:`dasktune.compat`.

optuna-dashboard is an optional dependency (``dasktune[dashboard]``); without it the mount
point serves a page that says how to install it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
import functools
import gzip
import html
import importlib.util
import threading
from typing import Any
from urllib.parse import quote
from urllib.parse import unquote

from tornado import escape
from tornado import httputil
from tornado import web
from tornado.wsgi import WSGIContainer

from dasktune import compat
from dasktune.dashboard.host_storage import HostStorage
from dasktune.dashboard.page import relative_root
from dasktune.storage.host import StorageHost

#: Where each storage's optuna-dashboard is mounted, below the dashboard's root.
MOUNT = "tuning/optuna"
#: optuna-dashboard's own Content-Security-Policy for its page (``optuna_dashboard/_app.py``):
#: the parallel-coordinate plot (WebGL) needs ``unsafe-eval``.
CSP = ";".join(
    [
        "default-src 'self'",
        "img-src 'self' data: blob:",
        "frame-src 'self'",
        "object-src 'none'",
        "connect-src 'self'",
        "style-src 'self' data: 'unsafe-inline'",
        "script-src 'self' 'unsafe-eval'",
    ]
)
#: Threads serving optuna-dashboard's requests (importances and plots take a CPU second or
#: so on large studies; the scheduler's loop never waits for them).
THREADS = 4

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def available() -> bool:
    """Whether optuna-dashboard is installed."""
    return importlib.util.find_spec("optuna_dashboard") is not None


def study_url(storage: str, study_id: int) -> str:
    """A study's optuna-dashboard page, relative to the dashboard's root."""
    return f"{MOUNT}/{quote(storage, safe='')}/dashboard/studies/{study_id}"


class OptunaDashboards:
    """The optuna-dashboard app of each storage, made on first use, and the pool of threads
    that runs them. A WSGI app itself: it dispatches a request to its storage's app."""

    def __init__(
        self, hosts: Mapping[str, StorageHost], handlers: Mapping[str, Any], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.hosts, self.handlers, self.loop = hosts, handlers, loop
        self.executor = ThreadPoolExecutor(THREADS, thread_name_prefix="dasktune-optuna-dashboard")
        self.container = _MountedContainer(self, executor=self.executor)
        self._apps: dict[str, tuple[StorageHost, WSGIApp]] = {}
        self._lock = threading.Lock()

    def app(self, storage: str) -> WSGIApp | None:
        """optuna-dashboard over ``storage`` (``None``: no such storage); a new app when the
        storage was reopened, since ids then mean other studies."""
        host = self.hosts.get(storage)
        if host is None:
            return None
        with self._lock:
            known = self._apps.get(storage)
            if known is None or known[0] is not host:
                import optuna_dashboard

                backend = HostStorage(self.hosts, storage, self.handlers, self.loop)
                known = self._apps[storage] = (host, optuna_dashboard.wsgi(backend))
            return known[1]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        storage = environ["dasktune.storage"]
        app = self.app(storage)
        if app is None:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"No DaskStorage named {storage!r} on this scheduler.".encode()]
        return app(environ, start_response)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class _MountedContainer(WSGIContainer):
    """Tornado's WSGI container, giving the app the request as if it were mounted at
    ``/tuning/optuna/<storage>``: that is its ``SCRIPT_NAME``, the rest its ``PATH_INFO``, and
    the storage's name (percent-decoded once) travels in ``environ["dasktune.storage"]``."""

    def environ(self, request: httputil.HTTPServerRequest) -> dict[str, Any]:
        environ = super().environ(request)
        parts = request.path.split("/", 4)  # "", "tuning", "optuna", storage, rest
        rest = "/" + parts[4] if len(parts) > 4 else ""
        environ["SCRIPT_NAME"] = "/".join(parts[:4])
        environ["PATH_INFO"] = escape.url_unescape(rest, encoding=None, plus=False).decode("latin1")
        environ["dasktune.storage"] = unquote(parts[3])
        return environ


# -- Tornado routes ------------------------------------------------------------------------


class OptunaPage(web.RequestHandler):
    """optuna-dashboard's page (any path under ``dashboard``: its router draws the view)."""

    def get(self, storage: str) -> None:
        root = relative_root(self.request.path)
        self.set_header("Content-Security-Policy", CSP)
        self.write(_PAGE.format(title=html.escape(f"{storage} · Optuna Dashboard"), root=root))


class OptunaScript(web.RequestHandler):
    """optuna-dashboard's script, its router placed under the mount point; gzip-compressed
    once, off the event loop, on first use."""

    async def get(self) -> None:
        plain, packed = await asyncio.get_running_loop().run_in_executor(None, _bundle)
        self.set_header("Content-Type", "text/javascript; charset=utf-8")
        self.set_header("Cache-Control", "max-age=3600")
        if "gzip" in self.request.headers.get("Accept-Encoding", ""):
            self.set_header("Content-Encoding", "gzip")
            self.write(packed)
        else:
            self.write(plain)


class InstallPage(web.RequestHandler):
    """What the mount point says when optuna-dashboard is not installed."""

    def get(self, *args: Any) -> None:
        self.set_status(404)
        self.write(
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Optuna Dashboard"
            "</title></head><body><h1>optuna-dashboard is not installed</h1><p>The study views "
            "of optuna-dashboard (parallel coordinate, importances, trial table, notes) are "
            "served here when it is installed where the scheduler runs: <code>pip install "
            "'dasktune[dashboard]'</code>, then restart the scheduler.</p></body></html>"
        )


@functools.lru_cache(maxsize=1)
def _bundle() -> tuple[bytes, bytes]:
    script = compat.optuna_dashboard_bundle()
    return script, gzip.compress(script, compresslevel=6)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<title>{title}</title>
<meta charset="UTF-8" />
<meta name="viewport" content="width=device-width, initial-scale=1" />
<script src="{root}tuning/static/optuna-mount.js"></script>
<script defer src="{root}tuning/static/optuna-dashboard.js"></script>
</head>
<body>
<div id="dashboard"></div>
</body>
</html>
"""


def routes(mount: OptunaDashboards | None) -> list[tuple[str, Any, dict[str, Any]]]:
    """The routes, before the other Tuning routes (their ``/tuning/static/`` included)."""
    storage = r"([^/]+)"
    if mount is None:
        return [(rf"/{MOUNT}/(.*)", InstallPage, {})]
    return [
        (r"/tuning/static/optuna-dashboard.js", OptunaScript, {}),
        (rf"/{MOUNT}/{storage}/dashboard(?:/.*)?", OptunaPage, {}),
        (rf"/{MOUNT}/[^/]+(?:/.*)?", web.FallbackHandler, {"fallback": mount.container}),
    ]
