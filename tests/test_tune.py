"""dasktune.tune on a real LocalCluster: domains, run's arguments, typed spaces."""

from __future__ import annotations

from pathlib import Path
import time

from distributed import Client
from distributed import LocalCluster
import optuna
import pytest

import dasktune
from dasktune import tune
from dasktune.tune.reporting import RESULT
from dasktune.tune.run import INFEASIBLE

pytestmark = pytest.mark.oldest  # also run on the oldest admitted Optuna and distributed


def quadratic(config: dict) -> dict:
    x, y = config["a"]["x"], config["y"]
    return {"loss": (x - 2) ** 2 + (y + 1) ** 2, "x": x}


def test_domains_are_checked_when_the_space_is_built() -> None:
    for config, message in [
        ({"lr": tune.uniform(1, 1)}, "lr: the lower bound 1 must be below"),
        ({"net": {"lr": tune.loguniform(0, 1)}}, "net/lr: a log-scaled domain needs a positive"),
        ({"act": tune.choice([])}, "act: choice() needs at least one"),
        ({"m": tune.choice([{"d": tune.randint(3, 3)}])}, "m/0/d: the lower bound"),
    ]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            tune.SearchSpace(config)


def test_finds_a_known_optimum_and_returns_nested_configs(client: Client) -> None:
    config = {"a": {"x": tune.uniform(-5, 5)}, "y": tune.randint(-5, 6), "fixed": 3}
    analysis = tune.run(
        quadratic, config, metric="loss", mode="min", num_samples=60, verbose=0,
        search_alg=optuna.samplers.TPESampler(seed=0, constant_liar=True),
    )
    # The documented tolerance: within 0.5 of the minimum (0 at x=2, y=-1) in 60 samples.
    assert analysis.best_result["loss"] < 0.5
    assert analysis.best_config["y"] == -1 and abs(analysis.best_config["a"]["x"] - 2) < 0.71
    assert analysis.best_config["fixed"] == 3
    assert len(analysis.trials) == 60
    for trial in analysis.trials:
        assert set(trial.config) == {"a", "y", "fixed"} and set(trial.config["a"]) == {"x"}
        assert trial.last_result["loss"] == quadratic(trial.config)["loss"]
    frame = analysis.results
    assert len(frame) == 60 and {"config/a/x", "config/y", "loss"} <= set(frame.columns)
    assert analysis.study.best_value == analysis.best_result["loss"]


def choose_model(config: dict) -> float:
    model = config["model"]
    return model["c"] if model["kind"] == "linear" else float(model["depth"])


def test_nested_choice_of_dicts(client: Client) -> None:
    config = {"model": tune.choice([
        {"kind": "linear", "c": tune.loguniform(1e-3, 1.0)},
        {"kind": "tree", "depth": tune.qrandint(2, 8, 2)},
    ])}
    analysis = tune.run(choose_model, config, num_samples=16, verbose=0)
    kinds = {t.config["model"]["kind"] for t in analysis.trials}
    assert kinds == {"linear", "tree"}
    for trial in analysis.trials:
        model = trial.config["model"]
        assert set(model) == ({"kind", "c"} if model["kind"] == "linear" else {"kind", "depth"})
        if model["kind"] == "tree":
            assert model["depth"] in (2, 4, 6, 8)
    assert analysis.best_result["_metric"] == min(t.last_result["_metric"] for t in analysis.trials)


def sleepy(config: dict) -> float:
    time.sleep(0.05)
    return config["x"]


def test_budget_only_run(client: Client) -> None:
    started = time.monotonic()
    analysis = tune.run(sleepy, {"x": tune.uniform(0, 1)}, num_samples=-1, time_budget_s=1.5, verbose=0)
    assert time.monotonic() - started < 15
    assert len(analysis.trials) > 4
    assert all(t.status == "COMPLETE" for t in analysis.trials)
    with pytest.raises(ValueError, match="time_budget_s"):
        tune.run(sleepy, {"x": tune.uniform(0, 1)}, num_samples=-1)


def test_points_to_evaluate_run_first(client: Client) -> None:
    points = [{"a": {"x": 2.0}, "y": -1}, {"a": {"x": -4.0}, "y": 5}]
    analysis = tune.run(
        quadratic, {"a": {"x": tune.uniform(-5, 5)}, "y": tune.randint(-5, 6)}, metric="loss",
        num_samples=6, points_to_evaluate=points, verbose=0, search_alg=optuna.samplers.RandomSampler(),
    )
    by_number = {t.trial_id: t for t in analysis.trials}
    assert {by_number[0].config["a"]["x"], by_number[1].config["a"]["x"]} == {2.0, -4.0}
    assert analysis.best_result["loss"] == 0.0 and len(analysis.trials) == 6


