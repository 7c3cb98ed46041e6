"""dasktune.optimize on real clusters: budgets, errors, pruning, stopping, detaching."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
import socket
import subprocess
import sys
import textwrap
import threading
import time

from distributed import Client
from distributed import LocalCluster
import optuna
from optuna.trial import TrialState
import pytest

from conftest import learning_curve
from conftest import wait_for
from conftest import worker_of
import dasktune
from dasktune import DaskStorage
from dasktune.storage.wire import FAIL_REASON

pytestmark = pytest.mark.oldest  # also run on the oldest admitted Optuna and distributed


def quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    c = trial.suggest_categorical("c", ["a", "b"])
    return (x - 2) ** 2 + (c == "b")


def sleepy(trial: optuna.Trial) -> float:
    time.sleep(0.2)
    return quadratic(trial)


def slow_learning_curve(trial: optuna.Trial) -> float:
    """``learning_curve`` slow enough (50-100 ms, pruned or not) that runners claim trials
    one at a time, so both workers run some, however late one starts."""
    time.sleep(0.05)
    return learning_curve(trial)


def new_study(**kwargs) -> optuna.Study:
    return optuna.create_study(storage=DaskStorage(), **kwargs)


def test_exactly_n_trials_finish_across_workers(client: Client) -> None:
    study = new_study()
    # Trials long enough that each is claimed alone (cheap ones are claimed in batches, and
    # one worker may then run them all before the other has started).
    run = dasktune.optimize(study, sleepy, n_trials=13)
    assert len(run.trials) == 13
    assert len(study.trials) == 13
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    assert sorted(t.number for t in study.trials) == list(range(13))
    assert len({worker_of(study, t) for t in study.trials}) == 2
    assert run.status()["done"] and run.status()["finished"] == 13


def test_concurrency_caps_trials_running_at_once(client: Client) -> None:
    study = new_study()
    dasktune.optimize(study, sleepy, n_trials=6, concurrency=1)
    trials = sorted(study.trials, key=lambda t: t.datetime_start)
    for before, after in zip(trials, trials[1:]):
        assert after.datetime_start >= before.datetime_complete


def test_timeout_starts_no_trial_after_the_deadline(client: Client) -> None:
    study = new_study()
    start = time.time()
    run = dasktune.optimize(study, sleepy, timeout=1.0)
    elapsed = time.time() - start
    assert 4 <= len(run.trials) <= 12  # two workers, 0.2 s trials, one second
    assert elapsed < 1.0 + 0.2 + 2.0  # returns once the running trials end
    assert all(t.datetime_start.timestamp() <= start + 1.0 + 0.5 for t in study.trials)
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}


def test_objective_error_is_raised_with_its_type_and_fails_the_trial(client: Client) -> None:
    study = new_study()

    def broken(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        raise ZeroDivisionError("no luck")

    with pytest.raises(ZeroDivisionError, match="no luck") as info:
        dasktune.optimize(study, broken, n_trials=10)
    assert "broken" in "".join(__import__("traceback").format_tb(info.tb))
    assert study.trials, "the failing trial is kept"
    assert {t.state for t in study.trials} == {TrialState.FAIL}
    assert study.trials[0].system_attrs[FAIL_REASON] == "ZeroDivisionError: no luck"
    assert len(study.trials) < 10, "the run stops at the error"


def raised_from(trial: optuna.Trial) -> float:
    trial.suggest_float("x", 0, 1)
    try:
        {}["missing"]
    except KeyError as e:
        raise ValueError("no value") from e
    return 0.0


class Unsendable(Exception):
    def __init__(self) -> None:
        super().__init__("it holds what cannot be pickled")
        self.rows = (row for row in ())


def raises_unsendable(trial: optuna.Trial) -> float:
    trial.suggest_float("x", 0, 1)
    raise Unsendable()


def test_objective_error_reaches_the_caller_with_its_cause_and_traceback(client: Client) -> None:
    # The runner returns the error (a worker logs every error a task raises); it is
    # pickled for the caller with its traceback and what it was raised from.
    with pytest.raises(ValueError, match="no value") as info:
        dasktune.optimize(new_study(), raised_from, n_trials=4)
    assert isinstance(info.value.__cause__, KeyError)
    assert "raised_from" in "".join(__import__("traceback").format_tb(info.tb))


def test_an_objective_error_that_cannot_be_pickled_reaches_the_caller_as_its_repr(client: Client) -> None:
    with pytest.raises(Exception, match=r"Unsendable\('it holds what cannot be pickled'\), which could "
                       r"not be sent from the worker") as info:
        dasktune.optimize(new_study(), raises_unsendable, n_trials=4)
    assert "in raises_unsendable" in str(info.value)  # where it was raised


def test_caught_errors_fail_trials_and_optimization_goes_on(client: Client) -> None:
    study = new_study()

    def sometimes(trial: optuna.Trial) -> float:
        x = trial.suggest_int("x", 0, 9)
        if x % 2:
            raise ValueError(f"odd {x}")
        return x

    run = dasktune.optimize(study, sometimes, n_trials=20, catch=(ValueError,))
    assert len(run.trials) == 20
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert all(t.system_attrs[FAIL_REASON] == f"ValueError: odd {t.params['x']}" for t in failed)
    assert all(t.params["x"] % 2 == 0 for t in study.trials if t.state == TrialState.COMPLETE)


@pytest.mark.parametrize(
    "value, reason",
    [
        (None, "The value None could not be cast to float."),
        (float("nan"), "The value nan is not acceptable"),
        ("1.5", "The value '1.5' is a str, not a number: an objective returns a float, or a "
         "sequence of floats for several objectives"),  # Optuna itself leaves it RUNNING
        ((1.0, 2.0), "The number of the values 2 did not match the number of the objectives 1"),
    ],
)
def test_invalid_objective_values_fail_the_trial_as_optuna_does(
    client: Client, value: object, reason: str
) -> None:
    study = new_study()
    run = dasktune.optimize(study, lambda trial: value, n_trials=3)
    assert [t.state for t in run.trials] == [TrialState.FAIL] * 3
    assert {t.system_attrs[FAIL_REASON] for t in run.trials} == {reason}


def test_unserializable_objective_fails_before_anything_is_submitted(client: Client) -> None:
    study = new_study()
    connection = socket.socket()

    def holds_a_socket(trial: optuna.Trial) -> float:
        return float(connection.fileno())

    try:
        with pytest.raises(TypeError, match="objective .* cannot be sent to the workers.*socket"):
            dasktune.optimize(study, holds_a_socket, n_trials=3)
    finally:
        connection.close()
    assert study.trials == []


def test_objective_holding_a_lock_runs_with_a_lock_of_its_own(client: Client) -> None:
    study = new_study()
    lock = threading.Lock()

    def holds_a_lock(trial: optuna.Trial) -> float:
        with lock:
            return trial.suggest_float("x", 0, 1)

    run = dasktune.optimize(study, holds_a_lock, n_trials=3)
    assert [t.state for t in run.trials] == [TrialState.COMPLETE] * 3


def test_study_in_another_storage_is_refused_with_the_fix(client: Client) -> None:
    with pytest.raises(ValueError, match="needs a study stored in a dasktune.DaskStorage"):
        dasktune.optimize(optuna.create_study(), quadratic, n_trials=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_trials": 0}, "n_trials must be a positive int"),
        ({"timeout": -1}, "timeout must be a positive number"),
        ({"n_trials": 1, "concurrency": 0}, "concurrency must be a positive int"),
        ({"n_trials": 1, "catch": "ValueError"}, "catch must be exception types"),
    ],
)
def test_bad_arguments_are_refused_at_the_call(client: Client, kwargs: dict, match: str) -> None:
    study = new_study()
    with pytest.raises((ValueError, TypeError), match=match):
        dasktune.optimize(study, quadratic, **kwargs)
    assert study.trials == []


def test_callbacks_run_here_in_finishing_order_and_can_stop_the_study(client: Client) -> None:
    study = new_study()
    seen: list[optuna.trial.FrozenTrial] = []

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        seen.append(trial)
        if len(seen) == 5:
            study.stop()

    run = dasktune.optimize(study, sleepy, n_trials=50, callbacks=[callback])
    assert seen == run.trials
    finish_times = [t.datetime_complete for t in seen]
    assert finish_times == sorted(finish_times)
    assert 5 <= len(study.trials) <= 8  # the two running when it stopped still finish
    assert run.status()["end_reason"] == "study.stop() was called"
    assert run.status()["outcome"] == "stopped"


@pytest.mark.parametrize(
    "pruner",
    [
        optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0),
        optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2),
        optuna.pruners.HyperbandPruner(min_resource=1, max_resource=5, reduction_factor=2),
    ],
    ids=["median", "successive-halving", "hyperband"],
)
def test_pruning_decides_from_all_workers_intermediate_values(
    client: Client, pruner: optuna.pruners.BasePruner
) -> None:
    study = new_study(pruner=pruner)
    dasktune.optimize(study, slow_learning_curve, n_trials=40)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert pruned and complete
    # A trial pruned on one worker after a trial of the other had completed: the pruner
    # decided with the other worker's values. (Not "both workers prune and complete": on
    # a loaded machine one worker may start late and run only a few trials.)
    assert any(
        worker_of(study, c) != worker_of(study, p) and c.datetime_complete < p.datetime_complete
        for p in pruned for c in complete
    ), [(t.number, t.state.name, worker_of(study, t)) for t in study.trials]


def test_seeded_sampler_gives_distinct_samples_and_reproduces_at_concurrency_one(
    client: Client,
) -> None:
    study = new_study(sampler=optuna.samplers.RandomSampler(seed=0))
    dasktune.optimize(study, quadratic, n_trials=40)
    assert len({t.params["x"] for t in study.trials}) == 40

    def sequence() -> list[float]:
        study = new_study(sampler=optuna.samplers.RandomSampler(seed=7))
        dasktune.optimize(study, quadratic, n_trials=10, concurrency=1)
        return [t.params["x"] for t in sorted(study.trials, key=lambda t: t.number)]

    assert sequence() == sequence()


def test_enqueued_trials_are_run_first(client: Client) -> None:
    study = new_study()
    study.enqueue_trial({"x": 2.0, "c": "a"})
    dasktune.optimize(study, quadratic, n_trials=5)
    assert study.trials[0].params == {"x": 2.0, "c": "a"}
    assert study.best_value == 0.0


def test_interrupt_leaves_nothing_running_and_keeps_finished_trials(client: Client) -> None:
    study = new_study()

    def interrupt(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.number >= 2:
            raise KeyboardInterrupt

    def slow(trial: optuna.Trial) -> float:
        time.sleep(0.3 if trial.number < 3 else 5)
        return quadratic(trial)

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        dasktune.optimize(study, slow, n_trials=100, callbacks=[interrupt])
    assert time.monotonic() - start < 5
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states
    assert states.count(TrialState.COMPLETE) >= 3
    wait_for(
        lambda: client.run_on_scheduler(lambda dask_scheduler: not dask_scheduler.tasks),
        timeout=1.5,
        message="runner tasks to leave the cluster",
    )


def test_runner_tasks_have_readable_names_with_the_study_name(client: Client) -> None:
    study = optuna.create_study(storage=DaskStorage(), study_name="readable study")
    keys: list[str] = []

    def look(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        keys.extend(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks)))

    dasktune.optimize(study, sleepy, n_trials=3, callbacks=[look])
    assert any(k.startswith("dasktune-readable_study-") and "runner" in k for k in keys)


def test_progress_bar_counts_trials(client: Client, capsys: pytest.CaptureFixture) -> None:
    dasktune.optimize(new_study(), quadratic, n_trials=12, show_progress_bar=True)
    err = capsys.readouterr().err
    assert "12/12" in err and "best value" in err


def test_progress_bar_with_only_a_timeout(client: Client, capsys: pytest.CaptureFixture) -> None:
    dasktune.optimize(new_study(), sleepy, timeout=1.0, show_progress_bar=True)
    assert "/1.0s" in capsys.readouterr().err


def test_async_client_awaits_optimize(cluster: LocalCluster) -> None:
    async def run() -> int:
        async with Client(cluster.scheduler_address, asynchronous=True) as client:
            storage = await DaskStorage(client=client)
            study = await asyncio.to_thread(optuna.create_study, storage=storage)
            ticks = 0

            async def heartbeat() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.01)

            beating = asyncio.create_task(heartbeat())
            run = await dasktune.optimize(study, sleepy, n_trials=6, client=client)
            beating.cancel()
            assert ticks > 20, "the event loop kept running while optimize waited"
            return len(run.trials)

    assert asyncio.run(run()) == 6


def test_worker_added_mid_run_picks_up_work() -> None:
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster:
        with Client(cluster):
            study = optuna.create_study(storage=DaskStorage())

            def grow(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
                if trial.number == 0:
                    cluster.scale(2)
                if len({worker_of(study, t) for t in study.get_trials(states=(TrialState.COMPLETE,))}) == 2:
                    study.stop()  # the new worker ran a trial: that is what this test waits for

            # However long the new worker takes to start (a busy machine), the run goes on.
            run = dasktune.optimize(study, sleepy, timeout=120, callbacks=[grow])
            assert run.status()["outcome"] == "stopped"
            assert len({worker_of(study, t) for t in study.trials}) == 2


def test_detach_then_reattach_from_another_process(cluster: LocalCluster, client: Client) -> None:
    storage = DaskStorage(name="detached")
    optuna.create_study(storage=storage, study_name="long")
    code = textwrap.dedent(
        f"""
        import optuna, dasktune, time
        from distributed import Client
        from test_optimize import sleepy
        with Client({cluster.scheduler_address!r}) as client:
            study = optuna.load_study(study_name="long", storage=dasktune.DaskStorage(name="detached"))
            run = dasktune.optimize(study, sleepy, n_trials=12, detach=True)
            print(run.run_id)
        """
    )
    here = Path(__file__).parent
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(here), str(here.parent)])},
    )
    run_id = out.stdout.decode().split()[-1]
    study = optuna.load_study(study_name="long", storage=storage)
    run = dasktune.attach(study)
    assert run.run_id == run_id
    run.wait()
    assert len(run.trials) == 12
    assert len(study.trials) == 12
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}


def test_cancel_an_attached_run(client: Client) -> None:
    study = new_study()
    run = dasktune.optimize(study, sleepy, n_trials=200, detach=True)
    wait_for(lambda: len(study.trials) >= 2, message="the detached run to start")
    dasktune.attach(study).cancel()
    wait_for(lambda: run.done(), message="the run to end")
    assert TrialState.RUNNING not in {t.state for t in study.trials}
    assert len(study.trials) < 200
    wait_for(
        lambda: client.run_on_scheduler(lambda dask_scheduler: not dask_scheduler.tasks),
        timeout=10,
        message="the detached driver and runners to finish",
    )


def test_attach_to_a_study_without_runs_says_so(client: Client) -> None:
    with pytest.raises(KeyError, match="No optimize run"):
        dasktune.attach(new_study())




def branin(params: dict) -> float:
    x, y = params["x"], params["y"]
    return (y - 5.1 / (4 * 3.14159**2) * x**2 + 5 / 3.14159 * x - 6) ** 2 + 10 * (
        1 - 1 / (8 * 3.14159)
    ) * __import__("math").cos(x) + 10 + (params["kind"] == "b")


def test_define_and_run_asks_here_and_sends_only_parameters(client: Client) -> None:
    space = {
        "x": optuna.distributions.FloatDistribution(-5, 10),
        "y": optuna.distributions.FloatDistribution(0, 15),
        "kind": optuna.distributions.CategoricalDistribution(["a", "b"]),
    }
    study = new_study(sampler=optuna.samplers.TPESampler(seed=1))
    seen: list[int] = []
    run = dasktune.optimize(
        study, branin, n_trials=30, search_space=space, callbacks=[lambda s, t: seen.append(t.number)]
    )
    assert len(run.trials) == 30 and len(study.trials) == 30
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    assert all(set(t.params) == {"x", "y", "kind"} for t in study.trials)
    assert sorted(seen) == list(range(30))
    # The driver's sampler works from what the workers told: each value is the objective's.
    assert all(t.value == pytest.approx(branin(t.params)) for t in study.trials)


def test_define_and_run_errors_and_catch(client: Client) -> None:
    space = {"x": optuna.distributions.IntDistribution(0, 9)}

    def odd_fails(params: dict) -> float:
        if params["x"] % 2:
            raise ValueError("odd")
        return params["x"]

    study = new_study()
    dasktune.optimize(study, odd_fails, n_trials=12, search_space=space, catch=ValueError)
    assert len(study.trials) == 12
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert all(t.system_attrs[FAIL_REASON] == "ValueError: odd" for t in failed)
    with pytest.raises(ValueError, match="odd"):
        dasktune.optimize(new_study(), odd_fails, n_trials=50, search_space=space)


def test_define_and_run_space_must_be_distributions(client: Client) -> None:
    with pytest.raises(TypeError, match="search_space must be a non-empty dict"):
        dasktune.optimize(new_study(), branin, n_trials=1, search_space={"x": (0, 1)})


def test_cheap_trials_finish_exactly_n_trials_whatever_their_claims_batch(client: Client) -> None:
    study = new_study(sampler=optuna.samplers.RandomSampler())
    run = dasktune.optimize(study, quadratic, n_trials=1001)
    assert len(run.trials) == 1001
    assert sorted(t.number for t in study.trials) == list(range(1001))
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}


def kind_by_parity(trial: optuna.Trial) -> float:
    # Optuna refuses a parameter whose distribution kind differs from the study's earlier
    # trials': with two workers, which trial meets the refusal is a race.
    if trial.number % 2:
        return float(trial.suggest_int("x", 0, 10))
    return trial.suggest_float("x", 0, 10)


@pytest.mark.parametrize("attempt", range(4))
def test_an_error_met_by_a_deferred_write_obeys_catch_and_never_completes_a_trial_without_its_parameters(
    client: Client, attempt: int
) -> None:
    study = new_study()
    run = dasktune.optimize(study, kind_by_parity, n_trials=20, catch=(ValueError,))
    assert len(run.trials) == 20
    states = [t.state for t in study.trials]
    assert len(states) == 20 and set(states) <= {TrialState.COMPLETE, TrialState.FAIL}
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert complete and failed
    assert all(t.params and t.value == t.params["x"] for t in complete)
    kinds = {type(t.distributions["x"]).__name__ for t in complete}
    assert len(kinds) == 1  # every COMPLETE trial holds the kind the study settled on
    assert all("Cannot set different distribution kind" in t.system_attrs[FAIL_REASON] for t in failed)


def test_an_error_met_by_a_deferred_write_not_in_catch_stops_the_run_with_it(client: Client) -> None:
    study = new_study()
    with pytest.raises(ValueError, match="Cannot set different distribution kind"):
        dasktune.optimize(study, kind_by_parity, n_trials=20)
    assert all(t.params for t in study.trials if t.state == TrialState.COMPLETE)
    assert TrialState.RUNNING not in {t.state for t in study.trials}
