"""Every Optuna and Dask internal dasktune relies on, in one place.

Nothing else in the package touches a private name of Optuna or distributed: each use below
says why there is no public way, and ``tests/test_compat.py`` checks each one by name, so an
Optuna or Dask release that changes one fails that test (naming it) rather than a user's run.

The supported versions are checked when ``dasktune`` is imported (``dasktune/__init__.py``),
before anything here is.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
import contextlib
import importlib
from importlib import resources
from pathlib import Path
import sys
from typing import Any
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed import Client
    from distributed import Scheduler
    import optuna
    from optuna.storages import BaseStorage
    from optuna.storages import JournalStorage
    from optuna.storages import RDBStorage
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.study._frozen import FrozenStudy

__all__ = [
    "BaseHeartbeat",
    "FrozenStudy",
    "close_journal_backend",
    "journal_created_trial",
    "SPAN_ID",
    "dasktune_span",
    "forget_released_groups",
    "OPTUNA_DASHBOARD_ROOT_PATHS",
    "add_dashboard_page",
    "dashboard_templates",
    "dashboard_variables",
    "imported_as_preload",
    "results_held",
    "new_trial",
    "optimize_loop",
    "optuna_dashboard_bundle",
    "rdb_add_trials",
    "stop_requested",
    "study_id",
    "study_storage",
    "tell",
    "trial_id",
]

#: Classes imported on first use, so that importing this module costs nothing (``import
#: dasktune`` and the command line must not pay Optuna's import time):
_LAZY = {
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


# -- Optuna ------------------------------------------------------------------------------
# Optuna's own storages, samplers and ``Study.optimize`` use these; Optuna offers no public
# accessor for them.


def study_storage(study: optuna.Study) -> BaseStorage:
    """The storage a study was created with (``Study._storage``)."""
    return study._storage


def study_id(study: optuna.Study | Any) -> int:
    """The storage's id of a ``Study`` or ``FrozenStudy`` (``_study_id``)."""
    return study._study_id


def trial_id(trial: optuna.trial.FrozenTrial | optuna.Trial) -> int:
    """The storage's id of a ``FrozenTrial`` or ``Trial`` (``_trial_id``); the public
    ``number`` is per study, and every storage call takes this id."""
    return trial._trial_id


def stop_requested(study: optuna.Study) -> bool:
    """Whether ``study.stop()`` was called (``Study._stop_flag``)."""
    return bool(study._stop_flag)


@contextlib.contextmanager
def optimize_loop(study: optuna.Study) -> Iterator[None]:
    """Mark this thread as inside an optimization loop, as ``Study.optimize`` does, so that
    ``study.stop()`` may be called from an objective or a callback
    (``Study._thread_local.in_optimize_loop``)."""
    study._thread_local.in_optimize_loop = True
    try:
        yield
    finally:
        study._thread_local.in_optimize_loop = False


def tell(
    study: optuna.Study,
    trial: optuna.Trial | int,
    values: Any = None,
    state: optuna.trial.TrialState | None = None,
) -> None:
    """Tell a trial's outcome as ``Study.optimize`` does
    (``optuna.study._tell._tell_with_warning``): ``Study.tell`` would also deep-copy the
    trial to return it, which a runner telling thousands of trials a second never reads."""
    from optuna.study._tell import _tell_with_warning

    _tell_with_warning(study, trial, value_or_values=values, state=state, suppress_warning=True)


def new_trial(study: optuna.Study, trial_id: int) -> optuna.Trial:
    """The ``optuna.Trial`` for a trial that was already created RUNNING (claimed on the
    scheduler): what ``Study.ask`` does once it has an id. The study's per-thread trial
    cache is cleared first, as ``ask`` does, so the sampler reads the study as of now
    (``Study._thread_local.cached_all_trials``)."""
    import optuna

    study._thread_local.cached_all_trials = None
    return optuna.Trial(study, trial_id)


#: The logger through which ``InMemoryStorage.create_new_study`` announces every study it
#: creates at INFO (that of its private module ``optuna.storages._in_memory``).
IN_MEMORY_LOGGER = "optuna.storages._in_memory"


