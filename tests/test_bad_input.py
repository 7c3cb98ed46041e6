"""Bad input gets an error at the caller that names the argument or URL and the fix, and
loses nothing already stored: tune.run's spaces and metrics, storage URLs, the scheduler's
allow-list of storage URLs (on a real ``dask scheduler`` process)."""

from __future__ import annotations

import json
from pathlib import Path
import re
import time

import dask.config
from distributed import Client
from distributed import LocalCluster
import optuna
from optuna.trial import TrialState
import pytest

import dasktune
from dasktune import tune
from dasktune.storage import backends
from dasktune.tune.reporting import RESULT

from conftest import ProcessCluster

# -- tune.run --------------------------------------------------------------------------


def sizes(config: dict) -> dict:
    return {"loss": sum(config["layers"]) + config["opt"]["lr"], "layers": config["layers"]}


@tune.typed_space
class Net:
    layers: list = tune.choice([[64, 64], [100]])


def net_size(net: Net) -> float:
    assert isinstance(net.layers, list)
    return float(sum(net.layers))


def test_choices_of_lists_and_dicts_reach_the_function_and_the_results_as_values(client: Client) -> None:
    space = {
        "layers": tune.choice([[64, 64], [128], [8, 8, 8]]),
        "opt": tune.choice([{"name": "sgd", "lr": 0.1}, {"name": "adam", "lr": 0.001}]),
    }
    analysis = tune.run(sizes, space, metric="loss", num_samples=8, verbose=0,
                        points_to_evaluate=[{"layers": [8, 8, 8], "opt": {"name": "adam", "lr": 0.001}}])
    assert [t.status for t in analysis.trials] == ["COMPLETE"] * 8
    first = min(analysis.trials, key=lambda t: t.trial_id)
    assert first.config == {"layers": [8, 8, 8], "opt": {"name": "adam", "lr": 0.001}}
    for trial in analysis.trials:
        assert trial.config["layers"] in ([64, 64], [128], [8, 8, 8])
        assert trial.last_result["layers"] == trial.config["layers"]  # a reported list stays a list
    assert analysis.best_config == {"layers": [8, 8, 8], "opt": {"name": "adam", "lr": 0.001}}
    assert set(map(tuple, analysis.results["config/layers"])) <= {(64, 64), (128,), (8, 8, 8)}

    study = optuna.create_study(storage=dasktune.DaskStorage())  # typed, define-and-run
    dasktune.optimize(study, net_size, n_trials=4, search_space=Net)
    assert len(study.trials) == 4 and {t.value for t in study.trials} <= {128.0, 100.0}


def test_a_domain_that_would_never_be_sampled_is_refused_naming_its_key() -> None:
    for config, key in [
        ({"layers": [tune.randint(1, 4), 3]}, "layers"),
        ({"net": {"widths": (tune.uniform(0, 1),)}}, "net/widths"),
        ({"act": tune.choice([tune.uniform(0, 1), 3])}, "act/0"),
        ({"arch": tune.choice([[16], [tune.randint(1, 4)]])}, "arch/1"),
        ({"m": tune.choice([{"widths": [tune.randint(1, 4)]}])}, "m/0/widths"),
    ]:
        with pytest.raises(ValueError, match=rf"^{re.escape(key)}: a domain .* never sampled.* dict"):
            tune.run(sizes, config)  # raised while building the space: before any client is needed
    with pytest.raises(ValueError, match=r"Bad\.arch: a typed field's choices are values"):
        @tune.typed_space
        class Bad:
            arch: dict = tune.choice([{"width": tune.randint(1, 4)}])


def first_layer(config: dict) -> list:
    time.sleep(0.2)  # long enough that the run stops well before its 40 samples
    return config["layers"]  # a list, not a number


