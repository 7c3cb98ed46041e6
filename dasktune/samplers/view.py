"""The study as the Gaussian process sees it: a private in-memory copy of the trials it
models, built through Optuna's public API for every GP sampling that cannot use the study
itself: on Optuna before 4.9 (no running trials in its GP), with constraints, in a trust
region, or when other processes are sampling at the same moment (``ParallelSampler``).

Optuna's ``GPSampler`` reads a study's trials as they are. Two things are better shown to it
another way, and a copy is the one public way to do that:

- **The values, capped at their median when the bad ones have a heavy tail**
  (:func:`shown_values`). Tuning objectives often do: a diverging kernel, a learning rate
  that blows up, Rosenbrock's walls. The GP standardizes the values, so a few huge ones
  flatten everything else to noise and it stops telling good from better: on the SVR
  problem one sigmoid trial at 9e8 left every other value at about 0 after standardizing,
  and Optuna's GP on the study itself sampled ``epsilon`` at one of its bounds in 97% of
  its trials and ended at 0.497 (the optimum is 0.483) on 3 seeds of 3. Capped at the
  median, the worse half is one flat plateau and the better half keeps its real
  differences (TPE is unaffected by such tails because it only ranks values). But where
  the values have no such tail (Hartmann-6, Ackley-5: the long side of their values is the
  good one, down the funnel to the optimum) the cap only hides the shape of the worse half,
  and it cost a lot at 32 trials in flight (median regret ratio 5.2 against 0.02 on
  Hartmann-6, 1.4 against 1.1 on Ackley-5). So the values are capped only when they spread
  further above their median than below it (:func:`heavy_tailed`).
- **The running trials**, on Optuna releases whose ``GPSampler`` does not model them yet
  (before 4.9): with one objective and no constraints each running trial is shown as
  complete, at the best value so far (the constant liar Optuna 4.8 adopted), so that P
  trials in flight are not P samples of the same point. On 4.9 and later they are shown as
  running, and Optuna conditions its acquisition on them (qLogEI in 5.x).

Constraints are copied in the format every supported Optuna reads
(``system_attrs["constraints"]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import create_trial
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
from packaging.version import Version

from dasktune import compat
from dasktune.samplers.region import inside

#: The first Optuna whose GPSampler takes running trials into its acquisition for one and
#: for several objectives, with and without constraints (optuna#6430, #6481).
GP_MODELS_RUNNING = Version(optuna.__version__) >= Version("4.9")
#: Optuna 5 reads constraints from the trials (``FrozenTrial.constraints``, written by
#: ``Trial.set_constraint`` or a ``constraints_func``); before, a sampler took them into
#: account only if it had a ``constraints_func`` of its own.
GP_READS_CONSTRAINTS = hasattr(FrozenTrial, "constraints")

#: The most running trials shown to the GP (the latest sampled): its acquisition's cost grows
#: with them, about 20 ms each on one core, 2.5 s at 127 in flight.
MAX_RUNNING = 128

_CONSTRAINTS = "constraints"
_STUDY_NAME = "dasktune-parallel-sampler-view"


def constraint_values(trial: FrozenTrial) -> list[float] | None:
    """A trial's constraint values, in either of Optuna's formats (a list under
    ``"constraints"``, written by a sampler's ``constraints_func``, or one key per
    constraint, ``"constraints:<name>"``, written by Optuna 5's ``Trial.set_constraint``);
    ``None`` if it has none."""
    attrs = trial.system_attrs
    found = {str(i): float(v) for i, v in enumerate(attrs.get(_CONSTRAINTS) or ())}
    prefix = f"{_CONSTRAINTS}:"
    found.update({key[len(prefix):]: float(v) for key, v in attrs.items() if key.startswith(prefix)})
    return [found[key] for key in sorted(found)] if found else None


def cap_at_median(values: np.ndarray) -> np.ndarray:
    """Values to minimize, with everything worse than their median set to the median (and
    infinities to the finite extremes first)."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return np.zeros_like(values)
    values = np.clip(np.nan_to_num(values, posinf=finite.max(), neginf=finite.min()), finite.min(), finite.max())
    capped: np.ndarray = np.minimum(values, np.median(values))
    return capped


def heavy_tailed(values: np.ndarray) -> bool:
    """Whether values to minimize spread further above their median than below it: a tail
    of bad values (a value worse than the median by more than the best is better)."""
    if np.any(values == np.inf):
        return True  # as heavy as a tail gets
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return False
    median = float(np.median(finite))
    return float(finite.max()) - median > median - float(finite.min())


def shown_values(values: np.ndarray) -> np.ndarray:
    """The values to minimize as the GP is shown them: capped at their median
    (:func:`cap_at_median`) if they are :func:`heavy_tailed`, else as they are."""
    return cap_at_median(values) if heavy_tailed(values) else values


# The copies are made once per GP sampling: Optuna's note of each would fill a log.
compat.quiet_study_creation(_STUDY_NAME)


def model_study(
    study: optuna.Study,
    trial: FrozenTrial,
    search_space: dict[str, BaseDistribution],
    sampler: optuna.samplers.BaseSampler,
    assumed: Sequence[dict[str, Any]] = (),
    region: dict[str, BaseDistribution] | None = None,
) -> tuple[optuna.Study, FrozenTrial]:
    """A new in-memory study, sampled by ``sampler``, holding what the GP should model of
    ``study`` in ``search_space``, and the running trial of it to sample for ``trial``.
    ``assumed``: parameters taken to be running too (those other processes are likely
    sampling at this moment, see ``ParallelSampler``). ``region``: only the trials inside
    this trust region (:mod:`dasktune.samplers.region`), with its narrower distributions."""
    def keep(params: dict[str, Any]) -> bool:
        return search_space.keys() <= params.keys() and (region is None or inside(params, region))

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if keep(t.params)]
    running = [t.params for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
               if t.number != trial.number and keep(t.params)][-MAX_RUNNING:] + [p for p in assumed if keep(p)]
    distributions = search_space if region is None else region
    multi = len(study.directions) > 1
    constraints = [constraint_values(t) for t in complete]
    constrained = any(c is not None for c in constraints)
    # Every objective minimized: the copy has one direction for all.
    signs = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions])
    values = signs * np.array([t.values for t in complete], dtype=float).reshape(len(complete), len(signs))
    if not multi:
        values[:, 0] = shown_values(values[:, 0])

    def copy(params: dict[str, Any], state: TrialState, row: Sequence[float] | None,
             constraint: list[float] | None) -> FrozenTrial:
        return create_trial(
            state=state,
            params={name: params[name] for name in search_space},
            distributions=distributions,
            values=None if row is None else [float(v) for v in row],
            system_attrs={} if constraint is None else {_CONSTRAINTS: constraint},
        )

    width = max((len(c) for c in constraints if c is not None), default=0)
    trials = [copy(t.params, TrialState.COMPLETE, row, (c or [0.0] * width) if constrained else None)
              for t, row, c in zip(complete, values, constraints)]
    if GP_MODELS_RUNNING:
        trials += [copy(params, TrialState.RUNNING, None, None) for params in running]
    elif not multi and not constrained and len(values):
        best = [float(values[:, 0].min())]
        trials += [copy(params, TrialState.COMPLETE, best, None) for params in running]
    # Without an Optuna that models running trials, several objectives or constraints get no
    # liar: the duplicate guard of ParallelSampler keeps those trials apart.
    storage = InMemoryStorage()
    storage.create_new_study(directions=[StudyDirection.MINIMIZE] * len(signs), study_name=_STUDY_NAME)
    copied = optuna.load_study(study_name=_STUDY_NAME, storage=storage, sampler=sampler)
    copied.add_trials(trials)
    copied.ask()
    return copied, copied.get_trials(deepcopy=False)[-1]


def to_internal(params: dict[str, Any], search_space: dict[str, BaseDistribution]) -> tuple[float, ...]:
    """``params`` as one comparable vector (Optuna's internal representation)."""
    return tuple(float(search_space[name].to_internal_repr(params[name])) for name in sorted(search_space))