def quiet_study_creation(study_name: str) -> None:
    """Drop ``InMemoryStorage``'s "A new study created" message for studies called
    ``study_name`` (private copies made once per sampling); every other message stays. If
    Optuna moves the logger, the filter is inert and the message shows again."""
    import logging

    class Quiet(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return study_name not in record.getMessage()

    logging.getLogger(IN_MEMORY_LOGGER).addFilter(Quiet())


def journal_created_trial(storage: BaseStorage, read_back: bool) -> int | None:
    """The id of the last trial this ``JournalStorage`` object created (``None`` for any
    other storage), as it knows it, or with ``read_back`` once it has read what was appended
    since (a backend call).

    A journal append whose reply was lost (Redis killed the connection after writing) may or
    may not have landed, and Optuna's ``create_new_trial`` raises either way: this is how
    the journal itself learns which trial an append created (``_sync_with_backend``, then
    the replay's ``_last_created_trial_id_by_this_process``, under its ``_thread_lock``),
    with no public way to ask. -1 before it created any."""
    from optuna.storages import JournalStorage

    if not isinstance(storage, JournalStorage):
        return None
    with storage._thread_lock:
        if read_back:
            storage._sync_with_backend()
        # (Set by the first trial this object creates, or when it is unpickled.)
        created: int = getattr(storage._replay_result, "_last_created_trial_id_by_this_process", -1)
    return created


def close_journal_backend(storage: JournalStorage) -> None:
    """Close the Redis connections of a ``JournalStorage`` over Redis
    (``JournalStorage._backend``, ``JournalRedisBackend._redis``): Optuna offers no way to
    close a storage, and a scheduler that drops a storage it no longer needs must not keep
    its connections. A journal file holds nothing open between operations."""
    from optuna.storages.journal import JournalRedisBackend

    backend = storage._backend
    if isinstance(backend, JournalRedisBackend):
        backend._redis.close()
        backend._redis.connection_pool.disconnect()


def rdb_add_trials(
    storage: RDBStorage,
    study_id: int,
    trials: Iterable[optuna.trial.FrozenTrial],
    flush_every: int = 100,
) -> None:
    """Add copies of ``trials`` (all from one study) to study ``study_id`` of an
    ``RDBStorage``, in one transaction: what ``create_new_trial(study_id, template_trial=t)``
    writes for each ``t``, numbered on from the study's last trial.

    Optuna writes a trial per transaction, a dozen queries each (one checks the parameter's
    distribution against the study's earlier trials), so ``optuna.copy_study`` took minutes
    for thousands of trials on SQLite; here the rows are inserted in batches of
    ``flush_every`` trials, as ``trials`` is iterated (a progress bar around it moves as
    rows are written), and committed once: an error leaves none of them. Optuna has no
    public bulk write, so this builds the rows of its ORM models
    (``optuna.storages._rdb.models``) in the session ``_create_scoped_session`` gives
    (which commits, or rolls back and raises ``StorageInternalError``, as Optuna does).
    """
    import json

    import sqlalchemy
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    def row(number: int, trial: optuna.trial.FrozenTrial) -> models.TrialModel:
        model = models.TrialModel(
            study_id=study_id,
            number=number,
            state=trial.state,
            datetime_start=trial.datetime_start,
            datetime_complete=trial.datetime_complete,
        )
        model.params = [
            models.TrialParamModel(
                param_name=name,
                param_value=trial.distributions[name].to_internal_repr(value),
                distribution_json=distribution_to_json(trial.distributions[name]),
            )
            for name, value in trial.params.items()
        ]
        values = []
        for objective, value in enumerate(trial.values or ()):
            stored, kind = models.TrialValueModel.value_to_stored_repr(value)
            values.append(models.TrialValueModel(objective=objective, value=stored, value_type=kind))
        model.values = values
        intermediate = []
        for step, reported in trial.intermediate_values.items():
            kept, how = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(reported)
            intermediate.append(
                models.TrialIntermediateValueModel(
                    step=step, intermediate_value=kept, intermediate_value_type=how
                )
            )
        model.intermediate_values = intermediate
        model.user_attributes = [
            models.TrialUserAttributeModel(key=k, value_json=json.dumps(v))
            for k, v in trial.user_attrs.items()
        ]
        model.system_attributes = [
            models.TrialSystemAttributeModel(key=k, value_json=json.dumps(v))
            for k, v in trial.system_attrs.items()
        ]
        return model

    with _create_scoped_session(storage.scoped_session) as session:
        # The study's row lock, as create_new_trial takes it: trial numbers stay unique
        # while another process adds trials.
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        number = (
            session.query(sqlalchemy.func.count(models.TrialModel.trial_id))
            .filter(models.TrialModel.study_id == study_id)
            .scalar()
        )
        batch = []
        for trial in trials:
            batch.append(row(number, trial))
            number += 1
            if len(batch) == flush_every:
                session.add_all(batch)
                session.flush()
                batch = []
        session.add_all(batch)


# -- distributed -------------------------------------------------------------------------


def imported_as_preload() -> bool:
    """Whether distributed is importing ``dasktune`` right now as a preload module
    (``dask scheduler --preload dasktune``).

    Bokeh apps can be added to a scheduler's dashboard only before it starts, and a
    scheduler imports its preloads just before that (``dask scheduler`` even earlier, when
    it checks its options), but calls their ``dask_setup`` after; distributed passes no hint
    to the import itself. So the import looks for ``distributed.preloading`` on the stack.
    (A worker's preload would add the app to a dashboard it does not serve: harmless.)
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == "distributed.preloading":
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


#: The Dask span every dasktune task is computed in, for as long as the scheduler runs.
SPAN_ID = "dasktune"


@contextlib.contextmanager
def dasktune_span() -> Iterator[None]:
    """Tasks submitted inside are computed in the one span ``dasktune`` (its id fixed), unless
    the caller is already in a span of their own (``distributed.span``), which they keep.

    Dask puts every computation outside a span in a new ``default`` span and keeps each span,
    and the task groups it refers to, for the scheduler's lifetime (dask/distributed#7977):
    about 2 KiB for every ``optimize`` run, on a scheduler that runs for months. One fixed
    span instead is one record, which :func:`forget_released_groups` keeps small, and it
    shows dasktune's work as one line in the dashboard's fine performance metrics.
    ``distributed.span`` always makes a new id, so the annotation is written as it writes it
    (``{"name": tags, "ids": ids}``; no public way to reuse an id)."""
    from dask.base import annotate
    from dask.base import get_annotations

    if "span" in get_annotations():
        yield
        return
    with annotate(span={"name": (SPAN_ID,), "ids": (SPAN_ID,)}):
        yield


def forget_released_groups(scheduler: Scheduler) -> int:
    """Let the ``dasktune`` span (:func:`dasktune_span`) drop the task groups the scheduler
    has forgotten (the tasks of ended runs); how many it dropped.

    A span keeps every task group it was given, for its totals; those of a run that ended
    are of no further use, and kept they would grow the span with every run. The span's
    cumulative worker metrics (what the dashboard shows) are kept apart from the groups and
    stay. ``SpansSchedulerExtension.spans`` and ``Span.groups`` are not public."""
    extension = scheduler.extensions.get("spans")
    span = extension.spans.get(SPAN_ID) if extension is not None else None
    if span is None:
        return 0
    live = {group for group in span.groups if scheduler.task_groups.get(group.name) is group}
    dropped = len(span.groups) - len(live)
    if dropped:
        span.groups = live
    return dropped


def results_held(client: Client, keys: list[str]) -> list[str]:
    """Those of the task ``keys`` whose results a worker holds, as the scheduler sees them
    now (its ``who_has`` handler). ``Client.who_has`` takes futures only, and a future kept
    to ask about its task would keep the result it asks about."""
    from distributed.utils import sync

    scheduler, loop = client.scheduler, client.loop
    assert scheduler is not None and loop is not None, "a running client has both"

    async def ask() -> Any:
        return await scheduler.who_has(keys=keys)

    held: dict[str, list[str]] = sync(loop, ask)
    return [key for key, workers in held.items() if workers]


def dashboard_variables(scheduler: Scheduler) -> dict[str, Any]:
    """What every page of ``scheduler``'s dashboard renders its frame with: ``pages`` (the
    navigation bar), ``plots`` (its "More..." menu), ``jupyter``.

    distributed computes them once per scheduler (``template_variables`` in
    ``distributed/dashboard/scheduler.py`` is memoized) and its pages share these very lists;
    there is no public accessor.
    """
    from distributed.dashboard.scheduler import template_variables

    variables: dict[str, Any] = template_variables(scheduler)
    return variables


def add_dashboard_page(scheduler: Scheduler, page: str, replaces_plot: str | None = None) -> None:
    """Add ``page`` (a path relative to the dashboard's root) to the navigation bar of
    ``scheduler``'s dashboard, and point the "More..." entry of the Bokeh app
    ``replaces_plot`` (e.g. ``"individual-tuning"``) at it, so that both open one page.

    Changing :func:`dashboard_variables` in place changes every page served from now on:
    distributed has no public way to add a page to its bar.
    """
    variables = dashboard_variables(scheduler)
    if page not in variables["pages"]:
        variables["pages"].append(page)
    for plot in variables["plots"]:
        if plot["url"] == replaces_plot:
            plot["url"] = page


def dashboard_templates() -> str:
    """The directory of distributed's Jinja2 templates of the dashboard: ``base.html`` is the
    navigation bar and page frame every dashboard page has. Its Tornado handlers find them
    through ``RequestHandler.get_template_path()``; its Bokeh pages load them with a Jinja2
    environment of their own, as dasktune's pages do. Not a public API of distributed."""
    from distributed.http.utils import RequestHandler

    path: str = RequestHandler.get_template_path(None)  # type: ignore[arg-type]  # no state used
    return path


# -- optuna-dashboard --------------------------------------------------------------------
# Its Python side is public (``optuna_dashboard.wsgi``); its browser side assumes it is served
# at the root of a server: the page loads ``/static/bundle.js``, the script's router matches
# ``/dashboard/...`` and it asks for the paths below from the server's root. The JupyterLab
# extension, which serves it under a base URL, builds its own script; the package ships none
# that takes a base URL. So dasktune serves its own page for the script, which rewrites the
# paths below under the mount point (``dashboard/static/optuna-mount.js``), and this one
# change to the script's router prefix.

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