def test_a_metric_that_is_not_a_number_raises_at_the_caller(client: Client) -> None:
    storage = dasktune.DaskStorage()
    with pytest.raises(ValueError) as raised:
        tune.run(first_layer, {"layers": tune.choice([[64, 64], [128]])}, num_samples=40, verbose=0,
                 storage=storage, name="lists")
    message = str(raised.value)
    assert re.search(r"^tune\.run stopped at trial #\d+: metric='_metric': the training function gave "
                     r"'_metric' = \[(64, 64|128)\] \(list\), not a number\. Return a number", message)
    # Stopped at the first failure, not after every sample failed; the trials stay, ended.
    trials = optuna.load_study(study_name="lists", storage=storage).trials
    assert 1 <= len(trials) < 10
    assert all(t.state == TrialState.FAIL for t in trials)
    assert all(t.user_attrs[RESULT]["_metric"] in ([64, 64], [128]) for t in trials)


def loss_and_x(config: dict) -> dict:
    time.sleep(0.2)
    return {"loss": config["x"] ** 2, "x": config["x"]}


def test_a_missing_metric_raises_naming_the_reported_ones_and_keeps_the_study(
    client: Client, tmp_path: Path
) -> None:
    space = {"x": tune.uniform(-1, 1)}
    first = tune.run(loss_and_x, space, metric="loss", num_samples=3, local_dir=str(tmp_path),
                     name="exp", verbose=0)
    with pytest.raises(ValueError, match=r"^tune\.run stopped at trial #\d+: metric='nope': the "
                                         r"training function reported \['loss', 'x'\], not 'nope'\. "
                                         r"Pass metric= one of those"):
        tune.run(loss_and_x, space, metric="nope", num_samples=40, local_dir=str(tmp_path), name="exp",
                 verbose=0)
    storage = dasktune.DaskStorage(f"journal://{tmp_path / 'exp.log'}")
    trials = optuna.load_study(study_name="exp", storage=storage).trials
    assert [(t.params, t.value) for t in trials[:3]] == [(t.frozen_trial.params, t.frozen_trial.value)
                                                         for t in first.trials]
    failed = trials[3:]
    assert 1 <= len(failed) < 10 and all(t.state == TrialState.FAIL for t in failed)
    resumed = tune.run(loss_and_x, space, metric="loss", num_samples=2, local_dir=str(tmp_path),
                       name="exp", verbose=0)
    assert len(resumed.trials) == len(trials) + 2
    assert resumed.best_result["loss"] == min(t.last_result["loss"] for t in resumed.trials
                                              if t.status == "COMPLETE")
    with pytest.raises(ValueError, match=r"metric='_metric': the training function reported nothing\. "
                                         r"Return a number or a dict of metrics, or call tune\.report"):
        tune.run(silent, space, num_samples=40, verbose=0)


def silent(config: dict) -> None:
    time.sleep(0.2)


# -- storage URLs ------------------------------------------------------------------------


def storage_names(client: Client) -> list[str]:
    return client.sync(client.scheduler.dasktune_storage_names)


def test_a_storage_that_cannot_be_opened_names_the_url_and_the_scheduler(
    client: Client, tmp_path: Path
) -> None:
    kept = dasktune.DaskStorage(f"sqlite:///{tmp_path / 'kept.db'}", name="kept")
    study = optuna.create_study(storage=kept, study_name="kept")
    study.add_trial(optuna.trial.create_trial(value=1.0))
    missing = tmp_path / "no-such-dir"
    for url, fix in [
        (f"sqlite:///{missing}/a.db", "directory must exist on the scheduler's machine"),
        (f"journal://{missing}/a.log", "directory must exist on the scheduler's machine"),
        ("postgresql://tuner:s3cret@127.0.0.1:1/optuna", "server must be reachable from the scheduler"),
        ("redis://127.0.0.1:1/0", "server must be reachable from the scheduler"),
    ]:
        with pytest.raises(ValueError) as raised:
            dasktune.DaskStorage(url, name="broken")
        shown = url.replace("s3cret", "***")
        assert type(raised.value) is ValueError  # not StorageInternalError
        assert str(raised.value).startswith(f"Could not open storage {shown!r} on the scheduler: ")
        assert "opened by the scheduler's process" in str(raised.value) and fix in str(raised.value)
        assert "s3cret" not in str(raised.value)
    assert not missing.exists()
    # Nothing was half-made, nothing stored was lost: the name is free, the other storage whole.
    assert "broken" not in storage_names(client)
    dasktune.DaskStorage(f"sqlite:///{tmp_path / 'fixed.db'}", name="broken")
    assert [t.value for t in optuna.load_study(study_name="kept", storage=kept).trials] == [1.0]


