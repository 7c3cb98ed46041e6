"""Warm starts (``dasktune.create_study(warm_start=...)``, ``dasktune.warm_start``): what is
taken, what is skipped and why, CMA-ES's source trials, and a warm-started study optimized on
a cluster."""

from __future__ import annotations

import logging

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial
from optuna.trial import TrialState
import pytest

import dasktune

pytestmark = pytest.mark.oldest

X = FloatDistribution(0, 1)


def _trial(x: float, value: float | None = 1.0, state: TrialState = TrialState.COMPLETE, **more) -> optuna.trial.FrozenTrial:
    params, distributions = {"x": x}, {"x": X}
    for name, (v, d) in more.items():
        params[name], distributions[name] = v, d
    return create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                        params=params, distributions=distributions)


def _study(name: str, trials: list, direction: str = "minimize") -> optuna.Study:
    study = optuna.create_study(study_name=name, direction=direction, storage=optuna.storages.InMemoryStorage())
    study.add_trials(trials)
    return study


def test_completed_trials_that_fit_are_taken_and_every_other_is_skipped_with_why() -> None:
    first = _study("first", [
        _trial(0.1, 3.0, c=("a", CategoricalDistribution(["a", "b"]))),
        _trial(0.2, state=TrialState.PRUNED),
        _trial(0.3, state=TrialState.FAIL),
        _trial(0.1, 5.0, c=("a", CategoricalDistribution(["a", "b"]))),  # same params as #0
    ])
    second = _study("second", [
        _trial(0.4, 2.0),
        _trial(0.5, 1.0, c=("z", CategoricalDistribution(["z"]))),  # c disagrees with first's
    ])
    wide = optuna.create_study(study_name="wide", storage=optuna.storages.InMemoryStorage())
    wide.add_trial(create_trial(value=0.5, params={"x": 7.0}, distributions={"x": FloatDistribution(0, 10)}))
    maximized = _study("maximized", [_trial(0.6, 9.0)], direction="maximize")

    new = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    skipped = dasktune.warm_start(new, [first, second, wide, maximized])

    taken = new.get_trials(deepcopy=False)
    assert [(t.params, t.value, t.state) for t in taken] == [
        ({"x": 0.1, "c": "a"}, 3.0, TrialState.COMPLETE),
        ({"x": 0.4}, 2.0, TrialState.COMPLETE),
    ]
    why = {(s.study, s.number): s.reason for s in skipped}
    assert why[("first", 1)] == "not COMPLETE: PRUNED"
    assert why[("first", 2)] == "not COMPLETE: FAIL"
    assert why[("first", 3)].startswith("a duplicate")
    assert why[("second", 1)].startswith("another distribution: 'c'")
    assert why[("wide", 0)].startswith("out of range: 'x' = 7.0")
    assert why[("maximized", 0)].startswith("other directions")
    assert len(skipped) == 6


def test_a_multi_objective_source_does_not_seed_a_single_objective_study() -> None:
    two = optuna.create_study(directions=["minimize", "minimize"], storage=optuna.storages.InMemoryStorage())
    two.add_trial(create_trial(values=[1.0, 2.0], params={"x": 0.5}, distributions={"x": X}))
    new = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    (skipped,) = dasktune.warm_start(new, [two])
    assert skipped.reason.startswith("other directions") and new.trials == []


def test_a_url_with_one_study_is_read_and_one_with_several_is_refused_naming_them(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'earlier.db'}"
    earlier = optuna.create_study(study_name="earlier", storage=url)
    earlier.add_trials([_trial(0.25, 1.5), _trial(0.75, 0.5)])
    new = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    assert dasktune.warm_start(new, [url]) == []
    assert sorted(t.params["x"] for t in new.trials) == [0.25, 0.75]

    optuna.create_study(study_name="another", storage=url)
    with pytest.raises(ValueError, match=r"holds 2 studies .*'another'.*optuna.load_study"):
        dasktune.warm_start(optuna.create_study(), [url])


def test_a_cmaes_sampler_given_no_source_trials_starts_from_the_earlier_trials() -> None:
    rng = np.random.default_rng(0)
    # An earlier study that found the optimum near (0.85, 0.85).
    earlier = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    earlier.add_trials([
        create_trial(value=float((x - 0.85) ** 2 + (y - 0.85) ** 2), params={"x": x, "y": y},
                     distributions={"x": X, "y": X})
        for x, y in rng.uniform(0, 1, size=(60, 2))
    ])

    def first_samples(sampler: optuna.samplers.CmaEsSampler, warm: bool) -> np.ndarray:
        study = dasktune.create_study(storage=optuna.storages.InMemoryStorage(), sampler=sampler,
                                      warm_start=[earlier] if warm else None)
        for _ in range(8):
            trial = study.ask()
            study.tell(trial, (trial.suggest_float("x", 0, 1) - 0.85) ** 2 + (trial.suggest_float("y", 0, 1) - 0.85) ** 2)
        fresh = study.get_trials(deepcopy=False)[len(earlier.trials) if warm else 0:]
        return np.array([[t.params["x"], t.params["y"]] for t in fresh[2:]])  # past the first (independent) ones

    warm = first_samples(optuna.samplers.CmaEsSampler(seed=1), warm=True)
    cold = first_samples(optuna.samplers.CmaEsSampler(seed=1), warm=False)
    distance = lambda xy: float(np.median(np.hypot(*(xy - 0.85).T)))  # noqa: E731
    assert distance(warm) < 0.5 * distance(cold)
    # A sampler made with source trials of its own keeps them.
    mine = earlier.trials[:10]
    own = optuna.samplers.CmaEsSampler(source_trials=mine, seed=1)
    dasktune.create_study(storage=optuna.storages.InMemoryStorage(), sampler=own, warm_start=[earlier])
    assert own._source_trials is mine


def test_create_study_warm_started_on_the_cluster_optimizes_from_the_earlier_trials(client, caplog) -> None:
    earlier = _study("earlier", [_trial(0.3, 0.09), _trial(0.9, 0.81), _trial(0.5, state=TrialState.PRUNED)])
    optuna.logging.enable_propagation()
    try:
        with caplog.at_level(logging.INFO, logger="optuna.dasktune"):
            study = dasktune.create_study(warm_start=[earlier])
    finally:
        optuna.logging.disable_propagation()
    assert "Warm start: 2 trials from 1 earlier studies (skipped 1: 1 not COMPLETE)." in caplog.text
    dasktune.optimize(study, lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=6)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 8 and [t.params["x"] for t in trials[:2]] == [0.3, 0.9]
    assert study.best_value <= 0.09
