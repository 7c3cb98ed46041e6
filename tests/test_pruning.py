"""Pruning across workers (:mod:`dasktune.submit.pruning`): the first wave, one view per
decision, and the record of decisions checked by replay.

The unit tests need no cluster: they drive Optuna's own pruners on in-memory studies. The
end-to-end tests run a LocalCluster of 2 worker processes x 16 threads."""

from __future__ import annotations

import statistics
import time
import warnings

import dask
from distributed import Client
from distributed import LocalCluster
import optuna
from optuna.trial import TrialState
import pytest

import dasktune
from dasktune import compat
from dasktune.submit import pruning

pytestmark = pytest.mark.oldest

STEPS = 27


def _first_wave(pruner: optuna.pruners.BasePruner, max_resource: int | None) -> list[bool]:
    """Twelve trials started together, none complete, each reporting its steps in turn
    and asking the pruner after each; trial i's value is ``i`` at every step (lower is
    better, so each is worse than all before it). Which were pruned before step 27.
    (Hyperband's brackets have their first rung at steps 1, 3, 9 or 27.)"""
    study = optuna.create_study(pruner=pruner, storage=optuna.storages.InMemoryStorage())
    if max_resource is not None:
        compat.resolve_pruner_resources(pruner, max_resource)
    trials = [study.ask() for _ in range(12)]
    pruned = []
    for i, trial in enumerate(trials):
        for step in range(1, STEPS + 1):
            trial.report(float(i), step)
            if trial.should_prune():
                break
        pruned.append(step < STEPS)
    return pruned


@pytest.mark.parametrize("make", [optuna.pruners.SuccessiveHalvingPruner, optuna.pruners.HyperbandPruner])
def test_auto_resources_prune_nothing_before_a_trial_completes_and_max_resource_fixes_it(make) -> None:
    alone = make()
    assert compat.pruner_waits_for_a_complete_trial(alone)
    assert not any(_first_wave(alone, None))  # Optuna alone: optuna#3088

    fixed = make()
    pruned = _first_wave(fixed, STEPS)
    assert not compat.pruner_waits_for_a_complete_trial(fixed)
    assert not pruned[0]  # the first (and best) goes on
    assert sum(pruned) >= 4  # a worse trial than all before it is stopped at once


def _running_study(pruner: optuna.pruners.BasePruner) -> optuna.Study:
    return optuna.create_study(pruner=pruner, storage=optuna.storages.InMemoryStorage())


def test_resolved_resources_are_what_optuna_infers_from_a_trial_completed_at_the_last_step() -> None:
    for max_resource in (27, 1000, 5000):
        ours = optuna.pruners.SuccessiveHalvingPruner()
        compat.resolve_pruner_resources(ours, max_resource)
        theirs = _running_study(optuna.pruners.SuccessiveHalvingPruner())
        done = theirs.ask()
        done.report(0.0, max_resource - 1)
        theirs.tell(done, 0.0)
        fresh = theirs.ask()
        fresh.report(0.0, max_resource - 1)
        theirs.pruner.prune(theirs, theirs.trials[-1])
        assert ours._min_resource == theirs.pruner._min_resource

        hyperband = optuna.pruners.HyperbandPruner()
        compat.resolve_pruner_resources(hyperband, max_resource)
        inferred = optuna.pruners.HyperbandPruner()
        theirs.pruner = inferred
        inferred.prune(theirs, theirs.trials[-1])
        hyperband.prune(theirs, theirs.trials[-1])
        assert hyperband._max_resource == inferred._max_resource == max_resource
        assert hyperband._n_brackets == inferred._n_brackets


def test_resources_the_user_gave_are_left_as_they_are() -> None:
    sha = optuna.pruners.SuccessiveHalvingPruner(min_resource=3)
    hyperband = optuna.pruners.HyperbandPruner(max_resource=9)
    median = optuna.pruners.MedianPruner()
    for pruner in (sha, hyperband, median):
        assert not compat.pruner_waits_for_a_complete_trial(pruner)
        compat.resolve_pruner_resources(pruner, STEPS)
    assert sha._min_resource == 3 and hyperband._max_resource == 9


