"""Checkpoints that survive a worker (``dasktune.checkpoints``) and the scheduler's artifact
store (``dasktune.artifacts.DaskArtifactStore``) they are kept in by default."""

from __future__ import annotations

import io
import os
import pickle
import signal

from distributed import Client
from distributed import LocalCluster
import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState
import pytest

import dasktune
from dasktune.artifacts import DaskArtifactStore
from dasktune.checkpoints import CHECKPOINT_ATTR


class Training:
    """Ten steps, a checkpoint after each; the first attempt of a trial kills its own worker
    process (SIGKILL, as the kernel's OOM killer would) when it reaches step 7."""

    def __init__(self, store: object | None) -> None:
        self.store = store

    def __call__(self, trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        state = dasktune.checkpoints.load(trial, artifact_store=self.store)
        first = pickle.loads(state) if state is not None else 0
        for step in range(first, 10):
            if first == 0 and step == 7:
                os.kill(os.getpid(), signal.SIGKILL)
            trial.report(x + step, step)
            dasktune.checkpoints.save(trial, pickle.dumps(step + 1), artifact_store=self.store)
        return x


@pytest.mark.parametrize("where", ["scheduler", "file system"])
def test_a_retry_resumes_at_the_step_its_killed_worker_reached(where: str, tmp_path) -> None:
    store = None if where == "scheduler" else FileSystemArtifactStore(str(tmp_path))
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster):
        study = optuna.create_study(storage=dasktune.DaskStorage())
        dasktune.optimize(study, Training(store), n_trials=2, retries=1)
        trials = study.get_trials(deepcopy=False)
        remaining = DaskArtifactStore() if store is None else store
        for t in trials:  # each trial keeps one checkpoint, its last
            if t.state == TrialState.COMPLETE:
                assert pickle.loads(remaining.open_reader(t.system_attrs[CHECKPOINT_ATTR]).read()) == 10

    killed = [t for t in trials if t.state == TrialState.FAIL]
    retries = [t for t in trials if "retry_history" in t.system_attrs]
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 2  # exact
    assert len(killed) == len(retries) >= 1
    for t in killed:
        assert sorted(t.intermediate_values) == list(range(7))  # it died at step 7
    for t in retries:
        assert t.state == TrialState.COMPLETE
        assert sorted(t.intermediate_values) == [7, 8, 9]  # it resumed there, not at 0
        (original,) = [k for k in killed if k.number == t.system_attrs["failed_trial"]]
        assert t.params == original.params
    if store is not None:  # one file per trial that saved: earlier checkpoints were removed
        assert len(os.listdir(tmp_path)) == len(trials)


def test_load_without_a_checkpoint_is_none_and_save_replaces_the_last(client) -> None:
    study = optuna.create_study(storage=dasktune.DaskStorage())
    trial = study.ask()
    assert dasktune.checkpoints.load(trial) is None
    first = dasktune.checkpoints.save(trial, b"one")
    second = dasktune.checkpoints.save(trial, b"two")
    assert dasktune.checkpoints.load(trial) == b"two"
    with pytest.raises(ArtifactNotFound):
        DaskArtifactStore().open_reader(first)
    assert second != first


@pytest.mark.parametrize("size", [0, 5, 4 * 2**20, 9 * 2**20 + 3])
def test_the_scheduler_store_returns_what_was_written_from_a_worker_and_the_client(client, size: int) -> None:
    data = os.urandom(size)
    store = DaskArtifactStore()
    store.write(f"a-{size}", io.BytesIO(data))
    assert store.open_reader(f"a-{size}").read() == data
    assert client.submit(lambda: DaskArtifactStore().open_reader(f"a-{size}").read() == data).result()
    store.remove(f"a-{size}")
    with pytest.raises(ArtifactNotFound):
        store.remove(f"a-{size}")


def test_an_artifact_uploaded_on_a_worker_downloads_on_the_client(client, tmp_path) -> None:
    study = optuna.create_study(storage=dasktune.DaskStorage())

    def objective(trial: optuna.Trial) -> float:
        path = f"/tmp/dasktune-artifact-{os.getpid()}-{trial.number}.txt"
        with open(path, "w") as f:
            f.write(f"trial {trial.number}")
        optuna.artifacts.upload_artifact(artifact_store=DaskArtifactStore(), file_path=path, study_or_trial=trial)
        os.remove(path)
        return 0.0

    dasktune.optimize(study, objective, n_trials=3)
    for trial in study.trials:
        (meta,) = optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)
        target = tmp_path / f"{trial.number}.txt"
        optuna.artifacts.download_artifact(artifact_store=DaskArtifactStore(), artifact_id=meta.artifact_id,
                                           file_path=str(target))
        assert target.read_text() == f"trial {trial.number}"


def test_an_artifact_id_that_is_not_a_plain_name_is_refused(client) -> None:
    with pytest.raises(ValueError, match="Not an artifact id"):
        DaskArtifactStore().open_reader("../../etc/passwd")


def test_a_checkpoint_resumes_through_a_remote_scheduler_with_no_shared_configuration(process_cluster, tmp_path) -> None:
    """Real `dask scheduler` and `dask worker` processes: the store needs nothing but the
    scheduler's address, and a retry on the other worker resumes from what the killed one
    saved."""
    with process_cluster.client() as client:
        study = optuna.create_study(storage=dasktune.DaskStorage())
        dasktune.optimize(study, Training(None), n_trials=1, retries=1, concurrency=1)
        trials = study.get_trials(deepcopy=False)
        directory = client.run_on_scheduler(lambda dask_scheduler: str(dask_scheduler.plugins["dasktune-artifacts"].directory))
    (killed,) = [t for t in trials if t.state == TrialState.FAIL]
    (retry,) = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(killed.intermediate_values) == list(range(7))
    assert sorted(retry.intermediate_values) == [7, 8, 9]
    # Kept where the Dask config says (the fixture's: the test's directory), one checkpoint
    # per trial: its last.
    assert directory == str(tmp_path / "artifacts") and len(os.listdir(directory)) == len(trials)
