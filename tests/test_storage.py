"""DaskStorage through real clusters: the proxy's checklist (sharing, pickling, clients,
registration, errors across processes, backends given as objects)."""

from __future__ import annotations

import asyncio
from pathlib import Path
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import warnings

from distributed import Client
from distributed import LocalCluster
from distributed import get_worker
import msgpack
import optuna
from optuna.exceptions import DuplicatedStudyError
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import TrialState
import pytest

from dasktune import DaskStorage
from dasktune import compat
from conftest import learning_curve
from conftest import wait_for
from conftest import worker_of
from dasktune.storage.wire import PLUGIN_NAME

pytestmark = pytest.mark.oldest  # also run on the oldest admitted Optuna and distributed


def quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    c = trial.suggest_categorical("c", ["a", "b"])
    return (x - 2) ** 2 + (c == "b")


def test_trials_run_on_workers_are_seen_by_the_client(client: Client) -> None:
    study = optuna.create_study(storage=DaskStorage())
    futures = [client.submit(study.optimize, quadratic, n_trials=1, pure=False) for _ in range(20)]
    client.gather(futures)
    assert len(study.trials) == 20
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert sorted(t.number for t in study.trials) == list(range(20))
    assert {worker_of(study, t) for t in study.trials} == set(client.nthreads())  # both ran some
    assert study.best_value == min(t.value for t in study.trials)


def test_each_read_sees_every_acknowledged_write(client: Client) -> None:
    study = optuna.create_study(storage=DaskStorage())
    for i in range(5):
        client.submit(study.optimize, quadratic, n_trials=1, pure=False).result()
        assert len(study.trials) == i + 1  # no stale replica after the task returned


def test_load_study_by_name_from_a_second_client(cluster: LocalCluster, client: Client) -> None:
    storage = DaskStorage(name="shared-by-name")
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(quadratic, n_trials=3)
    with Client(cluster) as other:
        loaded = optuna.load_study(
            study_name="s", storage=DaskStorage(name="shared-by-name", client=other)
        )
        assert [t.params for t in loaded.trials] == [t.params for t in study.trials]


def test_two_storages_have_different_names_and_separate_studies(client: Client) -> None:
    a, b = DaskStorage(), DaskStorage()
    assert a.name != b.name
    optuna.create_study(storage=a, study_name="only-in-a")
    assert [s.study_name for s in a.get_all_studies()] == ["only-in-a"]
    assert b.get_all_studies() == []


def test_pickle_round_trip_keeps_name_and_heartbeat_settings(client: Client) -> None:
    storage = DaskStorage(heartbeat_interval=5, grace_period=11)
    restored = pickle.loads(pickle.dumps(storage))
    assert restored.name == storage.name
    assert restored.get_heartbeat_interval() == 5
    assert restored.grace_period == 11


