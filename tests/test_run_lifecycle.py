"""Every way a run of ``dasktune.optimize`` can end, on real clusters: it returns or raises
promptly at the caller, no trial stays RUNNING, and the runners leave the worker threads."""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import gc
import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap
import threading
import time

from distributed import Client
from distributed import LocalCluster
from distributed import wait
import optuna
from optuna.trial import TrialState
import psutil
import pytest

from conftest import ProcessCluster
from conftest import wait_for
import dasktune
from dasktune import compat
from dasktune import DaskStorage
from dasktune.storage.session import claim_size
from dasktune.storage.wire import FAIL_REASON
from dasktune.storage.wire import PLUGIN_NAME

pytestmark = pytest.mark.oldest  # also run on the oldest admitted Optuna and distributed

#: Longest a run may take to end once something ended it (the issue's bound).
ENDS_WITHIN = 30.0


def quick(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    time.sleep(0.01)
    return x**2


def slow(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    time.sleep(0.2)
    return x**2


def returns_a_str(trial: optuna.Trial) -> str:
    trial.suggest_float("x", 0, 1)
    return "1.5"


def exits(trial: optuna.Trial) -> float:
    trial.suggest_float("x", 0, 1)
    raise SystemExit(3)


class Halt(BaseException):
    """A BaseException that is neither SystemExit nor KeyboardInterrupt."""


def halts(trial: optuna.Trial) -> float:
    trial.suggest_float("x", 0, 1)
    raise Halt("halt")


class SamplerBreaksBeforeTrial(optuna.samplers.RandomSampler):
    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        raise RuntimeError("sampler broke in before_trial")


class SamplerBreaksWhenSampling(optuna.samplers.RandomSampler):
    def sample_independent(self, *args, **kwargs):
        raise RuntimeError("sampler broke in sample_independent")


def assert_threads_free(client: Client) -> None:
    """Two ordinary 1 s tasks on the cluster's single-thread workers finish within 15 s:
    no runner still holds a worker thread."""
    futures = [client.submit(time.sleep, 1, pure=False) for _ in range(2)]
    done, not_done = wait(futures, timeout=15)
    assert not not_done, "a worker thread is still held after the run ended"


def assert_nothing_running(study: optuna.Study) -> None:
    running = [t.number for t in study.get_trials(states=(TrialState.RUNNING,))]
    assert running == [], f"trials {running} stayed RUNNING"


@pytest.fixture
def busy_machine():
    """Two processes spinning on the CPU for the length of the test (the machine has two
    cores): workers connect and answer late, as on a loaded machine."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield
    for burner in burners:
        burner.kill()
        burner.wait()


@pytest.mark.parametrize("n_workers, threads", [(2, 16), (4, 8)])
def test_many_thread_workers_on_a_busy_machine_finish_exact_budgets(
    busy_machine, n_workers: int, threads: int
) -> None:
    n_trials = 2 * n_workers * threads
    for _ in range(5):  # each a fresh cluster: first connections are where it broke
        with LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster, Client(cluster) as client:
            study = optuna.create_study(storage=DaskStorage(client=client))
            run = dasktune.optimize(study, quick, n_trials=n_trials, client=client)
            assert len(run.trials) == n_trials
            assert len(study.get_trials(states=(TrialState.COMPLETE,))) == n_trials
            assert len(study.trials) == n_trials


def test_a_str_value_fails_its_trials_and_the_run_ends(client: Client) -> None:
    study = optuna.create_study(storage=DaskStorage())
    start = time.monotonic()
    run = dasktune.optimize(study, returns_a_str, n_trials=4)
    assert time.monotonic() - start < ENDS_WITHIN
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 4
    assert "'1.5' is a str" in study.trials[0].system_attrs[FAIL_REASON]
    assert run.status()["outcome"] == "finished"
    assert_threads_free(client)


@pytest.mark.parametrize("objective, error", [(exits, SystemExit), (halts, Halt)])
def test_a_base_exception_stops_the_run_and_reaches_the_caller_with_its_type(
    client: Client, objective, error: type[BaseException]
) -> None:
    study = optuna.create_study(storage=DaskStorage())
    start = time.monotonic()
    with pytest.raises(error):
        dasktune.optimize(study, objective, n_trials=20)
    assert time.monotonic() - start < ENDS_WITHIN
    assert_nothing_running(study)
    assert len(study.trials) < 20  # it stopped the run
    assert f"{error.__name__}" in study.trials[0].system_attrs[FAIL_REASON]
    assert dasktune.attach(study).status()["outcome"] == "aborted"
    assert_threads_free(client)
    # The worker survived it: no restart, the same workers as before.
    assert len(client.scheduler_info()["workers"]) == 2


@pytest.mark.parametrize("sampler", [SamplerBreaksBeforeTrial, SamplerBreaksWhenSampling])
def test_a_sampler_that_raises_ends_the_run_and_raises_at_the_caller(client: Client, sampler) -> None:
    study = optuna.create_study(storage=DaskStorage(), sampler=sampler())
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="sampler broke"):
        dasktune.optimize(study, quick, n_trials=20)
    assert time.monotonic() - start < ENDS_WITHIN
    assert_nothing_running(study)
    # Trials that started FAIL; one another runner had claimed and not started when the run
    # ended goes back to WAITING, for a later run.
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all("sampler broke" in t.system_attrs[FAIL_REASON] for t in failed)
    assert all(not t.params for t in study.trials if t.state == TrialState.WAITING)
    assert {t.state for t in study.trials} <= {TrialState.FAIL, TrialState.WAITING}
    assert_threads_free(client)


def test_a_study_deleted_by_another_client_ends_the_run_with_a_clear_error(
    client: Client, cluster: LocalCluster
) -> None:
    storage = DaskStorage()
    study = optuna.create_study(storage=storage, study_name="doomed")

    def delete_after_three(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.number == 2:
            with Client(cluster, set_as_default=False) as other:
                optuna.delete_study(
                    study_name="doomed", storage=DaskStorage(name=storage.name, client=other, register=False)
                )

    start = time.monotonic()
    with pytest.raises(KeyError, match="Study 'doomed' was deleted while dasktune.optimize ran"):
        dasktune.optimize(study, slow, n_trials=50, callbacks=[delete_after_three])
    assert time.monotonic() - start < ENDS_WITHIN
    assert "doomed" not in [s.study_name for s in storage.get_all_studies()]
    assert_threads_free(client)


def test_cancel_from_another_process_ends_an_attached_run(client: Client) -> None:
    study = optuna.create_study(storage=DaskStorage())
    threading.Timer(1.0, lambda: dasktune.attach(study).cancel("enough")).start()
    start = time.monotonic()
    run = dasktune.optimize(study, slow, n_trials=None)
    assert time.monotonic() - start < 1.0 + ENDS_WITHIN
    status = run.status()
    assert status["outcome"] == "cancelled" and status["end_reason"] == "enough"
    assert_nothing_running(study)
    assert_threads_free(client)


_DRIVER = textwrap.dedent(
    """
    import sys, time
    import optuna
    from distributed import Client
    import dasktune
    from test_run_lifecycle import quick, slow

    address, name, mode = sys.argv[1:]
    client = Client(address)
    study = optuna.create_study(storage=dasktune.DaskStorage(name=name), study_name="s")
    if mode == "attached":
        dasktune.optimize(study, quick, n_trials=None)
    else:
        run = dasktune.optimize(study, slow, n_trials=30, detach=True)
        print(run.run_id, flush=True)
        time.sleep(3600)
    """
)


def _driver(cluster: ProcessCluster, name: str, mode: str) -> subprocess.Popen:
    script = cluster.workdir / "driver.py"
    script.write_text(_DRIVER)
    return cluster.spawn([sys.executable, str(script), cluster.address, name, mode], f"driver-{mode}.log")


@contextlib.contextmanager
def _driver_killed_mid_run(
    cluster: ProcessCluster, name: str, mode: str, after: int
) -> Iterator[tuple[Client, DaskStorage, optuna.Study]]:
    """A driver process runs study "s" of storage ``name`` (``mode``: attached or detached)
    and is killed once more than ``after`` trials exist; what a client of the cluster sees."""
    driver = _driver(cluster, name, mode)
    with cluster.client() as client:
        storage = DaskStorage(name=name, client=client, register=False)
        study = wait_for(lambda: _load(storage), timeout=60, message="the driver's study")
        wait_for(lambda: len(study.trials) > after, timeout=60, message="trials to run")
        cluster.kill(driver)
        yield client, storage, study


def test_a_killed_client_orphans_its_attached_run(process_cluster: ProcessCluster) -> None:
    with _driver_killed_mid_run(process_cluster, "orphan", "attached", after=20) as (client, storage, study):
        start = time.monotonic()
        (status,) = wait_for(
            lambda: [s for s in storage.find_runs(compat.study_id(study)) if s["done"]],
            timeout=ENDS_WITHIN,
            message="the run to end once its client died",
        )
        assert status["outcome"] == "orphaned" and "left" in status["end_reason"]
        # The study stopped growing: the scheduler refuses every claim, and runs no trial.
        assert not status["can_claim"] and status["running"] == 0
        kept = client.run_on_scheduler(_kept, storage.name)
        assert (kept["runs' trials"], kept["trials known to run"]) == (0, 0)
        assert time.monotonic() - start < ENDS_WITHIN
        assert_nothing_running(study)
        futures = [client.submit(time.sleep, 0.5, pure=False) for _ in range(2)]
        assert not wait(futures, timeout=15).not_done, "a worker thread is still held"


def test_a_detached_run_survives_its_client_and_finishes_exactly(process_cluster: ProcessCluster) -> None:
    with _driver_killed_mid_run(process_cluster, "detached", "detached", after=2) as (_, _, study):
        run = dasktune.attach(study).wait()
        assert run.status()["outcome"] == "finished"
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 30
        assert_nothing_running(study)


def _load(storage: DaskStorage) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name="s", storage=storage)
    except (KeyError, RuntimeError):  # the driver has not made it (or the plugin) yet
        return None


def test_a_worker_removed_after_a_deletion_still_fails_and_retries_other_studies_trials(
    process_cluster: ProcessCluster,
) -> None:
    with process_cluster.client() as client:
        storage = DaskStorage(name="two")
        kept = optuna.create_study(storage=storage, study_name="kept")
        doomed = optuna.create_study(storage=storage, study_name="doomed")
        # One thread each, so that neither run can finish or starve the other before the
        # deletion and the worker's removal happen in that order.
        run = dasktune.optimize(kept, slow, n_trials=20, concurrency=1, detach=True)
        dasktune.optimize(doomed, slow, n_trials=None, concurrency=1, detach=True)
        wait_for(lambda: len(doomed.trials) >= 2, message="the doomed study to run")
        optuna.delete_study(study_name="doomed", storage=storage)
        running = wait_for(
            lambda: kept.get_trials(states=(TrialState.RUNNING,)), message="a kept trial running"
        )
        address = storage.get_trial_worker(compat.trial_id(running[0]))
        pid = client.run(os.getpid, workers=[address])[address]
        os.kill(pid, signal.SIGKILL)
        process_cluster.start_worker()
        run.wait()
        trials = kept.get_trials()
        assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 20
        lost = [t for t in trials if t.state == TrialState.FAIL]
        assert lost and all("died while running" in t.system_attrs[FAIL_REASON] for t in lost)
        assert all(
            any(t.system_attrs.get("failed_trial") == f.number for t in trials) for f in lost
        ), "every lost trial was retried"
        assert_nothing_running(kept)


def test_dropped_storages_leave_no_thread_behind(client: Client) -> None:
    before = threading.active_count()
    for _ in range(100):
        storage = DaskStorage()
        study = optuna.create_study(storage=storage)
        trial = study.ask()
        trial.suggest_float("x", 0, 1)  # a write held back for the flusher
        study.tell(trial, 1.0)
        del storage, study, trial
    gc.collect()
    wait_for(
        lambda: threading.active_count() <= before + 2,
        timeout=10,
        message=f"threads to end ({threading.active_count()} alive, {before} before)",
    )


def _save_garbage() -> None:
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector frees from now on is kept in gc.garbage


def _thread_locals_in_garbage() -> list[str]:
    """The owners of each ``threading.local`` that was freed by the garbage collector (in a
    reference cycle) since :func:`_save_garbage`."""
    import _thread

    gc.collect()
    garbage, ids = list(gc.garbage), {id(o) for o in gc.garbage}
    gc.set_debug(0)
    gc.garbage.clear()
    owners = []
    for local in (o for o in garbage if isinstance(o, _thread._local)):
        holders = [h for d in gc.get_referrers(local) if id(d) in ids for h in gc.get_referrers(d) if id(h) in ids]
        owners.append(f"{type(local).__qualname__} of {sorted({type(h).__qualname__ for h in holders})}")
    return owners


def stops_at_three(trial: optuna.Trial) -> float:
    if trial.number == 3:
        trial.study.stop()
    return quick(trial)


def every_end(trial: optuna.Trial) -> float:
    """Completes, is pruned or fails (a caught error) by turns."""
    x = quick(trial)
    if trial.number % 3 == 1:
        raise optuna.TrialPruned()
    if trial.number % 3 == 2:
        raise ValueError("a caught error")
    return x


def test_trials_leave_no_threading_local_to_the_garbage_collector_of_a_worker() -> None:
    """A ``threading.local`` freed by the garbage collector deadlocks the worker's event loop
    for good when the collection runs inside Dask's profiler's ``sys._current_frames()``
    (CPython 3.11, gh-106883): a run's storages and studies must be freed by reference
    counting, on every path — a trial that completes, is pruned, fails, calls
    ``study.stop()``; ``tune.run``; ``study.optimize`` in a task of the user's own."""
    from dasktune import tune

    with LocalCluster(n_workers=1, threads_per_worker=4, dashboard_address=None) as cluster:
        # Each round attaches storages to the worker: past the eight it keeps
        # (dasktune.storage.instances), later rounds free the earlier rounds' too.
        for round in range(6):
            with Client(cluster) as client:
                client.run(_save_garbage)
                study = optuna.create_study(storage=DaskStorage(client=client), pruner=optuna.pruners.NopPruner())
                dasktune.optimize(study, every_end, n_trials=12, catch=(ValueError,), client=client)
                dasktune.optimize(study, stops_at_three, n_trials=40, client=client)
                client.submit(study.optimize, quick, n_trials=4, pure=False).result()
                tune.run(lambda config: config["x"] ** 2, {"x": tune.uniform(-1, 1)}, num_samples=4, verbose=0)
                assert len(study.trials) >= 12 + 4 + 4
                del study
                [owners] = client.run(_thread_locals_in_garbage).values()
            assert owners == [], f"round {round}"


class _Cycle:
    """Garbage as an Optuna ``Study`` kept by a caught error's traceback leaves it: a
    ``threading.local`` in a reference cycle."""

    def __init__(self) -> None:
        self.local, self.me = threading.local(), self


def _uses(storage: DaskStorage) -> str:
    return storage.name


def _warmed_up() -> bool:
    return "dasktune.submit.runner" in sys.modules and (
        sys.version_info >= (3, 12) or getattr(sys._current_frames, "_dasktune_guard", False))


def test_a_new_storage_warms_up_and_guards_every_worker_before_any_task() -> None:
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert not any(client.run(_warmed_up).values())
        DaskStorage(client=client)
        wait_for(lambda: all(client.run(_warmed_up).values()), timeout=60,
                 message="every worker to import the runner and guard sys._current_frames")


def test_a_new_storages_first_task_on_a_new_worker_runs() -> None:
    """The worker's warm-up (the runner's imports) and the task's unpickling (the storage's
    imports) both import Optuna as the task arrives: a package imported by two threads at
    once could hand one a partially initialized module, and the worker lost its task."""
    for _ in range(3):
        with LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            storage = DaskStorage(client=client)
            assert client.submit(_uses, storage, pure=False).result(timeout=60) == storage.name


def _current_frames_with_garbage() -> int:
    """Calls ``sys._current_frames()`` as Dask's profiler does, on the worker's event loop,
    each time with a ``threading.local`` in cyclic garbage and the collector set to run at
    the next allocation: inside the call."""
    stop = threading.Event()
    waiting = [threading.Thread(target=stop.wait) for _ in range(20)]  # frames to allocate
    for thread in waiting:
        thread.start()
    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(1)
    try:
        for _ in range(200):
            _Cycle()
            frames = sys._current_frames()
    finally:
        gc.set_threshold(*thresholds)
        stop.set()
    return len(frames)


def test_a_worker_that_attached_a_storage_survives_a_collection_inside_its_profiler() -> None:
    """Python 3.11 deadlocks a thread whose ``sys._current_frames()`` collects a
    ``threading.local`` (gh-106883): on a worker, Dask's profiler on the event loop. Users'
    objectives leave such garbage (``study.optimize(..., catch=...)`` does), so a worker a
    storage reaches is guarded (``compat.guard_current_frames``). Unguarded, this call on a
    Python 3.11 worker never returns."""
    with LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        storage = DaskStorage(client=client)
        assert client.submit(_uses, storage, pure=False).result() == storage.name
        [threads] = client.run(_current_frames_with_garbage, callback_timeout=30).values()
        assert threads > 20


def _scheduler_rss(dask_scheduler) -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def _kept(name: str, dask_scheduler=None) -> dict[str, int]:
    """What the scheduler keeps for the storage ``name``, by kind (``StorageHost.sizes``)."""
    return dask_scheduler.plugins[PLUGIN_NAME].hosts[name].sizes()


def test_many_short_runs_on_one_scheduler_leave_no_record(tmp_path: Path, monkeypatch) -> None:
    """What a scheduler keeps grows with nothing but live runs: over 1,500 runs after a
    warm-up, each study deleted, its RSS grows at most 2 KiB per run (Dask's own span of each
    run would take about 4: ``compat.dasktune_span``). Dask's own bounded debugging logs (by
    default the last 100,000 transitions, and messages sent to each worker with the tasks
    they carry) are shortened for this scheduler, so that what grows is ours."""
    monkeypatch.setenv("DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH", "10")
    cluster = ProcessCluster(tmp_path)
    try:
        cluster.start(n_workers=2)
        with cluster.client() as client:
            storage = DaskStorage(name="many")

            def one_run(i: int) -> None:
                study = optuna.create_study(storage=storage, study_name=f"s{i}")
                dasktune.optimize(study, quick, n_trials=1)
                optuna.delete_study(study_name=f"s{i}", storage=storage)

            for i in range(200):  # warm up: imports, caches, connections
                one_run(i)
            before = client.run_on_scheduler(_scheduler_rss)
            for i in range(200, 1700):
                one_run(i)
            per_run = (client.run_on_scheduler(_scheduler_rss) - before) / 1500
            assert per_run <= 2 * 1024, f"the scheduler grew {per_run / 1024:.2f} KiB per run over 1,500 runs"
            kept = client.run_on_scheduler(_kept, "many")
            assert (kept["runs"], kept["studies"], kept["trials"]) == (0, 0, 0)
            # One span for all of them, which lets go of each run's tasks within a sweep.
            wait_for(lambda: client.run_on_scheduler(_spans) == {"dasktune": 0}, timeout=10,
                     message=f"Dask's span of dasktune's tasks to forget ended runs: {client.run_on_scheduler(_spans)}")
    finally:
        cluster.close()


def _spans(dask_scheduler=None) -> dict[str, int]:
    """Dask's spans on the scheduler, by id, with how many task groups each keeps."""
    return {span_id: len(span.groups) for span_id, span in dask_scheduler.extensions["spans"].spans.items()}


def five_ms(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    time.sleep(0.005)
    return x


class StopAfter:
    """``study.stop()`` once ``k`` trials have finished, as seen by a callback, or in the
    objective of trial number ``k - 1``. Each objective records when it ended (``ended``, a
    user attribute) and in which process (``pid``); the one that stops records when it did
    (``stopped``), then works on for :data:`LINGER`, so that the test counts which trials
    ended after it."""

    #: How long an objective that stops works on after ``study.stop()`` (saving its model,
    #: say): sixty 5 ms trials of each runner that would not stop until it returned.
    LINGER = 0.3

    def __init__(self, k: int) -> None:
        self.k = k
        self.seen = 0

    def callback(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.seen += 1
        if self.seen == self.k:
            study.stop()

    def __call__(self, trial: optuna.Trial) -> float:
        value = five_ms(trial)
        ended = time.time()
        trial.set_user_attr("ended", ended)
        trial.set_user_attr("pid", os.getpid())
        if trial.number == self.k - 1:  # one trial stops, about the k-th to end
            trial.study.stop()
            trial.set_user_attr("stopped", time.time())
            time.sleep(self.LINGER)
        return value


@contextlib.contextmanager
def eight_threads(n_workers: int) -> Iterator[Client]:
    """Eight trials at once, on ``n_workers`` worker processes."""
    with LocalCluster(
        n_workers=n_workers, threads_per_worker=8 // n_workers, dashboard_address="127.0.0.1:0"
    ) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def many_threads() -> Iterator[Client]:
    """Two worker processes of four threads each."""
    with eight_threads(2) as client:
        yield client


@pytest.fixture(scope="module")
def one_process() -> Iterator[Client]:
    """One worker process of eight threads: every runner in one process."""
    with eight_threads(1) as client:
        yield client


def _check_stopped_run(study: optuna.Study, run: dasktune.Run) -> list[optuna.trial.FrozenTrial]:
    """What every stopped run leaves: its finished trials, all COMPLETE and all its own;
    the trials claimed ahead and never started WAITING again, for a later run."""
    finished = [t for t in study.trials if t.state.is_finished()]
    assert {t.state for t in finished} == {TrialState.COMPLETE}
    assert len(run.trials) == len(finished)
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.WAITING}
    assert all(not t.params for t in study.trials if t.state == TrialState.WAITING)
    assert run.status()["outcome"] == "stopped"
    return finished


@pytest.mark.parametrize("attempt", range(3))
def test_study_stop_in_a_callback_after_k_trials_starts_no_trial_beyond_those_running(
    many_threads: Client, attempt: int
) -> None:
    """The driver's callbacks see each trial before its runner starts another, so the
    bound holds across processes: at most k + concurrency trials finish."""
    k, concurrency = 7, sum(many_threads.nthreads().values())
    study = optuna.create_study(storage=DaskStorage(client=many_threads))
    run = dasktune.optimize(study, five_ms, n_trials=500, callbacks=[StopAfter(k).callback])
    finished = _check_stopped_run(study, run)
    assert k <= len(finished) <= k + concurrency
    optuna.delete_study(study_name=study.study_name, storage=compat.study_storage(study))


def _follow_run_ends(storage: DaskStorage, run_id: str) -> bool:
    storage.follow_run_ends()
    return storage.run_ended(run_id)


def _learns_run_ended(storage: DaskStorage, run_id: str) -> bool:
    return wait_for(lambda: storage.run_ended(run_id), timeout=ENDS_WITHIN, message="the announcement")


def test_a_run_ended_in_one_process_is_announced_to_a_worker_process_without_a_request(
    many_threads: Client,
) -> None:
    """What stops the runners of other processes before their next claim: the scheduler
    announces the end of a run to every process that follows run ends."""
    storage = DaskStorage(client=many_threads)
    study = optuna.create_study(storage=storage)
    study_id = storage.get_study_id_from_name(study.study_name)
    run_id = f"announced-{study_id}"
    terms = {"n_trials": 10, "timeout": None, "retries": 0, "client": None, "gated": False}
    storage.open_run(run_id, study_id, terms)  # type: ignore[arg-type]
    worker = next(iter(many_threads.nthreads()))
    on_worker = {"workers": [worker], "pure": False}
    assert many_threads.submit(_follow_run_ends, storage, run_id, **on_worker).result() is False
    storage.end_run(run_id, "stopped", "study.stop() was called")
    assert many_threads.submit(_learns_run_ended, storage, run_id, **on_worker).result()
    optuna.delete_study(study_name=study.study_name, storage=storage)


@pytest.mark.parametrize("attempt", range(3))
@pytest.mark.parametrize("cluster", ["one_process", "many_threads"])
def test_study_stop_in_an_objective_starts_no_trial_in_its_process_and_others_only_what_they_hold(
    request: pytest.FixtureRequest, cluster: str, attempt: int
) -> None:
    """``study.stop()`` in an objective ends the run when it is called, not when its trial
    returns: the other runners of its process stop before their next trial, as
    ``Study.optimize(n_jobs=...)`` stops its threads, so only the trials they were running
    finish after it; runners in other processes get no claim granted from then on, and run
    at most the trials they were running and those they had claimed ahead (two batches of
    a 5 ms trial's claim each) until the scheduler's announcement reaches them."""
    client: Client = request.getfixturevalue(cluster)
    pids = client.run(os.getpid)
    threads_of_pid = {pids[w]: n for w, n in client.nthreads().items()}
    study = optuna.create_study(storage=DaskStorage(client=client))
    run = dasktune.optimize(study, StopAfter(7), n_trials=500)
    finished = _check_stopped_run(study, run)
    (stopping,) = (t for t in finished if "stopped" in t.user_attrs)
    stopped = stopping.user_attrs["stopped"]
    assert len(finished) < 500, "the stop did not end the run"
    for pid, n in threads_of_pid.items():
        after = [t.number for t in finished if t.user_attrs["pid"] == pid and t.user_attrs["ended"] > stopped]
        if pid == stopping.user_attrs["pid"]:  # those its other threads were running
            assert len(after) <= n - 1, (pid, after)
        else:
            assert len(after) <= n * (1 + 2 * claim_size(0.005)), (pid, after)
    optuna.delete_study(study_name=study.study_name, storage=compat.study_storage(study))
