"""optuna-dashboard's browser script, served under a mount point.

Its Python side is public (``optuna_dashboard.wsgi``); its browser side assumes it is served
at the root of a server: the page loads ``/static/bundle.js``, the script's router matches
``/dashboard/...`` and it asks for the paths below from the server's root. The JupyterLab
extension, which serves it under a base URL, builds its own script; the package ships none
that takes a base URL. So dasktune serves its own page for the script, which rewrites the
paths below under the mount point (``dashboard/static/optuna-mount.js``), and this one
change to the script's router prefix.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


#: Paths optuna-dashboard's script asks for from the server's root (API calls, the CSV
#: download link, artifact images).
OPTUNA_DASHBOARD_ROOT_PATHS = ("/api/", "/csv/", "/artifacts/")
#: The router prefix compiled into optuna-dashboard's script ...
_OPTUNA_ROUTER_PREFIX = 'url_prefix:"/dashboard"'
#: ... and what dasktune serves instead: the mount point the page sets, then the same prefix.
_MOUNTED_ROUTER_PREFIX = 'url_prefix:(self.DASKTUNE_OPTUNA_PREFIX||"")+"/dashboard"'


def optuna_dashboard_script() -> Path:
    """The path of optuna-dashboard's compiled browser script (package data)."""
    return Path(str(resources.files("optuna_dashboard") / "public" / "bundle.js"))


def optuna_dashboard_bundle() -> bytes:
    """optuna-dashboard's browser script, its router prefixed by the mount point that the
    page sets in ``window.DASKTUNE_OPTUNA_PREFIX``.

    Raises:
        RuntimeError: The installed optuna-dashboard compiles its router prefix otherwise
            (a release changed it): naming the version and what is supported.
    """
    import optuna_dashboard

    script = optuna_dashboard_script().read_text(encoding="utf-8")
    if script.count(_OPTUNA_ROUTER_PREFIX) != 1:
        raise RuntimeError(
            f"optuna-dashboard {optuna_dashboard.__version__}'s script does not set its router "
            f"prefix as {_OPTUNA_ROUTER_PREFIX!r} (0.21 does): dasktune cannot mount this "
            "version under /tuning; install the release dasktune is tested with: "
            "pip install 'optuna-dashboard==0.21.*'."
        )
    return script.replace(_OPTUNA_ROUTER_PREFIX, _MOUNTED_ROUTER_PREFIX).encode("utf-8")