def test_unpickling_where_no_client_exists_fails_only_on_use(client: Client) -> None:
    storage = DaskStorage()
    storage.create_new_study([StudyDirection.MINIMIZE], "x")
    code = textwrap.dedent(
        """
        import pickle, sys
        storage = pickle.loads(sys.stdin.buffer.read())
        print(storage.name)
        try:
            storage.get_all_studies()
        except ValueError as e:
            print("ValueError:", e)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps(storage),
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    assert out.splitlines()[0] == storage.name
    # Distributed's own words first, then what to do about it.
    assert "ValueError: No global client found" in out and "create one first" in out


def test_constructor_without_any_client_raises_value_error(cluster: LocalCluster) -> None:
    with pytest.raises(ValueError, match="No global client found.*create one first"):
        DaskStorage()


def hold_event_loop_until(holding: str, release: str) -> None:
    """A task that blocks its worker's event loop, as a C call holding the GIL or a stopped
    process would: from the loop's next turn until ``release`` exists (at most 120 s)."""

    def hold() -> None:
        Path(holding).touch()
        deadline = time.monotonic() + 120
        while not Path(release).exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    get_worker().loop.add_callback(hold)


def test_a_worker_whose_event_loop_is_blocked_does_not_hold_the_constructor(tmp_path: Path) -> None:
    """``DaskStorage()`` asks the workers to import the trial runner ahead of the first
    trial. It used to wait for every worker's answer, so one blocked worker held it (and a
    test's setup, in CI) until Dask removed that worker, five minutes later."""
    holding, release = tmp_path / "holding", tmp_path / "release"
    with LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        try:
            with Client(cluster) as client:
                blocked = next(iter(client.scheduler_info()["workers"]))
                # Not waited on: its result could not leave the worker while the loop is held.
                holder = client.submit(hold_event_loop_until, str(holding), str(release), workers=[blocked])
                wait_for(holding.exists, message="the worker's event loop to be held")
                made: dict[str, DaskStorage] = {}
                thread = threading.Thread(target=lambda: made.update(storage=DaskStorage()), daemon=True)
                thread.start()
                thread.join(timeout=30)
                assert not thread.is_alive(), "DaskStorage() waits for the blocked worker"
                study = optuna.create_study(storage=made["storage"])
                study.optimize(quadratic, n_trials=3)  # from the client: no worker needed
                assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
                release.touch()
                holder.result(timeout=60)
        finally:
            release.touch()


def test_register_false_attaches_without_setup(client: Client) -> None:
    storage = DaskStorage(name="attach-me")
    optuna.create_study(storage=storage, study_name="s").optimize(quadratic, n_trials=2)
    attached = DaskStorage(name="attach-me", register=False)
    assert len(optuna.load_study(study_name="s", storage=attached).trials) == 2


def test_register_false_with_unknown_name_says_so(client: Client) -> None:
    storage = DaskStorage(name="never-created", register=False)
    with pytest.raises(KeyError, match="No DaskStorage named 'never-created'"):
        storage.get_all_studies()


def test_same_name_with_another_url_is_refused(client: Client, tmp_path) -> None:
    DaskStorage(name="one-url")
    with pytest.raises(ValueError, match="already exists on the scheduler"):
        DaskStorage(f"sqlite:///{tmp_path / 'x.db'}", name="one-url")
    # storage=None attaches to what exists, as optuna_integration.DaskStorage does.
    DaskStorage(name="one-url")


def test_async_client(cluster: LocalCluster) -> None:
    async def run() -> list[float]:
        async with Client(cluster.scheduler_address, asynchronous=True) as client:
            storage = await DaskStorage(client=client)
            study = await asyncio.to_thread(optuna.create_study, storage=storage)
            futures = [
                client.submit(study.optimize, quadratic, n_trials=1, pure=False)
                for _ in range(4)
            ]
            await client.gather(futures)
            # The storage used from a thread of this process too (asks and tells here).
            await asyncio.to_thread(study.optimize, quadratic, n_trials=2)
            trials = await asyncio.to_thread(lambda: study.trials)
            return [t.value for t in trials]

    values = asyncio.run(run())
    assert len(values) == 6 and all(v is not None for v in values)


def test_get_base_storage_is_an_in_memory_copy(client: Client) -> None:
    storage = DaskStorage()
    study = optuna.create_study(storage=storage, study_name="copied")
    study.set_user_attr("team", "blue")
    study.optimize(quadratic, n_trials=5)
    base = storage.get_base_storage()
    assert isinstance(base, InMemoryStorage)
    copy = optuna.load_study(study_name="copied", storage=base)
    assert copy.user_attrs == {"team": "blue"}
    assert [(t.number, t.params, t.value) for t in copy.trials] == [
        (t.number, t.params, t.value) for t in study.trials
    ]


def test_in_memory_storage_object_is_copied_to_the_scheduler(client: Client) -> None:
    local = InMemoryStorage()
    optuna.create_study(storage=local, study_name="local").optimize(quadratic, n_trials=3)
    study = optuna.load_study(study_name="local", storage=DaskStorage(local))
    assert len(study.trials) == 3


def test_rdb_storage_object_is_passed_by_url(client: Client, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'obj.db'}"
    rdb = optuna.storages.RDBStorage(url)
    optuna.create_study(storage=rdb, study_name="on-disk").optimize(quadratic, n_trials=2)
    study = optuna.load_study(study_name="on-disk", storage=DaskStorage(rdb))
    study.optimize(quadratic, n_trials=1)
    assert len(optuna.load_study(study_name="on-disk", storage=url).trials) == 3


def test_bad_storage_arguments_are_refused_at_the_call(client: Client) -> None:
    with pytest.raises(ValueError, match="Unsupported storage URL 'ftp://nowhere'"):
        DaskStorage("ftp://nowhere")
    with pytest.raises(ValueError, match="must name an absolute path"):
        DaskStorage("journal://relative.log")
    with pytest.raises(TypeError, match="pass its URL instead"):
        DaskStorage(optuna.storages.JournalStorage(_NoFileBackend()))


class _NoFileBackend(optuna.storages.journal.BaseJournalBackend):
    def read_logs(self, log_number_from: int):  # pragma: no cover - never read
        return iter(())

    def append_logs(self, logs) -> None:  # pragma: no cover - never written
        pass


@pytest.mark.parametrize("value", [0, -1])
def test_heartbeat_settings_must_be_positive(client: Client, value: int) -> None:
    with pytest.raises(ValueError, match="heartbeat_interval"):
        DaskStorage(heartbeat_interval=value)
    with pytest.raises(ValueError, match="grace_period"):
        DaskStorage(grace_period=value)


def test_failed_trial_callback_is_a_deprecated_alias(client: Client) -> None:
    def callback(study, trial) -> None:
        pass

    with pytest.warns(FutureWarning, match="heartbeat_stale_trial_callback"):
        storage = DaskStorage(heartbeat_interval=1, failed_trial_callback=callback)
    assert storage.get_heartbeat_stale_trial_callback() is callback
    with pytest.raises(ValueError, match="only one"):
        DaskStorage(heartbeat_stale_trial_callback=callback, failed_trial_callback=callback)


def test_errors_arrive_with_their_optuna_type_in_the_caller(client: Client) -> None:
    storage = DaskStorage()
    study = optuna.create_study(storage=storage, study_name="dup")
    with pytest.raises(DuplicatedStudyError):
        optuna.create_study(storage=storage, study_name="dup")
    with pytest.raises(KeyError, match="No such study nope"):
        optuna.load_study(study_name="nope", storage=storage)
    study.optimize(quadratic, n_trials=1)
    finished = compat.trial_id(study.trials[0])

    def write_finished(storage: DaskStorage, trial_id: int) -> str:
        try:
            storage.set_trial_user_attr(trial_id, "late", 1)
        except UpdateFinishedTrialError as e:
            return f"{type(e).__name__}: {e}"
        return "no error"

    # Raised on a worker, from the scheduler's answer, with Optuna's own type and message.
    assert client.submit(write_finished, storage, finished).result().startswith(
        "UpdateFinishedTrialError: Trial#0 has already finished"
    )


def test_incompatible_distribution_raises_value_error_and_keeps_the_trial(
    client: Client,
) -> None:
    storage = DaskStorage()
    study = optuna.create_study(storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    trial = study.ask()
    with pytest.raises(ValueError, match="Cannot set different distribution kind"):
        trial.suggest_categorical("x", ["a", "b"])
    study.tell(trial, 1.0)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]


def test_attribute_that_is_not_json_is_refused_and_nothing_is_lost(client: Client) -> None:
    storage = DaskStorage()
    study = optuna.create_study(storage=storage)
    study.set_user_attr("ok", [1, 2])
    with pytest.raises(TypeError, match="not JSON serializable"):
        study.set_user_attr("bad", object())
    trial = study.ask()
    trial.set_user_attr("kept", "yes")
    with pytest.raises(TypeError, match="not JSON serializable"):
        trial.set_user_attr("bad", {1, 2})
    study.tell(trial, 0.5)
    assert study.user_attrs == {"ok": [1, 2]}
    assert study.trials[0].user_attrs == {"kept": "yes"}
    assert study.trials[0].value == 0.5


def _record_traffic(dask_scheduler) -> None:
    """Wrap the storage handler to keep every request and reply it sees."""
    handler = dask_scheduler.handlers["dasktune_storage_call"]
    dask_scheduler.dasktune_traffic = traffic = []

    async def recording(**kwargs):
        reply = await handler(**kwargs)
        traffic.append((kwargs, reply))
        return reply

    dask_scheduler.handlers["dasktune_storage_call"] = recording


def _restore_and_take_traffic(dask_scheduler) -> list:
    plugin = dask_scheduler.plugins[PLUGIN_NAME]
    dask_scheduler.handlers["dasktune_storage_call"] = plugin.call
    return dask_scheduler.__dict__.pop("dasktune_traffic")


def test_requests_and_replies_are_plain_msgpack_data(client: Client) -> None:
    storage = DaskStorage()
    study = optuna.create_study(storage=storage)
    pareto = optuna.create_study(storage=storage, directions=["minimize", "maximize"])
    client.run_on_scheduler(_record_traffic)
    try:

        def objective(trial: optuna.Trial) -> float:
            trial.set_user_attr("nested", {"a": [1, 2.5, None]})
            trial.report(1.0, step=1)
            return quadratic(trial) + trial.suggest_int("n", 1, 5, log=True)

        def two_objectives(trial: optuna.Trial) -> tuple[float, float]:
            return quadratic(trial), trial.suggest_int("n", 1, 5, log=True)

        futures = [
            client.submit(study.optimize, objective, n_trials=2, pure=False),
            client.submit(pareto.optimize, two_objectives, n_trials=2, pure=False),
        ]
        client.gather(futures)
        assert len(study.trials) == len(pareto.trials) == 2
    finally:
        traffic = client.run_on_scheduler(_restore_and_take_traffic)
    assert len(traffic) > 5
    for request, reply in traffic:
        # No default= hook: anything but plain data (a pickled object) would raise here.
        msgpack.packb(request)
        msgpack.packb(reply)


def test_preloaded_plugin_is_found_and_not_reinstalled(tmp_path) -> None:
    from conftest import ProcessCluster

    cluster = ProcessCluster(tmp_path, scheduler_args=["--preload", "dasktune"])
    cluster.start_scheduler()
    cluster.start_worker()
    try:
        with cluster.client() as client:
            client.wait_for_workers(1)
            before = client.run_on_scheduler(
                lambda dask_scheduler: id(dask_scheduler.plugins[PLUGIN_NAME])
            )
            study = optuna.create_study(storage=DaskStorage())
            client.gather(
                [client.submit(study.optimize, quadratic, n_trials=1, pure=False)]
            )
            after = client.run_on_scheduler(
                lambda dask_scheduler: id(dask_scheduler.plugins[PLUGIN_NAME])
            )
            assert before == after
            assert len(study.trials) == 1
        log = (tmp_path / "scheduler.log").read_text()
        assert "register_scheduler_plugin" not in log
    finally:
        cluster.close()


def test_storage_works_against_separate_scheduler_and_worker_processes(process_cluster) -> None:
    with process_cluster.client() as client:
        study = optuna.create_study(storage=DaskStorage(), study_name="remote")
        futures = [
            client.submit(study.optimize, quadratic, n_trials=1, pure=False) for _ in range(10)
        ]
        client.gather(futures)
        assert len(study.trials) == 10
        assert {t.state for t in study.trials} == {TrialState.COMPLETE}


def test_no_experimental_or_pickle_warnings_on_use(client: Client) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        storage = DaskStorage()
        optuna.create_study(storage=storage).optimize(quadratic, n_trials=2)


def long_reporting_trial(trial: optuna.Trial) -> float:
    trial.suggest_float("x", 0, 1)
    trial.report(0.5, step=0)
    time.sleep(3)
    return 0.0


def test_writes_of_a_running_trial_reach_the_scheduler_promptly(client: Client) -> None:
    study = optuna.create_study(storage=DaskStorage())
    future = client.submit(study.optimize, long_reporting_trial, n_trials=1, pure=False)
    # Parameters and intermediate values are batched, but never held longer than ~50 ms.
    trial = wait_for(
        lambda: study.trials and study.trials[0].intermediate_values and study.trials[0],
        timeout=2.5,
        message="the running trial's writes",
    )
    assert trial.state == TrialState.RUNNING
    assert "x" in trial.params and trial.intermediate_values == {0: 0.5}
    future.result()


def test_plain_submit_pattern_prunes_from_other_workers_values(client: Client) -> None:
    study = optuna.create_study(
        storage=DaskStorage(), pruner=optuna.pruners.MedianPruner(n_startup_trials=3)
    )
    futures = [client.submit(study.optimize, learning_curve, n_trials=1, pure=False) for _ in range(30)]
    client.gather(futures)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.PRUNED) > 0 and states.count(TrialState.COMPLETE) >= 3


