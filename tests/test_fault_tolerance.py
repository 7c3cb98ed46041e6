"""Fault tolerance with real processes: workers and schedulers killed with SIGKILL,
heartbeats, load from many threads, and bad input at the storage boundary."""

from __future__ import annotations

from collections import Counter
import contextlib
import os
from pathlib import Path
import signal
import threading
import time
import warnings

import dask
from distributed import Client
from distributed import LocalCluster
import optuna
from optuna.trial import TrialState
import pytest

from conftest import ProcessCluster
from conftest import wait_for
from conftest import worker_of
import dasktune
from dasktune import compat
from dasktune import DaskStorage
from dasktune.storage import wire
from dasktune.storage.backends import open_backend
from dasktune.storage.wire import FAIL_REASON
from dasktune.storage.wire import PLUGIN_NAME

pytestmark = pytest.mark.oldest  # also run on the oldest admitted Optuna and distributed


def hang(trial: optuna.Trial) -> float:
    trial.suggest_float("x", 0, 1)
    time.sleep(120)
    return 0.0


def three_seconds(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    time.sleep(3.0)
    return x


def second(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    time.sleep(1.0)
    return x


def poison(trial: optuna.Trial) -> float:
    x = trial.suggest_int("x", 0, 100)
    if x == 100:
        os._exit(1)  # takes its worker process down, every time
    return x


def kill_worker_running(client: Client, study: optuna.Study) -> str:
    """SIGKILL the worker process of a RUNNING trial, once its parameters reached the
    scheduler; the worker's address."""
    running = wait_for(
        lambda: [t for t in study.trials if t.state == TrialState.RUNNING and t.params],
        message="a running trial with its parameters",
    )
    address = worker_of(study, running[0])
    os.kill(client.run(os.getpid)[address], signal.SIGKILL)
    return address


def kept_by(name: str):
    """What the scheduler keeps for the storage ``name``, by kind (``StorageHost.sizes``)."""

    def read(dask_scheduler) -> dict[str, int]:
        return dask_scheduler.plugins[PLUGIN_NAME].hosts[name].sizes()

    return read


def assert_nothing_left_running(client: Client, storage: DaskStorage) -> None:
    """The scheduler's bookkeeping after a run ended: no trial it thinks runs, no run's
    trial, no heartbeat."""
    kept = client.run_on_scheduler(kept_by(storage.name))
    assert (kept["trials known to run"], kept["runs' trials"], kept["heartbeats"]) == (0, 0, 0)


def test_worker_death_fails_its_running_trial(process_cluster: ProcessCluster) -> None:
    with process_cluster.client() as client:
        study = optuna.create_study(storage=DaskStorage())
        future = client.submit(study.optimize, hang, n_trials=1, pure=False, retries=0)
        dead = kill_worker_running(client, study)
        trial = wait_for(
            lambda: study.trials[0] if study.trials[0].state.is_finished() else None,
            timeout=15,
            message="the dead worker's trial to fail",
        )
        assert trial.state == TrialState.FAIL
        assert trial.system_attrs[FAIL_REASON] == (
            f"worker {dead} died while running this trial: its connection to the scheduler "
            "closed (the process was killed or crashed, or its network failed)"
        )
        del future


def test_optimize_retries_a_trial_lost_with_its_worker(process_cluster: ProcessCluster) -> None:
    with process_cluster.client() as client:
        study = optuna.create_study(storage=DaskStorage())
        outcome: dict = {}
        thread = threading.Thread(
            target=lambda: outcome.update(run=dasktune.optimize(study, second, n_trials=6))
        )
        thread.start()
        kill_worker_running(client, study)
        process_cluster.start_worker()
        thread.join(timeout=120)
        run = outcome["run"]
        assert len(run.trials) == 6
        assert {t.state for t in run.trials} == {TrialState.COMPLETE}
        lost = [t for t in study.trials if t.state == TrialState.FAIL]
        assert len(lost) == 1 and "died while running" in lost[0].system_attrs[FAIL_REASON]
        [retry] = [t for t in study.trials if t.system_attrs.get("failed_trial") == lost[0].number]
        assert retry.state == TrialState.COMPLETE
        assert retry.params == lost[0].params
        assert retry.system_attrs["retry_history"] == [lost[0].number]
        assert len(study.trials) == 7  # six that ended by themselves, one lost
        assert run.status()["lost"] == 1
        assert_nothing_left_running(client, compat.study_storage(study))


def test_objective_that_kills_its_worker_is_not_retried_forever() -> None:
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            study = optuna.create_study(storage=DaskStorage(client=client))
            study.enqueue_trial({"x": 100})
            for x in range(4):
                study.enqueue_trial({"x": x})
            run = dasktune.optimize(study, poison, n_trials=5, retries=1)
            poisoned = [t for t in study.trials if t.system_attrs["fixed_params"]["x"] == 100]
            assert [t.state for t in poisoned] == [TrialState.FAIL, TrialState.FAIL]
            assert all("died while running" in t.system_attrs[FAIL_REASON] for t in poisoned)
            assert len(run.trials) == 5  # the last poisoned trial used up its budget slot
            assert Counter(t.state for t in run.trials) == {
                TrialState.COMPLETE: 4,
                TrialState.FAIL: 1,
            }


def test_study_survives_a_killed_scheduler(durable_url: str, tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path)
    port = int(cluster.start_scheduler().rsplit(":", 1)[1])
    cluster.start_worker()
    cluster.start_worker()
    reported: list[int] = []
    try:
        with cluster.client() as client:
            client.wait_for_workers(2)
            storage = DaskStorage(durable_url, name="durable")
            study = optuna.create_study(storage=storage, study_name="survivor")
            errors: list[BaseException] = []

            def optimize() -> None:
                try:
                    dasktune.optimize(
                        study,
                        second,
                        n_trials=40,
                        callbacks=[lambda s, t: reported.append(t.number)],
                    )
                except BaseException as e:  # the scheduler dies under it
                    errors.append(e)

            thread = threading.Thread(target=optimize)
            thread.start()
            # RUNNING in the database itself: the client's copy may still show a trial that
            # has just finished (then none would be running when the scheduler dies).
            stored = optuna.load_study(study_name="survivor", storage=open_backend(durable_url))
            wait_for(
                lambda: len(reported) >= 3 and bool(stored.get_trials(deepcopy=False, states=(TrialState.RUNNING,))),
                timeout=60,
                message="three trials, and one running",
            )
            cluster.kill(cluster.scheduler)  # SIGKILL mid-optimization
            cluster.close()
            thread.join(timeout=60)
            assert errors, "optimize reports the lost scheduler"

            started = time.monotonic()
            with pytest.raises(ConnectionError, match="works again once the client reconnects"):
                study.trials
            assert time.monotonic() - started < 5, "an error, not a hang"

            cluster.start_scheduler(port=port)
            cluster.start_worker()
            cluster.start_worker()
            wait_for(lambda: client.status == "running", timeout=60, message="reconnection")
            client.wait_for_workers(2)
            # The same storage object works again: it re-opens itself on the new scheduler.
            trials = study.trials
            states = {t.number: t.state for t in trials}
            assert all(states[n] == TrialState.COMPLETE for n in reported)
            assert TrialState.RUNNING not in states.values()
            before = len(trials)
            waiting = sum(t.state == TrialState.WAITING for t in trials)
            assert any(
                "scheduler stopped" in t.system_attrs.get(FAIL_REASON, "") for t in trials
            ), f"trials RUNNING when the scheduler died come back FAIL: {[(t.number, t.state.name, t.system_attrs.get(FAIL_REASON)) for t in trials]}"
            run = dasktune.optimize(study, second, n_trials=4)
            assert len(run.trials) == 4
            numbers = sorted(t.number for t in study.trials)
            assert numbers == list(range(len(numbers)))  # no gap, no duplicate
            assert len(numbers) >= before + 4 - waiting  # WAITING retries were run first
    finally:
        cluster.close()


def test_in_memory_storage_says_it_is_not_durable(client: Client, caplog) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="optuna"):
        DaskStorage()
    assert "scheduler's memory" in caplog.text


def test_stale_heartbeat_fails_the_trial_and_the_callback_retries_it(client: Client) -> None:
    calls: list[int] = []
    # Optuna 5's name, and Optuna 4's (which 5 keeps as a deprecated alias).
    retry_class = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    retry = (retry_class or optuna.storages.RetryFailedTrialCallback)(max_retry=1)

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        calls.append(trial.number)
        retry(study, trial)

    storage = DaskStorage(heartbeat_interval=1, grace_period=1, heartbeat_stale_trial_callback=callback)
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    storage.record_heartbeat(compat.trial_id(trial))  # ... and then it stops beating
    wait_for(
        lambda: optuna.storages.fail_stale_trials(study) or calls,
        timeout=10,
        message="the grace period to pass",
    )
    optuna.storages.fail_stale_trials(study)  # a trial is failed, and called back, once
    assert calls == [0]
    assert study.trials[0].state == TrialState.FAIL
    assert study.trials[1].state == TrialState.WAITING
    assert study.trials[1].params == study.trials[0].params
    assert study.trials[1].system_attrs["failed_trial"] == 0


def test_scheduler_fails_stale_trials_on_its_own(client: Client) -> None:
    storage = DaskStorage(heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    # The session cluster's scheduler runs in this process: it reads this config.
    with dask.config.set({"distributed.dasktune.stale-trial-margin": "1s"}):
        storage.record_heartbeat(compat.trial_id(trial))
        wait_for(
            lambda: study.trials[0].state == TrialState.FAIL,
            timeout=10,
            message="the scheduler's sweep",
        )
    assert study.trials[0].system_attrs[FAIL_REASON].startswith("no heartbeat for")


def test_optimize_with_heartbeats_keeps_beating_trials_alive(client: Client) -> None:
    # Trials of three seconds, a grace period of one: only beats every second keep the
    # driver's stale-trial check (and the scheduler's) from failing them.
    storage = DaskStorage(heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage)
    with dask.config.set({"distributed.dasktune.stale-trial-margin": "0s"}):
        run = dasktune.optimize(study, three_seconds, n_trials=2)
    assert [t.state for t in run.trials] == [TrialState.COMPLETE] * 2
    assert client.run_on_scheduler(kept_by(storage.name))["heartbeats"] == 0  # dropped with them


def test_many_threads_hammering_one_storage(client: Client) -> None:
    storage = DaskStorage()
    optuna.create_study(storage=storage, study_name="hammer")
    threads, per_thread = 32, 25
    operations = Counter()

    def work(index: int) -> None:
        study = optuna.load_study(study_name="hammer", storage=storage)
        for i in range(per_thread):
            trial = study.ask()
            trial.suggest_float("x", 0, 1)
            trial.suggest_int("n", 0, 10)
            trial.suggest_categorical("c", ["a", "b"])
            trial.report(0.5, 0)
            trial.report(0.25, 1)
            study.tell(trial, index * 1000 + i)
            operations[index] += 7

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert sum(operations.values()) == threads * per_thread * 7
    trials = storage.get_all_trials(storage.get_study_id_from_name("hammer"))
    assert sorted(t.number for t in trials) == list(range(threads * per_thread))
    assert sorted(t.value for t in trials) == sorted(
        i * 1000 + j for i in range(threads) for j in range(per_thread)
    )
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert all(t.intermediate_values == {0: 0.5, 1: 0.25} for t in trials)
    # The replica this process read from equals the scheduler's own state.
    scheduler_side = storage.get_base_storage()
    assert [wire.encode_trial(t) for t in trials] == [
        wire.encode_trial(t) for t in scheduler_side.get_all_trials(0)
    ]


def test_bad_input_gets_clear_errors_and_the_study_keeps_working(client: Client) -> None:
    storage = DaskStorage()
    study = optuna.create_study(storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with pytest.raises(KeyError, match="No trial with trial_id 12345 exists"):
        storage.get_trial(12345)
    with pytest.raises(KeyError, match="No trial with trial_id abc exists"):
        storage.get_trial("abc")
    with pytest.raises(KeyError, match="No study with study_id 99 exists"):
        storage.get_all_trials(99)
    with pytest.raises(TypeError, match="directions must be a non-empty sequence"):
        storage.create_new_study(["minimize"])
    with pytest.raises(TypeError, match="not JSON serializable"):
        study.set_user_attr("bad", {1, 2})
    with dask.config.set({wire.MAX_ATTR_CONFIG: "1 MiB"}):
        with pytest.raises(ValueError, match="over DaskStorage's limit of 1,048,576 .*max-attr-size"):
            study.set_user_attr("huge", "x" * (2 << 20))
    with pytest.raises(KeyError, match="No DaskStorage named 'nope'"):
        DaskStorage(name="nope", register=False).get_all_studies()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(study.trials) == 4
    assert study.user_attrs == {}


def test_optimize_runs_the_stale_trial_callback_for_a_lost_heartbeat(client: Client) -> None:
    retried: list[int] = []

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        retried.append(trial.number)

    # A grace period of two beats: the run's own trials, beating every second, never look stale.
    storage = DaskStorage(heartbeat_interval=1, grace_period=2, heartbeat_stale_trial_callback=callback)
    study = optuna.create_study(storage=storage)
    stale = study.ask()  # a trial whose process stopped beating
    storage.record_heartbeat(compat.trial_id(stale))  # ... and its last
    # Eight 1 s trials on two workers outlast its grace period: optimize's check fails it.
    dasktune.optimize(study, second, n_trials=8)
    assert retried == [stale.number]
    assert study.trials[stale.number].state == TrialState.FAIL


def half_second(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    time.sleep(0.5)
    return x


def test_a_hung_worker_does_not_hold_optimize_once_its_trials_failed(tmp_path: Path) -> None:
    """SIGSTOP one of two workers mid-run (a stuck GIL, a swapping machine, a debugger): the
    heartbeat check fails its trials, retried with their parameters as a dead worker's, the
    others finish the budget, and optimize returns while the worker is still stopped — it
    does not wait for Dask to give up on it."""
    cluster = ProcessCluster(tmp_path)
    try:
        cluster.start_scheduler()
        workers = [cluster.start_worker(nthreads=2) for _ in range(2)]
        cluster.wait_for_workers(2)
        with cluster.client() as client:
            storage = DaskStorage(heartbeat_interval=1, grace_period=3)
            study = optuna.create_study(storage=storage)
            outcome: dict = {}
            thread = threading.Thread(
                target=lambda: outcome.update(run=dasktune.optimize(study, half_second, n_trials=40))
            )
            thread.start()
            running = wait_for(
                lambda: [t for t in study.trials if t.state == TrialState.RUNNING and t.params],
                message="a running trial",
            )
            hung = worker_of(study, running[0])
            [pid] = [p for a, p in client.run(os.getpid).items() if a == hung]
            os.kill(pid, signal.SIGSTOP)
            # Done on the scheduler: every trial finished, none may start.
            wait_for(lambda: len(study.trials) >= 40 and all(
                t.state.is_finished() for t in study.trials), timeout=60, message="the budget")
            done_at = time.monotonic()
            thread.join(timeout=30)
            assert not thread.is_alive(), "optimize waits on the stopped worker"
            assert time.monotonic() - done_at < 15
            run = outcome["run"]
            assert len(run.trials) == 40
            failed = [t for t in study.trials if t.state == TrialState.FAIL]
            assert failed and all(worker_of(study, t) == hung for t in failed)
            assert all("heartbeat" in t.system_attrs[FAIL_REASON] for t in failed)
            complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
            assert len(complete) == 40
            assert all(any(c.params == t.params for c in complete) for t in failed), "retried"
            assert_nothing_left_running(client, storage)
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGCONT)
        cluster.close()


class MemoryHog:
    """Suggests ``x``, then (on a trial's first attempt) takes 600 MB in one call that holds
    the GIL, as a model too large for its worker does: the nanny restarts the worker."""

    def __init__(self, markers: Path) -> None:
        self.markers = markers

    def __call__(self, trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        marker = self.markers / repr(x)
        if not marker.exists():
            marker.touch()
            hog = b"x" * (600 * 2**20)
            time.sleep(30)
            return float(len(hog))
        return x


def test_a_memory_killed_worker_keeps_the_parameters_and_the_retry_runs_them(tmp_path: Path) -> None:
    with LocalCluster(
        n_workers=2, threads_per_worker=1, memory_limit="300MiB", dashboard_address=":0"
    ) as cluster, Client(cluster) as client:
        study = optuna.create_study(storage=DaskStorage(client=client))
        run = dasktune.optimize(study, MemoryHog(tmp_path), n_trials=3, retries=1)
        assert len(run.trials) == 3 and {t.state for t in run.trials} == {TrialState.COMPLETE}
        lost = [t for t in study.trials if t.state == TrialState.FAIL]
        assert len(lost) == 3  # each trial's first attempt took its worker down
        for trial in lost:
            assert set(trial.params) == {"x"}
            reason = trial.system_attrs[FAIL_REASON]
            assert "died while running this trial: its nanny restarted it for using" in reason
            assert "past 95% of its 300.00 MiB memory limit" in reason
            [retry] = [t for t in study.trials if t.system_attrs.get("failed_trial") == trial.number]
            assert retry.system_attrs["fixed_params"] == trial.params
            assert retry.params == trial.params and retry.state == TrialState.COMPLETE
            assert retry.value == trial.params["x"]
        assert_nothing_left_running(client, compat.study_storage(study))


def suggest_then_die(trial: optuna.Trial) -> float:
    trial.suggest_float("x", 0, 1)
    os.kill(os.getpid(), signal.SIGKILL)  # nothing of this process runs after suggest
    return 0.0


@pytest.mark.parametrize("how", ["optimize", "plain submit"])
def test_a_worker_killed_right_after_suggest_keeps_the_parameters(
    process_cluster: ProcessCluster, how: str
) -> None:
    with process_cluster.client() as client:
        study = optuna.create_study(storage=DaskStorage())
        if how == "optimize":
            thread = threading.Thread(
                target=lambda: dasktune.optimize(study, suggest_then_die, n_trials=1, retries=0)
            )
        else:
            future = client.submit(study.optimize, suggest_then_die, n_trials=1, pure=False, retries=0)
        if how == "optimize":
            thread.start()
        lost = wait_for(
            lambda: [t for t in study.trials if t.state == TrialState.FAIL],
            timeout=30,
            message="the trial of the killed worker to fail",
        )
        assert set(lost[0].params) == {"x"}
        assert "died while running this trial" in lost[0].system_attrs[FAIL_REASON]
        if how == "optimize":
            thread.join(timeout=30)
        else:
            del future


def test_the_stale_trial_callback_decides_the_retry_of_a_trial_lost_with_its_worker(
    process_cluster: ProcessCluster,
) -> None:
    retry_class = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    callback = (retry_class or optuna.storages.RetryFailedTrialCallback)(max_retry=2)
    with process_cluster.client() as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = DaskStorage(heartbeat_interval=1, heartbeat_stale_trial_callback=callback)
        study = optuna.create_study(storage=storage)
        outcome: dict = {}
        thread = threading.Thread(
            target=lambda: outcome.update(run=dasktune.optimize(study, second, n_trials=6, retries=0))
        )
        thread.start()
        kill_worker_running(client, study)
        process_cluster.start_worker()
        thread.join(timeout=120)
        run = outcome["run"]
        assert len(run.trials) == 6 and {t.state for t in run.trials} == {TrialState.COMPLETE}
        [lost] = [t for t in study.trials if t.state == TrialState.FAIL]
        assert "died while running" in lost.system_attrs[FAIL_REASON]
        [retry] = [t for t in study.trials if t.system_attrs.get("failed_trial") == lost.number]
        assert retry.state == TrialState.COMPLETE and retry.params == lost.params
        assert len(study.trials) == 7 and run.status()["lost"] == 1
        assert_nothing_left_running(client, storage)
