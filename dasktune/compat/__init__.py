"""Every Optuna and Dask internal dasktune relies on, in one place.

Nothing else in the package touches a private name of Optuna or distributed: each use in
this package says why there is no public way, and ``tests/test_compat.py`` checks each one
by name, so an Optuna or Dask release that changes one fails that test (naming it) rather
than a user's run. Its modules, by what they reach into:

- :mod:`~dasktune.compat.optuna_runs`: how Optuna runs a trial (a study's storage and ids,
  ``study.stop()``, tell, the pruners' and samplers' inferred state);
- :mod:`~dasktune.compat.optuna_storages`: inside Optuna's storages;
- :mod:`~dasktune.compat.dask`: inside distributed (workers, spans, the dashboard's pages);
- :mod:`~dasktune.compat.optuna_dashboard`: optuna-dashboard's browser script;
- :mod:`~dasktune.compat.python`: CPython's own (a deadlock of Python 3.11 to work around).

The rest of dasktune imports this package, never its modules, and uses ``compat.<name>``.
The supported versions are checked when ``dasktune`` is imported (``dasktune/__init__.py``),
before anything here is.
"""

from __future__ import annotations

import importlib
from typing import Any
from typing import TYPE_CHECKING

from dasktune.compat.dask import add_dashboard_page
from dasktune.compat.dask import dashboard_templates
from dasktune.compat.dask import dashboard_variables
from dasktune.compat.dask import dasktune_span
from dasktune.compat.dask import forget_released_groups
from dasktune.compat.dask import imported_as_preload
from dasktune.compat.dask import results_held
from dasktune.compat.dask import SPAN_ID
from dasktune.compat.dask import worker_threads_and_resources
from dasktune.compat.optuna_dashboard import optuna_dashboard_bundle
from dasktune.compat.optuna_dashboard import OPTUNA_DASHBOARD_ROOT_PATHS
from dasktune.compat.optuna_runs import give_cmaes_source_trials
from dasktune.compat.optuna_runs import new_trial
from dasktune.compat.optuna_runs import on_stop
from dasktune.compat.optuna_runs import optimize_loop
from dasktune.compat.optuna_runs import pruner_waits_for_a_complete_trial
from dasktune.compat.optuna_runs import resolve_pruner_resources
from dasktune.compat.optuna_runs import stop_requested
from dasktune.compat.optuna_runs import study_id
from dasktune.compat.optuna_runs import study_storage
from dasktune.compat.optuna_runs import tell
from dasktune.compat.optuna_runs import trial_id
from dasktune.compat.optuna_storages import close_journal_backend
from dasktune.compat.optuna_storages import IN_MEMORY_LOGGER
from dasktune.compat.optuna_storages import journal_created_trial
from dasktune.compat.optuna_storages import quiet_study_creation
from dasktune.compat.optuna_storages import rdb_add_trials
from dasktune.compat.python import guard_current_frames

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.study._frozen import FrozenStudy

__all__ = [
    "ArtifactStore",
    "BaseHeartbeat",
    "FrozenStudy",
    "close_journal_backend",
    "journal_created_trial",
    "SPAN_ID",
    "dasktune_span",
    "forget_released_groups",
    "give_cmaes_source_trials",
    "guard_current_frames",
    "OPTUNA_DASHBOARD_ROOT_PATHS",
    "add_dashboard_page",
    "dashboard_templates",
    "dashboard_variables",
    "imported_as_preload",
    "IN_MEMORY_LOGGER",
    "results_held",
    "new_trial",
    "optimize_loop",
    "optuna_dashboard_bundle",
    "pruner_waits_for_a_complete_trial",
    "quiet_study_creation",
    "resolve_pruner_resources",
    "rdb_add_trials",
    "on_stop",
    "stop_requested",
    "study_id",
    "study_storage",
    "tell",
    "trial_id",
    "worker_threads_and_resources",
]

#: Classes imported on first use, so that importing this module costs nothing (``import
#: dasktune`` and the command line must not pay Optuna's import time):
_LAZY = {
    # The protocol every Optuna artifact store implements; Optuna exports the stores, not it.
    "ArtifactStore": "optuna.artifacts._protocol",
    # Optuna recognises a storage with heartbeats by this base class (RDBStorage and
    # GrpcStorageProxy derive from it too); it is not exported publicly.
    "BaseHeartbeat": "optuna.storages._heartbeat",
    # What BaseStorage.get_all_studies returns; Optuna's own storages import it from here.
    "FrozenStudy": "optuna.study._frozen",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
