"""How Optuna runs a trial, as dasktune's runners and driver do it too: the study's storage
and ids, ``study.stop()``, the optimization loop's per-thread state, tell, and what the
pruners and samplers infer or take as they run. Optuna's own ``Study.optimize``, storages
and samplers use these; Optuna offers no public accessor for them."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import contextlib
from typing import Any
from typing import TYPE_CHECKING
import weakref

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage


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


def on_stop(study: optuna.Study, then: Callable[[], object]) -> None:
    """Call ``then()`` each time ``study.stop()`` is called on this object, once Optuna's
    own ``stop`` has returned. Optuna's only sets a flag (``Study._stop_flag``) that
    ``Study.optimize`` reads between trials; a runner's ``then`` tells the scheduler at
    once, not after the stopping trial. An instance attribute: the ``Study`` that an
    objective's ``trial.study`` is, and no other.

    The replacement holds the study weakly. A bound ``study.stop`` kept in the study's own
    ``__dict__`` would be a reference cycle, and the garbage collector would then free the
    study's ``threading.local`` (``Study._thread_local``) wherever it runs: on CPython 3.11,
    inside Dask's worker profiler's ``sys._current_frames()``, that would deadlock the
    worker's event loop but for :func:`~dasktune.compat.guard_current_frames`; and the study
    would outlive its run until a collection."""
    stop, study_ref = type(study).stop, weakref.ref(study)

    def stopping() -> None:
        this = study_ref()
        if this is not None:  # it is: stopping is called through it
            stop(this)
        then()

    study.stop = stopping  # type: ignore[method-assign]


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


def new_trial(
    study: optuna.Study, trial_id: int, trial_class: type[optuna.Trial] | None = None
) -> optuna.Trial:
    """The ``optuna.Trial`` (or ``trial_class``, a subclass) for a trial that was already
    created RUNNING (claimed on the scheduler): what ``Study.ask`` does once it has an id.
    The study's per-thread trial cache is cleared first, as ``ask`` does, so the sampler
    reads the study as of now (``Study._thread_local.cached_all_trials``)."""
    import optuna

    study._thread_local.cached_all_trials = None
    return (trial_class or optuna.Trial)(study, trial_id)


def pruner_waits_for_a_complete_trial(pruner: optuna.pruners.BasePruner) -> bool:
    """Whether ``pruner`` still has to infer its resources from a COMPLETE trial, and so
    prunes nothing before one ends: a ``SuccessiveHalvingPruner`` whose ``min_resource`` is
    ``"auto"`` and not yet estimated (``_min_resource is None``), or a ``HyperbandPruner``
    whose ``max_resource`` is ``"auto"`` and whose brackets are not laid out yet
    (``_max_resource``, ``_pruners``). Neither pruner says so publicly."""
    from optuna.pruners import HyperbandPruner
    from optuna.pruners import SuccessiveHalvingPruner

    if isinstance(pruner, SuccessiveHalvingPruner):
        return pruner._min_resource is None
    if isinstance(pruner, HyperbandPruner):
        return pruner._max_resource == "auto" and not pruner._pruners
    return False


def resolve_pruner_resources(pruner: optuna.pruners.BasePruner, max_resource: int) -> None:
    """Give a pruner that waits for a COMPLETE trial (see
    :func:`pruner_waits_for_a_complete_trial`) what it would infer from one whose last
    report was at step ``max_resource - 1``: with Optuna's own formulas, ``min_resource =
    max(last_step // 100, 1)`` for successive halving, ``max_resource = last_step + 1`` for
    Hyperband (which then lays out its brackets at its next decision). Optuna offers no way
    to set them once the pruner is made; a pruner that does not wait is left as it is."""
    if not pruner_waits_for_a_complete_trial(pruner):
        return
    from optuna.pruners import SuccessiveHalvingPruner

    if isinstance(pruner, SuccessiveHalvingPruner):
        pruner._min_resource = max((max_resource - 1) // 100, 1)
    else:
        pruner._max_resource = max_resource  # type: ignore[attr-defined]


def give_cmaes_source_trials(
    sampler: optuna.samplers.BaseSampler, trials: list[optuna.trial.FrozenTrial]
) -> bool:
    """Make ``trials`` the ``source_trials`` of a ``CmaEsSampler`` (its warm start), as if
    passed when it was made, if it was made with none and with nothing that excludes them
    (``x0``, ``sigma0``, separable CMA-ES: Optuna raises for those), and ``trials`` is not
    empty. Whether it did. The argument is kept as ``_source_trials`` and read at the
    sampler's first sampling; there is no setter."""
    from optuna.samplers import CmaEsSampler

    if not isinstance(sampler, CmaEsSampler) or not trials or sampler._source_trials is not None:
        return False
    if sampler._x0 is not None or sampler._sigma0 is not None or sampler._use_separable_cma:
        return False
    sampler._source_trials = trials
    return True
