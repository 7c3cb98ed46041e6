"""dasktune: distributed hyperparameter tuning on a Dask cluster, built on Optuna.

The public names are imported on first use, so that ``import dasktune`` — which every worker
does when it unpickles a storage, and the ``dasktune`` command before it parses its
arguments — costs neither Optuna's nor distributed's import time until they are needed.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version
from typing import Any
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: The versions ``pyproject.toml`` admits and CI tests, oldest and first unsupported.
SUPPORTED_VERSIONS = {
    "optuna": ("4.5", "6"),
    "distributed": ("2024.8", None),
    "dask": ("2024.8", None),
}


def _check_versions() -> None:
    """Fail at import, naming the supported range, rather than later in a user's run."""
    from packaging.version import Version

    for package, (oldest, first_unsupported) in SUPPORTED_VERSIONS.items():
        try:
            found = Version(version(package))
        except PackageNotFoundError:
            continue  # its import fails with Python's own message
        if found < Version(oldest) or (
            first_unsupported is not None and found >= Version(first_unsupported)
        ):
            wanted = f">={oldest}" + ("" if first_unsupported is None else f",<{first_unsupported}")
            raise ImportError(
                f"dasktune {__version__} supports {package}{wanted}, but {package} {found} is "
                f"installed; install a supported version: pip install '{package}{wanted}'."
            )


_check_versions()

from dasktune import compat  # noqa: E402 - after the version check, which it relies on

if compat.imported_as_preload():
    # Bokeh apps join a scheduler's dashboard only before it starts, which is now.
    from dasktune.dashboard import app

    app.register()

_EXPORTS = {
    "DaskStorage": "dasktune.storage.proxy",
    "StoragePlugin": "dasktune.storage.plugin",
    "dask_setup": "dasktune.storage.plugin",
    "attach": "dasktune.submit.driver",
    "optimize": "dasktune.submit.driver",
    "Run": "dasktune.submit.driver",
    "ParallelSampler": "dasktune.samplers.parallel",
    "create_study": "dasktune.study",
    "devices": "dasktune.submit.devices",
    "warm_start": "dasktune.warm_starts",
}

__all__ = [*sorted(_EXPORTS), "artifacts", "checkpoints", "tune", "__version__"]

if TYPE_CHECKING:  # what the lazy names below are (``as``: exported, for type checkers)
    from dasktune import artifacts as artifacts
    from dasktune import checkpoints as checkpoints
    from dasktune import tune as tune
    from dasktune.storage.plugin import dask_setup as dask_setup
    from dasktune.storage.plugin import StoragePlugin as StoragePlugin
    from dasktune.samplers.parallel import ParallelSampler as ParallelSampler
    from dasktune.storage.proxy import DaskStorage as DaskStorage
    from dasktune.study import create_study as create_study
    from dasktune.submit.driver import attach as attach
    from dasktune.submit.driver import optimize as optimize
    from dasktune.submit.devices import devices as devices
    from dasktune.submit.driver import Run as Run
    from dasktune.warm_starts import warm_start as warm_start


def __getattr__(name: str) -> Any:
    if name in ("tune", "artifacts", "checkpoints"):  # subpackages, imported on first use
        return importlib.import_module(f"dasktune.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # the next lookup is an ordinary attribute
        return value
    raise AttributeError(f"module 'dasktune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