def test_evaluated_rewards_are_recorded_not_run(client: Client) -> None:
    points = [{"a": {"x": 1.0}, "y": 0}, {"a": {"x": 3.0}, "y": 2}]
    analysis = tune.run(
        quadratic, {"a": {"x": tune.uniform(-5, 5)}, "y": tune.randint(-5, 6)}, metric="loss",
        num_samples=4, points_to_evaluate=points, evaluated_rewards=[7.5, 0.25], verbose=0,
    )
    assert len(analysis.trials) == 6  # the two given, four run
    given = [t for t in analysis.trials if t.frozen_trial.datetime_start is None or t.trial_id < 2]
    assert sorted(t.last_result["loss"] for t in given) == [0.25, 7.5]  # not what quadratic says
    assert [t.config for t in given] == [{"a": {"x": 1.0}, "y": 0}, {"a": {"x": 3.0}, "y": 2}]
    with pytest.raises(ValueError, match="one reward per point"):
        tune.run(quadratic, {"y": tune.randint(0, 3)}, points_to_evaluate=points, evaluated_rewards=[1.0])


def positive_x(config: dict) -> float:
    return config["x"]


def test_config_constraints_skip_infeasible_configs(client: Client) -> None:
    analysis = tune.run(
        sleepy, {"x": tune.uniform(-1, 1)}, num_samples=20, verbose=0,
        config_constraints=[(positive_x, "<=", 0.0)],
    )
    for trial in analysis.trials:
        if trial.config["x"] > 0:
            assert trial.status == "PRUNED" and "not <= 0.0" in trial.frozen_trial.user_attrs[INFEASIBLE]
            assert RESULT not in trial.frozen_trial.user_attrs  # it never ran
        else:
            assert trial.status == "COMPLETE"
    assert analysis.best_config["x"] <= 0


def loss_and_accuracy(config: dict) -> dict:
    x = config["x"]
    return {"loss": x, "accuracy": x}  # the lower the loss, the worse the accuracy


def test_metric_constraints_exclude_violating_trials_from_the_best(client: Client) -> None:
    analysis = tune.run(
        loss_and_accuracy, {"x": tune.uniform(0, 1)}, metric="loss", mode="min", num_samples=20,
        metric_constraints=[("accuracy", ">=", 0.5)], verbose=0,
    )
    best = analysis.best_result
    assert best["accuracy"] >= 0.5
    assert best["loss"] == min(t.last_result["loss"] for t in analysis.trials if t.last_result["accuracy"] >= 0.5)
    assert min(t.last_result["loss"] for t in analysis.trials) < 0.5  # the unconstrained best differs


def epochs(config: dict) -> None:
    for epoch in range(1, 17):
        time.sleep(0.01)
        tune.report(loss=config["x"] + 1.0 / epoch, epoch=epoch)


def test_early_stopping_stops_unpromising_trials_across_workers(client: Client) -> None:
    analysis = tune.run(
        epochs, {"x": tune.uniform(0, 10)}, metric="loss", mode="min", num_samples=24,
        prune_attr="epoch", min_resource=1, max_resource=16, reduction_factor=2, verbose=0,
        search_alg=optuna.samplers.RandomSampler(seed=3),
    )
    pruned = [t for t in analysis.trials if t.status == "PRUNED"]
    assert pruned, "no trial was stopped early"
    # Stopped before the end (Hyperband may also stop one at its last rung).
    assert any(len(t.frozen_trial.intermediate_values) < 16 for t in pruned)
    for trial in pruned:
        assert trial.last_result["epoch"] == max(trial.frozen_trial.intermediate_values)
    best = analysis.best_trial
    assert best.status == "COMPLETE" and best.last_result["epoch"] == 16


def always_fails(config: dict) -> float:
    raise RuntimeError("the GPU is on fire")


def test_max_failure_stops_the_run_with_a_clear_error(client: Client) -> None:
    with pytest.raises(RuntimeError, match="after 3 consecutive failed trials.*the GPU is on fire"):
        tune.run(always_fails, {"x": tune.uniform(0, 1)}, num_samples=40, max_failure=3, verbose=0)


def where_and_when(config: dict) -> dict:
    from distributed import get_worker

    start = time.time()
    time.sleep(0.2)
    return {"_metric": config["x"], "worker": get_worker().address, "start": start, "end": time.time()}


def test_resources_per_trial_limit_where_and_how_many(tmp_path: Path) -> None:
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=False, resources={"GPU": 1},
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        analysis = tune.run(where_and_when, {"x": tune.uniform(0, 1)}, num_samples=6,
                            resources_per_trial={"GPU": 1}, client=client, verbose=0)
        assert len(analysis.trials) == 6
        runs: dict[str, list] = {}
        for trial in analysis.trials:
            runs.setdefault(trial.last_result["worker"], []).append(trial.last_result)
        for spans in runs.values():  # one GPU each: never two trials at once on a worker
            spans.sort(key=lambda r: r["start"])
            assert all(a["end"] <= b["start"] for a, b in zip(spans, spans[1:]))
        # Trials that fit nowhere do not run.
        with pytest.warns(UserWarning, match=r"No worker .*'GPU': 2.*--resources \"GPU=2\""):
            none = tune.run(where_and_when, {"x": tune.uniform(0, 1)}, num_samples=2,
                            time_budget_s=1, resources_per_trial={"GPU": 2}, client=client, verbose=0)
        assert [t.status for t in none.trials] == []


