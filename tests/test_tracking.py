"""Experiment tracking through Optuna's own callbacks, as ``optimize`` callbacks: they run in
the calling process, once per finished trial, so a tracker sees every trial of the cluster
once. MLflow with a local SQLite store, Weights & Biases offline."""

from __future__ import annotations

from pathlib import Path
import warnings

import optuna
import pytest

import dasktune

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # both callbacks: deprecated in Optuna 4.9


def _objective(trial: optuna.Trial) -> float:
    return (trial.suggest_float("x", -2, 2) - 0.5) ** 2


def test_mlflow_logs_one_run_per_trial_with_its_params_and_value(client, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from optuna_integration import MLflowCallback

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = optuna.create_study(storage=dasktune.DaskStorage(), study_name="tracked")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        callback = MLflowCallback(tracking_uri=uri, metric_name="loss")
    dasktune.optimize(study, _objective, n_trials=20, callbacks=[callback])

    tracker = MlflowClient(uri)
    experiment = tracker.get_experiment_by_name("tracked")
    runs = tracker.search_runs([experiment.experiment_id], max_results=100)
    logged = sorted((float(r.data.params["x"]), r.data.metrics["loss"]) for r in runs)
    assert logged == sorted((t.params["x"], t.value) for t in study.trials)


def test_weights_and_biases_offline_writes_one_run_per_trial(client, tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    from optuna_integration import WeightsAndBiasesCallback

    study = optuna.create_study(storage=dasktune.DaskStorage())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        callback = WeightsAndBiasesCallback(
            metric_name="loss", as_multirun=True,
            wandb_kwargs={"mode": "offline", "dir": str(tmp_path), "project": "dasktune-test"},
        )
    dasktune.optimize(study, _objective, n_trials=20, callbacks=[callback])

    # Offline runs are W&B's binary record logs; each holds its trial's config and
    # summary as JSON text, which is what is looked for.
    logs = [p.read_bytes() for p in (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")]
    assert len(logs) == 20
    for trial in study.trials:
        holding = [log for log in logs if repr(trial.params["x"]).encode() in log and repr(trial.value).encode() in log]
        assert len(holding) == 1, f"trial {trial.number} is in {len(holding)} runs"
