"""``ParallelSampler``: its rules on made-up study states (no study, no cluster), and the
sampler itself in-process with Optuna, asking for many trials before telling any."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import contextlib
from datetime import datetime
from datetime import timedelta
import logging
import math
import pickle
import subprocess
import sys
import textwrap
from typing import Any
from typing import Literal

import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import pytest

from dasktune.samplers import Limits
from dasktune.samplers import ParallelSampler
from dasktune.samplers import region
from dasktune.samplers import view
from dasktune.samplers.parallel import gp_installed
from dasktune.samplers.rules import choose
from dasktune.samplers.rules import median_duration
from dasktune.samplers.rules import Method
from dasktune.samplers.rules import StudyState

pytestmark = pytest.mark.oldest  # also run on the oldest admitted Optuna

needs_gp = pytest.mark.skipif(not gp_installed(), reason="the GP needs PyTorch and SciPy")
#: Trials that take no time would make the GP too costly: these limits let it sample anyway.
ALWAYS_GP = Limits(max_sampling_share=math.inf)
LONG = 60.0  # seconds: a trial of the kind users tune, against ~0.1 s of GP sampling


# -- The rules, on made-up states -----------------------------------------------------------

def state(**changes: object) -> StudyState:
    """Trial 51 of a single-objective, all-float study of 50 complete trials of a minute
    each, 7 in flight, on a machine with PyTorch, changed by ``changes``."""
    base = {"number": 51, "n_complete": 50, "n_running": 7, "trial_seconds": LONG, "sampling_seconds": 0.2}
    return StudyState(**{**base, **changes})  # type: ignore[arg-type]


def test_start_up_points_until_n_startup_trials_are_complete() -> None:
    assert choose(state(n_complete=0, n_running=31)).method == Method.STARTUP
    assert choose(state(n_complete=9)).method == Method.STARTUP
    assert choose(state(n_complete=10)).method == Method.GP
    assert choose(state(n_complete=4), Limits(n_startup=4)).method == Method.GP


def test_gp_while_its_sampling_costs_at_most_a_tenth_of_a_trial() -> None:
    assert choose(state(sampling_seconds=5.9, trial_seconds=60)).method == Method.GP
    decision = choose(state(sampling_seconds=6.1, trial_seconds=60))
    assert decision.method == Method.TPE and "10%" in decision.reason
    assert choose(state(sampling_seconds=6.1, trial_seconds=60), Limits(max_sampling_share=0.2)).method == Method.GP


def test_cheap_trials_get_tpe_before_the_gp_ever_samples() -> None:
    # Not yet measured, a GP sampling is taken to cost 50 ms: too much for 10 ms trials.
    assert choose(state(sampling_seconds=None, trial_seconds=0.01)).method == Method.TPE
    assert choose(state(sampling_seconds=None, trial_seconds=1.0)).method == Method.GP


def test_the_median_trial_duration_counts_running_trials_as_at_least_that_long() -> None:
    assert median_duration([], [5.0]) is None
    assert median_duration([1.0, 2.0, 3.0, 4.0, 100.0], []) == 3.0
    # 128 in flight, the 10 shortest ended after 15-19 s, the others have run 19 s so far:
    # the median is not known yet, but at least 19 s, not the 17 s the ended ones suggest.
    assert median_duration([15.0 + 0.4 * i for i in range(10)], [19.0] * 118) == 19.0
    # Half ended by 30 s, the rest still running at 40 s.
    assert median_duration([10.0, 20.0, 30.0], [40.0, 40.0, 40.0]) == 30.0


def test_an_unknown_trial_duration_counts_as_long() -> None:
    assert choose(state(trial_seconds=None, sampling_seconds=100.0)).method == Method.GP


def test_every_second_trial_samples_in_the_trust_region_by_default() -> None:
    # Half local: at 32 in flight it took Rosenbrock-10 from 4.8 to 1.5 times sequential TPE.
    local = Limits()
    assert choose(state(number=50), Limits(local_every=0)).method == Method.GP
    assert [choose(state(number=n), local).method for n in (50, 51, 52)] == [Method.LOCAL_GP, Method.GP, Method.LOCAL_GP]
    assert choose(state(number=51), Limits(local_every=3)).method == Method.LOCAL_GP
    # The trust region is around the best trials: several objectives have none.
    assert choose(state(number=50, n_objectives=2), local).method == Method.GP
    # Only once the GP samples at all, and more trials are complete than in flight.
    assert choose(state(number=50, n_complete=3), local).method == Method.STARTUP
    assert choose(state(number=50, n_complete=40, n_running=127), local).method == Method.GP
    assert choose(state(number=50, n_complete=128, n_running=127), local).method == Method.LOCAL_GP
    assert choose(state(number=50, gp_installed=False), local).method == Method.MULTIVARIATE_TPE


def test_multivariate_tpe_for_a_conditional_search_space() -> None:
    decision = choose(state(conditional=True))
    assert decision.method == Method.MULTIVARIATE_TPE and "conditional" in decision.reason
    # Unless trials are cheap: then Optuna's default TPE, the cheapest to sample.
    assert choose(state(conditional=True, trial_seconds=0.01)).method == Method.TPE


def test_multivariate_tpe_without_pytorch() -> None:
    decision = choose(state(gp_installed=False))
    assert decision.method == Method.MULTIVARIATE_TPE and "PyTorch" in decision.reason


def test_gp_handles_integer_categorical_and_constrained_single_objective_studies() -> None:
    kinds = frozenset({"float", "int", "categorical"})
    assert choose(state(kinds=kinds, constrained=True)).method == Method.GP


def test_multivariate_tpe_past_the_gp_budget() -> None:
    assert choose(state(n_complete=999)).method == Method.GP
    assert choose(state(n_complete=1000)).method == Method.MULTIVARIATE_TPE
    assert choose(state(n_objectives=2, n_complete=249)).method == Method.GP
    assert choose(state(n_objectives=2, n_complete=250)).method == Method.MULTIVARIATE_TPE


def test_several_objectives_get_the_gp_only_up_to_three_and_without_categoricals() -> None:
    assert choose(state(n_objectives=3)).method == Method.GP
    assert choose(state(n_objectives=4)).method == Method.MULTIVARIATE_TPE
    assert choose(state(n_objectives=2, kinds=frozenset({"float", "categorical"}))).method == Method.MULTIVARIATE_TPE
    assert choose(state(n_objectives=1, kinds=frozenset({"float", "categorical"}))).method == Method.GP


def test_limits_reject_values_that_mean_nothing() -> None:
    with pytest.raises(ValueError, match="n_startup"):
        Limits(n_startup=0)
    with pytest.raises(ValueError, match="max_sampling_share"):
        Limits(max_sampling_share=0.0)
    with pytest.raises(ValueError, match="local_every"):
        Limits(local_every=-1)


def test_capping_at_the_median_keeps_the_better_half_and_flattens_the_rest() -> None:
    import numpy as np

    capped = view.cap_at_median(np.array([3.0, 1.0, 2.0, 1e9, np.inf, 0.5]))
    assert capped.tolist() == [2.5, 1.0, 2.0, 2.5, 2.5, 0.5]


def test_only_values_with_a_heavy_tail_of_bad_ones_are_capped() -> None:
    import numpy as np

    # SVR-like: most near the best, one diverging setting far above.
    svr = np.array([0.49, 0.5, 0.52, 0.6, 0.9, 1.2, 9e8])
    assert view.heavy_tailed(svr)
    assert view.shown_values(svr).tolist() == [0.49, 0.5, 0.52, 0.6, 0.6, 0.6, 0.6]
    # Hartmann-like: most near 0, the long side is the good one (down to the optimum).
    funnel = np.array([-3.1, -1.2, -0.4, -0.1, -0.05, -0.01, 0.0])
    assert not view.heavy_tailed(funnel)
    assert view.shown_values(funnel).tolist() == funnel.tolist()
    assert view.heavy_tailed(np.array([1.0, 2.0, np.inf]))
    assert not view.heavy_tailed(np.array([-np.inf, 1.0, 2.0]))
    assert not view.heavy_tailed(np.array([]))


@needs_gp
@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_the_gp_of_one_objective_sees_a_heavy_tail_of_bad_values_capped_at_the_median(
        direction: Literal["minimize", "maximize"], monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    # Minimized, the values of ``floats`` spread further above their median than below, and
    # one diverging trial makes that a heavy tail; maximized, their long side is the good one.
    sampler = ParallelSampler(seed=0, limits=Limits(max_sampling_share=math.inf, local_every=0))
    study = optuna.create_study(sampler=sampler, direction=direction)
    long_trials(study, LONG)
    if direction == "minimize":
        long_trials(study, LONG, n=1, value=1e9)
    sign = 1.0 if direction == "minimize" else -1.0
    values = sorted(sign * t.value for t in study.trials if t.value is not None)  # to minimize
    floats(study.ask())  # running, with parameters sampled by the GP, which models it next
    seen: list[list[float]] = []
    gp = sampler._gps["global"]
    original = gp.sample_relative

    def spy(copied: optuna.Study, trial: FrozenTrial, space: dict[str, BaseDistribution]) -> dict[str, Any]:
        seen.append(sorted(t.value for t in copied.get_trials(states=(TrialState.COMPLETE,)) if t.value is not None))
        return original(copied, trial, space)

    monkeypatch.setattr(gp, "sample_relative", spy)
    floats(study.ask())
    assert len(seen) == 1 and len(seen[0]) == len(values)
    if direction == "minimize":
        median = float(np.median(values))
        assert seen[0] == pytest.approx([min(v, median) for v in values])
    else:
        assert seen[0] == pytest.approx(values)


def test_the_trust_region_is_the_box_of_the_best_trials_around_the_best() -> None:
    from optuna.distributions import IntDistribution

    space = {"x": FloatDistribution(0, 1), "lr": FloatDistribution(1e-4, 1, log=True),
             "n": IntDistribution(1, 100), "kind": CategoricalDistribution(["a", "b"])}
    # 100 trials, the best 10 near x = 0.5, lr = 1e-2, n = 50, the rest spread out.
    best = [{"x": 0.5 + 0.01 * i, "lr": 1e-2 * 1.1**i, "n": 50 + i, "kind": "ab"[i % 2]} for i in range(10)]
    rest = [{"x": (i * 0.37) % 1, "lr": 10 ** (-4 * ((i * 0.61) % 1)), "n": 1 + (i * 37) % 100, "kind": "a"}
            for i in range(90)]
    box = region.trust_region(best + rest, space)
    assert box is not None
    # Centred on the best trial, as wide as the farthest of the best 10, times 1.5.
    assert (box["x"].low, box["x"].high) == pytest.approx((0.5 - 1.5 * 0.09, 0.5 + 1.5 * 0.09))  # type: ignore[attr-defined]
    assert box["lr"].log and box["lr"].low < 1e-2 < 1e-2 * 1.1**9 < box["lr"].high < 0.1  # type: ignore[attr-defined]
    assert isinstance(box["n"], IntDistribution) and box["n"].low <= 50 and box["n"].high >= 59
    assert box["kind"] == space["kind"]  # a categorical keeps its choices
    assert all(region.inside(p, box) for p in best)
    assert not all(region.inside(p, box) for p in rest)


def test_there_is_no_trust_region_without_enough_trials_or_narrower_than_the_space() -> None:
    space = {"x": FloatDistribution(0, 1), "y": FloatDistribution(0, 1)}
    assert region.trust_region([{"x": 0.5, "y": 0.5}] * 4, space) is None
    spread = [{"x": 0.1, "y": 0.1}, {"x": 0.9, "y": 0.9}, {"x": 0.1, "y": 0.9}, {"x": 0.9, "y": 0.1},
              {"x": 0.5, "y": 0.5}] * 2
    assert region.trust_region(spread, space) is None  # the best trials span the space
    narrow = region.trust_region([{"x": 0.5 + 0.001 * i, "y": 0.5} for i in range(5)], space)
    assert narrow is not None  # at least 2% of the range either side, however close they are
    assert narrow["x"].low == pytest.approx(0.48) and narrow["y"].high == pytest.approx(0.52)  # type: ignore[attr-defined]


# -- The sampler, in-process ------------------------------------------------------------------

def mixed(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -5, 5)
    y = trial.suggest_float("y", 1e-3, 10, log=True)
    n = trial.suggest_int("n", 1, 8)
    kind = trial.suggest_categorical("kind", ["a", "b", "c"])
    return (x - 1) ** 2 + math.log(y) ** 2 + abs(n - 3) + (kind != "b")


def floats(trial: optuna.Trial) -> float:
    return sum((trial.suggest_float(f"x{i}", -2, 2) - 0.5) ** 2 for i in range(3))


def conditional(trial: optuna.Trial) -> float:
    model = trial.suggest_categorical("model", ["linear", "tree"])
    if model == "linear":
        return (trial.suggest_float("alpha", 1e-4, 1, log=True) - 0.01) ** 2
    return abs(trial.suggest_int("depth", 1, 12) - 4) + trial.suggest_float("rate", 0, 1) ** 2


def in_flight(study: optuna.Study, objective: Callable[[optuna.Trial], object], n: int, p: int) -> None:
    """``n`` trials, ``p`` always in flight (asked, parameters suggested, not yet told), told
    oldest first."""
    flying: list[tuple[optuna.Trial, object]] = []
    asked = 0
    while asked < n or flying:
        while asked < n and len(flying) < p:
            trial = study.ask()
            flying.append((trial, objective(trial)))
            asked += 1
        trial, value = flying.pop(0)
        study.tell(trial, value)


def vectors(study: optuna.Study) -> list[tuple[tuple[str, object], ...]]:
    return [tuple(sorted(t.params.items())) for t in study.trials]


@contextlib.contextmanager
def decisions() -> Iterator[list[str]]:
    """The sampler's log of the method it chose for each trial."""
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger("optuna.dasktune")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def methods(seen: list[str]) -> set[str]:
    return {line.split(": ", 1)[1].split(" (")[0] for line in seen if line.startswith("Trial ")}