@pytest.mark.parametrize(
    ("pruner", "max_resource", "concurrency", "completed", "warns"),
    [
        (optuna.pruners.SuccessiveHalvingPruner(), None, None, False, True),
        (optuna.pruners.HyperbandPruner(), None, 32, False, True),
        (optuna.pruners.HyperbandPruner(), STEPS, 32, False, False),
        (optuna.pruners.HyperbandPruner(), None, 1, False, False),
        (optuna.pruners.SuccessiveHalvingPruner(), None, None, True, False),
        (optuna.pruners.SuccessiveHalvingPruner(min_resource=1), None, None, False, False),
        (optuna.pruners.MedianPruner(), None, None, False, False),
    ],
)
def test_first_wave_warning_names_the_fix_only_when_the_first_wave_would_go_unpruned(
    pruner, max_resource, concurrency, completed, warns
) -> None:
    study = optuna.create_study(pruner=pruner)
    if completed:
        trial = study.ask()
        trial.report(1.0, 9)
        study.tell(trial, 1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruning.first_wave_warning(study, max_resource, concurrency)
    messages = [str(w.message) for w in caught]
    assert bool(messages) == warns
    if warns:
        assert "max_resource=" in messages[0] and type(pruner).__name__ in messages[0]


def _decision(study: optuna.Study, number: int, at: float, pruned: bool, view_steps: dict[int, int | None]) -> dict:
    """A record as RunPruner logs it, for a study whose trials are all RUNNING."""
    return {
        "study": study.study_name, "trial": number, "step": view_steps[number], "pruned": pruned, "at": at,
        "view": [(n, "RUNNING", s, {}) for n, s in sorted(view_steps.items())],
    }


def test_replay_finds_a_decision_against_the_rule_and_the_staleness_of_a_view() -> None:
    make = optuna.pruners.MedianPruner  # stateless: a fresh one decides as the run's did
    study = optuna.create_study(study_name="replayed", pruner=make(n_startup_trials=1, n_min_trials=1))
    good = study.ask()
    for step in (1, 2):
        good.report(0.0, step)
    study.tell(good, 0.0)
    bad = study.ask()
    bad.report(5.0, 1)
    late = study.ask()
    late.report(9.0, 1)
    assert study.pruner.prune(study, study.trials[1])  # the median pruner stops the bad one

    complete = (0, "COMPLETE", 2, {})
    honest = {**_decision(study, 1, 10.0, True, {1: 1, 2: None}), "view": [complete, (1, "RUNNING", 1, {}), (2, "RUNNING", None, {})]}
    lying = {**honest, "trial": 2, "at": 10.5, "pruned": False, "view": [complete, (1, "RUNNING", 1, {}), (2, "RUNNING", 1, {})]}
    # Trial 2's view missed trial 1's report at 10.0: it was 0.5 s stale.
    out = pruning.replay([honest, lying], study, lambda: make(n_startup_trials=1, n_min_trials=1))
    assert [r.contradicts for r in out] == [False, True]
    assert out[0].staleness == 0.0
    stale = {**lying, "view": [complete, (1, "RUNNING", None, {}), (2, "RUNNING", 1, {})]}
    checked = pruning.replay([honest, stale], study, lambda: make(n_startup_trials=1, n_min_trials=1))[1]
    assert checked.staleness == pytest.approx(0.5)


# -- end to end: 2 worker processes x 16 threads ----------------------------------------


def _curve(trial: optuna.Trial) -> float:
    """27 steps of a curve whose final value is set by ``x`` (best at 0.3), sleeping 20 ms
    a step; curves cross (a high ``x`` starts better)."""
    x = trial.suggest_float("x", 0, 1)
    value = 0.0
    for step in range(1, STEPS + 1):
        time.sleep(0.02)
        value = (x - 0.3) ** 2 + (1 - x) / step
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


@pytest.fixture(scope="module")
def wide_client():
    config = {pruning.RECORD_CONFIG: True, "distributed.admin.low-level-log-length": 20_000}
    with dask.config.set(config):
        with LocalCluster(n_workers=2, threads_per_worker=16, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield client


@pytest.mark.parametrize("make", [optuna.pruners.SuccessiveHalvingPruner, optuna.pruners.HyperbandPruner])
def test_32_trials_at_once_prune_their_first_wave_and_every_decision_replays_true(wide_client, make) -> None:
    with dask.config.set({pruning.RECORD_CONFIG: True}):
        study = optuna.create_study(storage=dasktune.DaskStorage(), pruner=make(),
                                    sampler=optuna.samplers.RandomSampler(0))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # max_resource given: no first-wave warning
            dasktune.optimize(study, _curve, n_trials=96, concurrency=32, max_resource=STEPS)
    assert type(study.pruner) is make  # the client's study keeps the user's pruner
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 96 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    first_wave = trials[:32]
    assert sum(t.state == TrialState.PRUNED for t in first_wave) >= 16
    assert sum(len(t.intermediate_values) for t in first_wave) < 32 * STEPS / 2

    records = [m for _, m in wide_client.get_events(pruning.TOPIC) if m["study"] == study.study_name]
    assert len(records) == sum(len(t.intermediate_values) for t in trials)  # one per report
    out = pruning.replay(records, study, make, STEPS)
    assert [r.record for r in out if r.contradicts] == []
    assert statistics.median(r.staleness for r in out) <= 0.1


def test_without_max_resource_the_first_wave_runs_long_and_the_user_is_told(wide_client) -> None:
    study = optuna.create_study(storage=dasktune.DaskStorage(), pruner=optuna.pruners.SuccessiveHalvingPruner(),
                                sampler=optuna.samplers.RandomSampler(0))
    with pytest.warns(UserWarning, match="max_resource="):
        dasktune.optimize(study, _curve, n_trials=32, concurrency=32)
    first_wave = study.get_trials(deepcopy=False)[:32]
    # Nothing stops before the first trial completes: every trial runs past most of its curve.
    assert min(len(t.intermediate_values) for t in first_wave) > STEPS // 2


def test_a_median_pruner_decides_on_values_from_every_worker(wide_client) -> None:
    pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2)
    study = optuna.create_study(storage=dasktune.DaskStorage(), pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(1))
    dasktune.optimize(study, _curve, n_trials=64, concurrency=32)
    records = [m for _, m in wide_client.get_events(pruning.TOPIC) if m["study"] == study.study_name]
    out = pruning.replay(records, study, lambda: optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2),
                         every=4)
    assert out and [r.record for r in out if r.contradicts] == []
    assert any(r.record["pruned"] for r in out) or any(t.state == TrialState.PRUNED for t in study.trials)
