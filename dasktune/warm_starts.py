"""Warm starts: a new study seeded with the completed trials of earlier ones.

What Ray Tune does with ``points_to_evaluate`` and ``evaluated_rewards`` (ray#18847), in
Optuna's terms: the earlier trials are added to the study (``Study.add_trials``), so every
sampler that learns from the study's trials (TPE, GP, ``ParallelSampler``) starts from them,
and a ``CmaEsSampler`` given none of its own gets them as its ``source_trials`` (Optuna's
warm-starting CMA-ES).

A trial is taken only if it fits: COMPLETE, as many finite values as the new study has
directions, from a study optimized in the same directions, parameters whose distributions
agree with those of the trials taken before it, and parameters no trial taken before had.
Sources are taken in the order given, so the first one wins a disagreement. What does not
fit is skipped, with the reason, and returned.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
import math

import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import check_distribution_compatibility
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune import compat

#: What ``warm_start`` accepts: a study (``optuna.load_study(...)``, from any storage), or the
#: URL of a storage that holds exactly one study.
Source = optuna.Study | str
#: A trial's parameters, to find duplicates.
Key = tuple[tuple[str, object], ...]


@dataclass(frozen=True)
class Skipped:
    """An earlier trial left out of a warm start, and why."""

    study: str
    number: int
    reason: str


def warm_start(study: optuna.Study, sources: Sequence[Source]) -> list[Skipped]:
    """Add to ``study`` the completed trials of ``sources`` that fit it (see the module
    docstring); return those skipped, with why. A ``CmaEsSampler`` of the study that was
    given no ``source_trials``, ``x0`` or ``sigma0`` gets the trials added as its
    ``source_trials``.

    Raises:
        ValueError: A URL holds no study, or several (load the one you mean with
            ``optuna.load_study(study_name=..., storage=url)``).
    """
    taken: list[FrozenTrial] = []
    skipped: list[Skipped] = []
    own = study.get_trials(deepcopy=False)  # a study loaded with load_if_exists: they come first
    distributions: dict[str, BaseDistribution] = {k: v for t in own for k, v in t.distributions.items()}
    seen = {_key(t) for t in own if t.state == TrialState.COMPLETE}
    for source in sources:
        earlier = _load(source)
        directions_fit = earlier.directions == study.directions
        for trial in earlier.get_trials(deepcopy=False):
            reason = _misfit(trial, directions_fit, study, distributions, seen)
            if reason is not None:
                skipped.append(Skipped(earlier.study_name, trial.number, reason))
                continue
            distributions.update(trial.distributions)
            seen.add(_key(trial))
            taken.append(trial)
    study.add_trials(taken)
    compat.give_cmaes_source_trials(study.sampler, study.get_trials(states=(TrialState.COMPLETE,)))
    return skipped


def summary(skipped: Sequence[Skipped]) -> str:
    """One line: how many trials were skipped, for each reason."""
    counts = Counter(s.reason.split(":")[0] for s in skipped)
    return "; ".join(f"{n} {reason}" for reason, n in counts.most_common())


def _load(source: Source) -> optuna.Study:
    if isinstance(source, optuna.Study):
        return source
    names = optuna.get_all_study_names(source)
    if len(names) != 1:
        raise ValueError(
            f"warm_start: the storage {source!r} holds {len(names)} studies ({names}), not one; "
            "pass the one you mean: optuna.load_study(study_name=..., storage=url)."
        )
    return optuna.load_study(study_name=names[0], storage=source)


def _misfit(
    trial: FrozenTrial,
    directions_fit: bool,
    study: optuna.Study,
    distributions: dict[str, BaseDistribution],
    seen: set[Key],
) -> str | None:
    """Why ``trial`` cannot seed ``study`` (``None``: it can)."""
    if trial.state != TrialState.COMPLETE:
        return f"not COMPLETE: {trial.state.name}"
    if not directions_fit:
        return "other directions: its study is optimized in other directions"
    values = trial.values or []
    if len(values) != len(study.directions):
        return f"other number of values: {len(values)}, the study has {len(study.directions)}"
    if not all(math.isfinite(v) for v in values):
        return f"not finite: {values}"
    for name, distribution in trial.distributions.items():
        known = distributions.get(name)
        if known is None:
            continue
        try:
            check_distribution_compatibility(known, distribution)
        except ValueError:
            return f"another distribution: {name!r} is {distribution}, not {known}"
        value = trial.params[name]
        if isinstance(known, (FloatDistribution, IntDistribution)) and not known.low <= value <= known.high:
            return f"out of range: {name!r} = {value!r} is outside {known}"
    if _key(trial) in seen:
        return "a duplicate: the same parameters as a trial taken before"
    return None


def _key(trial: FrozenTrial) -> Key:
    return tuple(sorted(trial.params.items()))