@needs_gp
@pytest.mark.parametrize("objective", [mixed, floats])
def test_samples_with_the_gp_with_many_trials_in_flight(objective: Callable[[optuna.Trial], float]) -> None:
    study = optuna.create_study(sampler=ParallelSampler(seed=0, limits=Limits(max_sampling_share=math.inf,
                                                                               local_every=0)))
    with decisions() as seen:
        in_flight(study, objective, n=40, p=8)
    assert methods(seen) == {"start-up", "gp"}
    local = optuna.create_study(sampler=ParallelSampler(seed=0, limits=ALWAYS_GP))  # every 2nd local by default
    with decisions() as seen:
        in_flight(local, objective, n=40, p=8)
    assert methods(seen) == {"start-up", "gp", "local gp"}
    assert len(set(vectors(local))) == 40
    assert all(t.state == TrialState.COMPLETE for t in study.trials) and len(study.trials) == 40
    assert len(set(vectors(study))) == 40


def test_samples_with_tpe_when_trials_are_cheap() -> None:
    study = optuna.create_study(sampler=ParallelSampler(seed=0))
    with decisions() as seen:
        in_flight(study, mixed, n=30, p=4)
    assert methods(seen) == {"start-up", "tpe"}
    assert any("costs more than 10%" in line for line in seen)