def big_attribute(study: optuna.Study, size: int) -> int:
    trial = study.ask()
    trial.set_user_attr("blob", "x" * size)
    study.tell(trial, 1.0)
    return len(study.trials[-1].user_attrs["blob"])


def test_a_five_megabyte_attribute_is_kept_as_plain_optuna_keeps_it(client: Client) -> None:
    study = optuna.create_study(storage=DaskStorage())
    size = 5 * 10**6
    assert client.submit(big_attribute, study, size, pure=False).result() == size  # a worker
    assert big_attribute(study, size) == size  # the client
    assert [len(t.user_attrs["blob"]) for t in study.trials] == [size, size]


def test_listing_every_study_brings_every_study_up_to_date_in_one_request(client: Client) -> None:
    storage = DaskStorage()
    for i in range(30):
        study = optuna.create_study(storage=storage, study_name=f"s{i}")
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    reader = DaskStorage(name=storage.name, register=False)  # a replica that knows nothing
    client.run_on_scheduler(_record_traffic)
    try:
        summaries = optuna.get_all_study_summaries(reader)
    finally:
        traffic = client.run_on_scheduler(_restore_and_take_traffic)
    assert len(traffic) == 1
    assert [s.study_name for s in summaries] == [f"s{i}" for i in range(30)]
    assert [s.n_trials for s in summaries] == [2] * 30
    assert all(s.best_trial.value == min(t.value for t in storage.get_all_trials(i)) for i, s in enumerate(summaries))
    # What another process writes afterwards is seen by the next listing, and by this
    # thread's reads as soon as it writes itself.
    client.submit(optuna.load_study(study_name="s3", storage=storage).optimize,
                  lambda t: t.suggest_float("x", 0, 1), n_trials=1, pure=False).result()
    assert optuna.get_all_study_summaries(reader)[3].n_trials == 3
    client.submit(optuna.load_study(study_name="s4", storage=storage).optimize,
                  lambda t: t.suggest_float("x", 0, 1), n_trials=1, pure=False).result()
    reader.set_study_user_attr(reader.get_study_id_from_name("s5"), "touched", True)
    assert len(reader.get_all_trials(reader.get_study_id_from_name("s4"))) == 3
