"""Typed search spaces (the idea of spock's Optuna addon): a class whose annotated fields
carry their domains, sampled into instances of the class.

    @dasktune.tune.typed_space
    class Model:
        lr: float = tune.loguniform(1e-4, 1e-1)
        layers: int = tune.qrandint(1, 8)
        activation: str = tune.choice(["relu", "tanh"])
        dropout: float = 0.1            # fixed

Declaring the class checks every field (type against domain, bounds, fixed values) and
raises ``ValueError`` naming ``Class.field``. The class is a dataclass; objectives receive
instances of it, from ``dasktune.optimize(..., search_space=Model)`` (define-and-run) or
``tune.run(train, config=Model)``.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import typing
from typing import Any
from typing import TypeVar

from optuna.distributions import BaseDistribution

from dasktune.tune.domains import Categorical
from dasktune.tune.domains import Domain
from dasktune.tune.domains import Float
from dasktune.tune.domains import Integer
from dasktune.tune.domains import holds_domain

T = TypeVar("T", bound=type)
_DOMAINS = "__dasktune_space__"


def typed_space(cls: T) -> T:
    """Make ``cls`` a typed search space (and a dataclass); see the module's docstring.

    Raises:
        ValueError: A field has no default, or its domain or fixed value does not fit its
            type or its bounds; the message names ``Class.field``.
    """
    domains: dict[str, Any] = {}
    for name, hint in typing.get_type_hints(cls).items():
        key = f"{cls.__name__}.{name}"
        if not hasattr(cls, name):
            raise ValueError(f"{key}: give the field a domain (e.g. tune.uniform(0, 1)) or a fixed value.")
        value = getattr(cls, name)
        _check_field(key, hint, value)
        domains[name] = value
    space: Any = dataclasses.dataclass(cls)
    setattr(space, _DOMAINS, domains)
    return typing.cast(T, space)


def is_typed_space(obj: Any) -> bool:
    return isinstance(obj, type) and hasattr(obj, _DOMAINS)


def domains(cls: type) -> dict[str, Any]:
    """Field name -> domain or fixed value of a typed space."""
    if not is_typed_space(cls):
        raise TypeError(f"{cls!r} is not a typed search space: decorate it with @dasktune.tune.typed_space.")
    return dict(getattr(cls, _DOMAINS))


def _check_field(key: str, hint: Any, value: Any) -> None:
    if isinstance(value, Domain):
        value.check(key)
        if isinstance(value, Categorical):
            if any(holds_domain(c) for c in value.categories):
                raise ValueError(
                    f"{key}: a typed field's choices are values, not search spaces; nest spaces "
                    "in a dict config (tune.run(train, {...}))."
                )
            wrong = [c for c in value.categories if not _fits(hint, c)]
            if wrong:
                raise ValueError(f"{key}: choices {wrong!r} are not of the field's type {_name(hint)}.")
        elif isinstance(value, Float) and hint is not float:
            raise ValueError(f"{key}: a float domain on a field of type {_name(hint)}; annotate it `float`.")
        elif isinstance(value, Integer) and hint is not int:
            raise ValueError(f"{key}: an int domain on a field of type {_name(hint)}; annotate it `int`.")
    elif not _fits(hint, value):
        raise ValueError(f"{key}: the fixed value {value!r} is not of the field's type {_name(hint)}.")


def _fits(hint: Any, value: Any) -> bool:
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return not isinstance(hint, type) or isinstance(value, hint)  # generics: not checked


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", repr(hint))


class TypedObjective:
    """``objective(instance)`` as a define-and-run objective of ``params``: what
    ``dasktune.optimize(..., search_space=TypedClass)`` runs on the workers."""

    def __init__(self, objective: Callable[[Any], Any], space: type) -> None:
        self.objective, self.space = objective, space
        self.domains = domains(space)
        self.distributions: dict[str, BaseDistribution] = {
            name: d.distribution() for name, d in self.domains.items() if isinstance(d, Domain)
        }

    def build(self, params: dict[str, Any]) -> Any:
        """The instance ``params`` (Optuna's parameter values) stand for."""
        values = {
            name: d.from_param(params[name]) if isinstance(d, Domain) else d
            for name, d in self.domains.items()
        }
        return self.space(**values)

    def __call__(self, params: dict[str, Any]) -> Any:
        return self.objective(self.build(params))