def long_trials(study: optuna.Study, seconds: float, n: int = 12, value: float | None = None) -> None:
    """``n`` complete trials of ``floats`` that each lasted ``seconds``, added to ``study``
    (with ``value``, that value instead of ``floats``'s)."""
    start = datetime(2026, 1, 1)
    for i in range(n):
        params = {f"x{j}": -2 + 4 * ((i * 0.37 + j * 0.61) % 1) for j in range(3)}
        study.add_trial(FrozenTrial(
            number=-1, trial_id=-1, state=TrialState.COMPLETE,
            value=floats(optuna.trial.FixedTrial(params)) if value is None else value,
            datetime_start=start, datetime_complete=start + timedelta(seconds=seconds), params=params,
            distributions={f"x{j}": FloatDistribution(-2, 2) for j in range(3)}, user_attrs={},
            system_attrs={}, intermediate_values={}))


@needs_gp
def test_chooses_the_gp_for_trials_of_a_minute_and_tpe_for_trials_of_a_millisecond() -> None:
    for seconds, expected in [(LONG, {"gp", "local gp"}), (0.001, {"tpe"})]:
        study = optuna.create_study(sampler=ParallelSampler(seed=0))
        long_trials(study, seconds)
        with decisions() as seen:
            in_flight(study, floats, n=3, p=3)
        assert methods(seen) == expected, seconds