def test_a_database_url_without_host_or_database_is_refused_before_it_is_sent(cluster: LocalCluster) -> None:
    with Client(cluster) as closed:
        pass  # a client that can send nothing: the check must be the client's own
    for url, missing in [
        ("postgresql://", "host and no database"),
        ("postgresql://db.example.com", "database"),
        ("postgresql+psycopg://tuner:s3cret@/optuna", "host"),
        ("mysql://tuner@/optuna", "host"),
    ]:
        shown = url.replace("s3cret", "***")
        scheme = url.split("://")[0].split("+")[0]
        with pytest.raises(ValueError, match=re.escape(
            f"Storage URL {shown!r} names no {missing}: the scheduler would connect to its driver's "
            f"defaults. Use '{scheme}://user:password@host:port/database'"
        )):
            dasktune.DaskStorage(url, client=closed)
    # A socket directory in the query string is a host.
    backends.check_url("postgresql://tuner@/optuna?host=/var/run/postgresql")


# -- the scheduler's allow-list -----------------------------------------------------------


def test_allowed_storage_restricts_where_clients_make_the_scheduler_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    # Dask parses an environment variable's value as a Python literal: a list here.
    monkeypatch.setenv("DASK_DISTRIBUTED__DASKTUNE__ALLOWED_STORAGE", json.dumps([f"sqlite:///{allowed}/"]))
    cluster = ProcessCluster(tmp_path)
    try:
        cluster.start_scheduler()
        with cluster.client() as client:
            inside = dasktune.DaskStorage(f"sqlite:///{allowed}/ok.db", client=client)
            study = optuna.create_study(storage=inside, study_name="inside")
            study.add_trial(optuna.trial.create_trial(value=2.0))
            memory = dasktune.DaskStorage(client=client)  # memory writes nowhere: always allowed
            optuna.create_study(storage=memory, study_name="in-memory")

            for url, written in [
                (f"sqlite:///{tmp_path}/other.db", tmp_path / "other.db"),
                (f"sqlite:///{allowed}/../escape.db", tmp_path / "escape.db"),
                (f"journal://{allowed}.log", tmp_path / "allowed.log"),
            ]:
                with pytest.raises(ValueError, match=re.escape(f"Storage URL {url!r}")) as raised:
                    dasktune.DaskStorage(url, client=client)
                assert (
                    "is not allowed on this scheduler: its 'distributed.dasktune.allowed-storage' "
                    f"config allows only URLs starting with {[f'sqlite:///{allowed}/']!r}"
                ) in str(raised.value)
                assert not written.exists()

            assert [t.value for t in optuna.load_study(study_name="inside", storage=inside).trials] == [2.0]
            assert len(client.sync(client.scheduler.dasktune_storage_names)) == 2
    finally:
        cluster.close()


def test_allowed_storage_compares_normalized_urls() -> None:
    with dask.config.set({backends.ALLOWED_STORAGE: "journal:///srv/tune/"}):  # one prefix, a str
        backends.check_allowed("journal:///srv/tune/a.log")
        for url in ["journal:///srv/tune/../etc/a.log", "journal:///srv/tuner.log"]:
            with pytest.raises(ValueError, match="not allowed on this scheduler"):
                backends.check_allowed(url)
    with dask.config.set({backends.ALLOWED_STORAGE: ["postgresql://tuner@db:5432/", "sqlite:////srv/tune/"]}):
        backends.check_allowed("postgresql://tuner@db:5432/optuna")
        for url in [
            "postgresql://tuner@db:5432/optuna?host=elsewhere",  # the query would redirect it
            "sqlite:////srv/tune/a.db?mode=rwc&uri=true",  # SQLite's URI mode names its own path
        ]:
            with pytest.raises(ValueError, match=r"sets its own host, port or database .* SQLite URI"):
                backends.check_allowed(url)
