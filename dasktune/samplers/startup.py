"""The points of the trials sampled before any result can guide them.

With P trials in flight, the first P trials of a study are sampled before the first one
ends, whatever the sampler: they can only cover the space. Each is a uniform random point,
drawn from a generator keyed by (seed, trial number, parameter), so:

- it needs no coordination: every copy of the sampler (dasktune pickles one into every
  runner) gives trial ``n`` the same point, and two trials different ones;
- it is reproducible: the same seed gives the same points.

Parameter ``i`` is the ``i``-th parameter a trial suggests, which is the same parameter in
every trial of a fixed search space.

Random rather than low-discrepancy: a scrambled Halton design of the same points left the GP
in Hartmann-6's local minimum more often at 32 trials in flight (3 seeds of 6 against 1),
and a design more even than random buys little with a few dozen points in 6 or more
dimensions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution


def uniform(seed: int, number: int, dimension: int) -> float:
    """The uniform draw in ``[0, 1)`` for parameter ``dimension`` of trial ``number``."""
    return float(np.random.default_rng([seed, number, dimension, 25]).random())  # 25: apart from other uses


def from_unit(u: float, distribution: BaseDistribution) -> Any:
    """The value of ``distribution`` at ``u`` in ``[0, 1)``: uniform over its range (over the
    logarithm of it for a log scale), over its choices for a categorical."""
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[min(int(u * len(distribution.choices)), len(distribution.choices) - 1)]
    if isinstance(distribution, IntDistribution):
        return _integer(u, distribution)
    if isinstance(distribution, FloatDistribution):
        return _float(u, distribution)
    raise TypeError(f"No start-up value for a {type(distribution).__name__}.")


def _integer(u: float, distribution: IntDistribution) -> int:
    low, high = distribution.low, distribution.high
    if distribution.log:
        # Each integer gets the share of the log scale that rounds to it (low >= 1 on a log scale).
        edges = math.log(low - 0.5), math.log(high + 0.5)
        value = round(math.exp(edges[0] + u * (edges[1] - edges[0])))
    else:
        count = (high - low) // distribution.step + 1
        value = low + min(int(u * count), count - 1) * distribution.step
    return min(max(value, low), high)


def _float(u: float, distribution: FloatDistribution) -> float:
    low, high = distribution.low, distribution.high
    if distribution.log:
        return min(max(math.exp(math.log(low) + u * (math.log(high) - math.log(low))), low), high)
    if distribution.step is not None:
        count = round((high - low) / distribution.step) + 1
        return min(low + min(int(u * count), count - 1) * distribution.step, high)
    return low + u * (high - low)


def point(seed: int, number: int, dimension: int, distribution: BaseDistribution) -> Any:
    """The value of parameter ``dimension`` of trial ``number``."""
    return from_unit(uniform(seed, number, dimension), distribution)