def test_a_conditional_space_is_sampled_with_multivariate_tpe_and_keeps_every_branch() -> None:
    study = optuna.create_study(sampler=ParallelSampler(seed=0, limits=ALWAYS_GP))
    with decisions() as seen:
        in_flight(study, conditional, n=40, p=8)
    assert methods(seen) == {"start-up", "multivariate tpe"}
    assert {t.params["model"] for t in study.trials} == {"linear", "tree"}
    assert len(set(vectors(study))) == 40


@needs_gp
@pytest.mark.parametrize("directions", [["minimize", "maximize"], ["minimize", "minimize", "minimize"]])
def test_multi_objective_with_many_trials_in_flight(directions: list[str]) -> None:
    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        return (x, 1 - x * y, y)[: len(directions)]

    study = optuna.create_study(directions=directions, sampler=ParallelSampler(seed=0, limits=ALWAYS_GP))
    with decisions() as seen:
        in_flight(study, objective, n=20, p=6)
    assert methods(seen) == {"start-up", "gp"}
    assert len(study.best_trials) >= 1 and len(set(vectors(study))) == 20


def infeasible_x_above_zero(trial: FrozenTrial) -> list[float]:
    return [trial.params["x"]]


@pytest.mark.parametrize("limits", [ALWAYS_GP, Limits()], ids=["gp", "tpe"])
def test_constraints_func_makes_feasible_trials_win(limits: Limits) -> None:
    if limits is ALWAYS_GP and not gp_installed():
        pytest.skip("the GP needs PyTorch and SciPy")
    with pytest.warns() if view.GP_MODELS_RUNNING else contextlib.nullcontext():  # deprecated in Optuna 5
        sampler = ParallelSampler(seed=0, constraints_func=infeasible_x_above_zero, limits=limits)
    study = optuna.create_study(sampler=sampler)
    # Unconstrained, the best is at x = 2; feasible (x <= 0), at x = 0.
    in_flight(study, lambda t: (t.suggest_float("x", -3, 3) - 2) ** 2 + t.suggest_float("y", -1, 1) ** 2, n=60, p=8)
    assert all(view.constraint_values(t) == [t.params["x"]] for t in study.trials)
    feasible = [t for t in study.trials if t.params["x"] <= 0]
    # The GP or TPE learned where the feasible region is: most later trials sample it (without
    # the constraints, at most 4 of the last 20 do).
    assert sum(t.params["x"] <= 0 for t in study.trials[-20:]) >= 10
    assert min(t.value for t in feasible) < 5.0  # 4 at x = 0


