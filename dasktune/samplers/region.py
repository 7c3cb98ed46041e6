"""The trust region: the box around the best trials in which a local GP samples.

With P trials in flight, a GP fit to the whole space spends its batch on P different bets
across it (that is what its acquisition of the running trials is for), and progress along a
narrow valley (Rosenbrock's) or down a bumpy funnel (Ackley's) stalls: measured at P = 32
(3 seeds, median regret against sequential TPE's), a GP alone ends 4.8x (Rosenbrock-10) and
1.1x (Ackley-5); half of the trials sampled instead by a GP fit only to the trials inside a
box around the best ones, and searching only that box, 1.5x and 0.5x (the figures and their
one loss, Hartmann-6: :mod:`dasktune.samplers.rules`).
This is the trust region of TuRBO (Eriksson et al., NeurIPS 2019), with its size read from
the study rather than adapted by counting successes: the box spans the best
``TOP`` share of the complete trials (at least ``MIN_POINTS``) around the best one, ``GROW``
times wider, and at least ``MIN_HALF_WIDTH`` of each parameter's range on each side. As the
best trials gather, it shrinks; when a better one turns up elsewhere, it moves there. Being a
function of the trials alone, it is the same in every process that samples for the study.

Pure: parameters in, distributions out.
"""

from __future__ import annotations

from collections.abc import Sequence
import math
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution

TOP = 0.1
MIN_POINTS = 5
GROW = 1.5
MIN_HALF_WIDTH = 0.02


def _scale(distribution: FloatDistribution | IntDistribution) -> tuple[float, float]:
    if distribution.log:
        return math.log(distribution.low), math.log(distribution.high)
    return float(distribution.low), float(distribution.high)


def unit(value: Any, distribution: FloatDistribution | IntDistribution) -> float:
    """Where ``value`` lies in its distribution's range, 0 to 1 (on a log scale for a log
    distribution)."""
    low, high = _scale(distribution)
    x = math.log(value) if distribution.log else float(value)
    return (x - low) / (high - low) if high > low else 0.0


def from_unit(u: float, distribution: FloatDistribution | IntDistribution) -> float:
    low, high = _scale(distribution)
    x = low + u * (high - low)
    return math.exp(x) if distribution.log else x


def trust_region(
    best_first: Sequence[dict[str, Any]], search_space: dict[str, BaseDistribution]
) -> dict[str, BaseDistribution] | None:
    """The box around ``best_first[0]`` spanned by the best trials' parameters
    (``best_first``: the complete trials' parameters, best first), as distributions
    narrower than ``search_space``'s; a categorical parameter keeps all its choices. ``None``
    when the box would be the whole space or holds fewer than ``MIN_POINTS`` trials."""
    numeric = [name for name, d in search_space.items() if not isinstance(d, CategoricalDistribution)]
    if not numeric or len(best_first) < MIN_POINTS:
        return None
    top = best_first[: max(MIN_POINTS, int(len(best_first) * TOP))]
    points = np.array([[unit(p[name], search_space[name]) for name in numeric] for p in top])  # type: ignore[arg-type]
    half = np.maximum(np.abs(points - points[0]).max(axis=0) * GROW, MIN_HALF_WIDTH)
    lows, highs = np.clip(points[0] - half, 0.0, 1.0), np.clip(points[0] + half, 0.0, 1.0)
    if np.all(lows <= 0.0) and np.all(highs >= 1.0):
        return None
    region: dict[str, BaseDistribution] = dict(search_space)
    for name, low, high in zip(numeric, lows, highs):
        region[name] = _narrowed(search_space[name], float(low), float(high))  # type: ignore[arg-type]
    if sum(inside(p, region) for p in best_first) < MIN_POINTS:
        return None
    return region


def _narrowed(distribution: FloatDistribution | IntDistribution, low: float, high: float) -> BaseDistribution:
    """``distribution`` between ``low`` and ``high`` of its range (0 to 1); a discrete one
    widened outwards to its grid, to at least two values."""
    # At the range's ends, its own bounds: a trial there must stay inside despite rounding.
    a = distribution.low if low <= 0.0 else from_unit(low, distribution)
    b = distribution.high if high >= 1.0 else from_unit(high, distribution)
    if isinstance(distribution, IntDistribution):
        lo, hi = _on_grid(a, b, distribution.low, distribution.high, distribution.step)
        return IntDistribution(round(lo), round(hi), log=distribution.log, step=distribution.step)
    if distribution.step is not None:
        lo, hi = _on_grid(a, b, distribution.low, distribution.high, distribution.step)
        return FloatDistribution(lo, hi, step=distribution.step)
    a, b = max(a, distribution.low), min(b, distribution.high)
    return FloatDistribution(a, b, log=distribution.log)


def _on_grid(a: float, b: float, low: float, high: float, step: float) -> tuple[float, float]:
    """``[a, b]`` widened outwards to the grid ``low + k * step`` within ``[low, high]``, to at
    least two grid values."""
    lo = max(low, low + math.floor((a - low) / step + 1e-9) * step)
    hi = min(high, low + math.ceil((b - low) / step - 1e-9) * step)
    if hi <= lo:
        lo, hi = max(low, lo - step), min(high, hi + step)
    return lo, hi


def inside(params: dict[str, Any], region: dict[str, BaseDistribution]) -> bool:
    """Whether ``params`` lie in ``region`` (every parameter within its bounds)."""
    for name, distribution in region.items():
        if isinstance(distribution, CategoricalDistribution):
            continue
        value = params[name]
        if not distribution.low <= value <= distribution.high:  # type: ignore[attr-defined]
            return False
    return True
