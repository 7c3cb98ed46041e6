"""Loading ``MODULE:OBJECTIVE`` for ``dasktune run``."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
import sys
from types import ModuleType
from typing import Any

import cloudpickle

from dasktune.cli.connect import CommandError


def load_objective(spec: str) -> Any:
    """The callable ``spec`` names: ``path/to/file.py:name`` or ``package.module:name``.

    Its module travels to the workers by value (cloudpickle), so a file that exists only
    where the command runs works on any cluster; what the module imports must be installed
    on the workers.
    """
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise CommandError(
            f"objective {spec!r} must be MODULE:NAME, e.g. train.py:objective or "
            "mypackage.tuning:objective."
        )
    try:
        module = _import(module_name)
    except Exception as e:  # whatever the user's module raised while importing
        raise CommandError(
            f"cannot import {module_name!r} for objective {spec!r}: "
            f"{type(e).__name__}: {e}"
        ) from None
    objective = getattr(module, attr, None)
    if objective is None:
        raise CommandError(f"module {module_name!r} has no attribute {attr!r}.")
    if not callable(objective):
        raise CommandError(f"{spec!r} is a {type(objective).__name__}, not a callable objective.")
    cloudpickle.register_pickle_by_value(module)
    try:
        return ShippedObjective(objective)
    except Exception as e:  # whatever pickling the objective's globals raised
        raise CommandError(
            f"objective {spec!r} cannot be sent to the workers: {type(e).__name__}: {e}. "
            "Keep unpicklable objects (locks, open files, clients) out of what it refers to."
        ) from None


class ShippedObjective:
    """An objective that travels by value: pickled with cloudpickle once, here, so neither
    the scheduler (which unpickles task graphs) nor a worker needs its module."""

    def __init__(self, objective: Callable[..., Any]) -> None:
        self.payload = cloudpickle.dumps(objective)
        self.objective = objective

    def __getstate__(self) -> bytes:
        payload: bytes = self.payload
        return payload

    def __setstate__(self, payload: bytes) -> None:
        self.payload = payload
        self.objective = cloudpickle.loads(payload)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.objective(*args, **kwargs)


def _import(name: str) -> ModuleType:
    if name.endswith(".py") or "/" in name:
        path = Path(name).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no file {path}")
        # A unique module name: the file's objects must not be mistaken on the workers for
        # those of an installed module that happens to share its stem.
        spec = importlib.util.spec_from_file_location(f"dasktune_objective_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # cloudpickle pickles by value only what is imported
        spec.loader.exec_module(module)
        return module
    sys.path.insert(0, "")  # as `python -m` does: modules of the working directory import
    return importlib.import_module(name)
