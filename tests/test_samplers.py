"""Every sampler Optuna ships, driven by ``dasktune.optimize``: define-by-run (each runner
samples with its own copy of the sampler, pickled to its worker) and define-and-run (the
calling process samples, ``search_space=``)."""

from __future__ import annotations

from collections.abc import Callable
import importlib.util
import warnings

from distributed import Client
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.samplers import BaseSampler
from optuna.trial import TrialState
import pytest

import dasktune
from dasktune import DaskStorage

pytestmark = pytest.mark.oldest  # also run on the oldest admitted Optuna and distributed

SPACE = {
    "x": FloatDistribution(-5, 5, step=0.5),
    "n": IntDistribution(1, 4),
    "kind": CategoricalDistribution(["a", "b"]),
}
GRID = {"x": [-1.0, 0.0, 1.0], "n": [1, 2], "kind": ["a", "b"]}
N_TRIALS = 12  # the grid's size: GridSampler runs each point once


def infeasible_when_positive(trial: optuna.trial.FrozenTrial) -> list[float]:
    return [trial.params["x"]]  # > 0: infeasible


#: name -> (sampler factory, number of objectives)
SAMPLERS: dict[str, tuple[Callable[[], BaseSampler], int]] = {
    "TPESampler": (lambda: optuna.samplers.TPESampler(seed=1), 1),
    "RandomSampler": (lambda: optuna.samplers.RandomSampler(seed=1), 1),
    "CmaEsSampler": (lambda: optuna.samplers.CmaEsSampler(seed=1, n_startup_trials=4), 1),
    "GPSampler": (lambda: optuna.samplers.GPSampler(seed=1, n_startup_trials=4), 1),
    "NSGAIISampler": (
        lambda: optuna.samplers.NSGAIISampler(
            seed=1, population_size=4, constraints_func=infeasible_when_positive
        ),
        2,
    ),
    "NSGAIIISampler": (lambda: optuna.samplers.NSGAIIISampler(seed=1, population_size=4), 2),
    "QMCSampler": (lambda: optuna.samplers.QMCSampler(seed=1), 1),
    "GridSampler": (lambda: optuna.samplers.GridSampler(GRID, seed=1), 1),
    "BruteForceSampler": (lambda: optuna.samplers.BruteForceSampler(seed=1), 1),
    "PartialFixedSampler": (
        lambda: optuna.samplers.PartialFixedSampler({"n": 3}, optuna.samplers.TPESampler(seed=1)),
        1,
    ),
}
#: Packages a sampler needs beyond Optuna's own dependencies.
NEEDS = {"GPSampler": ("torch", "scipy"), "CmaEsSampler": ("cmaes",)}


def values(params: dict) -> tuple[float, float]:
    return (params["x"] - 1) ** 2 + params["n"], (params["x"] + 1) ** 2 + (params["kind"] == "b")


def by_run(trial: optuna.Trial) -> float | tuple[float, float]:
    params = {
        "x": trial.suggest_float("x", -5, 5, step=0.5),
        "n": trial.suggest_int("n", 1, 4),
        "kind": trial.suggest_categorical("kind", ["a", "b"]),
    }
    objectives = values(params)
    return objectives if len(trial.study.directions) == 2 else objectives[0]


def one_objective(params: dict) -> float:
    return values(params)[0]


def two_objectives(params: dict) -> tuple[float, float]:
    return values(params)


@pytest.mark.parametrize("style", ["define-by-run", "define-and-run"])
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_optuna_sampler_runs_its_trials_on_the_cluster(
    client: Client, name: str, style: str
) -> None:
    missing = [p for p in NEEDS.get(name, ()) if importlib.util.find_spec(p) is None]
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)}, which is not installed here")
    make, n_objectives = SAMPLERS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            storage=DaskStorage(), sampler=make(), directions=["minimize"] * n_objectives
        )
    if style == "define-by-run":
        run = dasktune.optimize(study, by_run, n_trials=N_TRIALS)
    else:
        objective = one_objective if n_objectives == 1 else two_objectives
        run = dasktune.optimize(study, objective, n_trials=N_TRIALS, search_space=SPACE)

    trials = study.trials
    assert len(run.trials) == N_TRIALS
    assert [t.state for t in trials] == [TrialState.COMPLETE] * N_TRIALS
    for trial in trials:
        assert set(trial.params) == set(SPACE)
        x, n, kind = trial.params["x"], trial.params["n"], trial.params["kind"]
        assert -5 <= x <= 5 and abs(x * 2 - round(x * 2)) < 1e-9 and n in range(1, 5) and kind in ("a", "b")
        assert trial.values == pytest.approx(list(values(trial.params)[:n_objectives]))
    if name == "GridSampler":
        # Two runners may both take the grid's last free point, as two of Optuna's own
        # n_jobs threads may: every trial is a grid point, not every point a trial.
        assert all(t.params[k] in GRID[k] for t in trials for k in GRID)
    if name == "PartialFixedSampler":
        assert {t.params["n"] for t in trials} == {3}
    if name == "NSGAIISampler":
        # The constraints were evaluated with each trial and kept, as Optuna keeps them.
        for trial in trials:
            assert trial.system_attrs["constraints"] == [trial.params["x"]]
        feasible = [t for t in trials if t.params["x"] <= 0]
        best = {t.number for t in study.best_trials}
        assert best and best <= {t.number for t in feasible}
