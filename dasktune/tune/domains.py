"""Search-space domains, named and bounded as in FLAML's (and Ray Tune's) ``tune`` module.

``randint`` and ``lograndint`` exclude their upper bound, ``qrandint`` and ``qlograndint``
include it, as in FLAML. A domain is checked when the space that holds it is built, so the
error can name its key (:meth:`Domain.check`).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
import math
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.trial import BaseTrial


class Domain:
    """A dimension of a search space: how to sample it with an Optuna trial."""

    def check(self, key: str) -> None:
        """``ValueError`` naming ``key`` if the domain cannot be sampled."""
        raise NotImplementedError

    def suggest(self, trial: BaseTrial, name: str) -> Any:
        """Sample the value of parameter ``name``."""
        d = self.distribution()
        value: Any
        if isinstance(d, FloatDistribution):
            value = trial.suggest_float(name, d.low, d.high, log=d.log, step=d.step)
        elif isinstance(d, IntDistribution):
            value = trial.suggest_int(name, d.low, d.high, log=d.log, step=d.step)
        else:
            assert isinstance(d, CategoricalDistribution)
            value = trial.suggest_categorical(name, list(d.choices))
        return self.from_param(value)

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution of the parameter (indices for non-plain categories)."""
        raise NotImplementedError

    def from_param(self, value: Any) -> Any:
        """The config value of a parameter value."""
        return value


@dataclass(frozen=True)
class Float(Domain):
    low: float
    high: float
    log: bool = False
    q: float | None = None

    def check(self, key: str) -> None:
        _check_bounds(key, self.low, self.high, self.log)
        if self.q is not None and not self.q > 0:
            raise ValueError(f"{key}: the quantization q must be positive, not {self.q!r}.")

    def distribution(self) -> FloatDistribution:
        return FloatDistribution(self.low, self.high, log=self.log, step=None if self.log else self.q)

    def from_param(self, value: float) -> float:
        if self.q is None or not self.log:
            return value
        # Optuna has no log scale with a step: sample on the log scale, then round to q.
        return float(min(max(round(value / self.q) * self.q, self.low), self.high))


@dataclass(frozen=True)
class Integer(Domain):
    low: int
    high: int  # inclusive, whatever the constructor's convention
    log: bool = False
    q: int = 1

    def check(self, key: str) -> None:
        _check_bounds(key, self.low, self.high, self.log, allow_equal=True)
        if not (isinstance(self.q, int) and self.q >= 1):
            raise ValueError(f"{key}: the quantization q must be a positive int, not {self.q!r}.")

    def distribution(self) -> IntDistribution:
        return IntDistribution(self.low, self.high, log=self.log, step=1 if self.log else self.q)

    def from_param(self, value: int) -> int:
        if not self.log or self.q == 1:
            return value
        return min(max(round(value / self.q) * self.q, self.low), self.high)


@dataclass(frozen=True)
class Categorical(Domain):
    """A choice among categories of any kind: values Optuna cannot hold (lists, tuples,
    dicts, objects) are chosen by their index, and the index is mapped back to the value."""

    categories: tuple[Any, ...]

    def check(self, key: str) -> None:
        if not self.categories:
            raise ValueError(f"{key}: choice() needs at least one category.")
        for index, category in enumerate(self.categories):
            if not isinstance(category, Mapping) and holds_domain(category):
                raise ValueError(
                    f"{key}/{index}: a domain that is a choice, or inside a list, is never sampled; "
                    "put it in a dict (a choice among dicts samples the chosen one)."
                )

    @property
    def plain(self) -> bool:
        """Whether Optuna can hold the categories themselves (else they are indexed)."""
        return all(c is None or isinstance(c, (bool, int, float, str)) for c in self.categories)

    def distribution(self) -> CategoricalDistribution:
        return CategoricalDistribution(
            list(self.categories) if self.plain else list(range(len(self.categories)))
        )

    def from_param(self, value: Any) -> Any:
        return value if self.plain else self.categories[value]


def holds_domain(value: Any) -> bool:
    """Whether ``value`` is, or has inside lists, tuples or dicts, a domain."""
    if isinstance(value, Domain):
        return True
    if isinstance(value, Mapping):
        return any(holds_domain(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(holds_domain(v) for v in value)
    return False


def _check_bounds(key: str, low: float, high: float, log: bool, allow_equal: bool = False) -> None:
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (low, high)):
        raise ValueError(f"{key}: bounds must be finite numbers, not ({low!r}, {high!r}).")
    if high < low or (high == low and not allow_equal):
        raise ValueError(f"{key}: the lower bound {low!r} must be below the upper bound {high!r}.")
    if log and low <= 0:
        raise ValueError(f"{key}: a log-scaled domain needs a positive lower bound, not {low!r}.")


def uniform(lower: float, upper: float) -> Float:
    """A float sampled uniformly in ``[lower, upper]``."""
    return Float(lower, upper)


def loguniform(lower: float, upper: float) -> Float:
    """A float sampled uniformly on the log scale in ``[lower, upper]``."""
    return Float(lower, upper, log=True)


def quniform(lower: float, upper: float, q: float) -> Float:
    """A float in ``[lower, upper]`` on the grid ``lower + k * q``."""
    return Float(lower, upper, q=q)


def qloguniform(lower: float, upper: float, q: float) -> Float:
    """A float sampled on the log scale, rounded to a multiple of ``q``."""
    return Float(lower, upper, log=True, q=q)


def randint(lower: int, upper: int) -> Integer:
    """An int in ``[lower, upper)`` (upper excluded, as in FLAML)."""
    return Integer(lower, upper - 1)


def lograndint(lower: int, upper: int) -> Integer:
    """An int in ``[lower, upper)`` sampled on the log scale."""
    return Integer(lower, upper - 1, log=True)


def qrandint(lower: int, upper: int, q: int = 1) -> Integer:
    """An int in ``[lower, upper]`` (upper included) on the grid ``lower + k * q``."""
    return Integer(lower, upper, q=q)


def qlograndint(lower: int, upper: int, q: int) -> Integer:
    """An int in ``[lower, upper]`` sampled on the log scale, rounded to a multiple of ``q``."""
    return Integer(lower, upper, log=True, q=q)


def choice(categories: Sequence[Any]) -> Categorical:
    """One of ``categories``; a category may be a dict, itself a (nested) search space."""
    return Categorical(tuple(categories))