@needs_gp
@pytest.mark.skipif(not hasattr(optuna.Trial, "set_constraint"), reason="Trial.set_constraint is Optuna 5's")
def test_constraints_set_by_the_objective_are_taken_into_account() -> None:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -3, 3)
        trial.set_constraint("x", x)  # type: ignore[attr-defined]
        return (x - 2) ** 2 + trial.suggest_float("y", -1, 1) ** 2

    study = optuna.create_study(sampler=ParallelSampler(seed=0, limits=ALWAYS_GP))
    in_flight(study, objective, n=60, p=8)
    assert sum(t.params["x"] <= 0 for t in study.trials[-20:]) >= 10


@needs_gp
@pytest.mark.parametrize("limits", [ALWAYS_GP, Limits()], ids=["gp", "tpe"])
def test_the_same_seed_gives_the_same_trials_one_at_a_time(limits: Limits) -> None:
    def run() -> list[tuple[tuple[str, object], ...]]:
        study = optuna.create_study(sampler=ParallelSampler(seed=7, limits=limits))
        study.optimize(mixed, n_trials=25)
        return vectors(study)

    first = run()
    assert run() == first
    study = optuna.create_study(sampler=ParallelSampler(seed=8, limits=limits))
    study.optimize(mixed, n_trials=25)
    assert vectors(study) != first


