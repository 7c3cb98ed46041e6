"""A nested config of domains and constants, sampled define-by-run with an Optuna trial.

Parameter names are the keys' paths joined with ``/`` (``model/layers``). A choice among
values Optuna cannot hold (lists, dicts, objects) is an Optuna categorical of their indices,
mapped back to the value in the config; a chosen dict is itself sampled, under
``<path>/<index>/...``, so each branch has parameters of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optuna.trial import BaseTrial

from dasktune.tune.domains import Categorical
from dasktune.tune.domains import Domain
from dasktune.tune.domains import holds_domain

SEP = "/"


class SearchSpace:
    """A checked search space; ``ValueError`` naming the key of the first bad domain."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a dict of domains and constants, not {type(config).__name__}.")
        self.config = config
        _check(config, "")

    def sample(self, trial: BaseTrial) -> dict[str, Any]:
        """A config: every domain sampled through ``trial``, constants as they are."""
        return _sample(self.config, trial, "")

    def to_params(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The Optuna parameters that make :meth:`sample` return ``point`` (or a partial
        point: the keys it has), for ``study.enqueue_trial``."""
        params: dict[str, Any] = {}
        _params(self.config, point, "", params)
        return params


def _check(config: Mapping[str, Any], prefix: str) -> None:
    for key, value in config.items():
        if not isinstance(key, str) or SEP in key:
            raise ValueError(f"{prefix}{key!r}: config keys must be strings without {SEP!r}.")
        path = prefix + key
        if isinstance(value, Domain):
            value.check(path)
            if isinstance(value, Categorical):
                for index, category in enumerate(value.categories):
                    if isinstance(category, Mapping):
                        _check(category, f"{path}{SEP}{index}{SEP}")
        elif isinstance(value, Mapping):
            _check(value, path + SEP)
        elif holds_domain(value):
            raise ValueError(
                f"{path}: a domain inside a list is never sampled; use a dict of domains, or "
                "tune.choice() of whole lists."
            )


def _sample(config: Mapping[str, Any], trial: BaseTrial, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = prefix + key
        if isinstance(value, Categorical) and not value.plain:
            index = trial.suggest_categorical(path, list(range(len(value.categories))))
            chosen = value.categories[index]
            out[key] = _sample(chosen, trial, f"{path}{SEP}{index}{SEP}") if isinstance(chosen, Mapping) else chosen
        elif isinstance(value, Domain):
            out[key] = value.suggest(trial, path)
        elif isinstance(value, Mapping):
            out[key] = _sample(value, trial, path + SEP)
        else:
            out[key] = value
    return out


def _params(config: Mapping[str, Any], point: Mapping[str, Any], prefix: str, params: dict[str, Any]) -> None:
    for key, given in point.items():
        if key not in config:
            raise ValueError(f"{prefix}{key}: not a key of the search space ({sorted(config)}).")
        value, path = config[key], prefix + key
        if isinstance(value, Categorical) and not value.plain:
            index = _index_of(value, given, path)
            params[path] = index
            chosen = value.categories[index]
            if isinstance(chosen, Mapping) and isinstance(given, Mapping):
                _params(chosen, {k: v for k, v in given.items() if isinstance(chosen.get(k), (Domain, Mapping))},
                        f"{path}{SEP}{index}{SEP}", params)
        elif isinstance(value, Domain):
            params[path] = given
        elif isinstance(value, Mapping) and isinstance(given, Mapping):
            _params(value, given, path + SEP, params)


def _index_of(domain: Categorical, given: Any, path: str) -> int:
    """The category ``given`` stands for: equal, or a dict whose constants it matches."""
    for index, category in enumerate(domain.categories):
        if category == given:
            return index
        if isinstance(category, Mapping) and isinstance(given, Mapping):
            constants = {k: v for k, v in category.items() if not isinstance(v, (Domain, Mapping))}
            if all(given.get(k) == v for k, v in constants.items()) and set(given) <= set(category):
                return index
    raise ValueError(f"{path}: {given!r} is none of the choices {list(domain.categories)!r}.")
