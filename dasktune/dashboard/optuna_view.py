"""optuna-dashboard at ``/tuning/optuna/<storage>/dashboard`` for every storage: the WSGI app
``optuna_dashboard.wsgi`` builds over the Tuning pages' ``HostStorage`` of it, run by threads
of its own, never on the scheduler's loop. Its browser script expects the root of a server, so
the page that loads it is dasktune's own (its markup and Content-Security-Policy, and a way
back to the Tuning page and Dask), with a script that places it under the mount point; see
:mod:`dasktune.compat`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
import functools
import gzip
import html
import threading
from typing import Any
from urllib.parse import unquote

from tornado import escape
from tornado import httputil
from tornado import web
from tornado.wsgi import WSGIContainer

from dasktune import compat
from dasktune.dashboard.app import relative_root
from dasktune.dashboard.host_storage import HostStorage
from dasktune.dashboard.state import TuningState

#: Where each storage's optuna-dashboard is mounted, below the dashboard's root.
MOUNT = "tuning/optuna"
#: optuna-dashboard's own Content-Security-Policy for its page (``optuna_dashboard/_app.py``):
#: the parallel-coordinate plot (WebGL) needs ``unsafe-eval``.
CSP = ("default-src 'self'; img-src 'self' data: blob:; frame-src 'self'; object-src 'none'; "
       "connect-src 'self'; style-src 'self' data: 'unsafe-inline'; script-src 'self' 'unsafe-eval'")
#: Threads serving optuna-dashboard's requests (importances and plots take a CPU second or
#: so on large studies; the scheduler's loop never waits for them).
THREADS = 4


class OptunaDashboards:
    """The optuna-dashboard app of each storage, made on first use, and the threads that run
    them. A WSGI app itself: it hands a request to its storage's app."""

    def __init__(self, state: TuningState, artifact_store: Callable[[], Any] | None = None) -> None:
        self.state = state
        #: The scheduler's artifact store, as files on its disk (None: no artifact plugin).
        self.artifact_store = artifact_store or (lambda: None)
        self.executor = ThreadPoolExecutor(THREADS, thread_name_prefix="dasktune-optuna-dashboard")
        self.container = _MountedContainer(self, executor=self.executor)
        self._apps: dict[str, tuple[HostStorage, Callable[..., Iterable[bytes]]]] = {}
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            backend = self.state.storage(environ["dasktune.storage"])
        except KeyError as e:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [str(e.args[0]).encode()]
        with self._lock:  # a new app for a reopened storage: its ids then mean other studies
            known = self._apps.get(backend.name)
            if known is None or known[0] is not backend:
                # Imported on first use: where scikit-learn is installed, Optuna's importance
                # evaluators make that a second and some 100 MB.
                import optuna_dashboard

                app = optuna_dashboard.wsgi(backend, artifact_store=self.artifact_store())
                known = self._apps[backend.name] = (backend, app)
        return known[1](environ, start_response)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class _MountedContainer(WSGIContainer):
    """Tornado's WSGI container, giving the app the request as mounted at ``SCRIPT_NAME``
    ``/tuning/optuna/<storage>``, the storage's name decoded once in ``dasktune.storage``."""

    def environ(self, request: httputil.HTTPServerRequest) -> dict[str, Any]:
        environ = super().environ(request)
        parts = request.path.split("/", 4)  # "", "tuning", "optuna", storage, rest
        rest = "/" + parts[4] if len(parts) > 4 else ""
        environ["SCRIPT_NAME"] = "/".join(parts[:4])
        environ["PATH_INFO"] = escape.url_unescape(rest, encoding=None, plus=False).decode("latin1")
        environ["dasktune.storage"] = unquote(parts[3])
        return environ


class OptunaPage(web.RequestHandler):
    """optuna-dashboard's page (any path under ``dashboard``: its router draws the view)."""

    def get(self, storage: str) -> None:
        self.set_header("Content-Security-Policy", CSP)
        root, title = relative_root(self.request.path), html.escape(f"{storage} · Optuna Dashboard")
        self.write(_PAGE.format(title=title, root=root))


class OptunaScript(web.RequestHandler):
    """optuna-dashboard's script, its router under the mount point; gzipped once, off the loop."""

    async def get(self) -> None:
        plain, packed = await asyncio.get_running_loop().run_in_executor(None, _bundle)
        self.set_header("Content-Type", "text/javascript; charset=utf-8")
        self.set_header("Cache-Control", "max-age=3600")
        if "gzip" in self.request.headers.get("Accept-Encoding", ""):
            self.set_header("Content-Encoding", "gzip")
            self.write(packed)
        else:
            self.write(plain)


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
<style>#dasktune-nav {{ position: fixed; right: 16px; top: 14px; z-index: 2000; background: #eee;
  padding: 6px 12px; border-radius: 4px; font: 14px Helvetica, Arial, sans-serif }}
  #dasktune-nav a {{ color: black }}</style>
</head>
<body>
<nav id="dasktune-nav"><a data-path="tuning">&larr; Tuning</a> &middot; <a data-path="status">Dask</a></nav>
<div id="dashboard"></div>
</body>
</html>
"""


def routes(mount: OptunaDashboards) -> list[tuple[str, Any, dict[str, Any]]]:
    """The routes, before the other Tuning routes (their ``/tuning/static/`` included)."""
    return [
        (r"/tuning/static/optuna-dashboard.js", OptunaScript, {}),
        (rf"/{MOUNT}/([^/]+)/dashboard(?:/.*)?", OptunaPage, {}),
        (rf"/{MOUNT}/[^/]+(?:/.*)?", web.FallbackHandler, {"fallback": mount.container}),
    ]