@pytest.mark.parametrize(("p", "n"), [(1, 40), (16, 40), (64, 80)])
def test_no_two_trials_share_a_float_vector_at_any_concurrency(p: int, n: int) -> None:
    limits = ALWAYS_GP if gp_installed() else Limits()
    study = optuna.create_study(sampler=ParallelSampler(seed=0, limits=limits))
    in_flight(study, floats, n=n, p=p)
    assert len(set(vectors(study))) == n


@needs_gp
def test_a_point_the_gp_repeats_is_moved_off_it() -> None:
    sampler = ParallelSampler(seed=0, limits=ALWAYS_GP)
    study = optuna.create_study(sampler=sampler)
    long_trials(study, LONG)
    trial = study.ask()
    taken = dict(study.trials[0].params)
    space = {f"x{j}": FloatDistribution(-2, 2) for j in range(3)}
    moved = sampler._distinct(study, study.trials[-1], space, taken)
    assert moved != taken and all(abs(moved[k] - taken[k]) < 0.1 for k in taken)
    study.tell(trial, 0.0)


@needs_gp
def test_trials_sampled_at_the_same_moment_get_different_points() -> None:
    # Two runners start trials 12 and 13 at once: neither sees the other's parameters. The
    # second (by number) makes room for the point the first is likely to take.
    data = pickle.dumps(ParallelSampler(seed=3))

    def sample(number: int) -> dict[str, object]:
        study = optuna.create_study(sampler=pickle.loads(data))
        long_trials(study, LONG)
        trials = [study.ask(), study.ask()]  # both running, neither has parameters yet
        floats(trials[number - 12])
        return trials[number - 12].params

    first, second = sample(12), sample(13)
    assert first != second
    assert max(abs(first[k] - second[k]) for k in first) > 1e-3  # not merely nudged apart


def sample_one(sampler: ParallelSampler, seconds: float) -> dict[str, object]:
    """The parameters ``sampler`` gives a new trial of a study of 12 finished trials."""
    study = optuna.create_study(sampler=sampler)
    long_trials(study, seconds)
    trial = study.ask()
    floats(trial)
    return trial.params


@pytest.mark.parametrize("seconds", [LONG, 0.001], ids=["gp", "tpe"])
def test_pickled_copies_sample_alike_and_reseeded_copies_differently(seconds: float) -> None:
    if seconds == LONG and not gp_installed():
        pytest.skip("the GP needs PyTorch and SciPy")
    sampler = ParallelSampler(seed=3)
    data = pickle.dumps(sampler)
    assert sample_one(pickle.loads(data), seconds) == sample_one(pickle.loads(data), seconds)
    reseeded = pickle.loads(data)
    reseeded.reseed_rng()  # what dasktune.optimize does on every runner's copy but the first
    assert sample_one(reseeded, seconds) != sample_one(pickle.loads(data), seconds)
    # A copy that has sampled pickles again (dasktune pickles the study it was given).
    used = pickle.loads(data)
    sample_one(used, seconds)
    assert isinstance(pickle.loads(pickle.dumps(used)), ParallelSampler)