def test_local_dir_makes_the_run_resumable(client: Client, tmp_path: Path) -> None:
    first = tune.run(positive_x, {"x": tune.uniform(0, 1)}, num_samples=5, local_dir=str(tmp_path),
                     name="exp", verbose=0)
    assert (tmp_path / "exp.log").exists() and len(first.trials) == 5
    second = tune.run(positive_x, {"x": tune.uniform(0, 1)}, num_samples=4, local_dir=str(tmp_path),
                      name="exp", verbose=0)
    assert len(second.trials) == 9
    assert [t.config for t in second.trials[:5]] == [t.config for t in first.trials]


@tune.typed_space
class Model:
    lr: float = tune.loguniform(1e-4, 1.0)
    layers: int = tune.qrandint(1, 4)
    activation: str = tune.choice(["relu", "tanh"])
    dropout: float = 0.1


def typed_training(model: Model) -> float:
    assert isinstance(model, Model) and model.dropout == 0.1
    return model.lr * model.layers + (0.0 if model.activation == "relu" else 1.0)


def test_typed_space_with_tune_run_and_optimize(client: Client) -> None:
    analysis = tune.run(typed_training, Model, num_samples=10, verbose=0)
    assert all(isinstance(t.config, Model) for t in analysis.trials)
    assert isinstance(analysis.best_config, Model)

    study = optuna.create_study(storage=dasktune.DaskStorage())
    run = dasktune.optimize(study, typed_training, n_trials=8, search_space=Model)
    assert len(run.trials) == 8
    for trial in study.trials:
        assert set(trial.params) == {"lr", "layers", "activation"}
        assert trial.value == typed_training(Model(**trial.params))


def test_typed_space_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"Bad\.depth: an int domain on a field of type float"):
        @tune.typed_space
        class Bad:
            depth: float = tune.randint(1, 3)


def test_any_optuna_sampler_and_the_default(client: Client) -> None:
    analysis = tune.run(positive_x, {"x": tune.uniform(0, 1)}, num_samples=3, verbose=0,
                        search_alg=optuna.samplers.QMCSampler(seed=0))
    assert isinstance(analysis.study.sampler, optuna.samplers.QMCSampler)
    default = tune.run(positive_x, {"x": tune.uniform(0, 1)}, num_samples=2, verbose=0)
    assert isinstance(default.study.sampler, dasktune.ParallelSampler)


def test_report_outside_a_trial_says_where_to_call_it() -> None:
    with pytest.raises(RuntimeError, match="call it from the training function"):
        tune.report(loss=1.0)


def test_low_cost_partial_config_mode_max_and_cat_hp_cost(client: Client) -> None:
    space = {"x": tune.uniform(0, 1), "kind": tune.choice(["cheap", "costly"])}
    with pytest.warns(UserWarning, match="cat_hp_cost .* ignored"):
        analysis = tune.run(
            loss_and_accuracy, space, metric="accuracy", mode="max", num_samples=8, verbose=0,
            low_cost_partial_config={"kind": "cheap"}, cat_hp_cost={"kind": [1, 10]},
        )
    first = min(analysis.trials, key=lambda t: t.trial_id)
    assert first.config["kind"] == "cheap"  # the first trial starts from the low-cost point
    assert analysis.study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert analysis.best_result["accuracy"] == max(t.last_result["accuracy"] for t in analysis.trials)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        tune.run(loss_and_accuracy, space, mode="minimize")


def test_report_intermediate_result_stops_early_by_report_count(client: Client) -> None:
    def curve(config: dict) -> None:
        for _ in range(12):
            time.sleep(0.005)
            tune.report(config["x"])  # a bare value: the metric "_metric"

    analysis = tune.run(
        curve, {"x": tune.uniform(0, 1)}, num_samples=30, report_intermediate_result=True,
        verbose=0, search_alg=optuna.samplers.RandomSampler(seed=1),
    )
    assert isinstance(analysis.study.pruner, optuna.pruners.SuccessiveHalvingPruner)
    pruned = [t for t in analysis.trials if t.status == "PRUNED"]
    assert pruned and all(len(t.frozen_trial.intermediate_values) < 12 for t in pruned)
    assert analysis.best_result["_metric"] == min(
        t.last_result["_metric"] for t in analysis.trials if t.status == "COMPLETE"
    )