def test_start_up_points_are_keyed_by_the_trial_number_in_every_copy() -> None:
    # Two copies sampling the first trials of one study, unseen by each other, as two
    # runners do before any result exists: still no two trials alike.
    sampler = ParallelSampler(seed=0)
    copies = [pickle.loads(pickle.dumps(sampler)) for _ in range(2)]
    copies[1].reseed_rng()
    study = optuna.create_study()
    for i in range(8):
        study.sampler = copies[i % 2]
        floats(study.ask())
    assert len(set(vectors(study))) == 8
    # The same trial numbers get the same points from any copy, reseeded or not.
    again = optuna.create_study(sampler=copies[1])
    for _ in range(8):
        floats(again.ask())
    assert vectors(again) == vectors(study)


def test_without_pytorch_it_warns_once_and_samples_with_tpe() -> None:
    script = textwrap.dedent("""
        import sys, warnings
        sys.modules["torch"] = None  # PyTorch cannot be imported
        import optuna
        from dasktune.samplers import Limits, ParallelSampler
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            samplers = [ParallelSampler(seed=0, limits=Limits(max_sampling_share=float("inf"))) for _ in range(3)]
            for sampler in samplers:
                study = optuna.create_study(sampler=sampler)
                study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.3) ** 2, n_trials=30)
        ours = [w for w in caught if "ParallelSampler" in str(w.message)]
        assert len(ours) == 1, [str(w.message) for w in caught]
        assert "PyTorch" in str(ours[0].message) and "dasktune[gp]" in str(ours[0].message)
        assert "torch" not in {name for name, module in sys.modules.items() if module is not None}
        print(study.best_value)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.split()[-1]) < 0.05


def test_without_pytorch_cheap_trials_sample_with_tpe_and_say_nothing() -> None:
    """The demo's case: trials of a millisecond never want the GP, so a missing PyTorch is
    not worth a warning."""
    script = textwrap.dedent("""
        import sys, warnings
        sys.modules["torch"] = None
        import optuna
        from dasktune.samplers import ParallelSampler
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            study = optuna.create_study(sampler=ParallelSampler(seed=0))
            study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.3) ** 2, n_trials=40)
        assert not [str(w.message) for w in caught if "ParallelSampler" in str(w.message)]
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]


# -- Where dasktune makes the study: create_study on a real cluster ---------------------------

def sleepy(trial: optuna.Trial) -> float:
    """A trial long enough that the sampler's cost is small beside it (the GP is chosen
    where PyTorch is installed), and that two runners overlap."""
    import time

    x = trial.suggest_float("x", -5, 5)
    y = trial.suggest_int("y", 0, 10)
    time.sleep(0.3)
    return (x - 1) ** 2 + (y - 3) ** 2


def test_create_study_defaults_to_the_scheduler_and_parallel_sampler_and_keeps_what_is_passed(
    client: object, tmp_path: object
) -> None:
    import dasktune
    from conftest import worker_of
    from dasktune import compat

    study = dasktune.create_study(direction="minimize")
    assert isinstance(compat.study_storage(study), dasktune.DaskStorage)
    assert isinstance(study.sampler, ParallelSampler)
    dasktune.optimize(study, sleepy, n_trials=24)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 24 == len(study.trials)
    assert len({(t.params["x"], t.params["y"]) for t in complete}) == 24  # no duplicates
    assert len({worker_of(study, t) for t in complete}) == 2  # both workers sampled and ran
    # What the user passes is used as given; a URL string becomes a DaskStorage of that URL.
    url = f"sqlite:///{tmp_path}/created.db"
    mine = dasktune.create_study(storage=url, study_name="mine", sampler=optuna.samplers.RandomSampler(seed=1))
    assert isinstance(mine.sampler, optuna.samplers.RandomSampler)
    dasktune.optimize(mine, sleepy, n_trials=4)
    assert len(optuna.load_study(study_name="mine", storage=url).trials) == 4
